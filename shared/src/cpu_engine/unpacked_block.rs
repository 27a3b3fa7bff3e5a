//! 32 weights unpacked to 8-bit quants (`UnpackedBlock`), and the one float expression that
//! turns the integer sums of a block's products into its value (`block_value`): every SIMD
//! level computes the same integers and then exactly this, so every level gives the same bits.

use super::q8_activations::{Q8_BLOCK, Q8Block, dot_i8_half};

/// 32 weights as 8-bit quants: w[i] = scales[i / 16] · quants[i] + offset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnpackedBlock {
    pub quants: [i8; Q8_BLOCK],
    pub scales: [f32; 2],
    pub offset: f32,
}

impl UnpackedBlock {
    pub const ZERO: Self = Self {
        quants: [0; Q8_BLOCK],
        scales: [0.0; 2],
        offset: 0.0,
    };

    /// These 32 weights · the 32 activations `x`.
    #[inline(always)]
    pub fn dot(&self, x: &Q8Block) -> f32 {
        let low = dot_i8_half(&self.quants, &x.quants, 0);
        let high = dot_i8_half(&self.quants, &x.quants, 16);
        block_value(self.scales, self.offset, low, high, x)
    }
}

/// 32 weights (a scale per 16, an offset) times the activation block `x`, given the integer
/// sums of their quants' products over each half: the one float expression every path
/// evaluates, so that each gives the same bits.
#[inline(always)]
pub fn block_value(scales: [f32; 2], offset: f32, low: i32, high: i32, x: &Q8Block) -> f32 {
    x.scale * (scales[0] * low as f32 + scales[1] * high as f32 + offset * x.sum as f32)
}

/// A quantized row times its 8-bit activations, without unpacking it to memory.
pub type RowDot = fn(row: &[u8], xq: &[Q8Block]) -> f32;

/// An unpacked row (a batch's) times 8-bit activations.
pub type UnpackedDot = fn(row: &[UnpackedBlock], xq: &[Q8Block]) -> f32;

/// Lanes a row's block values are summed in: block i of a row (a K-quant's sub-block i, so
/// sub-block s of each block) goes to lane i % 8, and the lanes are added in one fixed tree at
/// the end (`sum_lanes`). Every path sums this way — the portable one and SIMD128 block by
/// block, AVX2 eight blocks at once in one register — so all give the same bits, with no chain
/// of dependent additions through the row.
pub const SUM_LANES: usize = 8;

/// A row's running sum, in `SUM_LANES` lanes.
#[derive(Debug, Clone, Copy, Default)]
pub struct RowTotal {
    lanes: [f32; SUM_LANES],
    next: usize,
}

impl RowTotal {
    /// Adds the next block's value.
    #[inline(always)]
    pub fn add(&mut self, value: f32) {
        self.lanes[self.next] += value;
        self.next = (self.next + 1) % SUM_LANES;
    }

    pub fn sum(&self) -> f32 {
        sum_lanes(self.lanes)
    }
}

/// The lanes' total, in one fixed order.
#[inline(always)]
pub fn sum_lanes(lanes: [f32; SUM_LANES]) -> f32 {
    ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]))
        + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]))
}
