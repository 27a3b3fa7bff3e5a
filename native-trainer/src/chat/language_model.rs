//! What an inference engine offers the generation loop: run tokens after a cached prefix, then
//! hand over the best-scoring next tokens (as few as the sampler needs), and forget the cache.

use std::fs::File;
use std::path::Path;

use anyhow::{Context, Result};
use shared::{GgufModel, ModelHyperparameters, ModelText, TokenScore};

/// Opens a GGUF model for an engine: the file (positioned for reading tensors), its validated
/// header, and its tokenizer and chat template.
pub fn open_model(path: &Path) -> Result<(File, GgufModel, ModelText)> {
    let source_name = path.display().to_string();
    let mut file =
        File::open(path).with_context(|| format!("cannot open model file {source_name}"))?;
    let gguf = GgufModel::read(&mut file, &source_name)?;
    let text = ModelText::from_gguf(&gguf)?;
    Ok((file, gguf, text))
}

pub trait LanguageModel {
    /// Runs `tokens`, the first at `position` (cached positions from there on are replaced).
    fn feed(&mut self, tokens: &[u32], position: usize) -> Result<()>;
    /// The `needed` best tokens to follow the last one fed, after the repetition penalty on
    /// `penalized` (distinct ids), best first with ties to the lower id.
    fn next_token_scores(
        &mut self,
        needed: usize,
        penalized: &[u32],
        penalty: f32,
    ) -> Result<Vec<TokenScore>>;
    /// Forgets every cached position.
    fn clear_cache(&mut self);
    fn hyperparameters(&self) -> &ModelHyperparameters;
    /// Longest sequence (prompt + reply) this engine instance can hold.
    fn max_positions(&self) -> usize {
        self.hyperparameters().context_length
    }
}
