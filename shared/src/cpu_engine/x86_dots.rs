//! Quantized rows times 8-bit activations in AVX2, or AVX-512 VNNI where the CPU has it
//! (`simd_level` picks at run time). A row's 32-weight blocks are unpacked in registers, 32
//! bytes at a time: AVX2 multiplies unsigned weight bytes by signed activation bytes and sums
//! pairs (`vpmaddubsw`, then `vpmaddwd` into 32 bits), VNNI sums four in one instruction
//! (`vpdpbusd`); signed weights go in as their magnitude with the sign moved onto the
//! activation (`vpsignb`). No sum can saturate: |w| ≤ 128 and |x| ≤ 127, so a pair is at most
//! 32,512. Eight blocks' half sums are reduced together (`vphaddd`), their values are
//! `block_value` of exactly the integers the portable code computes, eight lanes at once with
//! the same operations in the same order, and they are added to `RowTotal`'s lanes: every
//! path gives the same bits.

use std::arch::x86_64::*;

use super::block_fields::{BITS_TO_FIFTH, k_scale_min};
use super::q8_activations::Q8Block;
use super::simd_level::SimdLevel;
use super::unpacked_block::{RowDot, SUM_LANES, UnpackedBlock, UnpackedDot, sum_lanes};
use crate::gguf::BlockType;

/// The row product of `block_type` at `level`, where it has one.
pub fn row_dot(level: SimdLevel, block_type: BlockType) -> Option<RowDot> {
    let kernels: [RowDot; 7] = match level {
        SimdLevel::Avx2 => [
            avx2::q4_0,
            avx2::q4_1,
            avx2::q5_0,
            avx2::q8_0,
            avx2::q4_k,
            avx2::q5_k,
            avx2::q6_k,
        ],
        SimdLevel::Avx512Vnni => [
            vnni::q4_0,
            vnni::q4_1,
            vnni::q5_0,
            vnni::q8_0,
            vnni::q4_k,
            vnni::q5_k,
            vnni::q6_k,
        ],
        SimdLevel::Portable | SimdLevel::Simd128 => return None,
    };
    let index = match block_type {
        BlockType::Q4_0 => 0,
        BlockType::Q4_1 => 1,
        BlockType::Q5_0 => 2,
        BlockType::Q8_0 => 3,
        BlockType::Q4K => 4,
        BlockType::Q5K => 5,
        BlockType::Q6K => 6,
        BlockType::F32 | BlockType::F16 => return None,
    };
    Some(kernels[index])
}

/// The product of an unpacked row (a batch's) at `level`, where it has one.
pub fn unpacked_dot(level: SimdLevel) -> Option<UnpackedDot> {
    match level {
        SimdLevel::Avx2 => Some(avx2::unpacked),
        SimdLevel::Avx512Vnni => Some(vnni::unpacked),
        SimdLevel::Portable | SimdLevel::Simd128 => None,
    }
}

/// How 32 weight bytes meet 32 activation bytes: eight 32-bit sums, lanes 0–3 over bytes 0–15
/// and lanes 4–7 over bytes 16–31.
trait BytePairs {
    /// Unsigned weights (0..=255) times signed activations.
    unsafe fn unsigned(w: __m256i, x: __m256i) -> __m256i;

    /// Signed weights: their magnitude times the activations carrying their sign.
    #[inline(always)]
    unsafe fn signed(w: __m256i, x: __m256i) -> __m256i {
        // SAFETY: AVX2 is enabled wherever these kernels are inlined.
        unsafe { Self::unsigned(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w)) }
    }
}

/// AVX2: byte pairs into 16 bits, then 16-bit pairs into 32.
struct Maddubs;

impl BytePairs for Maddubs {
    #[inline(always)]
    unsafe fn unsigned(w: __m256i, x: __m256i) -> __m256i {
        // SAFETY: AVX2 is enabled wherever these kernels are inlined.
        unsafe { _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1)) }
    }
}

/// AVX-512 VNNI: byte quadruples into 32 bits.
struct Dpbusd;

impl BytePairs for Dpbusd {
    #[inline(always)]
    unsafe fn unsigned(w: __m256i, x: __m256i) -> __m256i {
        // SAFETY: AVX-512 VNNI and VL are enabled wherever these kernels are inlined.
        unsafe { _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, x) }
    }
}

/// 32 bytes from the start of `bytes`.
#[inline(always)]
unsafe fn load32(bytes: &[u8]) -> __m256i {
    assert!(bytes.len() >= 32, "32 bytes, not {}", bytes.len());
    // SAFETY: 32 bytes are in bounds (asserted); the load takes unaligned addresses.
    unsafe { _mm256_loadu_si256(bytes.as_ptr().cast()) }
}

/// An activation block's 32 quants.
#[inline(always)]
unsafe fn activations(x: &Q8Block) -> __m256i {
    // SAFETY: AVX2 is enabled wherever these kernels are inlined.
    unsafe { load32(bytemuck::cast_slice(&x.quants)) }
}

/// The f16 at byte `at` of a block, as f32, converted by the CPU (F16C): exactly
/// `block_fields::half`'s value.
#[inline(always)]
unsafe fn half(bytes: &[u8], at: usize) -> f32 {
    let bits = u16::from_le_bytes([bytes[at], bytes[at + 1]]);
    // SAFETY: F16C is enabled wherever these kernels are inlined.
    unsafe { _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits)))) }
}

/// The half sums of four blocks' products: `[low 0, low 1, low 2, low 3, high 0, …, high 3]`.
#[inline(always)]
unsafe fn four_halves(products: &[__m256i]) -> __m256i {
    // SAFETY: AVX2 is enabled wherever these kernels are inlined.
    unsafe {
        let first = _mm256_hadd_epi32(products[0], products[1]);
        let second = _mm256_hadd_epi32(products[2], products[3]);
        _mm256_hadd_epi32(first, second)
    }
}

/// How a block's integer half sums become its value: `block_value`'s scales and offset.
#[derive(Clone, Copy)]
struct BlockScales {
    scales: [f32; 2],
    offset: f32,
}

/// `RowTotal::sum` of the `block_value`s of a row's `count` 32-weight blocks, where block i's
/// half sums are those of `products(i)`, its scales `scales(i)` and its activations `xq[i]`.
/// Eight blocks at a time, lane k taking block 8j + k (absent blocks add +0.0, which leaves a
/// lane as it is: a sum that starts at +0.0 is never −0.0); each closure is called at one
/// place, so that it inlines.
#[inline(always)]
unsafe fn row_sum(
    count: usize,
    xq: &[Q8Block],
    products: impl Fn(usize) -> __m256i,
    scales: impl Fn(usize) -> BlockScales,
) -> f32 {
    assert!(
        xq.len() >= count,
        "{count} blocks, {} activations",
        xq.len()
    );
    // SAFETY: AVX2 is enabled wherever these kernels are inlined.
    unsafe {
        let zero = _mm256_setzero_si256();
        let mut lanes = _mm256_setzero_ps();
        for first in (0..count).step_by(SUM_LANES) {
            let present = (count - first).min(SUM_LANES);
            let mut group = [zero; SUM_LANES];
            let mut columns = [[0f32; SUM_LANES]; 5];
            let mut x_sums = [0i32; SUM_LANES];
            for k in 0..present {
                group[k] = products(first + k);
                let block = scales(first + k);
                let x = &xq[first + k];
                columns[0][k] = block.scales[0];
                columns[1][k] = block.scales[1];
                columns[2][k] = block.offset;
                columns[3][k] = x.scale;
                x_sums[k] = x.sum;
            }
            let (a, b) = (four_halves(&group[..4]), four_halves(&group[4..]));
            let low = _mm256_cvtepi32_ps(_mm256_permute2x128_si256::<0x20>(a, b));
            let high = _mm256_cvtepi32_ps(_mm256_permute2x128_si256::<0x31>(a, b));
            let x_sum = _mm256_cvtepi32_ps(_mm256_loadu_si256(x_sums.as_ptr().cast()));
            let column = |c: usize| _mm256_loadu_ps(columns[c].as_ptr());
            // block_value: x.scale * (scales[0] * low + scales[1] * high + offset * x.sum).
            let inner = _mm256_add_ps(
                _mm256_add_ps(
                    _mm256_mul_ps(column(0), low),
                    _mm256_mul_ps(column(1), high),
                ),
                _mm256_mul_ps(column(2), x_sum),
            );
            lanes = _mm256_add_ps(lanes, _mm256_mul_ps(column(3), inner));
        }
        let mut sums = [0f32; SUM_LANES];
        _mm256_storeu_ps(sums.as_mut_ptr(), lanes);
        sum_lanes(sums)
    }
}

/// The 32 nibbles of 16 bytes: weight j the low nibble of byte j, j + 16 the high one.
#[inline(always)]
unsafe fn nibbles16(bytes: &[u8]) -> __m256i {
    assert!(bytes.len() >= 16, "16 bytes, not {}", bytes.len());
    // SAFETY: 16 bytes are in bounds (asserted); AVX2 is enabled wherever this is inlined.
    unsafe {
        let packed = _mm_loadu_si128(bytes.as_ptr().cast());
        let mask = _mm_set1_epi8(0x0F);
        _mm256_set_m128i(
            _mm_and_si128(_mm_srli_epi16(packed, 4), mask),
            _mm_and_si128(packed, mask),
        )
    }
}

/// Low (`high == false`) or high nibbles of 32 bytes.
#[inline(always)]
unsafe fn nibbles32(bytes: &[u8], high: bool) -> __m256i {
    // SAFETY: AVX2 is enabled wherever this is inlined.
    unsafe {
        let packed = load32(bytes);
        let shifted = if high {
            _mm256_srli_epi16(packed, 4)
        } else {
            packed
        };
        _mm256_and_si256(shifted, _mm256_set1_epi8(0x0F))
    }
}

/// Every kernel, compiled with one level's `$features` (so that the closures inside inherit
/// them and the intrinsics inline) and multiplying bytes with `$pairs`; plus safe entry
/// points, which `row_dot` and `unpacked_dot` hand out only for a level `SimdLevel::available`
/// found. K-quant rows are rows of 32-weight sub-blocks: sub-block i is block i / 8's s = i % 8.
macro_rules! kernels {
    ($features:literal, $pairs:ty) => {
        /// Q4_0, Q4_1 and Q5_0: 32 weights per block, one f16 scale `d` at byte 0, the low
        /// and high nibbles of the 16 bytes at `quants_at`, plus `fifths(block)` (Q5_0) or
        /// nothing; `offset(block, d)` is the block's offset.
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn nibble_kernel(
            row: &[u8],
            xq: &[Q8Block],
            bytes: usize,
            quants_at: usize,
            fifths: impl Fn(&[u8]) -> __m256i,
            offset: impl Fn(&[u8], f32) -> f32,
        ) -> f32 {
            let block = |i: usize| &row[bytes * i..bytes * (i + 1)];
            // SAFETY: the features are enabled in this function.
            unsafe {
                row_sum(
                    row.len() / bytes,
                    xq,
                    |i| {
                        let b = block(i);
                        let w = _mm256_or_si256(nibbles16(&b[quants_at..]), fifths(b));
                        <$pairs>::unsigned(w, activations(&xq[i]))
                    },
                    |i| {
                        let d = half(block(i), 0);
                        BlockScales {
                            scales: [d, d],
                            offset: offset(block(i), d),
                        }
                    },
                )
            }
        }

        #[target_feature(enable = $features)]
        unsafe fn q4_0_kernel(row: &[u8], xq: &[Q8Block]) -> f32 {
            // SAFETY: the features are enabled in this function.
            unsafe { nibble_kernel(row, xq, 18, 2, |_| _mm256_setzero_si256(), |_, d| -8.0 * d) }
        }

        #[target_feature(enable = $features)]
        unsafe fn q4_1_kernel(row: &[u8], xq: &[Q8Block]) -> f32 {
            // SAFETY: the features are enabled in this function.
            unsafe {
                nibble_kernel(
                    row,
                    xq,
                    20,
                    4,
                    |_| _mm256_setzero_si256(),
                    |b, _| half(b, 2),
                )
            }
        }

        #[target_feature(enable = $features)]
        unsafe fn q5_0_kernel(row: &[u8], xq: &[Q8Block]) -> f32 {
            // Weight j's fifth bit is bit j of the u32 at byte 2: 16 where set.
            let fifth = |byte: u8| i64::from_le_bytes(BITS_TO_FIFTH[usize::from(byte)]);
            // SAFETY: the features are enabled in this function.
            unsafe {
                nibble_kernel(
                    row,
                    xq,
                    22,
                    6,
                    |b| _mm256_set_epi64x(fifth(b[5]), fifth(b[4]), fifth(b[3]), fifth(b[2])),
                    |_, d| -16.0 * d,
                )
            }
        }

        #[target_feature(enable = $features)]
        unsafe fn q8_0_kernel(row: &[u8], xq: &[Q8Block]) -> f32 {
            let block = |i: usize| &row[34 * i..34 * i + 34];
            // SAFETY: the features are enabled in this function.
            unsafe {
                row_sum(
                    row.len() / 34,
                    xq,
                    |i| <$pairs>::signed(load32(&block(i)[2..]), activations(&xq[i])),
                    |i| {
                        let d = half(block(i), 0);
                        BlockScales {
                            scales: [d, d],
                            offset: 0.0,
                        }
                    },
                )
            }
        }

        /// Q4_K (`fifths` none) and Q5_K: sub-block s holds the low (s even) or high nibbles
        /// of the 32 quant bytes at `32 (s / 2)`, plus its fifth bits, with a 6-bit scale and
        /// minimum.
        #[target_feature(enable = $features)]
        #[inline]
        unsafe fn k_quant_kernel(
            row: &[u8],
            xq: &[Q8Block],
            bytes: usize,
            quants_at: usize,
            fifths: impl Fn(&[u8], usize) -> __m256i,
        ) -> f32 {
            let block = |i: usize| &row[bytes * (i / 8)..bytes * (i / 8 + 1)];
            // SAFETY: the features are enabled in this function.
            unsafe {
                row_sum(
                    row.len() / bytes * 8,
                    xq,
                    |i| {
                        let (b, s) = (block(i), i % 8);
                        let nibbles = nibbles32(&b[quants_at + 32 * (s / 2)..], s % 2 == 1);
                        let w = _mm256_or_si256(nibbles, fifths(b, s));
                        <$pairs>::unsigned(w, activations(&xq[i]))
                    },
                    |i| {
                        let b = block(i);
                        let (scale, min) = k_scale_min(&b[4..16], i % 8);
                        BlockScales {
                            scales: [half(b, 0) * scale; 2],
                            offset: -half(b, 2) * min,
                        }
                    },
                )
            }
        }

        #[target_feature(enable = $features)]
        unsafe fn q4_k_kernel(row: &[u8], xq: &[Q8Block]) -> f32 {
            // SAFETY: the features are enabled in this function.
            unsafe { k_quant_kernel(row, xq, 144, 16, |_, _| _mm256_setzero_si256()) }
        }

        #[target_feature(enable = $features)]
        unsafe fn q5_k_kernel(row: &[u8], xq: &[Q8Block]) -> f32 {
            // SAFETY: the features are enabled in this function.
            unsafe {
                k_quant_kernel(row, xq, 176, 48, |block, s| {
                    // Bit s of high byte l is weight l's fifth bit: 16 where set.
                    let high = load32(&block[16..]);
                    let bit = _mm256_set1_epi8((1u8 << s) as i8);
                    let set = _mm256_cmpeq_epi8(_mm256_and_si256(high, bit), bit);
                    _mm256_and_si256(set, _mm256_set1_epi8(16))
                })
            }
        }

        /// Q6_K: two halves of 128 weights; in each, byte l of the 64 low bytes `ql` and 32
        /// high bytes `qh` give weights l, l + 32, l + 64 and l + 96 (low nibbles of ql[l] and
        /// ql[l + 32], then their high nibbles; qh's bit pairs 0-1, 2-3, 4-5, 6-7), each 6-bit
        /// value minus 32; every 16 weights have their own 8-bit scale.
        #[target_feature(enable = $features)]
        unsafe fn q6_k_kernel(row: &[u8], xq: &[Q8Block]) -> f32 {
            let block = |i: usize| &row[210 * (i / 8)..210 * (i / 8 + 1)];
            // SAFETY: the features are enabled in this function.
            unsafe {
                row_sum(
                    row.len() / 210 * 8,
                    xq,
                    |i| {
                        let (b, half_block, part) = (block(i), (i % 8) / 4, i % 4);
                        let low_at = 64 * half_block + 32 * (part % 2);
                        let low = load32(&b[low_at..]);
                        let high = load32(&b[128 + 32 * half_block..]);
                        let low = if part < 2 {
                            low
                        } else {
                            _mm256_srli_epi16(low, 4)
                        };
                        let high = match part {
                            0 => _mm256_slli_epi16(high, 4),
                            1 => _mm256_slli_epi16(high, 2),
                            2 => high,
                            _ => _mm256_srli_epi16(high, 2),
                        };
                        let q = _mm256_or_si256(
                            _mm256_and_si256(low, _mm256_set1_epi8(0x0F)),
                            _mm256_and_si256(high, _mm256_set1_epi8(0x30)),
                        );
                        let w = _mm256_sub_epi8(q, _mm256_set1_epi8(32));
                        <$pairs>::signed(w, activations(&xq[i]))
                    },
                    |i| {
                        let (b, s) = (block(i), i % 8);
                        let d = half(b, 208);
                        let scales = &b[192..208];
                        BlockScales {
                            scales: [
                                d * f32::from(scales[2 * s] as i8),
                                d * f32::from(scales[2 * s + 1] as i8),
                            ],
                            offset: 0.0,
                        }
                    },
                )
            }
        }

        /// A batch's unpacked row: every block's quants are signed bytes.
        #[target_feature(enable = $features)]
        unsafe fn unpacked_kernel(row: &[UnpackedBlock], xq: &[Q8Block]) -> f32 {
            // SAFETY: the features are enabled in this function.
            unsafe {
                row_sum(
                    row.len(),
                    xq,
                    |i| {
                        let w = load32(bytemuck::cast_slice(&row[i].quants));
                        <$pairs>::signed(w, activations(&xq[i]))
                    },
                    |i| BlockScales {
                        scales: row[i].scales,
                        offset: row[i].offset,
                    },
                )
            }
        }

        macro_rules! entry {
            ($name:ident, $kernel:ident, $weights:ty) => {
                pub fn $name(row: &[$weights], xq: &[Q8Block]) -> f32 {
                    // SAFETY: handed out only where the CPU has the features.
                    unsafe { $kernel(row, xq) }
                }
            };
        }

        entry!(q4_0, q4_0_kernel, u8);
        entry!(q4_1, q4_1_kernel, u8);
        entry!(q5_0, q5_0_kernel, u8);
        entry!(q8_0, q8_0_kernel, u8);
        entry!(q4_k, q4_k_kernel, u8);
        entry!(q5_k, q5_k_kernel, u8);
        entry!(q6_k, q6_k_kernel, u8);
        entry!(unpacked, unpacked_kernel, UnpackedBlock);
    };
}

mod avx2 {
    use super::*;
    kernels!("avx2,fma,f16c", Maddubs);
}

mod vnni {
    use super::*;
    kernels!("avx2,fma,f16c,avx512vnni,avx512vl", Dpbusd);
}
