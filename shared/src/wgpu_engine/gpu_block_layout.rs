//! How a GGUF block sits on the GPU, and the WGSL that reads it. On upload every block is
//! split, bits unchanged, into a *head* (its scales and other small fields, padded to whole
//! 32-bit words) and a *bulk* (its quants, a whole number of 16-byte vectors). Heads and bulks
//! go to two buffers, so the kernels load the quants with aligned 16-byte reads whatever the
//! GGUF block size (18, 22, 34, 210 bytes are not even 4-byte multiples). The byte layout of
//! every format is documented beside its kernel in `kernels/`.

use crate::gguf::BlockType;

/// A block type's layout on the GPU and its WGSL.
pub trait GpuBlockLayout {
    /// 32-bit words of a block's head on the GPU.
    fn head_words(self) -> usize;
    /// 16-byte vectors of a block's bulk on the GPU.
    fn bulk_vec4s(self) -> usize;
    /// Splits GGUF blocks (a whole number of them) into the GPU's heads and bulks.
    fn split_blocks(self, blocks: &[u8]) -> (Vec<u8>, Vec<u8>);
    /// WGSL that defines this type's `Block`, `load_sub` and `group_weights`.
    fn block_kernel_source(self) -> &'static str;
}

impl GpuBlockLayout for BlockType {
    fn head_words(self) -> usize {
        let bytes: usize = head_ranges(self).iter().map(|r| r.len()).sum();
        bytes.div_ceil(4)
    }

    fn bulk_vec4s(self) -> usize {
        bulk_range(self).len() / 16
    }

    fn split_blocks(self, blocks: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let block_bytes = self.block_bytes();
        let count = blocks.len() / block_bytes;
        let mut heads = Vec::with_capacity(count * self.head_words() * 4);
        let mut bulks = Vec::with_capacity(count * self.bulk_vec4s() * 16);
        for block in blocks.chunks_exact(block_bytes) {
            let head_start = heads.len();
            for range in head_ranges(self) {
                heads.extend_from_slice(&block[range.clone()]);
            }
            heads.resize(head_start + self.head_words() * 4, 0);
            bulks.extend_from_slice(&block[bulk_range(self)]);
        }
        (heads, bulks)
    }

    fn block_kernel_source(self) -> &'static str {
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

/// The GGUF byte ranges that form a block's head, in head order (each kernel file
/// documents the resulting words).
#[expect(
    clippy::single_range_in_vec_init,
    reason = "a head is a list of byte ranges; most lists have one"
)]
fn head_ranges(block: BlockType) -> &'static [std::ops::Range<usize>] {
    match block {
        BlockType::F32 | BlockType::F16 => &[],
        BlockType::Q4_0 | BlockType::Q8_0 => &[0..2],
        BlockType::Q4_1 => &[0..4],
        BlockType::Q5_0 => &[2..6, 0..2],
        BlockType::Q4K | BlockType::Q5K => &[0..16],
        BlockType::Q6K => &[192..210],
    }
}

/// The GGUF byte range that forms a block's bulk.
fn bulk_range(block: BlockType) -> std::ops::Range<usize> {
    match block {
        BlockType::F32 | BlockType::F16 => 0..16,
        BlockType::Q4_0 => 2..18,
        BlockType::Q4_1 => 4..20,
        BlockType::Q5_0 => 6..22,
        BlockType::Q8_0 => 2..34,
        BlockType::Q4K | BlockType::Q5K => 16..block.block_bytes(),
        BlockType::Q6K => 0..192,
    }
}
