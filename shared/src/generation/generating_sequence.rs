//! What generation needs of a sequence, whichever engine runs it: the wgpu engine's
//! `Qwen2Sequence`, the CPU engine's `CpuSequence`, or natively candle's `quantized_qwen2`
//! (`native-trainer/src/chat/candle_sequence.rs`).

use super::engine_error::EngineError;
use crate::token_sampler::TokenScore;

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
}
