//! One block times its activations in WebAssembly SIMD, without unpacking the block to memory
//! first: what a decode step does for every block of every matrix (a batch unpacks each row
//! once instead). The nibbles are split with a mask and a shift, Q5_0's fifth bits spread by
//! `BITS_TO_FIFTH` lookups, and products of sign-extended 16-bit lanes summed pairwise
//! (`i32x4.dot_i16x8_s`). Each adds to `total`, 32 weights at a time, exactly what
//! `UnpackedBlock::dot` gives for the unpacked block (the same integer sums, the same float
//! expression, into the same `RowTotal` lanes), so a token gives the same bits alone as in a
//! batch.

use core::arch::wasm32::{
    i8x16_shl, i8x16_splat, i8x16_sub, i16x8_extend_high_i8x16, i16x8_extend_low_i8x16, i32x4_add,
    i32x4_dot_i16x8, i32x4_extract_lane, u8x16_shr, u8x16_splat, u64x2, v128, v128_and, v128_load,
    v128_or,
};

use super::block_fields::{BITS_TO_FIFTH, half, k_scale_min};
use super::q8_activations::Q8Block;
use super::unpacked_block::{RowDot, RowTotal, block_value};
use crate::gguf::BlockType;

/// The row product of `block_type`, where it has one: each block's product below, in order.
pub fn row_dot(block_type: BlockType) -> Option<RowDot> {
    /// A row of `BYTES`-byte blocks of `UNPACKED` activation blocks each, block by block.
    #[inline(always)]
    fn rows<const BYTES: usize, const UNPACKED: usize>(
        row: &[u8],
        xq: &[Q8Block],
        block: fn(&[u8], &[Q8Block], &mut RowTotal),
    ) -> f32 {
        let mut total = RowTotal::default();
        for (bytes, x) in row.chunks_exact(BYTES).zip(xq.chunks_exact(UNPACKED)) {
            block(bytes, x, &mut total);
        }
        total.sum()
    }
    Some(match block_type {
        BlockType::Q4_0 => |row, xq| rows::<18, 1>(row, xq, q4_0),
        BlockType::Q5_0 => |row, xq| rows::<22, 1>(row, xq, q5_0),
        BlockType::Q8_0 => |row, xq| rows::<34, 1>(row, xq, q8_0),
        BlockType::Q4K => |row, xq| rows::<144, 8>(row, xq, q4_k),
        BlockType::Q6K => |row, xq| rows::<210, 8>(row, xq, q6_k),
        _ => return None,
    })
}

/// Σ w · x over 16 8-bit lanes.
#[inline(always)]
fn dot16(w: v128, x: v128) -> i32 {
    let low = i32x4_dot_i16x8(i16x8_extend_low_i8x16(w), i16x8_extend_low_i8x16(x));
    let high = i32x4_dot_i16x8(i16x8_extend_high_i8x16(w), i16x8_extend_high_i8x16(x));
    let sum = i32x4_add(low, high);
    i32x4_extract_lane::<0>(sum)
        + i32x4_extract_lane::<1>(sum)
        + i32x4_extract_lane::<2>(sum)
        + i32x4_extract_lane::<3>(sum)
}

/// 16 bytes from `bytes[at..]`.
#[inline(always)]
fn load16(bytes: &[u8], at: usize) -> v128 {
    assert!(
        at + 16 <= bytes.len(),
        "16 bytes from {at} of {}",
        bytes.len()
    );
    // SAFETY: 16 bytes from `at` are in bounds (asserted); v128_load takes unaligned addresses.
    unsafe { v128_load(bytes.as_ptr().add(at).cast::<v128>()) }
}

/// The activations' two halves.
#[inline(always)]
fn activations(x: &Q8Block) -> (v128, v128) {
    let bytes: &[u8] = bytemuck::cast_slice(&x.quants);
    (load16(bytes, 0), load16(bytes, 16))
}

/// `block_value` of a block with one scale `d` and `offset`, given its halves' sums.
#[inline(always)]
fn scaled(d: f32, offset: f32, low: i32, high: i32, x: &Q8Block) -> f32 {
    block_value([d, d], offset, low, high, x)
}

/// The low and high nibbles of 16 bytes: weights 0..16 and 16..32.
#[inline(always)]
fn nibbles(bytes: &[u8], at: usize) -> (v128, v128) {
    let packed = load16(bytes, at);
    (v128_and(packed, u8x16_splat(0x0F)), u8x16_shr(packed, 4))
}

fn q8_0(block: &[u8], x: &[Q8Block], total: &mut RowTotal) {
    let x = &x[0];
    let (x0, x1) = activations(x);
    let (low, high) = (dot16(load16(block, 2), x0), dot16(load16(block, 18), x1));
    total.add(scaled(half(block, 0), 0.0, low, high, x));
}

fn q4_0(block: &[u8], x: &[Q8Block], total: &mut RowTotal) {
    let x = &x[0];
    let (x0, x1) = activations(x);
    let (w0, w1) = nibbles(block, 2);
    let d = half(block, 0);
    total.add(scaled(d, -8.0 * d, dot16(w0, x0), dot16(w1, x1), x));
}

/// Q4_K: 4 groups of 32 bytes, each holding two sub-blocks (low and high nibbles).
fn q4_k(block: &[u8], x: &[Q8Block], total: &mut RowTotal) {
    let (d, dmin) = (half(block, 0), half(block, 2));
    let scales = &block[4..16];
    for group in 0..4 {
        let (first, second) = (
            nibbles(block, 16 + 32 * group),
            nibbles(block, 32 + 32 * group),
        );
        for (s, (w0, w1)) in [
            (2 * group, (first.0, second.0)),
            (2 * group + 1, (first.1, second.1)),
        ] {
            let (scale, min) = k_scale_min(scales, s);
            let xs = &x[s];
            let (x0, x1) = activations(xs);
            total.add(scaled(
                d * scale,
                -dmin * min,
                dot16(w0, x0),
                dot16(w1, x1),
                xs,
            ));
        }
    }
}

fn q5_0(block: &[u8], x: &[Q8Block], total: &mut RowTotal) {
    let x = &x[0];
    let (x0, x1) = activations(x);
    let (w0, w1) = nibbles(block, 6);
    let fifth = |a: u8, b: u8| {
        u64x2(
            u64::from_le_bytes(BITS_TO_FIFTH[usize::from(a)]),
            u64::from_le_bytes(BITS_TO_FIFTH[usize::from(b)]),
        )
    };
    let w0 = v128_or(w0, fifth(block[2], block[3]));
    let w1 = v128_or(w1, fifth(block[4], block[5]));
    let d = half(block, 0);
    total.add(scaled(d, -16.0 * d, dot16(w0, x0), dot16(w1, x1), x));
}

/// Q6_K: two halves of 128 weights; in each, 16 lanes l of the low bytes `ql` and high bytes
/// `qh` give weights l, l + 32, l + 64 and l + 96 (low nibbles of ql[l] and ql[l + 32], then
/// their high nibbles; qh's bit pairs 0-1, 2-3, 4-5, 6-7), each 6-bit value minus 32.
fn q6_k(block: &[u8], x: &[Q8Block], total: &mut RowTotal) {
    let d = half(block, 208);
    let scales = &block[192..208];
    let (mask_low, mask_high) = (u8x16_splat(0x0F), u8x16_splat(0x30));
    let thirty_two = i8x16_splat(32);
    // The four parts of a half's lanes `lane` (0 or 16), weights of sub-blocks 4h .. 4h + 4.
    let parts = |half_block: usize, lane: usize| {
        let low = load16(block, 64 * half_block + lane);
        let low_next = load16(block, 64 * half_block + 32 + lane);
        let high = load16(block, 128 + 32 * half_block + lane);
        [
            v128_or(
                v128_and(low, mask_low),
                v128_and(i8x16_shl(high, 4), mask_high),
            ),
            v128_or(
                v128_and(low_next, mask_low),
                v128_and(i8x16_shl(high, 2), mask_high),
            ),
            v128_or(u8x16_shr(low, 4), v128_and(high, mask_high)),
            v128_or(
                u8x16_shr(low_next, 4),
                v128_and(u8x16_shr(high, 2), mask_high),
            ),
        ]
        .map(|q| i8x16_sub(q, thirty_two))
    };
    for half_block in 0..2 {
        let (first, second) = (parts(half_block, 0), parts(half_block, 16));
        for part in 0..4 {
            let s = 4 * half_block + part;
            let xs = &x[s];
            let (x0, x1) = activations(xs);
            let sub_scales = [
                d * f32::from(scales[2 * s] as i8),
                d * f32::from(scales[2 * s + 1] as i8),
            ];
            let (low, high) = (dot16(first[part], x0), dot16(second[part], x1));
            total.add(block_value(sub_scales, 0.0, low, high, xs));
        }
    }
}
