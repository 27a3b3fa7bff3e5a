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

/// Σ a[i] · b[i] over the 16 8-bit values from `offset` (0 or 16: a 32-weight block's
/// halves, which Q6_K scales apart). Natively written so that compilers vectorize it
/// (SSE/AVX or NEON).
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline(always)]
pub fn dot_i8_half(a: &[i8; Q8_BLOCK], b: &[i8; Q8_BLOCK], offset: usize) -> i32 {
    a[offset..offset + 16]
        .iter()
        .zip(&b[offset..offset + 16])
        .map(|(&x, &y)| i32::from(x) * i32::from(y))
        .sum()
}

/// As above, in WebAssembly SIMD: the 16 values sign-extended to 16 bits, multiplied and
/// summed pairwise into four 32-bit lanes (`i32x4.dot_i16x8_s`), then added up.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline(always)]
pub fn dot_i8_half(a: &[i8; Q8_BLOCK], b: &[i8; Q8_BLOCK], offset: usize) -> i32 {
    use core::arch::wasm32::{
        i16x8_extend_high_i8x16, i16x8_extend_low_i8x16, i32x4_add, i32x4_dot_i16x8,
        i32x4_extract_lane, v128, v128_load,
    };
    assert!(
        offset <= Q8_BLOCK - 16,
        "a half starts at 0 or 16, not {offset}"
    );
    // SAFETY: both arrays hold 16 bytes from `offset` (asserted above); v128_load accepts
    // unaligned addresses.
    let (x, y) = unsafe {
        (
            v128_load(a.as_ptr().add(offset).cast::<v128>()),
            v128_load(b.as_ptr().add(offset).cast::<v128>()),
        )
    };
    let low = i32x4_dot_i16x8(i16x8_extend_low_i8x16(x), i16x8_extend_low_i8x16(y));
    let high = i32x4_dot_i16x8(i16x8_extend_high_i8x16(x), i16x8_extend_high_i8x16(y));
    let sum = i32x4_add(low, high);
    i32x4_extract_lane::<0>(sum)
        + i32x4_extract_lane::<1>(sum)
        + i32x4_extract_lane::<2>(sum)
        + i32x4_extract_lane::<3>(sum)
}
