//! The wgpu inference engine natively (Vulkan / Metal / DX12): `shared`'s GPU Qwen2 decoder,
//! the same code the browser runs on WebGPU. Prompts are fed one token per step for now.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use candle_core::{Device, Tensor};
use shared::engine::{GpuContext, Qwen2Decoder};
use shared::{ModelHyperparameters, ModelText};

use super::language_model::{LanguageModel, open_model};

/// KV-cache length the native chat allocates (prompt + reply).
pub const DEFAULT_MAX_POSITIONS: usize = 4096;

pub struct WgpuEngine {
    ctx: GpuContext,
    decoder: Qwen2Decoder,
}

impl WgpuEngine {
    pub fn load(path: &Path, max_positions: usize) -> Result<(Self, ModelText)> {
        let started = Instant::now();
        let (mut file, gguf, text) = open_model(path)?;
        let ctx = pollster::block_on(GpuContext::new())?;
        let decoder = Qwen2Decoder::load(&ctx, &gguf, &mut file, max_positions)?;
        tracing::info!(
            "loaded {} on {} ({:?}) in {:.1}s",
            gguf.source_name,
            ctx.adapter_info.name,
            ctx.adapter_info.backend,
            started.elapsed().as_secs_f64()
        );
        Ok((Self { ctx, decoder }, text))
    }
}

impl LanguageModel for WgpuEngine {
    fn forward(&mut self, tokens: &[u32], position: usize) -> Result<Tensor> {
        for (i, &token) in tokens.iter().enumerate() {
            self.decoder.submit_step(&self.ctx, token, position + i)?;
        }
        let logits = pollster::block_on(self.decoder.read_logits(&self.ctx))?;
        let vocab = logits.len();
        Ok(Tensor::from_vec(logits, vocab, &Device::Cpu)?)
    }

    fn clear_cache(&mut self) {
        // Positions are rewritten from 0 by the next prompt; nothing to free.
    }

    fn hyperparameters(&self) -> &ModelHyperparameters {
        &self.decoder.hyperparameters
    }

    fn max_positions(&self) -> usize {
        self.decoder.max_positions
    }
}
