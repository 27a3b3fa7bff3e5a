//! One weight row (GGUF blocks, bits as in the file) times one token's activations, for every
//! block type the engines read. Each quantized block is unpacked to 8-bit integers and
//! multiplied by the 8-bit activations (`q8_activations`) in integers, scaled once per
//! sub-block; F32 and F16 rows multiply the f32 activations. Block layouts (as in
//! `engine/kernels/block_*.wgsl`):
//!
//! | type | bytes / weights | layout |
//! |---|---|---|
//! | Q4_0 | 18 / 32 | d f16, 16 bytes: weight j low nibble, j + 16 high; w = d (q − 8) |
//! | Q4_1 | 20 / 32 | d, m f16, 16 bytes as Q4_0; w = d q + m |
//! | Q5_0 | 22 / 32 | d f16, qh u32 (bit j: weight j's fifth bit), 16 bytes as Q4_0; w = d (q − 16) |
//! | Q8_0 | 34 / 32 | d f16, 32 i8; w = d q |
//! | Q4_K | 144 / 256 | d, dmin f16, 12 bytes of 6-bit scales and mins, 128 bytes: 32-byte group g holds sub-blocks 2g (low nibbles) and 2g + 1 (high); w = d sc q − dmin m |
//! | Q5_K | 176 / 256 | d, dmin, 12 scale bytes, qh[32] (bit s of byte l: weight l of sub-block s's fifth bit), 128 bytes as Q4_K |
//! | Q6_K | 210 / 256 | ql[128], qh[64], 16 i8 scales (one per 16 weights), d f16; q = 6 bits − 32 |

use super::q8_activations::{Q8_BLOCK, Q8Block, dot_i8, dot_i8_half};
use crate::engine::BlockType;

/// `row` (whole blocks of `block_type`) · x, given x both as f32 and as 8-bit blocks.
pub type RowDot = fn(row: &[u8], x: &[f32], xq: &[Q8Block]) -> f32;

/// The row product for `block_type`.
pub fn row_dot(block_type: BlockType) -> RowDot {
    match block_type {
        BlockType::F32 => dot_f32,
        BlockType::F16 => dot_f16,
        BlockType::Q4_0 => dot_q4_0,
        BlockType::Q4_1 => dot_q4_1,
        BlockType::Q5_0 => dot_q5_0,
        BlockType::Q8_0 => dot_q8_0,
        BlockType::Q4K => dot_q4_k,
        BlockType::Q5K => dot_q5_k,
        BlockType::Q6K => dot_q6_k,
    }
}

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

fn half(bytes: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([bytes[at], bytes[at + 1]]))
}

fn dot_f32(row: &[u8], x: &[f32], _: &[Q8Block]) -> f32 {
    let mut sums = [0f32; 8];
    for (chunk, xs) in row.chunks_exact(32).zip(x.chunks_exact(8)) {
        for ((sum, w), &x) in sums.iter_mut().zip(chunk.chunks_exact(4)).zip(xs) {
            *sum += f32::from_le_bytes(w.try_into().expect("4 bytes")) * x;
        }
    }
    let whole = row.len() / 32 * 8;
    let rest: f32 = row[whole * 4..]
        .chunks_exact(4)
        .zip(&x[whole..])
        .map(|(w, &x)| f32::from_le_bytes(w.try_into().expect("4 bytes")) * x)
        .sum();
    sums.iter().sum::<f32>() + rest
}

fn dot_f16(row: &[u8], x: &[f32], _: &[Q8Block]) -> f32 {
    let mut sums = [0f32; 8];
    for (chunk, xs) in row.chunks_exact(16).zip(x.chunks_exact(8)) {
        for ((sum, w), &x) in sums.iter_mut().zip(chunk.chunks_exact(2)).zip(xs) {
            *sum += half(w, 0) * x;
        }
    }
    let whole = row.len() / 16 * 8;
    let rest: f32 = row[whole * 2..]
        .chunks_exact(2)
        .zip(&x[whole..])
        .map(|(w, &x)| half(w, 0) * x)
        .sum();
    sums.iter().sum::<f32>() + rest
}

/// The 32 nibbles of 16 bytes: weight j the low nibble of byte j, j + 16 the high one.
#[inline(always)]
fn nibbles(bytes: &[u8]) -> [i8; Q8_BLOCK] {
    let mut q = [0i8; Q8_BLOCK];
    for (j, &byte) in bytes.iter().take(16).enumerate() {
        q[j] = (byte & 0xF) as i8;
        q[j + 16] = (byte >> 4) as i8;
    }
    q
}

fn dot_q4_0(row: &[u8], _: &[f32], xq: &[Q8Block]) -> f32 {
    row.chunks_exact(18)
        .zip(xq)
        .map(|(block, x)| {
            let q = nibbles(&block[2..18]);
            let integer = dot_i8(&q, &x.quants) - 8 * x.sum;
            half(block, 0) * x.scale * integer as f32
        })
        .sum()
}

fn dot_q4_1(row: &[u8], _: &[f32], xq: &[Q8Block]) -> f32 {
    row.chunks_exact(20)
        .zip(xq)
        .map(|(block, x)| {
            let q = nibbles(&block[4..20]);
            let (d, m) = (half(block, 0), half(block, 2));
            d * x.scale * dot_i8(&q, &x.quants) as f32 + m * x.scale * x.sum as f32
        })
        .sum()
}

fn dot_q5_0(row: &[u8], _: &[f32], xq: &[Q8Block]) -> f32 {
    row.chunks_exact(22)
        .zip(xq)
        .map(|(block, x)| {
            let high = u32::from_le_bytes(block[2..6].try_into().expect("4 bytes"));
            let mut q = nibbles(&block[6..22]);
            for (j, v) in q.iter_mut().enumerate() {
                *v |= (((high >> j) & 1) << 4) as i8;
            }
            let integer = dot_i8(&q, &x.quants) - 16 * x.sum;
            half(block, 0) * x.scale * integer as f32
        })
        .sum()
}

fn dot_q8_0(row: &[u8], _: &[f32], xq: &[Q8Block]) -> f32 {
    row.chunks_exact(34)
        .zip(xq)
        .map(|(block, x)| {
            let q: &[i8; Q8_BLOCK] = bytemuck::cast_slice::<u8, i8>(&block[2..34])
                .try_into()
                .expect("32 quants");
            half(block, 0) * x.scale * dot_i8(q, &x.quants) as f32
        })
        .sum()
}

/// Sub-block `j`'s 6-bit scale and minimum from a K-quant block's 12 scale bytes.
#[inline(always)]
fn k_scale_min(scales: &[u8], j: usize) -> (f32, f32) {
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

/// Q4_K and Q5_K: 8 sub-blocks of 32, each against one activation block; `high_bit(s, l)` is
/// weight l of sub-block s's fifth bit (Q5_K) or 0 (Q4_K).
#[inline(always)]
fn dot_k_quant(
    block: &[u8],
    quants: &[u8],
    xq: &[Q8Block],
    high_bit: impl Fn(usize, usize) -> u8,
) -> f32 {
    let (d, dmin) = (half(block, 0), half(block, 2));
    let scales = &block[4..16];
    let (mut scaled, mut offsets) = (0f32, 0f32);
    for (s, x) in xq.iter().enumerate().take(8) {
        let group = &quants[32 * (s / 2)..32 * (s / 2) + 32];
        let shift = 4 * (s % 2);
        let mut q = [0i8; Q8_BLOCK];
        for (l, (value, &byte)) in q.iter_mut().zip(group).enumerate() {
            *value = (((byte >> shift) & 0xF) | (high_bit(s, l) << 4)) as i8;
        }
        let (scale, min) = k_scale_min(scales, s);
        scaled += scale * x.scale * dot_i8(&q, &x.quants) as f32;
        offsets += min * x.scale * x.sum as f32;
    }
    d * scaled - dmin * offsets
}

fn dot_q4_k(row: &[u8], _: &[f32], xq: &[Q8Block]) -> f32 {
    row.chunks_exact(144)
        .zip(xq.chunks_exact(8))
        .map(|(block, x)| dot_k_quant(block, &block[16..144], x, |_, _| 0))
        .sum()
}

fn dot_q5_k(row: &[u8], _: &[f32], xq: &[Q8Block]) -> f32 {
    row.chunks_exact(176)
        .zip(xq.chunks_exact(8))
        .map(|(block, x)| {
            let high = &block[16..48];
            dot_k_quant(block, &block[48..176], x, |s, l| (high[l] >> s) & 1)
        })
        .sum()
}

fn dot_q6_k(row: &[u8], _: &[f32], xq: &[Q8Block]) -> f32 {
    row.chunks_exact(210)
        .zip(xq.chunks_exact(8))
        .map(|(block, x)| {
            let (low, high, scales) = (&block[..128], &block[128..192], &block[192..208]);
            let d = half(block, 208);
            // Two halves of 128 weights; in each, byte l of the low and high quants holds
            // weights l, l + 32, l + 64 and l + 96.
            let mut q = [[0i8; Q8_BLOCK]; 8];
            for half_block in 0..2 {
                let (low, high) = (&low[64 * half_block..], &high[32 * half_block..]);
                for (l, &h) in high.iter().take(32).enumerate() {
                    let values = [
                        (low[l] & 0xF) | ((h & 3) << 4),
                        (low[l + 32] & 0xF) | (((h >> 2) & 3) << 4),
                        (low[l] >> 4) | (((h >> 4) & 3) << 4),
                        (low[l + 32] >> 4) | (((h >> 6) & 3) << 4),
                    ];
                    for (part, value) in values.into_iter().enumerate() {
                        q[4 * half_block + part][l] = value as i8 - 32;
                    }
                }
            }
            let mut total = 0f32;
            for (s, (quants, x)) in q.iter().zip(x).enumerate() {
                let first = i32::from(scales[2 * s] as i8) * dot_i8_half(quants, &x.quants, 0);
                let second =
                    i32::from(scales[2 * s + 1] as i8) * dot_i8_half(quants, &x.quants, 16);
                total += x.scale * (first + second) as f32;
            }
            d * total
        })
        .sum()
}
