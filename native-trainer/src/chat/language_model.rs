//! What an inference engine offers the generation loop: next-token logits for a run of tokens
//! continuing the cached sequence, and a way to forget that sequence.

use std::fs::File;
use std::path::Path;

use anyhow::{Context, Result};
use candle_core::Tensor;
use shared::{GgufModel, ModelHyperparameters, ModelText};

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
