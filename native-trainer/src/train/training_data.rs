//! What a run trains on, behind one interface for the training loop: DPO's preference pairs
//! (`preference_data.rs`) or KTO's labelled rows (`labelled_data.rs`). A batch scores itself
//! with the method's objective (`dpo_batch.rs`, `kto_batch.rs`) and returns TRL's metrics.

use std::path::Path;

use anyhow::Result;
use candle_core::{Device, Tensor};
use serde_json::{Map, Value};
use shared::ModelText;

use super::dpo_batch::{DpoBatch, dpo_step, dpo_step_checkpointed};
use super::kto_batch::{KtoBatch, kto_step, kto_step_checkpointed};
use super::labelled_data::LabelledData;
use super::preference_data::PreferenceData;
use super::qwen2::{LayerTape, Qwen2};
use super::training_config::{TrainingConfig, TrainingMethod};
use super::training_model::TrainingModel;

pub enum TrainingData {
    Pairs(PreferenceData),
    Labelled(LabelledData),
}

/// One micro-batch with its reference log-probs.
pub enum TrainingBatch {
    Pairs(DpoBatch, Tensor),
    Labelled(KtoBatch, Tensor),
}

impl TrainingData {
    pub fn load(path: &Path, text: &ModelText, config: &TrainingConfig) -> Result<Self> {
        Ok(match config.method {
            TrainingMethod::Dpo => Self::Pairs(PreferenceData::load(path, text, config)?),
            TrainingMethod::Kto => Self::Labelled(LabelledData::load(path, text, config)?),
        })
    }

    /// Pairs (DPO) or rows (KTO).
    pub fn len(&self) -> usize {
        match self {
            Self::Pairs(data) => data.pairs.len(),
            Self::Labelled(data) => data.rows.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What `len` counts, for logs.
    pub fn unit(&self) -> &'static str {
        match self {
            Self::Pairs(_) => "pairs",
            Self::Labelled(_) => "labelled rows",
        }
    }

    pub fn precompute_reference(
        &mut self,
        model: &TrainingModel,
        config: &TrainingConfig,
        batch_size: usize,
        device: &Device,
        pad_id: u32,
    ) -> Result<()> {
        match self {
            Self::Pairs(data) => {
                data.precompute_reference(model, config, batch_size, device, pad_id)
            }
            Self::Labelled(data) => {
                data.precompute_reference(model, config, batch_size, device, pad_id)
            }
        }
    }

    pub fn batch(
        &self,
        indices: &[usize],
        model: &TrainingModel,
        config: &TrainingConfig,
        device: &Device,
        pad_id: u32,
    ) -> Result<TrainingBatch> {
        Ok(match self {
            Self::Pairs(data) => {
                let (batch, reference) = data.batch(indices, model, config, device, pad_id)?;
                TrainingBatch::Pairs(batch, reference)
            }
            Self::Labelled(data) => {
                let (batch, reference) = data.batch(indices, model, config, device, pad_id)?;
                TrainingBatch::Labelled(batch, reference)
            }
        })
    }
}

impl TrainingBatch {
    /// The loss of `policy` on this batch and its metrics; with `checkpointed`, also the tape
    /// that completes the gradients through the layers after the loss's backward pass.
    pub fn step<'a>(
        &'a self,
        policy: &'a Qwen2,
        config: &TrainingConfig,
        checkpointed: bool,
    ) -> Result<(Tensor, Map<String, Value>, Option<LayerTape<'a>>)> {
        let (loss, metrics, tape) = match (self, checkpointed) {
            (Self::Pairs(batch, reference), true) => {
                let (loss, metrics, tape) =
                    dpo_step_checkpointed(policy, batch, reference, &config.loss_config())?;
                (loss, serde_json::to_value(metrics)?, tape)
            }
            (Self::Pairs(batch, reference), false) => {
                let (loss, metrics) = dpo_step(policy, batch, reference, &config.loss_config())?;
                (loss, serde_json::to_value(metrics)?, None)
            }
            (Self::Labelled(batch, reference), true) => {
                let (loss, metrics, tape) =
                    kto_step_checkpointed(policy, batch, reference, &config.kto_loss_config())?;
                (loss, serde_json::to_value(metrics)?, tape)
            }
            (Self::Labelled(batch, reference), false) => {
                let (loss, metrics) =
                    kto_step(policy, batch, reference, &config.kto_loss_config())?;
                (loss, serde_json::to_value(metrics)?, None)
            }
        };
        let Value::Object(metrics) = metrics else {
            anyhow::bail!("a step's metrics are not an object");
        };
        Ok((loss, metrics, tape))
    }
}
