//! A split of KTO's labelled rows ready for training: TRL's unpaired rows from a file (or a
//! paired file, unpaired as TRL does), or the vote store's votes (`vote_source.rs`), tokenized
//! as TRL's KTOTrainer does, rows whose prompt alone fills `max_length` dropped, and for the
//! `kto` loss each row's KL completion: the completions rotated by one within each block of
//! `per_device_train_batch_size` rows, in order — (x₁, yₙ), (x₂, y₁), …, (xₙ, yₙ₋₁) — so a
//! batch's mismatched completions are its own (KTO trains on the rows in order for this).
//! Optionally the reference model's log-probs per row (`precompute_ref_log_probs`).

use std::path::Path;

use anyhow::{Result, bail};
use candle_core::{Device, Tensor};
use shared::{ModelText, UnpairedRow};

use super::kto_batch::KtoBatch;
use super::pair_tokens::{LabelledTokens, tokenize_labelled};
use super::preference_file::{DatasetRow, PreferenceFile, read_dataset_file};
use super::tokenized_rows::tokenize_rows;
use super::training_config::TrainingConfig;
use super::training_model::TrainingModel;
use super::vote_source::{is_vote_store, read_vote_labels};

pub struct LabelledData {
    pub rows: Vec<LabelledTokens>,
    /// Each row's mismatched completion, for the `kto` loss's KL estimate.
    pub kl_completions: Option<Vec<Vec<u32>>>,
    /// The reference model's log-probs per row (and of its KL row), when precomputed.
    pub reference_logps: Option<Vec<(f32, f32)>>,
}

impl LabelledData {
    /// Reads and tokenizes `path` under `config`'s data settings.
    pub fn load(path: &Path, text: &ModelText, config: &TrainingConfig) -> Result<Self> {
        let file = if is_vote_store(path) {
            read_vote_labels(path)?
        } else {
            unpaired_file(path, config.skip_malformed)?
        };
        let rows = tokenize_rows(path, &file, config, |row| tokenize_labelled(text, row))?;
        let desirable = rows.iter().filter(|r| r.desirable).count();
        tracing::info!(
            "{}: {} labelled rows ({desirable} desirable, {} undesirable)",
            path.display(),
            rows.len(),
            rows.len() - desirable
        );
        let kl_completions = config
            .kto_loss_config()
            .loss
            .estimates_kl()
            .then(|| kl_completions(&rows, config.per_device_train_batch_size));
        Ok(Self {
            rows,
            kl_completions,
            reference_logps: None,
        })
    }

    /// TRL's advice when desirable and undesirable rows are unbalanced and the weights do
    /// not make up for it (the KTO paper's eq. 8 range).
    pub fn check_balance(&self, config: &TrainingConfig) {
        let desirable = self.rows.iter().filter(|r| r.desirable).count().max(1) as f64;
        let undesirable = (self.rows.len() as f64 - desirable).max(1.0);
        if desirable == undesirable {
            return;
        }
        let round = |v: f64| (v * 100.0).round() / 100.0;
        let ratio = undesirable * config.undesirable_weight / desirable;
        let (desirable_low, desirable_high) = (round(ratio), round(ratio * 1.33));
        let inverse = desirable * config.desirable_weight / undesirable;
        let (undesirable_low, undesirable_high) = (round(inverse / 1.33), round(inverse));
        let in_range = (desirable_low..=desirable_high).contains(&config.desirable_weight)
            || (undesirable_low..=undesirable_high).contains(&config.undesirable_weight);
        if !in_range {
            tracing::warn!(
                "{desirable} desirable and {undesirable} undesirable rows, but the weights do \
                 not balance them: set EITHER desirable_weight in [{desirable_low}, \
                 {desirable_high}] OR undesirable_weight in [{undesirable_low}, \
                 {undesirable_high}] (not both)"
            );
        }
    }

    /// The batch of `indices` and the reference's log-probs of its stacked sequences
    /// (precomputed, or from `model`'s reference).
    pub fn batch(
        &self,
        indices: &[usize],
        model: &TrainingModel,
        config: &TrainingConfig,
        device: &Device,
        pad_id: u32,
    ) -> Result<(KtoBatch, Tensor)> {
        let rows: Vec<&LabelledTokens> = indices.iter().map(|&i| &self.rows[i]).collect();
        let kl: Option<Vec<&[u32]>> = self
            .kl_completions
            .as_ref()
            .map(|kl| indices.iter().map(|&i| kl[i].as_slice()).collect());
        let batch = KtoBatch::collate(&rows, kl.as_deref(), pad_id, config.truncation(), device)?;
        let reference = match &self.reference_logps {
            Some(stored) => {
                let mut values: Vec<f32> = indices.iter().map(|&i| stored[i].0).collect();
                if self.kl_completions.is_some() {
                    values.extend(indices.iter().map(|&i| stored[i].1));
                }
                let count = values.len();
                Tensor::from_vec(values, count, device)?
            }
            None => model.reference_logps(&batch.sequences)?,
        };
        Ok((batch, reference))
    }

    /// Computes and keeps every row's reference log-probs, `batch_size` rows at a time.
    pub fn precompute_reference(
        &mut self,
        model: &TrainingModel,
        config: &TrainingConfig,
        batch_size: usize,
        device: &Device,
        pad_id: u32,
    ) -> Result<()> {
        let mut stored = Vec::with_capacity(self.rows.len());
        let indices: Vec<usize> = (0..self.rows.len()).collect();
        for chunk in indices.chunks(batch_size) {
            let (batch, reference) = self.batch(chunk, model, config, device, pad_id)?;
            let (matched, kl) = batch.sequences.split(&reference)?;
            let matched: Vec<f32> = matched.to_vec1()?;
            let kl: Vec<f32> = match self.kl_completions {
                Some(_) => kl.to_vec1()?,
                None => vec![0.0; matched.len()],
            };
            stored.extend(matched.into_iter().zip(kl));
        }
        self.reference_logps = Some(stored);
        Ok(())
    }
}

/// Each row's KL completion: the completions rotated by one within each block of
/// `block` rows.
pub fn kl_completions(rows: &[LabelledTokens], block: usize) -> Vec<Vec<u32>> {
    rows.chunks(block.max(1))
        .flat_map(|chunk| {
            (0..chunk.len()).map(move |i| {
                chunk[(i + chunk.len() - 1) % chunk.len()]
                    .completion_ids
                    .clone()
            })
        })
        .collect()
}

/// A file's rows as unpaired ones: unpaired rows as they are, a paired file unpaired as TRL
/// does; a file mixing both is refused at the first row of the other kind.
fn unpaired_file(path: &Path, skip_malformed: bool) -> Result<PreferenceFile<UnpairedRow>> {
    let file = read_dataset_file(path, skip_malformed)?;
    let paired = matches!(file.rows[0], DatasetRow::Paired(_));
    let mut pairs = Vec::new();
    let mut unpaired = Vec::new();
    for (row, line) in file.rows.into_iter().zip(&file.line_numbers) {
        match (row, paired) {
            (DatasetRow::Paired(row), true) => pairs.push(row),
            (DatasetRow::Unpaired(row), false) => unpaired.push(row),
            _ => bail!(
                "{}:{line}: this row is {}, the file's first row {}: a KTO dataset is all \
                 unpaired rows (`prompt`, `completion`, `label`) or all pairs (`chosen`, \
                 `rejected`)",
                path.display(),
                if paired { "unpaired" } else { "a pair" },
                if paired { "a pair" } else { "unpaired" },
            ),
        }
    }
    if paired {
        // Unpairing reorders rows; each keeps its pair's line.
        let lines: Vec<usize> = file.line_numbers.clone();
        let mut line_numbers = Vec::with_capacity(2 * pairs.len());
        for block in lines.chunks(shared::unpaired_rows::UNPAIR_BLOCK) {
            line_numbers.extend(block.iter().chain(block));
        }
        return Ok(PreferenceFile {
            rows: shared::unpaired_rows::unpair(&pairs),
            line_numbers,
            skipped: file.skipped,
        });
    }
    Ok(PreferenceFile {
        rows: unpaired,
        line_numbers: file.line_numbers,
        skipped: file.skipped,
    })
}
