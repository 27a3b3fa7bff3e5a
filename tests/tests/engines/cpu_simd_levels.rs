//! The CPU engine's SIMD levels and threads give the portable code's bits, exactly:
//! - every block type's row product, a token's (`dot`) and a batch's (`unpacked_dot`), at every
//!   level this CPU has (AVX2 and AVX-512 VNNI here), on candle-quantized rows, on raw random
//!   blocks (every quant value, Q8_0's −128 included) and on activations at ±127, for rows
//!   whose block count is and is not a multiple of the four blocks the kernels reduce at once;
//! - whole models at every level and 1, 2 and 3 threads: a model of Qwen2.5-1.5B's shapes in
//!   Q4_K_M's types, tiny models in the 32-weight types, and the real Qwen2.5-Coder-0.5B
//!   Q4_K_M, their logits after a batched prompt and after single steps.

use std::io::Cursor;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use flywheel_tests::logit_comparison::noise;
use flywheel_tests::real_model;
use flywheel_tests::shaped_gguf::{QWEN2_5_1_5B, qwen2_with_shape};
use flywheel_tests::tiny_gguf::TinyQwen2;
use shared::GgufModel;
use shared::cpu_engine::block_dot::RowFormat;
use shared::cpu_engine::q8_activations::{Q8Block, quantize_q8};
use shared::cpu_engine::{CpuQwen2Weights, CpuSequence, CpuSettings, SimdLevel};
use shared::gguf::BlockType;

/// Where a block's f16 fields are, for raw random blocks.
fn f16_fields(block_type: BlockType) -> &'static [usize] {
    match block_type {
        BlockType::Q4_0 | BlockType::Q5_0 | BlockType::Q8_0 => &[0],
        BlockType::Q4_1 | BlockType::Q4K | BlockType::Q5K => &[0, 2],
        BlockType::Q6K => &[208],
        BlockType::F32 | BlockType::F16 => unreachable!("float rows have no blocks"),
    }
}

/// `rows` rows of `cols` weights as `block_type`: candle's quantization of noise (with a row
/// of zeros and a large one), then as many rows of random bytes whose f16 fields are sane.
fn test_rows(block_type: BlockType, rows: usize, cols: usize) -> Vec<u8> {
    let mut w = noise(rows * cols, 11);
    w[..cols].fill(0.0);
    w[cols..2 * cols].iter_mut().for_each(|v| *v *= 1000.0);
    let weights = Tensor::from_vec(w, (rows, cols), &Device::Cpu).unwrap();
    let mut bytes = QTensor::quantize(&weights, block_type.ggml())
        .unwrap()
        .data()
        .unwrap()
        .to_vec();
    let (block_bytes, halves) = (block_type.block_bytes(), f16_fields(block_type));
    let mut raw: Vec<u8> = noise(bytes.len(), 17)
        .iter()
        .map(|v| ((v + 1.0) * 128.0) as u8)
        .collect();
    for (b, block) in raw.chunks_exact_mut(block_bytes).enumerate() {
        for &at in halves {
            // 0.5, 1, -0.25, 2: f16 bits.
            let scale: u16 = [0x3800, 0x3C00, 0xB400, 0x4000][(b + at) % 4];
            block[at..at + 2].copy_from_slice(&scale.to_le_bytes());
        }
    }
    bytes.extend_from_slice(&raw);
    bytes
}

/// Activations of `cols`: noise with one large value, then all at +127 and −127.
fn test_activations(cols: usize) -> Vec<Vec<f32>> {
    let mut x = noise(cols, 5);
    x[3] = 40.0;
    let extremes: Vec<f32> = (0..cols)
        .map(|i| if i % 3 == 0 { -1.0 } else { 1.0 })
        .collect();
    vec![x, extremes]
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn every_simd_level_gives_the_portable_bits_for_every_block_type() {
    let levels = SimdLevel::available();
    eprintln!("levels on this CPU: {levels:?}");
    let mut checked = 0;
    for block_type in BlockType::ALL {
        if matches!(block_type, BlockType::F32 | BlockType::F16) {
            continue;
        }
        // 16 and 7 blocks of 32 (the K-quants: 2 of 256).
        let widths: &[usize] = if block_type.block_elements() == 256 {
            &[512]
        } else {
            &[512, 224]
        };
        for &cols in widths {
            let rows = 6;
            let bytes = test_rows(block_type, rows, cols);
            let row_bytes = bytes.len() / (2 * rows);
            for x in test_activations(cols) {
                let xq: Vec<Q8Block> = quantize_q8(&x);
                let portable = RowFormat::at_level(block_type, SimdLevel::Portable);
                let mut unpacked = Vec::new();
                let want: Vec<f32> = bytes
                    .chunks_exact(row_bytes)
                    .map(|row| portable.dot(row, &x, &xq))
                    .collect();
                for &level in levels {
                    let format = RowFormat::at_level(block_type, level);
                    let (mut alone, mut batched) = (Vec::new(), Vec::new());
                    for row in bytes.chunks_exact(row_bytes) {
                        alone.push(format.dot(row, &x, &xq));
                        assert!(format.unpack_row(row, &mut unpacked));
                        batched.push(format.unpacked_dot(&unpacked, &xq));
                    }
                    assert_eq!(
                        bits(&alone),
                        bits(&want),
                        "{block_type:?} {cols} columns at {level}: {alone:?} vs portable {want:?}"
                    );
                    assert_eq!(
                        bits(&batched),
                        bits(&want),
                        "{block_type:?} {cols} columns at {level}, unpacked: {batched:?} vs \
                         portable {want:?}"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 7 * 2 * levels.len());
}

/// The logits after `prompt` as one batch and after each of `steps` one-token steps.
fn logits_at(bytes: &[u8], settings: CpuSettings, prompt: &[u32], steps: &[u32]) -> Vec<u32> {
    let mut reader = Cursor::new(bytes);
    let gguf = GgufModel::read(&mut reader, "model.gguf").unwrap();
    let weights = CpuQwen2Weights::load_with(&gguf, &mut reader, settings).unwrap();
    let mut sequence = CpuSequence::new(&weights, 256);
    sequence.feed(prompt).unwrap();
    let mut all = bits(sequence.logits());
    for &token in steps {
        sequence.feed(&[token]).unwrap();
        all.extend(bits(sequence.logits()));
    }
    all
}

/// Every level at 1 thread, and the fastest at 2 and 3, give the portable single thread's
/// logits bit for bit.
fn same_logits_everywhere(what: &str, bytes: &[u8], prompt: &[u32], steps: &[u32]) {
    let reference = CpuSettings {
        simd: SimdLevel::Portable,
        threads: 1,
    };
    let want = logits_at(bytes, reference, prompt, steps);
    let mut settings: Vec<CpuSettings> = SimdLevel::available()
        .iter()
        .map(|&simd| CpuSettings { simd, threads: 1 })
        .collect();
    settings.extend([2, 3].map(|threads| CpuSettings {
        simd: SimdLevel::detected(),
        threads,
    }));
    for setting in settings {
        let got = logits_at(bytes, setting, prompt, steps);
        let differing = got.iter().zip(&want).filter(|(a, b)| a != b).count();
        assert_eq!(
            differing, 0,
            "{what} at {setting:?}: {differing} logits differ from the portable single thread's"
        );
    }
}

#[test]
fn every_level_and_thread_count_gives_the_same_logits_on_shaped_and_tiny_models() {
    let shaped = qwen2_with_shape(QWEN2_5_1_5B, 1);
    same_logits_everywhere(
        "the Qwen2.5-1.5B-shaped model",
        &shaped,
        &[9707, 11, 1879, 0, 151_643],
        &[42, 7],
    );
    for dtype in [GgmlDType::Q4_0, GgmlDType::Q8_0] {
        let tiny = TinyQwen2::default().with_matrix_type(dtype).to_bytes();
        same_logits_everywhere(&format!("tiny {dtype:?}"), &tiny, &[60, 61, 62], &[40, 258]);
    }
}

#[test]
fn every_level_and_thread_count_gives_the_same_logits_on_the_real_model() {
    let bytes = std::fs::read(real_model()).unwrap();
    same_logits_everywhere(
        "Qwen2.5-Coder-0.5B-Instruct Q4_K_M",
        &bytes,
        &[785, 6722, 315, 9625, 374],
        &[12095, 13],
    );
}
