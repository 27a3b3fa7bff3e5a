//! The generation loop shared by every engine: reuse the cached prefix of the prompt, prefill
//! the rest, then sample token by token until an end-of-turn token, the token budget, or the
//! caller says stop.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use shared::engine::StopReason;
use shared::token_sampler::penalized_tokens;
use shared::{SamplingParams, TokenSampler, TokenScore};

use super::language_model::LanguageModel;
use shared::tokenizer::common_prefix_len;

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

pub struct Generator {
    pub model: Box<dyn LanguageModel>,
    /// Tokens whose keys and values are in the model's cache, in order.
    cached_tokens: Vec<u32>,
    stop_tokens: Vec<u32>,
}

impl Generator {
    pub fn new(model: Box<dyn LanguageModel>, stop_tokens: Vec<u32>) -> Self {
        Self {
            model,
            cached_tokens: Vec::new(),
            stop_tokens,
        }
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
        let limit = self.model.max_positions();
        if needed > limit {
            bail!(
                "prompt of {} tokens plus {} new tokens exceeds the engine's context of {limit} tokens",
                prompt.len(),
                sampling.max_new_tokens,
            );
        }
        let mut sampler = TokenSampler::new(*sampling, seed);

        // Reuse the cache when the prompt extends what is cached; else start over.
        let reusable = common_prefix_len(&self.cached_tokens, prompt);
        let start = if reusable == self.cached_tokens.len() && reusable < prompt.len() {
            reusable
        } else {
            self.reset();
            0
        };
        // Engines may queue work and only wait when scores are read back, so the prefill
        // ends when the first token's scores arrive.
        let prefill_started = Instant::now();
        self.model.feed(&prompt[start..], start)?;
        self.cached_tokens = prompt.to_vec();
        let vocab = self.model.hyperparameters().vocab_size;
        let needed = sampling.candidates_needed(vocab);
        let mut history = prompt.to_vec();
        let mut scores = self.scores(needed, &history, sampling)?;
        let prefill_seconds = prefill_started.elapsed().as_secs_f64();

        let decode_started = Instant::now();
        let mut generated = 0;
        let stop_reason = loop {
            let next = sampler
                .sample(&scores)
                .context("the model produced no finite logit")?;
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
            self.model.feed(&[next], self.cached_tokens.len())?;
            self.cached_tokens.push(next);
            scores = self.scores(needed, &history, sampling)?;
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

    fn scores(
        &mut self,
        needed: usize,
        history: &[u32],
        sampling: &SamplingParams,
    ) -> Result<Vec<TokenScore>> {
        let penalized = penalized_tokens(history, sampling);
        self.model
            .next_token_scores(needed, &penalized, sampling.repeat_penalty)
    }

    /// Forgets the cached conversation.
    pub fn reset(&mut self) {
        self.model.clear_cache();
        self.cached_tokens.clear();
    }
}
