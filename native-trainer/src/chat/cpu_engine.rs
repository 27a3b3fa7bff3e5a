//! The CPU engine natively: `shared`'s integer-kernel Qwen2, the code browsers without a
//! usable GPU run, with one sequence.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use shared::cpu_engine::{CpuQwen2Weights, CpuSequence};
use shared::{ModelHyperparameters, ModelText, TokenScore};

use super::language_model::{LanguageModel, open_model};

pub struct CpuEngine {
    sequence: CpuSequence,
    hyperparameters: ModelHyperparameters,
}

impl CpuEngine {
    pub fn load(path: &Path, max_positions: usize) -> Result<(Self, ModelText)> {
        let started = Instant::now();
        let (mut file, gguf, text) = open_model(path)?;
        let weights = CpuQwen2Weights::load(&gguf, &mut file)?;
        tracing::info!(
            "loaded {} for the CPU engine in {:.1}s",
            gguf.source_name,
            started.elapsed().as_secs_f64()
        );
        let engine = Self {
            sequence: CpuSequence::new(&weights, max_positions),
            hyperparameters: weights.hyperparameters.clone(),
        };
        Ok((engine, text))
    }
}

impl LanguageModel for CpuEngine {
    fn feed(&mut self, tokens: &[u32], position: usize) -> Result<()> {
        self.sequence.truncate(position);
        self.sequence.feed(tokens)?;
        Ok(())
    }

    fn next_token_scores(
        &mut self,
        needed: usize,
        penalized: &[u32],
        penalty: f32,
    ) -> Result<Vec<TokenScore>> {
        Ok(self.sequence.next_token_scores(needed, penalized, penalty))
    }

    fn clear_cache(&mut self) {
        self.sequence.truncate(0);
    }

    fn hyperparameters(&self) -> &ModelHyperparameters {
        &self.hyperparameters
    }

    fn max_positions(&self) -> usize {
        self.sequence.max_positions()
    }
}
