//! The wgpu Qwen2 decoder on the real 0.5B model (on Mesa lavapipe in CI) against candle's
//! `quantized_qwen2`: fed the same tokens one at a time, both give logits whose top-1 token
//! agrees at every position and whose values stay close (candle quantizes activations to 8 bits
//! inside its k-quant matmuls; our kernels keep them in f32, so they are not bit-equal).

use std::fs::File;

use candle_core::quantized::gguf_file::Content;
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_qwen2::ModelWeights;
use flywheel_tests::real_model;
use shared::engine::{GpuContext, Qwen2Decoder};
use shared::{GgufModel, ModelText};

/// Largest allowed |ours - candle| over all logits of a position.
const MAX_LOGIT_DIFFERENCE: f32 = 1.0;

fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .unwrap()
}

#[test]
fn logits_match_candle_and_greedy_tokens_agree() {
    let path = real_model();
    let mut file = File::open(&path).unwrap();
    let gguf = GgufModel::read(&mut file, &path.display().to_string()).unwrap();
    let text = ModelText::from_gguf(&gguf).unwrap();
    let ctx = pollster::block_on(GpuContext::new()).expect("a GPU adapter (lavapipe in CI)");
    let decoder = Qwen2Decoder::load(&ctx, &gguf, &mut file, 64).unwrap();

    let mut candle_file = File::open(&path).unwrap();
    let content = Content::read(&mut candle_file).unwrap();
    let mut candle = ModelWeights::from_gguf(content, &mut candle_file, &Device::Cpu).unwrap();

    let mut tokens = text
        .tokenizer
        .encode("The capital of France is Paris. The capital of Germany is")
        .unwrap();
    let prompt_len = tokens.len();
    let mut worst = 0f32;
    let mut last_prompt_logits = Vec::new();
    let mut position = 0;
    // Every prompt position is compared with candle; then the decoder continues greedily alone.
    while position < prompt_len {
        let token = tokens[position];
        let ours = pollster::block_on(decoder.forward(&ctx, token, position)).unwrap();
        let input = Tensor::new(&[token], &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let theirs: Vec<f32> = candle
            .forward(&input, position)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_vec1()
            .unwrap();
        let difference = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        worst = worst.max(difference);
        let (top_ours, top_theirs) = (argmax(&ours), argmax(&theirs));
        eprintln!(
            "position {position}: max |Δlogit| {difference:.4}, top-1 ours {top_ours} candle {top_theirs}"
        );
        assert_eq!(top_ours, top_theirs, "top-1 differs at position {position}");
        assert!(
            difference < MAX_LOGIT_DIFFERENCE,
            "position {position}: logits differ by {difference}"
        );
        if position + 1 == prompt_len {
            tokens.push(top_ours as u32);
            last_prompt_logits = ours;
        }
        position += 1;
    }
    // A prompt submitted step after step with one readback at the end (the prefill path)
    // gives exactly the logits of reading every step.
    for (position, &token) in tokens[..prompt_len].iter().enumerate() {
        decoder.submit_step(&ctx, token, position).unwrap();
    }
    let prefilled = pollster::block_on(decoder.read_logits(&ctx)).unwrap();
    assert_eq!(
        prefilled, last_prompt_logits,
        "prefill without readbacks changed the logits"
    );

    while tokens.len() < prompt_len + 3 {
        let logits = pollster::block_on(decoder.forward(&ctx, tokens[position], position)).unwrap();
        tokens.push(argmax(&logits) as u32);
        position += 1;
    }
    let continuation = text.tokenizer.decode(&tokens[prompt_len..]).unwrap();
    eprintln!("greedy continuation: {continuation:?}, worst max |Δlogit| {worst:.4}");
    assert!(continuation.contains("Berlin"), "{continuation:?}");
}
