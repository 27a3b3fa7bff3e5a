//! The candle inference engine: candle-transformers' `quantized_qwen2` over a GGUF file, on
//! the CPU (or CUDA with the `cuda` feature).

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_qwen2::ModelWeights;
use shared::token_sampler::{apply_repetition_penalty, top_scores};
use shared::{Architecture, ModelHyperparameters, ModelText, TokenScore};

use super::language_model::{LanguageModel, open_model};

pub struct CandleEngine {
    model: ModelWeights,
    /// Logits after the last token fed.
    logits: Vec<f32>,
    device: Device,
    hyperparameters: ModelHyperparameters,
}

impl CandleEngine {
    /// Loads a Qwen2 GGUF; returns the engine and the model's tokenizer and chat template.
    pub fn load(path: &Path, force_cpu: bool) -> Result<(Self, ModelText)> {
        let started = Instant::now();
        let (mut file, gguf, text) = open_model(path)?;
        let source_name = gguf.source_name.clone();
        if gguf.hyperparameters.architecture != Architecture::Qwen2 {
            bail!(
                "{source_name}: the candle engine runs qwen2 models; this file is `{}`",
                gguf.hyperparameters.architecture.as_str()
            );
        }
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
        Ok((
            Self {
                model,
                logits: Vec::new(),
                device,
                hyperparameters,
            },
            text,
        ))
    }
}

impl CandleEngine {
    /// Where the model runs, for reports ("cpu", "cuda:0").
    pub fn device_name(&self) -> String {
        match self.device.location() {
            candle_core::DeviceLocation::Cpu => "cpu".into(),
            candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
            candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
        }
    }
}

impl LanguageModel for CandleEngine {
    fn feed(&mut self, tokens: &[u32], position: usize) -> Result<()> {
        let input = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
        let logits = self.model.forward(&input, position)?;
        self.logits = logits
            .squeeze(0)?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1()?;
        Ok(())
    }

    fn next_token_scores(
        &mut self,
        needed: usize,
        penalized: &[u32],
        penalty: f32,
    ) -> Result<Vec<TokenScore>> {
        let mut logits = self.logits.clone();
        apply_repetition_penalty(&mut logits, penalized, penalty);
        Ok(top_scores(&logits, needed))
    }

    fn clear_cache(&mut self) {
        self.model.clear_kv_cache();
    }

    fn hyperparameters(&self) -> &ModelHyperparameters {
        &self.hyperparameters
    }
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
