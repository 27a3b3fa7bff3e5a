//! Weight rows (GGUF blocks, bits as in the file) times activations, for every block type the
//! engines read. Each quantized block is unpacked to 8-bit integers per 32 weights
//! (`UnpackedBlock`) and multiplied by the 8-bit activations (`q8_activations`) in integers,
//! scaled once per 16 or 32 weights; a batch of tokens unpacks each row once for all of them.
//! F32 and F16 rows multiply the f32 activations. Block layouts (as in
//! `wgpu_engine/kernels/block_*.wgsl`):
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

use super::block_fields::{BITS_TO_FIFTH, half, k_scale_min};
use super::q8_activations::{Q8_BLOCK, Q8Block};
use super::simd_level::SimdLevel;
use super::unpacked_block::{RowDot, RowTotal, UnpackedBlock, UnpackedDot};
use crate::gguf::BlockType;

/// How one block type's rows are multiplied.
#[derive(Debug, Clone, Copy)]
pub enum RowFormat {
    /// f32 or f16 values: multiplied by the f32 activations (`dot_f32`, `dot_f16`).
    Float(fn(row: &[u8], x: &[f32]) -> f32),
    /// Quantized blocks of `bytes` bytes, each unpacked into `unpacked` 32-weight blocks.
    /// `row_dot`, where the SIMD level has one, multiplies a row without unpacking it;
    /// `unpacked_dot` multiplies an unpacked row. Both give the bits of the portable code.
    Quantized {
        bytes: usize,
        unpacked: usize,
        unpack: fn(block: &[u8], out: &mut [UnpackedBlock]),
        row_dot: Option<RowDot>,
        unpacked_dot: UnpackedDot,
    },
}

/// The row product of a block type at `level`, where that level has one.
fn row_dot(level: SimdLevel, block_type: BlockType) -> Option<RowDot> {
    match level {
        SimdLevel::Portable => None,
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        SimdLevel::Simd128 => super::simd128_dots::row_dot(block_type),
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 | SimdLevel::Avx512Vnni => super::x86_dots::row_dot(level, block_type),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// The unpacked-row product at `level`.
fn unpacked_dot_at(level: SimdLevel) -> UnpackedDot {
    #[cfg(target_arch = "x86_64")]
    if let Some(dot) = super::x86_dots::unpacked_dot(level) {
        return dot;
    }
    let _ = level;
    unpacked_dot
}

impl RowFormat {
    /// The block type's products at the fastest level this CPU has.
    pub fn of(block_type: BlockType) -> Self {
        Self::at_level(block_type, SimdLevel::detected())
    }

    /// The block type's products at `level`, which must be one of `SimdLevel::available()`.
    pub fn at_level(block_type: BlockType, level: SimdLevel) -> Self {
        assert!(
            SimdLevel::available().contains(&level),
            "this CPU has no {level} (it has {:?})",
            SimdLevel::available()
        );
        let quantized = |bytes, unpacked, unpack| Self::Quantized {
            bytes,
            unpacked,
            unpack,
            row_dot: row_dot(level, block_type),
            unpacked_dot: unpacked_dot_at(level),
        };
        match block_type {
            BlockType::F32 => Self::Float(dot_f32),
            BlockType::F16 => Self::Float(dot_f16),
            BlockType::Q4_0 => quantized(18, 1, unpack_q4_0),
            BlockType::Q4_1 => quantized(20, 1, unpack_q4_1),
            BlockType::Q5_0 => quantized(22, 1, unpack_q5_0),
            BlockType::Q8_0 => quantized(34, 1, unpack_q8_0),
            BlockType::Q4K => quantized(144, 8, unpack_q4_k),
            BlockType::Q5K => quantized(176, 8, unpack_q5_k),
            BlockType::Q6K => quantized(210, 8, unpack_q6_k),
        }
    }

    /// `row` · x, given x both as f32 and as 8-bit blocks. Sums in `unpacked_dot`'s order,
    /// so a token gives the same bits alone as in a batch (8-bit activations round, so the
    /// smallest difference could otherwise grow through the layers).
    pub fn dot(&self, row: &[u8], x: &[f32], xq: &[Q8Block]) -> f32 {
        match *self {
            Self::Float(dot) => dot(row, x),
            Self::Quantized {
                row_dot: Some(row_dot),
                ..
            } => row_dot(row, xq),
            Self::Quantized {
                bytes,
                unpacked,
                unpack,
                row_dot: None,
                ..
            } => {
                let mut blocks = [UnpackedBlock::ZERO; 8];
                let blocks = &mut blocks[..unpacked];
                let mut total = RowTotal::default();
                for (block, x) in row.chunks_exact(bytes).zip(xq.chunks_exact(unpacked)) {
                    unpack(block, blocks);
                    for (b, x) in blocks.iter().zip(x) {
                        total.add(b.dot(x));
                    }
                }
                total.sum()
            }
        }
    }

    /// An unpacked row (from `unpack_row`) · x.
    pub fn unpacked_dot(&self, row: &[UnpackedBlock], xq: &[Q8Block]) -> f32 {
        match *self {
            Self::Quantized {
                unpacked_dot: at_level,
                ..
            } => at_level(row, xq),
            // Float rows are never unpacked (`unpack_row`); the portable product is right for
            // any unpacked row.
            Self::Float(_) => unpacked_dot(row, xq),
        }
    }

    /// Unpacks a quantized `row` into `out` (replacing its contents); `false` for float rows.
    pub fn unpack_row(&self, row: &[u8], out: &mut Vec<UnpackedBlock>) -> bool {
        let Self::Quantized {
            bytes,
            unpacked,
            unpack,
            ..
        } = *self
        else {
            return false;
        };
        out.clear();
        out.resize(row.len() / bytes * unpacked, UnpackedBlock::ZERO);
        for (block, slots) in row.chunks_exact(bytes).zip(out.chunks_exact_mut(unpacked)) {
            unpack(block, slots);
        }
        true
    }
}

/// An unpacked row · x, portably.
pub fn unpacked_dot(row: &[UnpackedBlock], xq: &[Q8Block]) -> f32 {
    let mut total = RowTotal::default();
    for (b, x) in row.iter().zip(xq) {
        total.add(b.dot(x));
    }
    total.sum()
}

fn dot_f32(row: &[u8], x: &[f32]) -> f32 {
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

fn dot_f16(row: &[u8], x: &[f32]) -> f32 {
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

fn unpack_q4_0(block: &[u8], out: &mut [UnpackedBlock]) {
    let d = half(block, 0);
    out[0] = UnpackedBlock {
        quants: nibbles(&block[2..18]),
        scales: [d; 2],
        offset: -8.0 * d,
    };
}

fn unpack_q4_1(block: &[u8], out: &mut [UnpackedBlock]) {
    let d = half(block, 0);
    out[0] = UnpackedBlock {
        quants: nibbles(&block[4..20]),
        scales: [d; 2],
        offset: half(block, 2),
    };
}

fn unpack_q5_0(block: &[u8], out: &mut [UnpackedBlock]) {
    let d = half(block, 0);
    let mut quants = nibbles(&block[6..22]);
    for (eight, &bits) in quants.chunks_exact_mut(8).zip(&block[2..6]) {
        for (q, &fifth) in eight.iter_mut().zip(&BITS_TO_FIFTH[usize::from(bits)]) {
            *q |= fifth as i8;
        }
    }
    out[0] = UnpackedBlock {
        quants,
        scales: [d; 2],
        offset: -16.0 * d,
    };
}

fn unpack_q8_0(block: &[u8], out: &mut [UnpackedBlock]) {
    let d = half(block, 0);
    let quants: &[i8; Q8_BLOCK] = bytemuck::cast_slice::<u8, i8>(&block[2..34])
        .try_into()
        .expect("32 quants");
    out[0] = UnpackedBlock {
        quants: *quants,
        scales: [d; 2],
        offset: 0.0,
    };
}

/// Q4_K and Q5_K: 8 sub-blocks of 32; `high_bit(s, l)` is weight l of sub-block s's fifth
/// bit (Q5_K) or 0 (Q4_K).
#[inline(always)]
fn unpack_k_quant(
    block: &[u8],
    quants: &[u8],
    out: &mut [UnpackedBlock],
    high_bit: impl Fn(usize, usize) -> u8,
) {
    let (d, dmin) = (half(block, 0), half(block, 2));
    let scales = &block[4..16];
    for (s, slot) in out.iter_mut().enumerate().take(8) {
        let group = &quants[32 * (s / 2)..32 * (s / 2) + 32];
        let shift = 4 * (s % 2);
        for (l, (value, &byte)) in slot.quants.iter_mut().zip(group).enumerate() {
            *value = (((byte >> shift) & 0xF) | (high_bit(s, l) << 4)) as i8;
        }
        let (scale, min) = k_scale_min(scales, s);
        slot.scales = [d * scale; 2];
        slot.offset = -dmin * min;
    }
}

fn unpack_q4_k(block: &[u8], out: &mut [UnpackedBlock]) {
    unpack_k_quant(block, &block[16..144], out, |_, _| 0);
}

fn unpack_q5_k(block: &[u8], out: &mut [UnpackedBlock]) {
    let high = &block[16..48];
    unpack_k_quant(block, &block[48..176], out, |s, l| (high[l] >> s) & 1);
}

fn unpack_q6_k(block: &[u8], out: &mut [UnpackedBlock]) {
    let (low, high, scales) = (&block[..128], &block[128..192], &block[192..208]);
    let d = half(block, 208);
    // Two halves of 128 weights; in each, byte l of the low and high quants holds weights
    // l, l + 32, l + 64 and l + 96.
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
                out[4 * half_block + part].quants[l] = value as i8 - 32;
            }
        }
    }
    for (s, slot) in out.iter_mut().enumerate().take(8) {
        slot.scales = [
            d * f32::from(scales[2 * s] as i8),
            d * f32::from(scales[2 * s + 1] as i8),
        ];
        slot.offset = 0.0;
    }
}
