//! The candle inference engine: candle-transformers' `quantized_qwen2` over a GGUF file, on
//! the CPU (or CUDA with the `cuda` feature), with its KV cache reused across chat turns
//! whenever the new prompt extends the tokens already cached.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_qwen2::ModelWeights;
use shared::{Architecture, GgufModel, ModelHyperparameters, SamplingParams};

use super::token_sampler::TokenSampler;
use shared::ModelText;

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The model emitted an end-of-turn token (not included in the output).
    EndOfTurn,
    /// `max_new_tokens` were generated.
    MaxTokens,
    /// The caller's token callback asked to stop.
    Stopped,
}

/// Counts and timings of one generation.
#[derive(Debug, Clone)]
pub struct GenerationStats {
    /// Prompt tokens actually run through the model (cached ones are skipped).
    pub prefill_tokens: usize,
    pub prefill_seconds: f64,
    pub generated_tokens: usize,
    pub decode_seconds: f64,
    pub stop_reason: StopReason,
}

pub struct CandleEngine {
    model: ModelWeights,
    device: Device,
    pub hyperparameters: ModelHyperparameters,
    /// Tokens whose keys and values are in the model's cache, in order.
    cached_tokens: Vec<u32>,
    stop_tokens: Vec<u32>,
}

impl CandleEngine {
    /// Loads a Qwen2 GGUF; returns the engine and the model's tokenizer and chat template.
    pub fn load(path: &Path, force_cpu: bool) -> Result<(Self, ModelText)> {
        let started = Instant::now();
        let source_name = path.display().to_string();
        let mut file = std::fs::File::open(path)
            .with_context(|| format!("cannot open model file {source_name}"))?;
        let gguf = GgufModel::read(&mut file, &source_name)?;
        if gguf.hyperparameters.architecture != Architecture::Qwen2 {
            bail!(
                "{source_name}: the candle engine runs qwen2 models; this file is `{}`",
                gguf.hyperparameters.architecture.as_str()
            );
        }
        let text = ModelText::from_gguf(&gguf)?;
        let device = select_device(force_cpu)?;
        let hyperparameters = gguf.hyperparameters.clone();
        let model = ModelWeights::from_gguf(gguf.content, &mut file, &device)
            .with_context(|| format!("loading weights from {source_name}"))?;
        tracing::info!(
            "loaded {source_name} ({} blocks, width {}, vocab {}) on {device:?} in {:.1}s",
            hyperparameters.block_count,
            hyperparameters.embedding_length,
            hyperparameters.vocab_size,
            started.elapsed().as_secs_f64()
        );
        let stop_tokens = text.stop_tokens();
        Ok((
            Self {
                model,
                device,
                hyperparameters,
                cached_tokens: Vec::new(),
                stop_tokens,
            },
            text,
        ))
    }

    /// Generates after `prompt`, calling `on_token` with each new token until an end-of-turn
    /// token, `max_new_tokens`, or `on_token` returning `false`.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        sampling: &SamplingParams,
        seed: u64,
        on_token: &mut dyn FnMut(u32) -> Result<bool>,
    ) -> Result<GenerationStats> {
        if prompt.is_empty() {
            bail!("cannot generate from an empty prompt");
        }
        let needed = prompt.len() + sampling.max_new_tokens as usize;
        if needed > self.hyperparameters.context_length {
            bail!(
                "prompt of {} tokens plus {} new tokens exceeds the model's context of {} tokens",
                prompt.len(),
                sampling.max_new_tokens,
                self.hyperparameters.context_length
            );
        }
        let mut sampler = TokenSampler::new(*sampling, seed);

        // Reuse the cache when the prompt extends what is cached; else start over.
        let reusable = common_prefix(&self.cached_tokens, prompt);
        let start = if reusable == self.cached_tokens.len() && reusable < prompt.len() {
            reusable
        } else {
            self.model.clear_kv_cache();
            self.cached_tokens.clear();
            0
        };
        let prefill_started = Instant::now();
        let mut logits = self.forward(&prompt[start..], start)?;
        self.cached_tokens = prompt.to_vec();
        let prefill_seconds = prefill_started.elapsed().as_secs_f64();

        let decode_started = Instant::now();
        let mut history = prompt.to_vec();
        let mut generated = 0;
        let stop_reason = loop {
            let next = sampler.next_token(&logits, &history)?;
            if self.stop_tokens.contains(&next) {
                break StopReason::EndOfTurn;
            }
            history.push(next);
            generated += 1;
            if !on_token(next)? {
                break StopReason::Stopped;
            }
            if generated == sampling.max_new_tokens as usize {
                break StopReason::MaxTokens;
            }
            logits = self.forward(&[next], self.cached_tokens.len())?;
            self.cached_tokens.push(next);
        };
        let stats = GenerationStats {
            prefill_tokens: prompt.len() - start,
            prefill_seconds,
            generated_tokens: generated,
            decode_seconds: decode_started.elapsed().as_secs_f64(),
            stop_reason,
        };
        tracing::info!(
            "prefill {} tokens in {:.2}s ({:.1} tok/s), generated {} tokens in {:.2}s ({:.1} tok/s), stop: {:?}",
            stats.prefill_tokens,
            stats.prefill_seconds,
            stats.prefill_tokens as f64 / stats.prefill_seconds.max(1e-9),
            stats.generated_tokens,
            stats.decode_seconds,
            stats.generated_tokens as f64 / stats.decode_seconds.max(1e-9),
            stats.stop_reason
        );
        Ok(stats)
    }

    /// Logits (vocabulary scores) for the position after `tokens`, which start at `position`.
    pub fn forward(&mut self, tokens: &[u32], position: usize) -> Result<Tensor> {
        let input = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
        let logits = self.model.forward(&input, position)?;
        Ok(logits.squeeze(0)?)
    }

    /// Forgets the cached conversation.
    pub fn reset(&mut self) {
        self.model.clear_kv_cache();
        self.cached_tokens.clear();
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

fn select_device(force_cpu: bool) -> Result<Device> {
    if force_cpu {
        return Ok(Device::Cpu);
    }
    #[cfg(feature = "cuda")]
    {
        return Ok(Device::cuda_if_available(0)?);
    }
    #[allow(unreachable_code)]
    Ok(Device::Cpu)
}
