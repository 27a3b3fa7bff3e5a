//! A split of preference data ready for training: rows read from a file or the vote store
//! (`vote_source.rs`), tokenized as TRL
//! does, prompts cut to `max_prompt_length` (keeping their end), rows whose prompt alone
//! fills `max_length` dropped (TRL 1.x drops them under `keep_start`), and optionally the
//! reference model's log-probs per pair (`precompute_ref_log_probs`).

use std::path::Path;

use anyhow::Result;
use candle_core::{Device, Tensor};

use super::dpo_batch::DpoBatch;
use super::pair_tokens::{PairTokens, tokenize_pair};
use super::preference_file::read_preference_file;
use super::tokenized_rows::tokenize_rows;
use super::training_config::TrainingConfig;
use super::training_model::TrainingModel;
use super::vote_source::{is_vote_store, read_votes};
use shared::ModelText;

pub struct PreferenceData {
    pub pairs: Vec<PairTokens>,
    /// The reference model's (chosen, rejected) log-probs per pair, when precomputed.
    pub reference_logps: Option<Vec<(f32, f32)>>,
}

impl PreferenceData {
    /// Reads and tokenizes `path` under `config`'s data settings.
    pub fn load(path: &Path, text: &ModelText, config: &TrainingConfig) -> Result<Self> {
        let file = if is_vote_store(path) {
            read_votes(path)?
        } else {
            read_preference_file(path, config.skip_malformed)?
        };
        let pairs = tokenize_rows(path, &file, config, |row| tokenize_pair(text, row))?;
        tracing::info!("{}: {} preference pairs", path.display(), pairs.len());
        Ok(Self {
            pairs,
            reference_logps: None,
        })
    }

    /// The batch of `indices`, and its reference log-probs `(2 × pairs,)` (precomputed, or
    /// from `model`'s reference; zeros when `reference_free`).
    pub fn batch(
        &self,
        indices: &[usize],
        model: &TrainingModel,
        config: &TrainingConfig,
        device: &Device,
        pad_id: u32,
    ) -> Result<(DpoBatch, Tensor)> {
        let pairs: Vec<PairTokens> = indices.iter().map(|&i| self.pairs[i].clone()).collect();
        let mut batch = DpoBatch::collate(&pairs, pad_id, config.truncation(), device)?;
        if let Some(alpha) = config.ld_alpha {
            batch = batch.desensitize_lengths(alpha)?;
        }
        if config.use_weighting {
            batch = batch.weigh_by_probability();
        }
        let reference = if config.reference_free {
            Tensor::zeros(2 * pairs.len(), candle_core::DType::F32, device)?
        } else if let Some(stored) = &self.reference_logps {
            let values: Vec<f32> = indices
                .iter()
                .map(|&i| stored[i].0)
                .chain(indices.iter().map(|&i| stored[i].1))
                .collect();
            Tensor::from_vec(values, 2 * pairs.len(), device)?
        } else {
            model.reference_logps(&batch)?
        };
        Ok((batch, reference))
    }

    /// Computes and keeps every pair's reference log-probs, `batch_size` pairs at a time.
    pub fn precompute_reference(
        &mut self,
        model: &TrainingModel,
        config: &TrainingConfig,
        batch_size: usize,
        device: &Device,
        pad_id: u32,
    ) -> Result<()> {
        let mut stored = Vec::with_capacity(self.pairs.len());
        let indices: Vec<usize> = (0..self.pairs.len()).collect();
        for chunk in indices.chunks(batch_size) {
            let (batch, reference) = self.batch(chunk, model, config, device, pad_id)?;
            let (chosen, rejected) = batch.split(&reference)?;
            let chosen: Vec<f32> = chosen.to_vec1()?;
            let rejected: Vec<f32> = rejected.to_vec1()?;
            stored.extend(chosen.into_iter().zip(rejected));
        }
        self.reference_logps = Some(stored);
        Ok(())
    }
}
