//! Streaming generation on a sequence of either engine (`GeneratingSequence`: the wgpu
//! engine's `Qwen2Sequence` or the CPU engine's `CpuSequence`), one token per
//! `next_token().await`, the same on wasm32 and native: reuse of the cached prompt prefix, the
//! prompt's batched prefill, the engine's candidate selection, seeded sampling, end-of-turn
//! tokens, the token budget, and a stop handle another task (a "Stop" button) can trigger
//! between tokens.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::gpu_context::EngineError;
use crate::SamplingParams;
use crate::token_sampler::TokenScore;
use crate::token_sampler::{TokenSampler, penalized_tokens};
use crate::tokenizer::common_prefix_len;

/// Asks a running generation to stop before its next token. Cloning shares the flag.
#[derive(Debug, Clone, Default)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The model emitted an end-of-turn token (not part of the output).
    EndOfTurn,
    /// `max_new_tokens` were generated.
    MaxTokens,
    /// The stop handle was triggered.
    Stopped,
}

/// What generation needs of a sequence, whichever engine runs it.
#[allow(
    async_fn_in_trait,
    reason = "used by concrete types only, on one thread (the browser's or a test's)"
)]
pub trait GeneratingSequence {
    /// Longest sequence (prompt + reply) it holds.
    fn max_positions(&self) -> usize;
    /// The tokens in its cache, in order.
    fn tokens(&self) -> &[u32];
    /// Forgets every position from `len` on.
    fn truncate(&mut self, len: usize);
    /// Makes room for `positions` in all, up to `max_positions` (a sequence that allocates
    /// as it goes has nothing to do).
    async fn reserve(&mut self, positions: usize) -> Result<(), EngineError>;
    /// Runs `tokens` after the cached ones.
    fn feed(&mut self, tokens: &[u32]) -> Result<(), EngineError>;
    fn vocab_size(&self) -> usize;
    /// The `needed` best next tokens after the repetition penalty on `penalized`, best first.
    async fn next_token_scores(
        &self,
        needed: usize,
        penalized: &[u32],
        penalty: f32,
    ) -> Result<Vec<TokenScore>, EngineError>;

    /// Starts generating after `prompt`: makes room for the prompt and `max_new_tokens`,
    /// reuses cached tokens that begin the prompt, and runs the rest (queued for the GPU, or
    /// computed on the CPU).
    async fn generate(
        &mut self,
        prompt: &[u32],
        params: SamplingParams,
        seed: u64,
        stop_tokens: Vec<u32>,
        stop: StopHandle,
    ) -> Result<TokenStream<'_, Self>, EngineError>
    where
        Self: Sized,
    {
        start(self, prompt, params, seed, stop_tokens, stop).await
    }
}

pub struct TokenStream<'a, S: GeneratingSequence> {
    sequence: &'a mut S,
    sampler: TokenSampler,
    stop_tokens: Vec<u32>,
    stop: StopHandle,
    /// Prompt and generated tokens (the repetition penalty's window).
    history: Vec<u32>,
    generated: usize,
    /// Prompt tokens actually run (the rest came from the cache).
    prefilled: usize,
    finished: Option<StopReason>,
}

async fn start<'a, S: GeneratingSequence>(
    sequence: &'a mut S,
    prompt: &[u32],
    params: SamplingParams,
    seed: u64,
    stop_tokens: Vec<u32>,
    stop: StopHandle,
) -> Result<TokenStream<'a, S>, EngineError> {
    params
        .validate()
        .map_err(|e| EngineError::Unsupported(format!("sampling: {e}")))?;
    if prompt.is_empty() {
        return Err(EngineError::Unsupported(
            "cannot generate from an empty prompt".into(),
        ));
    }
    let needed = prompt.len() + params.max_new_tokens as usize;
    if needed > sequence.max_positions() {
        return Err(EngineError::Unsupported(format!(
            "prompt of {} tokens plus {} new tokens exceeds the sequence's {} positions",
            prompt.len(),
            params.max_new_tokens,
            sequence.max_positions()
        )));
    }
    sequence.reserve(needed).await?;
    // At least the prompt's last token must run to produce fresh logits.
    let reusable = common_prefix_len(sequence.tokens(), prompt).min(prompt.len() - 1);
    sequence.truncate(reusable);
    sequence.feed(&prompt[reusable..])?;
    Ok(TokenStream {
        sequence,
        sampler: TokenSampler::new(params, seed),
        stop_tokens,
        stop,
        history: prompt.to_vec(),
        generated: 0,
        prefilled: prompt.len() - reusable,
        finished: None,
    })
}

impl<S: GeneratingSequence> TokenStream<'_, S> {
    /// The next token, or `None` once generation has ended (see `stop_reason`).
    pub async fn next_token(&mut self) -> Result<Option<u32>, EngineError> {
        if self.finished.is_some() {
            return Ok(None);
        }
        if self.stop.is_stopped() {
            self.finished = Some(StopReason::Stopped);
            return Ok(None);
        }
        let params = *self.sampler.params();
        let vocab = self.sequence.vocab_size();
        let penalized = penalized_tokens(&self.history, &params);
        let scores = self
            .sequence
            .next_token_scores(
                params.candidates_needed(vocab),
                &penalized,
                params.repeat_penalty,
            )
            .await?;
        let token = self
            .sampler
            .sample(&scores)
            .ok_or_else(|| EngineError::Unsupported("the model produced no finite logit".into()))?;
        if self.stop_tokens.contains(&token) {
            self.finished = Some(StopReason::EndOfTurn);
            return Ok(None);
        }
        self.history.push(token);
        self.generated += 1;
        if self.generated == params.max_new_tokens as usize {
            self.finished = Some(StopReason::MaxTokens);
        } else {
            self.sequence.feed(&[token])?;
        }
        Ok(Some(token))
    }

    pub fn stop_reason(&self) -> Option<StopReason> {
        self.finished
    }

    pub fn generated_tokens(&self) -> usize {
        self.generated
    }

    /// Prompt tokens that ran through the model (cached ones excluded).
    pub fn prefilled_tokens(&self) -> usize {
        self.prefilled
    }
}
