//! The browser's two engines natively, each with one sequence: the wgpu engine (Vulkan /
//! Metal / DX12; the same WGSL the browser runs on WebGPU) and the integer-kernel CPU engine
//! (the one browsers without a usable GPU run). Both are `GeneratingSequence`s already.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use shared::ModelText;
use shared::cpu_engine::{CpuQwen2Weights, CpuSequence, CpuSettings};
use shared::wgpu_engine::{GpuContext, Qwen2Sequence, Qwen2Weights};

use super::model_file::open_model;

/// The longest conversation (prompt + reply) `dpo chat` allows: the model's whole context.
/// The wgpu engine grows its caches as a conversation does, while the GPU has the memory;
/// the CPU engine's grow as positions are fed.
pub const CHAT_MAX_POSITIONS: usize = usize::MAX;

/// Loads the model on this machine's GPU with a sequence that grows up to `max_positions`
/// (or the model's context, if less); returns it, the tokenizer and template, and the
/// adapter's name and backend for reports.
pub fn load_wgpu(path: &Path, max_positions: usize) -> Result<(Qwen2Sequence, ModelText, String)> {
    let started = Instant::now();
    let (mut file, gguf, text) = open_model(path)?;
    let ctx = pollster::block_on(GpuContext::new())?;
    let weights = Qwen2Weights::load(&ctx, &gguf, &mut file)?;
    let sequence = Qwen2Sequence::growing(&weights, max_positions)?;
    let adapter = format!("{} ({:?})", ctx.adapter_info.name, ctx.adapter_info.backend);
    tracing::info!(
        "loaded {} on {adapter} in {:.1}s",
        gguf.source_name,
        started.elapsed().as_secs_f64()
    );
    Ok((sequence, text, adapter))
}

/// Loads the model for the CPU engine on `threads` threads, at the fastest SIMD level this CPU
/// has, with a sequence of up to `max_positions`.
pub fn load_cpu(
    path: &Path,
    max_positions: usize,
    threads: usize,
) -> Result<(CpuSequence, ModelText)> {
    let started = Instant::now();
    let (mut file, gguf, text) = open_model(path)?;
    let settings = CpuSettings {
        threads,
        ..CpuSettings::default()
    };
    let weights = CpuQwen2Weights::load_with(&gguf, &mut file, settings)?;
    tracing::info!(
        "loaded {} for the CPU engine ({}, {threads} threads) in {:.1}s",
        gguf.source_name,
        settings.simd,
        started.elapsed().as_secs_f64()
    );
    Ok((CpuSequence::new(&weights, max_positions), text))
}
