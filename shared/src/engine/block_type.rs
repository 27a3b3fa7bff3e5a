//! The GGUF block formats the kernels read, and the WGSL source of each one's dot product.
//! The byte layout of every format is documented beside its kernel in `kernels/`.

use candle_core::quantized::GgmlDType;

/// A weight storage type the engine runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q8_0,
    Q4K,
    Q5K,
    Q6K,
}

impl BlockType {
    pub const ALL: [BlockType; 9] = [
        BlockType::F32,
        BlockType::F16,
        BlockType::Q4_0,
        BlockType::Q4_1,
        BlockType::Q5_0,
        BlockType::Q8_0,
        BlockType::Q4K,
        BlockType::Q5K,
        BlockType::Q6K,
    ];

    /// The engine's type for a GGUF tensor type, or `None` when no kernel reads it.
    pub fn from_ggml(dtype: GgmlDType) -> Option<Self> {
        Some(match dtype {
            GgmlDType::F32 => BlockType::F32,
            GgmlDType::F16 => BlockType::F16,
            GgmlDType::Q4_0 => BlockType::Q4_0,
            GgmlDType::Q4_1 => BlockType::Q4_1,
            GgmlDType::Q5_0 => BlockType::Q5_0,
            GgmlDType::Q8_0 => BlockType::Q8_0,
            GgmlDType::Q4K => BlockType::Q4K,
            GgmlDType::Q5K => BlockType::Q5K,
            GgmlDType::Q6K => BlockType::Q6K,
            _ => return None,
        })
    }

    pub fn ggml(self) -> GgmlDType {
        match self {
            BlockType::F32 => GgmlDType::F32,
            BlockType::F16 => GgmlDType::F16,
            BlockType::Q4_0 => GgmlDType::Q4_0,
            BlockType::Q4_1 => GgmlDType::Q4_1,
            BlockType::Q5_0 => GgmlDType::Q5_0,
            BlockType::Q8_0 => GgmlDType::Q8_0,
            BlockType::Q4K => GgmlDType::Q4K,
            BlockType::Q5K => GgmlDType::Q5K,
            BlockType::Q6K => GgmlDType::Q6K,
        }
    }

    /// Weights per block as the kernel walks them (F32 and F16 four at a time).
    pub fn block_elements(self) -> usize {
        match self {
            BlockType::F32 | BlockType::F16 => 4,
            BlockType::Q4_0 | BlockType::Q4_1 | BlockType::Q5_0 | BlockType::Q8_0 => 32,
            BlockType::Q4K | BlockType::Q5K | BlockType::Q6K => 256,
        }
    }

    /// Bytes per block as the kernel walks them.
    pub fn block_bytes(self) -> usize {
        match self {
            BlockType::F32 => 16,
            BlockType::F16 => 8,
            BlockType::Q4_0 => 18,
            BlockType::Q4_1 => 20,
            BlockType::Q5_0 => 22,
            BlockType::Q8_0 => 34,
            BlockType::Q4K => 144,
            BlockType::Q5K => 176,
            BlockType::Q6K => 210,
        }
    }

    /// WGSL that defines `BLOCK_ELEMENTS`, `BLOCK_BYTES` and `block_dot` for this type.
    pub fn block_kernel_source(self) -> &'static str {
        match self {
            BlockType::F32 => include_str!("kernels/block_f32.wgsl"),
            BlockType::F16 => include_str!("kernels/block_f16.wgsl"),
            BlockType::Q4_0 => include_str!("kernels/block_q4_0.wgsl"),
            BlockType::Q4_1 => include_str!("kernels/block_q4_1.wgsl"),
            BlockType::Q5_0 => include_str!("kernels/block_q5_0.wgsl"),
            BlockType::Q8_0 => include_str!("kernels/block_q8_0.wgsl"),
            BlockType::Q4K => concat!(
                include_str!("kernels/k_quant_scale_min.wgsl"),
                include_str!("kernels/block_q4_k.wgsl")
            ),
            BlockType::Q5K => concat!(
                include_str!("kernels/k_quant_scale_min.wgsl"),
                include_str!("kernels/block_q5_k.wgsl")
            ),
            BlockType::Q6K => include_str!("kernels/block_q6_k.wgsl"),
        }
    }
}
