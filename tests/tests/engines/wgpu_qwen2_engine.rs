//! The wgpu Qwen2 engine on the real 0.5B model (on Mesa lavapipe in CI) against candle's
//! `quantized_qwen2`, and its generation API:
//! - decode steps: fed one token at a time, the logits' top-1 agrees with candle at every
//!   position and the values stay close (candle quantizes activations to 8 bits inside its
//!   k-quant matmuls; our kernels keep them in f32, so they are not bit-equal);
//! - batched prefill (several steps of up to 64 tokens) gives the logits of one-token steps
//!   and agrees with candle's batched forward;
//! - the candidates picked on the GPU (with the repetition penalty) are exactly the CPU's
//!   selection from the full logits;
//! - two sequences on one copy of the weights generate independently; a stop handle ends a
//!   stream;
//! - the GPU plan with f16 prompt tiles, norms inside the products, an f16 KV cache (where
//!   the adapter has shader-f16, as lavapipe does) and decode attention split by position
//!   agrees with candle on a prompt of more than 64 tokens and greedy steps;
//! - a file with Qwen2.5-1.5B-Instruct's shapes and Q4_K_M's block types (random weights, two
//!   blocks: one whose Q, K and V share Q4_K and run as one stacked product, one whose V is
//!   Q6_K) loads — its 191 MB output head split across storage buffers — and agrees with
//!   candle;
//! - a sequence that grows (caches reallocated as a conversation lengthens, the cached
//!   positions kept) generates exactly what one allocated ahead does, reaches the model's
//!   whole context, and refuses clearly past its limit.

use std::fs::File;
use std::sync::Arc;

use candle_core::Device;
use candle_core::quantized::gguf_file::Content;
use candle_transformers::models::quantized_qwen2::ModelWeights;
use flywheel_tests::logit_comparison::{argmax, candle_logits, relative_rms_error};
use flywheel_tests::real_model;
use flywheel_tests::shaped_gguf::{QWEN2_5_1_5B, qwen2_with_shape};
use shared::generation::{StopHandle, StopReason, TokenStream};
use shared::token_sampler::{apply_repetition_penalty, top_scores};
use shared::wgpu_engine::{
    FeedForwardIn, GpuContext, INITIAL_POSITIONS, KernelPlan, MatmulLayout, MatmulPlan,
    QkvProjection, Qwen2Sequence, Qwen2Weights,
};
use shared::{GgufModel, ModelText, SamplingParams};

/// Largest allowed |ours - candle| over all logits of a position.
const MAX_LOGIT_DIFFERENCE: f32 = 1.0;

struct Loaded {
    weights: Arc<Qwen2Weights>,
    text: ModelText,
}

fn load() -> Loaded {
    let path = real_model();
    let mut file = File::open(&path).unwrap();
    let gguf = GgufModel::read(&mut file, &path.display().to_string()).unwrap();
    let text = ModelText::from_gguf(&gguf).unwrap();
    let ctx = pollster::block_on(GpuContext::new()).expect("a GPU adapter (lavapipe in CI)");
    let weights = Qwen2Weights::load(&ctx, &gguf, &mut file).unwrap();
    Loaded { weights, text }
}

fn candle() -> ModelWeights {
    let path = real_model();
    let mut file = File::open(&path).unwrap();
    let content = Content::read(&mut file).unwrap();
    ModelWeights::from_gguf(content, &mut file, &Device::Cpu).unwrap()
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

#[test]
fn decode_and_prefill_logits_match_candle() {
    let Loaded { weights, text } = load();
    let mut candle = candle();
    let prompt = text
        .tokenizer
        .encode("The capital of France is Paris. The capital of Germany is")
        .unwrap();

    // Decode path: one token per step, every position compared with candle.
    let mut stepped = Qwen2Sequence::new(&weights, 256).unwrap();
    let mut worst = 0f32;
    let mut last_stepped = Vec::new();
    for (position, &token) in prompt.iter().enumerate() {
        stepped.feed(&[token]).unwrap();
        let ours = pollster::block_on(stepped.logits()).unwrap();
        let theirs = candle_logits(&mut candle, &[token], position);
        let difference = max_difference(&ours, &theirs);
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
        last_stepped = ours;
    }
    eprintln!("decode path: worst max |Δlogit| over the prompt {worst:.4}");

    // Batched prefill of the same prompt on a second sequence gives the same logits.
    let mut batched = Qwen2Sequence::new(&weights, 256).unwrap();
    batched.feed(&prompt).unwrap();
    let last_batched = pollster::block_on(batched.logits()).unwrap();
    let difference = max_difference(&last_batched, &last_stepped);
    eprintln!("batched prefill vs one-token steps: max |Δlogit| {difference:.6}");
    assert!(
        difference < 1e-3,
        "batched prefill changed the logits by {difference}"
    );

    // The continuation, one token per step.
    let mut tokens = prompt.clone();
    for _ in 0..3 {
        let logits = pollster::block_on(batched.logits()).unwrap();
        let next = argmax(&logits) as u32;
        tokens.push(next);
        batched.feed(&[next]).unwrap();
    }
    let continuation = text.tokenizer.decode(&tokens[prompt.len()..]).unwrap();
    eprintln!("greedy continuation: {continuation:?}");
    assert!(continuation.contains("Berlin"), "{continuation:?}");
}

#[test]
fn a_prompt_longer_than_one_step_matches_candles_batched_forward() {
    let Loaded { weights, text } = load();
    let mut candle = candle();
    let sentence = "Rivers carry water from the mountains to the sea, and cities grow along them. ";
    let mut prompt = Vec::new();
    while prompt.len() < 150 {
        prompt.extend(text.tokenizer.encode(sentence).unwrap());
    }
    prompt.truncate(150); // three steps: 64 + 64 + 22 tokens
    let mut sequence = Qwen2Sequence::new(&weights, 256).unwrap();
    sequence.feed(&prompt).unwrap();
    let ours = pollster::block_on(sequence.logits()).unwrap();
    let theirs = candle_logits(&mut candle, &prompt, 0);
    let difference = max_difference(&ours, &theirs);
    eprintln!("150-token prefill: max |Δlogit| {difference:.4}");
    assert_eq!(argmax(&ours), argmax(&theirs));
    assert!(
        difference < MAX_LOGIT_DIFFERENCE,
        "logits differ by {difference}"
    );
}

#[test]
fn gpu_candidates_equal_the_cpu_selection_and_sequences_are_independent() {
    let Loaded { weights, text } = load();
    let prompt = |question: &str| {
        let rendered = text
            .template
            .render(&[shared::ChatMessage::user(question)], true)
            .unwrap();
        text.tokenizer.encode(&rendered).unwrap()
    };
    let first = prompt("Name three colours.");
    let second = prompt("What is 2 + 2?");

    // GPU top-64 with the penalty on the prompt's tokens == CPU selection from all logits.
    let mut sequence = Qwen2Sequence::new(&weights, 256).unwrap();
    sequence.feed(&first).unwrap();
    let mut logits = pollster::block_on(sequence.logits()).unwrap();
    let mut penalized = first.clone();
    penalized.sort_unstable();
    penalized.dedup();
    apply_repetition_penalty(&mut logits, &penalized, 1.3);
    let expected = top_scores(&logits, 64);
    let gpu = pollster::block_on(sequence.next_token_scores(64, &penalized, 1.3)).unwrap();
    let tokens = |scores: &[shared::TokenScore]| scores.iter().map(|s| s.token).collect::<Vec<_>>();
    assert_eq!(tokens(&gpu), tokens(&expected));
    for (g, e) in gpu.iter().zip(&expected) {
        assert!(
            (g.logit - e.logit).abs() <= 1e-5 * e.logit.abs().max(1.0),
            "{g:?} vs {e:?}"
        );
    }
    // Greedy decoding asks for one candidate, which a cheaper selection finds (the logits
    // already carry the penalty, so none is applied again).
    let best = pollster::block_on(sequence.next_token_scores(1, &[], 1.0)).unwrap();
    assert_eq!(tokens(&best), tokens(&expected[..1]));

    // Two sequences on one copy of the weights, stepped in turn, generate what each
    // generates alone.
    let sampling = SamplingParams {
        temperature: 0.8,
        top_k: 20,
        top_p: 0.9,
        repeat_penalty: 1.1,
        max_new_tokens: 6,
        ..SamplingParams::default()
    };
    let stop_tokens = text.stop_tokens();
    let alone = |question_tokens: &[u32]| {
        let mut sequence = Qwen2Sequence::new(&weights, 256).unwrap();
        let mut stream = pollster::block_on(TokenStream::start(
            &mut sequence,
            question_tokens,
            sampling,
            11,
            stop_tokens.clone(),
            StopHandle::new(),
        ))
        .unwrap();
        let mut out = Vec::new();
        while let Some(token) = pollster::block_on(stream.next_token()).unwrap() {
            out.push(token);
        }
        out
    };
    let (first_alone, second_alone) = (alone(&first), alone(&second));
    assert!(!first_alone.is_empty() && !second_alone.is_empty());

    let mut a = Qwen2Sequence::new(&weights, 256).unwrap();
    let mut b = Qwen2Sequence::new(&weights, 256).unwrap();
    let mut stream_a = pollster::block_on(TokenStream::start(
        &mut a,
        &first,
        sampling,
        11,
        stop_tokens.clone(),
        StopHandle::new(),
    ))
    .unwrap();
    let mut stream_b = pollster::block_on(TokenStream::start(
        &mut b,
        &second,
        sampling,
        11,
        stop_tokens.clone(),
        StopHandle::new(),
    ))
    .unwrap();
    let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
    loop {
        let next_a = pollster::block_on(stream_a.next_token()).unwrap();
        let next_b = pollster::block_on(stream_b.next_token()).unwrap();
        out_a.extend(next_a);
        out_b.extend(next_b);
        if next_a.is_none() && next_b.is_none() {
            break;
        }
    }
    assert_eq!(out_a, first_alone, "sequence A was disturbed by B");
    assert_eq!(out_b, second_alone, "sequence B was disturbed by A");

    // A stop handle ends the stream before the next token.
    let stop = StopHandle::new();
    let mut stream = pollster::block_on(TokenStream::start(
        &mut a,
        &first,
        sampling,
        11,
        stop_tokens,
        stop.clone(),
    ))
    .unwrap();
    assert_eq!(
        stream.prefilled_tokens(),
        1,
        "the cached prompt was not reused"
    );
    let token = pollster::block_on(stream.next_token()).unwrap();
    assert_eq!(token, Some(first_alone[0]));
    stop.stop();
    assert_eq!(pollster::block_on(stream.next_token()).unwrap(), None);
    assert_eq!(stream.stop_reason(), Some(StopReason::Stopped));
}

#[test]
fn a_growing_sequence_keeps_its_cache_and_generates_what_one_allocated_ahead_does() {
    let Loaded { weights, text } = load();
    // The web app's and `dpo chat`'s sequence: room for INITIAL_POSITIONS now, the model's
    // whole context (32,768 positions for this model) when a conversation gets there.
    let growing = Qwen2Sequence::growing(&weights, usize::MAX).unwrap();
    assert_eq!(growing.capacity(), INITIAL_POSITIONS);
    assert_eq!(
        growing.max_positions(),
        weights.hyperparameters.context_length
    );
    drop(growing);

    let sampling = SamplingParams {
        temperature: 0.0,
        max_new_tokens: 24,
        ..SamplingParams::default()
    };
    let stop_tokens = text.stop_tokens();
    let reply = |sequence: &mut Qwen2Sequence, prompt: &[u32]| {
        let mut stream = pollster::block_on(TokenStream::start(
            sequence,
            prompt,
            sampling,
            0,
            stop_tokens.clone(),
            StopHandle::new(),
        ))
        .unwrap();
        let mut tokens = Vec::new();
        while let Some(token) = pollster::block_on(stream.next_token()).unwrap() {
            tokens.push(token);
        }
        (tokens, stream.prefilled_tokens())
    };
    let render = |conversation: &[shared::ChatMessage]| {
        let rendered = text.template.render(conversation, true).unwrap();
        text.tokenizer.encode(&rendered).unwrap()
    };
    // Room for 16 positions, so the first reply grows it and the second, which reuses the
    // first exchange from the cache, grows it again: the cached keys and values must move.
    let mut small = Qwen2Sequence::with_room(&weights, 16, 512).unwrap();
    let mut ahead = Qwen2Sequence::new(&weights, 512).unwrap();
    let mut conversation = vec![shared::ChatMessage::user("Name three colours.")];
    let first_prompt = render(&conversation).len();
    for turn in 0..2 {
        let prompt = render(&conversation);
        let before = small.capacity();
        let (grown, prefilled) = reply(&mut small, &prompt);
        let (expected, _) = reply(&mut ahead, &prompt);
        assert!(
            small.capacity() > before,
            "turn {turn}: {} prompt tokens grew a sequence of {before} positions",
            prompt.len()
        );
        assert_eq!(
            grown, expected,
            "turn {turn}: the grown sequence generates what one allocated ahead does"
        );
        if turn == 1 {
            // At least the first prompt came from the cache (copied when it grew).
            assert!(
                prefilled <= prompt.len() - first_prompt,
                "{prefilled} of {} prompt tokens ran",
                prompt.len()
            );
        }
        conversation.push(shared::ChatMessage::assistant(
            text.tokenizer.decode(&expected).unwrap(),
        ));
        conversation.push(shared::ChatMessage::user("And three more?"));
    }
    // Past its limit: a clear error, and the sequence keeps working.
    let error = pollster::block_on(small.reserve(513))
        .unwrap_err()
        .to_string();
    assert!(error.contains("513") && error.contains("512"), "{error}");
    let tokens_before = small.tokens().len();
    let error = small
        .feed(&vec![0; small.capacity()])
        .unwrap_err()
        .to_string();
    assert!(error.contains("reserve"), "{error}");
    assert_eq!(small.tokens().len(), tokens_before);
}

fn rank_in(values: &[f32], index: usize) -> usize {
    values.iter().filter(|&&v| v > values[index]).count()
}

#[test]
fn the_gpu_plan_with_f16_tiles_kv_cache_and_subgroup_sums_matches_candle() {
    // What a GPU with shader-f16 and subgroups gets: prompt products in f16 workgroup tiles,
    // norms inside the products, keys and values cached in f16 (lavapipe has shader-f16;
    // elsewhere the same plan in f32), decode products whose lanes add their sums by
    // subgroup shuffles (as many lanes per row as lavapipe's subgroups hold, 8, where a GPU's
    // hold the plan's 16), and decode attention split by position past 64 positions.
    let path = real_model();
    let mut file = File::open(&path).unwrap();
    let gguf = GgufModel::read(&mut file, &path.display().to_string()).unwrap();
    let text = ModelText::from_gguf(&gguf).unwrap();
    let ctx = pollster::block_on(GpuContext::new()).expect("a GPU adapter (lavapipe in CI)");
    let f16 = ctx.has_shader_f16;
    let subgroup =
        ctx.subgroup_min_size
            .expect("the test adapter offers subgroups (Mesa lavapipe does)") as usize;
    eprintln!("shader-f16: {f16}, smallest subgroup: {subgroup}");
    let gpu = MatmulPlan::gpu_with_f16(f16);
    let lanes = match gpu.decode {
        MatmulLayout::LanesPerRow(lanes) => lanes.min(subgroup),
        other => panic!("the GPU plan decodes in lanes, not {other:?}"),
    };
    let plan = KernelPlan {
        matmul: MatmulPlan {
            decode: MatmulLayout::LanesPerRow(lanes),
            subgroup_sums: true,
            ..gpu
        },
        kv_cache_f16: f16,
        ..KernelPlan::GPU
    };
    let weights = Qwen2Weights::load_with_plan(&ctx, &gguf, &mut file, plan).unwrap();
    let mut candle = candle();
    // More than 64 positions, so decode steps take the split attention and its merge.
    let mut facts = String::new();
    for (country, capital) in [
        ("France", "Paris"),
        ("Italy", "Rome"),
        ("Spain", "Madrid"),
        ("Japan", "Tokyo"),
        ("Egypt", "Cairo"),
        ("Canada", "Ottawa"),
        ("Kenya", "Nairobi"),
        ("Peru", "Lima"),
        ("Norway", "Oslo"),
        ("Greece", "Athens"),
    ] {
        facts.push_str(&format!("The capital of {country} is {capital}. "));
    }
    facts.push_str("The capital of Germany is");
    let prompt = text.tokenizer.encode(&facts).unwrap();
    assert!(prompt.len() > 64, "{} prompt tokens", prompt.len());
    let mut sequence = Qwen2Sequence::new(&weights, 256).unwrap();
    sequence.feed(&prompt).unwrap();
    let mut ours = pollster::block_on(sequence.logits()).unwrap();
    let mut theirs = candle_logits(&mut candle, &prompt, 0);
    let mut tokens = prompt.clone();
    for step in 0..4 {
        let error = relative_rms_error(&ours, &theirs);
        eprintln!("step {step}: relative RMS error {error:.5}");
        assert!(
            error < 0.05,
            "step {step}: logits differ by {error} (relative RMS)"
        );
        assert_eq!(argmax(&ours), argmax(&theirs), "step {step}: top-1 differs");
        let next = argmax(&ours) as u32;
        tokens.push(next);
        sequence.feed(&[next]).unwrap();
        ours = pollster::block_on(sequence.logits()).unwrap();
        theirs = candle_logits(&mut candle, &[next], tokens.len() - 1);
    }
    let continuation = text.tokenizer.decode(&tokens[prompt.len()..]).unwrap();
    assert!(continuation.contains("Berlin"), "{continuation:?}");
}

#[test]
fn a_model_with_qwen2_5_1_5b_shapes_loads_and_matches_candle() {
    let bytes = qwen2_with_shape(QWEN2_5_1_5B, 2);
    let mut file = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut file, &bytes).unwrap();
    drop(bytes);
    let path = file.path().to_path_buf();
    let mut reader = File::open(&path).unwrap();
    let gguf = GgufModel::read(&mut reader, "qwen2.5-1.5b-shaped.gguf").unwrap();
    let ctx = pollster::block_on(GpuContext::new()).expect("a GPU adapter (lavapipe in CI)");
    // The kernels as CPU drivers run them, and as GPUs do.
    for plan in [KernelPlan::CPU_DRIVER, KernelPlan::GPU] {
        eprintln!("{plan:?}");
        let mut reader = File::open(&path).unwrap();
        let weights = Qwen2Weights::load_with_plan(&ctx, &gguf, &mut reader, plan).unwrap();
        let stacked: Vec<bool> = weights
            .layers
            .iter()
            .map(|layer| matches!(layer.qkv, QkvProjection::Stacked(_)))
            .collect();
        assert_eq!(
            stacked,
            [true, false],
            "layer 0's Q, K and V are all Q4_K (one stacked product), layer 1's V is Q6_K (three)"
        );
        let head_bytes = 151_936 * 1536 / 256 * 210;
        if head_bytes as u64 > ctx.max_binding_bytes {
            assert!(
                weights.output.chunks.len() >= 2,
                "a {head_bytes}-byte output head must span several storage buffers"
            );
        }
        let prompt = [9707, 11, 1879, 0, 151_643, 42, 7, 100_000];
        matches_candle_for_three_steps(&weights, &path, &prompt);
    }
}

#[test]
fn a_model_whose_gate_and_up_differ_in_type_matches_candle() {
    // Gate and up of one type share one row-pair product; of two types (here) they take two
    // products and an elementwise SwiGLU.
    let bytes = flywheel_tests::tiny_gguf::TinyQwen2::default()
        .with_matrix_type(candle_core::quantized::GgmlDType::Q8_0)
        .with_tensor_type("ffn_up.weight", candle_core::quantized::GgmlDType::Q4_0)
        .to_bytes();
    let mut file = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut file, &bytes).unwrap();
    let mut reader = File::open(file.path()).unwrap();
    let gguf = GgufModel::read(&mut reader, "tiny-mixed.gguf").unwrap();
    let ctx = pollster::block_on(GpuContext::new()).expect("a GPU adapter (lavapipe in CI)");
    for plan in [KernelPlan::CPU_DRIVER, KernelPlan::GPU] {
        let mut reader = File::open(file.path()).unwrap();
        let weights = Qwen2Weights::load_with_plan(&ctx, &gguf, &mut reader, plan).unwrap();
        assert!(
            weights
                .layers
                .iter()
                .all(|layer| matches!(layer.ffn_in, FeedForwardIn::Separate { .. })),
            "gate and up of different types cannot share one row-pair matrix"
        );
        matches_candle_for_three_steps(&weights, file.path(), &[60, 61, 62, 40, 258, 70]);
    }
}

/// Our logits against candle's after `prompt` and two greedy steps.
fn matches_candle_for_three_steps(
    weights: &Arc<Qwen2Weights>,
    path: &std::path::Path,
    prompt: &[u32],
) {
    let mut reader = File::open(path).unwrap();
    let content = Content::read(&mut reader).unwrap();
    let mut candle = ModelWeights::from_gguf(content, &mut reader, &Device::Cpu).unwrap();

    let mut sequence = Qwen2Sequence::new(weights, 64).unwrap();
    sequence.feed(prompt).unwrap();
    let mut ours = pollster::block_on(sequence.logits()).unwrap();
    let mut theirs = candle_logits(&mut candle, prompt, 0);
    for step in 0..3 {
        let error = relative_rms_error(&ours, &theirs);
        let top = argmax(&ours);
        let rank = rank_in(&theirs, top);
        eprintln!(
            "step {step}: relative RMS error {error:.5}, our top-1 {top} is candle's #{}",
            rank + 1
        );
        assert!(
            error < 0.05,
            "step {step}: logits differ by {error} (relative RMS)"
        );
        assert!(rank < 5, "step {step}: our top-1 is candle's #{}", rank + 1);
        let next = top as u32;
        sequence.feed(&[next]).unwrap();
        ours = pollster::block_on(sequence.logits()).unwrap();
        theirs = candle_logits(&mut candle, &[next], prompt.len() + step);
    }
}

#[test]
fn a_block_type_the_engine_cannot_run_is_named() {
    let model = flywheel_tests::tiny_gguf::TinyQwen2::default()
        .with_matrix_type(candle_core::quantized::GgmlDType::Q5_1)
        .to_bytes();
    let mut reader = std::io::Cursor::new(model);
    let gguf = GgufModel::read(&mut reader, "tiny-q5_1.gguf").unwrap();
    let ctx = pollster::block_on(GpuContext::new()).expect("a GPU adapter (lavapipe in CI)");
    let Err(error) = Qwen2Weights::load(&ctx, &gguf, &mut reader) else {
        panic!("a Q5_1 model loaded although the engine has no Q5_1 kernel");
    };
    let message = error.to_string();
    assert!(
        message.contains("tiny-q5_1.gguf")
            && message.contains("Q5_1")
            && message.contains("blk.0."),
        "{message}"
    );
}
