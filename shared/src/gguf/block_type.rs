//! The GGUF block formats both engines run: their GGML types, and the weights and bytes of a
//! block as the kernels walk it. How a block is laid out on the GPU, and the WGSL that reads
//! it, is the wgpu engine's (`wgpu_engine/gpu_block_layout.rs`); the byte layout of every format
//! is documented beside its kernel in `wgpu_engine/kernels/`.

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

    /// Weights per block as the kernel walks them (F32 four and F16 eight at a time).
    pub fn block_elements(self) -> usize {
        match self {
            BlockType::F32 => 4,
            BlockType::F16 => 8,
            BlockType::Q4_0 | BlockType::Q4_1 | BlockType::Q5_0 | BlockType::Q8_0 => 32,
            BlockType::Q4K | BlockType::Q5K | BlockType::Q6K => 256,
        }
    }

    /// Runs of weights the kernel loads one at a time (K-quants: 8 sub-blocks of 32).
    pub fn sub_blocks(self) -> usize {
        match self {
            BlockType::Q4K | BlockType::Q5K | BlockType::Q6K => 8,
            _ => 1,
        }
    }

    /// GGUF bytes per block as the kernel walks them.
    pub fn block_bytes(self) -> usize {
        match self {
            BlockType::F32 | BlockType::F16 => 16,
            BlockType::Q4_0 => 18,
            BlockType::Q4_1 => 20,
            BlockType::Q5_0 => 22,
            BlockType::Q8_0 => 34,
            BlockType::Q4K => 144,
            BlockType::Q5K => 176,
            BlockType::Q6K => 210,
        }
    }
}
