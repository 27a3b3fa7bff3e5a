//! Activations quantized per block of 32 to 8-bit integers with one f32 scale, as llama.cpp's
//! CPU kernels quantize them (its `q8_0`, with the scale kept in f32): weight blocks are then
//! multiplied in integers, 32 products at a time, and scaled once per block.

/// Values per activation block (every weight format's sub-blocks are 16 or 32 wide).
pub const Q8_BLOCK: usize = 32;

/// 32 activations: value i ≈ `scale` × `quants[i]`; `sum` is the sum of the quants (for
/// weight formats with an offset, whose dot product needs Σ x).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Q8Block {
    pub scale: f32,
    pub quants: [i8; Q8_BLOCK],
    pub sum: i32,
}

/// `x` (a multiple of 32 long) as 8-bit blocks: each block's largest magnitude maps to 127,
/// values round to the nearest integer.
pub fn quantize_q8(x: &[f32]) -> Vec<Q8Block> {
    assert!(
        x.len().is_multiple_of(Q8_BLOCK),
        "activations come in whole blocks of {Q8_BLOCK}, not {}",
        x.len()
    );
    x.chunks_exact(Q8_BLOCK)
        .map(|chunk| {
            let largest = chunk.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = largest / 127.0;
            let inverse = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            let mut quants = [0i8; Q8_BLOCK];
            for (q, &v) in quants.iter_mut().zip(chunk) {
                *q = (v * inverse).round() as i8;
            }
            let sum = quants.iter().map(|&q| i32::from(q)).sum();
            Q8Block { scale, quants, sum }
        })
        .collect()
}

/// Σ a[i] · b[i] over 32 8-bit values (written so that compilers vectorize it: SIMD128 in
/// wasm32, SSE/AVX or NEON natively).
#[inline(always)]
pub fn dot_i8(a: &[i8; Q8_BLOCK], b: &[i8; Q8_BLOCK]) -> i32 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| i32::from(x) * i32::from(y))
        .sum()
}

/// As `dot_i8` over the 16 values from `offset` (Q6_K's sub-blocks of 16).
#[inline(always)]
pub fn dot_i8_half(a: &[i8; Q8_BLOCK], b: &[i8; Q8_BLOCK], offset: usize) -> i32 {
    a[offset..offset + 16]
        .iter()
        .zip(&b[offset..offset + 16])
        .map(|(&x, &y)| i32::from(x) * i32::from(y))
        .sum()
}
