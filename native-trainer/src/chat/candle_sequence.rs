//! candle-transformers' `quantized_qwen2` as a `GeneratingSequence`, on the CPU (or CUDA with
//! the `cuda` feature), so that `dpo chat`, `dpo bench` and the llama.cpp parity tests run it
//! through the same `TokenStream` as the browser's engines. Its KV cache can only be cleared,
//! not cut: a truncation keeps the surviving tokens and runs them again with the next feed.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_qwen2::ModelWeights;
use shared::generation::{EngineError, GeneratingSequence};
use shared::token_sampler::{apply_repetition_penalty, top_scores};
use shared::{Architecture, ModelHyperparameters, ModelText, TokenScore};

use super::model_file::open_model;

pub struct CandleSequence {
    model: ModelWeights,
    device: Device,
    hyperparameters: ModelHyperparameters,
    /// The tokens the sequence holds, in order.
    tokens: Vec<u32>,
    /// How many of `tokens` are in candle's KV cache (the rest run with the next feed).
    in_cache: usize,
    /// Logits after the last token fed.
    logits: Vec<f32>,
}

impl CandleSequence {
    /// Loads a Qwen2 GGUF; returns the sequence and the model's tokenizer and chat template.
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
        let sequence = Self {
            model,
            device,
            hyperparameters,
            tokens: Vec::new(),
            in_cache: 0,
            logits: Vec::new(),
        };
        Ok((sequence, text))
    }

    /// Where the model runs, for reports ("cpu", "cuda:0").
    pub fn device_name(&self) -> String {
        match self.device.location() {
            candle_core::DeviceLocation::Cpu => "cpu".into(),
            candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
            candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
        }
    }

    fn forward(&mut self, tokens: &[u32], position: usize) -> candle_core::Result<Vec<f32>> {
        let input = Tensor::new(tokens, &self.device)?.unsqueeze(0)?;
        self.model
            .forward(&input, position)?
            .squeeze(0)?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1()
    }
}

impl GeneratingSequence for CandleSequence {
    fn max_positions(&self) -> usize {
        self.hyperparameters.context_length
    }

    fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    fn truncate(&mut self, len: usize) {
        if len < self.in_cache {
            self.model.clear_kv_cache();
            self.in_cache = 0;
        }
        self.tokens.truncate(len);
    }

    async fn reserve(&mut self, _positions: usize) -> Result<(), EngineError> {
        Ok(())
    }

    fn feed(&mut self, tokens: &[u32]) -> Result<(), EngineError> {
        self.tokens.extend_from_slice(tokens);
        let run = self.tokens[self.in_cache..].to_vec();
        if run.is_empty() {
            return Ok(());
        }
        self.logits = self
            .forward(&run, self.in_cache)
            .map_err(|e| EngineError::Compute(e.to_string()))?;
        self.in_cache = self.tokens.len();
        Ok(())
    }

    fn vocab_size(&self) -> usize {
        self.hyperparameters.vocab_size
    }

    async fn next_token_scores(
        &self,
        needed: usize,
        penalized: &[u32],
        penalty: f32,
    ) -> Result<Vec<TokenScore>, EngineError> {
        let mut logits = self.logits.clone();
        apply_repetition_penalty(&mut logits, penalized, penalty);
        Ok(top_scores(&logits, needed))
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
