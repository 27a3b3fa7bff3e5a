//! Fields of GGML's blocks as every block product reads them, the portable ones and the
//! SIMD ones alike: f16 scales, a K-quant's 6-bit scales and minimums, Q5's fifth bits.

/// f16 bits as f32 (subnormals included).
pub fn f16_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits >> 15) << 31;
    let exponent = u32::from((bits >> 10) & 0x1F);
    let mantissa = u32::from(bits & 0x3FF);
    let magnitude = match (exponent, mantissa) {
        (0, 0) => 0,
        (0, m) => {
            // Subnormal: m · 2^-24.
            let value = m as f32 * f32::powi(2.0, -24);
            return if sign == 0 { value } else { -value };
        }
        (0x1F, m) => (0xFF << 23) | (m << 13),
        (e, m) => ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(sign | magnitude)
}

/// The f16 at byte `at` of a block, as f32.
pub(super) fn half(bytes: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([bytes[at], bytes[at + 1]]))
}

/// For each byte value, its 8 bits as 8 bytes of 0 or 16 (a fifth bit in place), so that a
/// Q5_0 block's 32 fifth bits are spread with 4 lookups (llama.cpp's trick).
pub(super) const BITS_TO_FIFTH: [[u8; 8]; 256] = {
    let mut table = [[0u8; 8]; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut bit = 0;
        while bit < 8 {
            table[byte][bit] = (((byte >> bit) & 1) << 4) as u8;
            bit += 1;
        }
        byte += 1;
    }
    table
};

/// Sub-block `j`'s 6-bit scale and minimum from a K-quant block's 12 scale bytes.
#[inline(always)]
pub(super) fn k_scale_min(scales: &[u8], j: usize) -> (f32, f32) {
    let (scale, min) = if j < 4 {
        (scales[j] & 63, scales[j + 4] & 63)
    } else {
        (
            (scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4),
            (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4),
        )
    };
    (f32::from(scale), f32::from(min))
}
