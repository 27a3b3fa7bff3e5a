//! The wgpu inference engine natively (Vulkan / Metal / DX12): `shared`'s GPU Qwen2, the same
//! code the browser runs on WebGPU, with one sequence.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use shared::engine::{GpuContext, Qwen2Sequence, Qwen2Weights};
use shared::{ModelHyperparameters, ModelText, TokenScore};

use super::language_model::{LanguageModel, open_model};

/// The longest conversation (prompt + reply) `dpo chat` allows: the model's whole context.
/// The wgpu engine grows its caches as a conversation does, while the GPU has the memory;
/// the CPU engine's grow as positions are fed.
pub const CHAT_MAX_POSITIONS: usize = usize::MAX;

pub struct WgpuEngine {
    sequence: Qwen2Sequence,
    adapter: String,
}

impl WgpuEngine {
    /// Loads the model with a sequence that grows up to `max_positions` (or the model's
    /// context limit, if less).
    pub fn load(path: &Path, max_positions: usize) -> Result<(Self, ModelText)> {
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
        Ok((Self { sequence, adapter }, text))
    }

    /// The GPU adapter and backend, for reports.
    pub fn adapter_name(&self) -> String {
        self.adapter.clone()
    }
}

impl LanguageModel for WgpuEngine {
    fn feed(&mut self, tokens: &[u32], position: usize) -> Result<()> {
        self.sequence.truncate(position);
        pollster::block_on(self.sequence.reserve(position + tokens.len()))?;
        self.sequence.feed(tokens)?;
        Ok(())
    }

    fn next_token_scores(
        &mut self,
        needed: usize,
        penalized: &[u32],
        penalty: f32,
    ) -> Result<Vec<TokenScore>> {
        Ok(pollster::block_on(
            self.sequence.next_token_scores(needed, penalized, penalty),
        )?)
    }

    fn clear_cache(&mut self) {
        self.sequence.truncate(0);
    }

    fn hyperparameters(&self) -> &ModelHyperparameters {
        &self.sequence.weights().hyperparameters
    }

    fn max_positions(&self) -> usize {
        self.sequence.max_positions()
    }
}
