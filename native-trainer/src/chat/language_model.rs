//! What an inference engine offers the generation loop: next-token logits for a run of tokens
//! continuing the cached sequence, and a way to forget that sequence.

use anyhow::Result;
use candle_core::Tensor;
use shared::ModelHyperparameters;

pub trait LanguageModel {
    /// Runs `tokens`, the first at `position`, and returns the logits (one row over the
    /// vocabulary) for the token after the last one.
    fn forward(&mut self, tokens: &[u32], position: usize) -> Result<Tensor>;
    /// Forgets every cached position.
    fn clear_cache(&mut self);
    fn hyperparameters(&self) -> &ModelHyperparameters;
    /// Longest sequence (prompt + reply) this engine instance can hold.
    fn max_positions(&self) -> usize {
        self.hyperparameters().context_length
    }
}
