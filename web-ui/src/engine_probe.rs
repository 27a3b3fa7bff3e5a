//! The engines as plain JavaScript functions: load a GGUF from bytes onto the browser's GPU,
//! or into the CPU engine, and generate greedily from token ids. Pages that only need the
//! model (the end-to-end engine checks, benchmarks) call them without the app around it.

use std::io::Cursor;
use std::sync::Arc;

use shared::cpu_engine::{CpuQwen2Weights, CpuSequence};
use shared::generation::{StatsRecorder, StopHandle, TokenStream};
use shared::wgpu_engine::{GpuContext, KernelPlan, Qwen2Sequence, Qwen2Weights};
use shared::{GgufModel, SamplingParams};
use wasm_bindgen::prelude::*;

/// The GGUF model in `model` on the browser's GPU, with the kernels its adapter gets, or with
/// the GPU kernels whatever the adapter (`gpu_kernels`: so a test on a software adapter
/// checks that the browser compiles and runs them too).
async fn load(
    model: Vec<u8>,
    gpu_kernels: bool,
) -> Result<(Arc<Qwen2Weights>, GgufModel), JsError> {
    let mut reader = Cursor::new(model);
    let gguf = GgufModel::read(&mut reader, "model.gguf")?;
    let ctx = GpuContext::new().await?;
    let plan = if gpu_kernels {
        KernelPlan::GPU
    } else {
        KernelPlan::for_adapter(&ctx)
    };
    let weights = Qwen2Weights::load_with_plan(&ctx, &gguf, &mut reader, plan)?;
    Ok((weights, gguf))
}

/// Greedy continuation of `prompt` (token ids) by the GGUF model in `model`, up to
/// `max_new_tokens` (stopping early at the file's end-of-turn tokens). Resolves to the new
/// token ids, or rejects with the engine's error message. `gpuKernels`: see `load`. The
/// sequence starts with room for the first half of the prompt, which it runs first; the
/// generation then grows it (copying those cached positions) as a lengthening conversation
/// does, so the reply checks growth on the browser's GPU too.
#[wasm_bindgen(js_name = greedyTokens)]
pub async fn greedy_tokens(
    model: Vec<u8>,
    prompt: Vec<u32>,
    max_new_tokens: u32,
    gpu_kernels: bool,
) -> Result<Vec<u32>, JsError> {
    let (weights, gguf) = load(model, gpu_kernels).await?;
    let stop_tokens = shared::ModelText::from_gguf(&gguf)?.stop_tokens();
    let half = prompt.len() / 2;
    let mut sequence = Qwen2Sequence::with_room(
        &weights,
        half.max(1),
        prompt.len() + max_new_tokens as usize,
    )?;
    sequence.feed(&prompt[..half])?;
    let sampling = SamplingParams {
        max_new_tokens,
        ..SamplingParams::default()
    };
    let mut stream = TokenStream::start(
        &mut sequence,
        &prompt,
        sampling,
        0,
        stop_tokens,
        StopHandle::new(),
    )
    .await?;
    let mut tokens = Vec::new();
    while let Some(token) = stream.next_token().await? {
        tokens.push(token);
    }
    Ok(tokens)
}

/// The `k` best next tokens after `prompt` as a flat array `[token, logit, token, logit, …]`
/// (tokens as floats, exact below 2^24), best first. `gpuKernels`: see `load`.
#[wasm_bindgen(js_name = nextTokenScores)]
pub async fn next_token_scores(
    model: Vec<u8>,
    prompt: Vec<u32>,
    k: u32,
    gpu_kernels: bool,
) -> Result<Vec<f32>, JsError> {
    let (weights, _) = load(model, gpu_kernels).await?;
    let mut sequence = Qwen2Sequence::new(&weights, prompt.len())?;
    sequence.feed(&prompt)?;
    let scores = sequence.next_token_scores(k as usize, &[], 1.0).await?;
    Ok(scores
        .iter()
        .flat_map(|s| [s.token as f32, s.logit])
        .collect())
}

/// The WebGPU adapter's name, backend and type (`Cpu`: the browser's software fallback), or
/// an error when the browser has none.
#[wasm_bindgen(js_name = adapterInfo)]
pub async fn adapter_info() -> Result<String, JsError> {
    let ctx = GpuContext::new().await?;
    Ok(format!(
        "{} ({:?}, {:?}), shader-f16: {}",
        ctx.adapter_info.name,
        ctx.adapter_info.backend,
        ctx.adapter_info.device_type,
        ctx.has_shader_f16
    ))
}

/// The GGUF model in `model` in the CPU engine, with its end-of-turn tokens.
/// (A file without a vocabulary, such as a generated one of a real model's shapes, has no
/// end-of-turn tokens: it scores, and greedy decoding runs to the token budget.)
fn load_cpu(model: Vec<u8>) -> Result<(Arc<CpuQwen2Weights>, Vec<u32>), JsError> {
    let mut reader = Cursor::new(model);
    let gguf = GgufModel::read(&mut reader, "model.gguf")?;
    let stop_tokens = shared::ModelText::from_gguf(&gguf)
        .map(|text| text.stop_tokens())
        .unwrap_or_default();
    Ok((CpuQwen2Weights::load(&gguf, &mut reader)?, stop_tokens))
}

/// As `nextTokenScores`, on the CPU engine (WebAssembly, no GPU needed).
#[wasm_bindgen(js_name = cpuNextTokenScores)]
pub fn cpu_next_token_scores(
    model: Vec<u8>,
    prompt: Vec<u32>,
    k: u32,
) -> Result<Vec<f32>, JsError> {
    let (weights, _) = load_cpu(model)?;
    let mut sequence = CpuSequence::new(&weights, prompt.len());
    sequence.feed(&prompt)?;
    Ok(sequence
        .next_token_scores(k as usize, &[], 1.0)
        .iter()
        .flat_map(|s| [s.token as f32, s.logit])
        .collect())
}

/// As `greedyTokens`, on the CPU engine, through the same loop (`TokenStream`).
#[wasm_bindgen(js_name = cpuGreedyTokens)]
pub fn cpu_greedy_tokens(
    model: Vec<u8>,
    prompt: Vec<u32>,
    max_new_tokens: u32,
) -> Result<Vec<u32>, JsError> {
    let (weights, stop_tokens) = load_cpu(model)?;
    let mut sequence = CpuSequence::new(&weights, prompt.len() + max_new_tokens as usize);
    let sampling = SamplingParams {
        max_new_tokens,
        ..SamplingParams::default()
    };
    let tokens = without_waiting(async {
        let stop = StopHandle::new();
        let mut stream =
            TokenStream::start(&mut sequence, &prompt, sampling, 0, stop_tokens, stop).await?;
        let mut tokens = Vec::new();
        while let Some(token) = stream.next_token().await? {
            tokens.push(token);
        }
        Ok::<_, shared::generation::EngineError>(tokens)
    })?;
    Ok(tokens)
}

/// The CPU engine's speed on `prompt`, as `cargo xtask bench-browser` measures it beside
/// wllama: `[load ms, prompt tokens, first token ms, decode tokens/s, generated tokens]`.
/// Greedy, one thread, through the loop the app runs (`TokenStream`); decoding stops at
/// `max_new_tokens` or an end-of-turn token, and its speed counts the tokens after the first.
#[wasm_bindgen(js_name = cpuBenchmark)]
pub fn cpu_benchmark(
    model: Vec<u8>,
    prompt: Vec<u32>,
    max_new_tokens: u32,
) -> Result<Vec<f64>, JsError> {
    use crate::browser_storage::now_ms;
    let started = now_ms();
    let (weights, stop_tokens) = load_cpu(model)?;
    let load_ms = now_ms() - started;
    let mut sequence = CpuSequence::new(&weights, prompt.len() + max_new_tokens as usize);
    let sampling = SamplingParams {
        max_new_tokens,
        ..SamplingParams::default()
    };
    let stats = without_waiting(async {
        let mut recorder = StatsRecorder::new(now_ms());
        let stop = StopHandle::new();
        let mut stream =
            TokenStream::start(&mut sequence, &prompt, sampling, 0, stop_tokens, stop).await?;
        while stream.next_token().await?.is_some() {
            recorder.token(now_ms());
        }
        Ok::<_, shared::generation::EngineError>(recorder.finish(&stream, now_ms()))
    })?;
    Ok(vec![
        load_ms,
        stats.prompt_tokens as f64,
        stats.first_token_ms,
        stats.decode_tokens_per_second(),
        stats.generated_tokens as f64,
    ])
}

/// Runs a future of the CPU engine to its end on this thread: its sequence computes as it is
/// asked and never waits, so one poll finishes it.
fn without_waiting<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut context) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => unreachable!("the CPU engine never waits"),
    }
}
