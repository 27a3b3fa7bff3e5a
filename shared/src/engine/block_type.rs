//! The GGUF block formats the kernels read, how each block is laid out on the GPU, and the
//! WGSL that dequantizes it. The byte layout of every format is documented beside its kernel
//! in `kernels/`.
//!
//! On upload every GGUF block is split, bits unchanged, into a *head* (its scales and other
//! small fields, padded to whole 32-bit words) and a *bulk* (its quants, a whole number of
//! 16-byte vectors). Heads and bulks go to two buffers, so the kernels load the quants with
//! aligned 16-byte reads whatever the GGUF block size (18, 22, 34, 210 bytes are not even
//! 4-byte multiples).

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

    /// The GGUF byte ranges that form a block's head, in head order (each kernel file
    /// documents the resulting words).
    #[expect(
        clippy::single_range_in_vec_init,
        reason = "a head is a list of byte ranges; most lists have one"
    )]
    fn head_ranges(self) -> &'static [std::ops::Range<usize>] {
        match self {
            BlockType::F32 | BlockType::F16 => &[],
            BlockType::Q4_0 | BlockType::Q8_0 => &[0..2],
            BlockType::Q4_1 => &[0..4],
            BlockType::Q5_0 => &[2..6, 0..2],
            BlockType::Q4K | BlockType::Q5K => &[0..16],
            BlockType::Q6K => &[192..210],
        }
    }

    /// The GGUF byte range that forms a block's bulk.
    fn bulk_range(self) -> std::ops::Range<usize> {
        match self {
            BlockType::F32 | BlockType::F16 => 0..16,
            BlockType::Q4_0 => 2..18,
            BlockType::Q4_1 => 4..20,
            BlockType::Q5_0 => 6..22,
            BlockType::Q8_0 => 2..34,
            BlockType::Q4K | BlockType::Q5K => 16..self.block_bytes(),
            BlockType::Q6K => 0..192,
        }
    }

    /// 32-bit words of a block's head on the GPU.
    pub fn head_words(self) -> usize {
        let bytes: usize = self.head_ranges().iter().map(|r| r.len()).sum();
        bytes.div_ceil(4)
    }

    /// 16-byte vectors of a block's bulk on the GPU.
    pub fn bulk_vec4s(self) -> usize {
        self.bulk_range().len() / 16
    }

    /// Splits GGUF blocks (a whole number of them) into the GPU's heads and bulks.
    pub fn split_blocks(self, blocks: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let block_bytes = self.block_bytes();
        let count = blocks.len() / block_bytes;
        let mut heads = Vec::with_capacity(count * self.head_words() * 4);
        let mut bulks = Vec::with_capacity(count * self.bulk_vec4s() * 16);
        for block in blocks.chunks_exact(block_bytes) {
            let head_start = heads.len();
            for range in self.head_ranges() {
                heads.extend_from_slice(&block[range.clone()]);
            }
            heads.resize(head_start + self.head_words() * 4, 0);
            bulks.extend_from_slice(&block[self.bulk_range()]);
        }
        (heads, bulks)
    }

    /// WGSL that defines this type's `Block`, `load_sub` and `group_weights`.
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
