//! The CPU engine (`shared::cpu_engine`) against references:
//! - every block type's row product, one token's and a batch's (the row unpacked once), against
//!   the f64 product of candle's dequantized weights and the 8-bit activations as the kernel
//!   sees them (exact but for f32 rounding), and the activations' own quantization error
//!   within half a step per value;
//! - the real Qwen2.5-Coder-0.5B-Instruct Q4_K_M against candle's `quantized_qwen2`: a batched
//!   prompt and greedy steps agree in their top token and closely in their logits, the batch
//!   gives the logits of one-token steps, and the greedy reply names Berlin;
//! - a model of Qwen2.5-1.5B-Instruct's shapes in Q4_K_M's types (random weights, untied head)
//!   and tiny models in the 32-weight block types agree with candle.

use std::fs::File;
use std::io::Cursor;
use std::sync::Arc;

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_qwen2::ModelWeights;
use flywheel_tests::logit_comparison::{argmax, candle_logits, noise, relative_rms_error};
use flywheel_tests::real_model;
use flywheel_tests::shaped_gguf::{QWEN2_5_1_5B, qwen2_with_shape};
use flywheel_tests::tiny_gguf::TinyQwen2;
use shared::cpu_engine::block_dot::{RowFormat, unpacked_dot};
use shared::cpu_engine::q8_activations::quantize_q8;
use shared::cpu_engine::{CpuQwen2Weights, CpuSequence};
use shared::gguf::BlockType;
use shared::{GgufModel, ModelText};

#[test]
fn every_block_type_row_product_matches_the_dequantized_reference() {
    let (rows, cols) = (9, 512);
    let mut w = noise(rows * cols, 3);
    // Edge rows: all zero, large, tiny.
    w[..cols].fill(0.0);
    w[cols..2 * cols].iter_mut().for_each(|v| *v *= 1000.0);
    w[2 * cols..3 * cols].iter_mut().for_each(|v| *v *= 1e-4);
    let weights = Tensor::from_vec(w, (rows, cols), &Device::Cpu).unwrap();
    let mut x = noise(cols, 5);
    x[7] = 40.0; // one large activation: its block's other values lose precision
    let xq = quantize_q8(&x);
    let seen: Vec<f64> = xq
        .iter()
        .flat_map(|b| b.quants.map(|q| f64::from(b.scale) * f64::from(q)))
        .collect();
    for (block, values) in xq.iter().zip(x.chunks(32)) {
        for (&q, &value) in block.quants.iter().zip(values) {
            let error = (value - block.scale * f32::from(q)).abs();
            assert!(error <= block.scale * 0.5 + 1e-6, "{value}: off by {error}");
        }
    }
    for block_type in BlockType::ALL {
        let quantized = QTensor::quantize(&weights, block_type.ggml()).unwrap();
        let bytes = quantized.data().unwrap();
        let dequantized: Vec<Vec<f32>> = quantized
            .dequantize(&Device::Cpu)
            .unwrap()
            .to_vec2()
            .unwrap();
        let format = RowFormat::of(block_type);
        let mut unpacked = Vec::new();
        let row_bytes = bytes.len() / rows;
        let float_input = matches!(block_type, BlockType::F32 | BlockType::F16);
        for (r, reference_row) in dequantized.iter().enumerate() {
            let input: Vec<f64> = if float_input {
                x.iter().map(|&v| f64::from(v)).collect()
            } else {
                seen.clone()
            };
            let want: f64 = reference_row
                .iter()
                .zip(&input)
                .map(|(&w, x)| f64::from(w) * x)
                .sum();
            let magnitude: f64 = reference_row
                .iter()
                .zip(&input)
                .map(|(&w, x)| (f64::from(w) * x).abs())
                .sum();
            let row = &bytes[r * row_bytes..(r + 1) * row_bytes];
            let got = format.dot(row, &x, &xq);
            assert!(
                (f64::from(got) - want).abs() <= 1e-5 * magnitude + 1e-6,
                "{block_type:?} row {r}: {got}, reference {want}"
            );
            // A batch's way: the row unpacked once, then multiplied.
            if format.unpack_row(row, &mut unpacked) {
                let batched = unpacked_dot(&unpacked, &xq);
                assert!(
                    (f64::from(batched) - want).abs() <= 1e-5 * magnitude + 1e-6,
                    "{block_type:?} row {r} unpacked: {batched}, reference {want}"
                );
            }
        }
    }
}

/// Feeds `prompt` as one batch and then `steps` greedy tokens one at a time, checking every
/// position's logits against candle's; returns the tokens generated.
fn agrees_with_candle(bytes: &[u8], prompt: &[u32], steps: usize) -> Vec<u32> {
    let mut reader = Cursor::new(bytes);
    let gguf = GgufModel::read(&mut reader, "model.gguf").unwrap();
    let weights = CpuQwen2Weights::load(&gguf, &mut reader).unwrap();
    let mut reader = Cursor::new(bytes);
    let content = Content::read(&mut reader).unwrap();
    let mut candle = ModelWeights::from_gguf(content, &mut reader, &Device::Cpu).unwrap();
    let mut sequence = CpuSequence::new(&weights, 256);
    sequence.feed(prompt).unwrap();
    let mut theirs = candle_logits(&mut candle, prompt, 0);
    let mut generated = Vec::new();
    for step in 0..=steps {
        let ours = sequence.logits();
        let error = relative_rms_error(ours, &theirs);
        eprintln!("step {step}: relative RMS error {error:.5}");
        assert!(
            error < 0.05,
            "step {step}: logits differ by {error} (relative RMS)"
        );
        assert_eq!(argmax(ours), argmax(&theirs), "step {step}: top-1 differs");
        if step == steps {
            break;
        }
        let next = argmax(ours) as u32;
        generated.push(next);
        sequence.feed(&[next]).unwrap();
        theirs = candle_logits(&mut candle, &[next], prompt.len() + step);
    }
    generated
}

#[test]
fn the_real_model_agrees_with_candle_and_answers_berlin() {
    let path = real_model();
    let bytes = std::fs::read(&path).unwrap();
    let mut file = File::open(&path).unwrap();
    let gguf = GgufModel::read(&mut file, &path.display().to_string()).unwrap();
    let text = ModelText::from_gguf(&gguf).unwrap();
    let prompt = text
        .tokenizer
        .encode("The capital of France is Paris. The capital of Germany is")
        .unwrap();
    let generated = agrees_with_candle(&bytes, &prompt, 3);
    let reply = text.tokenizer.decode(&generated).unwrap();
    assert!(reply.contains("Berlin"), "{reply:?}");

    // The batched prompt gives the logits of one-token steps.
    let weights: Arc<CpuQwen2Weights> = CpuQwen2Weights::load(&gguf, &mut file).unwrap();
    let mut batched = CpuSequence::new(&weights, 64);
    batched.feed(&prompt).unwrap();
    let mut stepped = CpuSequence::new(&weights, 64);
    for &token in &prompt {
        stepped.feed(&[token]).unwrap();
    }
    let difference = batched
        .logits()
        .iter()
        .zip(stepped.logits())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        difference < 1e-3,
        "batched and stepped logits differ by {difference}"
    );
    // Truncating forgets the reply: the prompt's logits come back.
    let before = batched.logits().to_vec();
    batched.feed(&[generated[0]]).unwrap();
    batched.truncate(prompt.len() - 1);
    batched.feed(&prompt[prompt.len() - 1..]).unwrap();
    assert!(
        batched
            .logits()
            .iter()
            .zip(&before)
            .all(|(a, b)| (a - b).abs() < 1e-3)
    );
}

#[test]
fn a_model_with_qwen2_5_1_5b_shapes_agrees_with_candle() {
    let bytes = qwen2_with_shape(QWEN2_5_1_5B, 2);
    agrees_with_candle(&bytes, &[9707, 11, 1879, 0, 151_643, 42, 7, 100_000], 2);
}

#[test]
fn tiny_models_in_32_weight_block_types_agree_with_candle() {
    // Not Q4_1 and Q5_0: candle's products for them want an even number of blocks per row,
    // and the tiny model's rows are one block (the row test above covers both).
    for dtype in [
        GgmlDType::F32,
        GgmlDType::F16,
        GgmlDType::Q4_0,
        GgmlDType::Q8_0,
    ] {
        eprintln!("{dtype:?}");
        let bytes = TinyQwen2::default().with_matrix_type(dtype).to_bytes();
        agrees_with_candle(&bytes, &[60, 61, 62, 40, 258, 70], 3);
    }
}

#[test]
fn a_block_type_the_cpu_engine_cannot_run_is_named() {
    let bytes = TinyQwen2::default()
        .with_matrix_type(GgmlDType::Q5_1)
        .to_bytes();
    let mut reader = Cursor::new(&bytes);
    let gguf = GgufModel::read(&mut reader, "tiny-q5_1.gguf").unwrap();
    let Err(error) = CpuQwen2Weights::load(&gguf, &mut reader) else {
        panic!("loaded Q5_1 matrices");
    };
    let message = error.to_string();
    assert!(
        message.contains("tiny-q5_1.gguf")
            && message.contains("blk.0.attn_q.weight")
            && message.contains("Q5_1"),
        "{message}"
    );
}
