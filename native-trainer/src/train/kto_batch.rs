//! One KTO batch as TRL's KTOTrainer sees it, and the step's loss and metrics under its
//! log_history names. The rows (prompt + completion, each labelled) and, for the `kto` loss,
//! the same prompts with their mismatched KL completions are stacked into one `DpoBatch`, so
//! each distinct prompt goes through the model once for both; the KL rows' log-probs only
//! feed the detached KL estimate. Metrics as TRL 1.16 logs them: `kl`, `logits/*` (mean over
//! each side's completion positions of the mean logit), `rewards/*` and `logps/*` (per side,
//! only when the batch has rows of that side) and `rewards/margins` (when it has both).

use candle_core::{DType, Device, Result, Tensor};
use serde::Serialize;

use super::dpo_batch::{CompletionScores, DpoBatch, Truncation};
use super::kto_loss::{KtoLossConfig, kl_estimate, kto_loss};
use super::pair_tokens::LabelledTokens;
use super::qwen2::{LayerTape, Qwen2};

pub struct KtoBatch {
    /// The rows, then (with the KL term) the same prompts with the KL completions.
    pub sequences: DpoBatch,
    pub desirable: Vec<bool>,
}

impl KtoBatch {
    /// Stacks `rows` and, when given, each row's prompt with its KL completion.
    pub fn collate(
        rows: &[&LabelledTokens],
        kl_completions: Option<&[&[u32]]>,
        pad_id: u32,
        truncation: Option<Truncation>,
        device: &Device,
    ) -> Result<Self> {
        let matched: Vec<(&[u32], &[u32])> = rows
            .iter()
            .map(|r| (r.prompt_ids.as_slice(), r.completion_ids.as_slice()))
            .collect();
        let mismatched: Vec<(&[u32], &[u32])> = match kl_completions {
            Some(completions) => rows
                .iter()
                .zip(completions)
                .map(|(r, &c)| (r.prompt_ids.as_slice(), c))
                .collect(),
            None => Vec::new(),
        };
        Ok(Self {
            sequences: DpoBatch::stack(&matched, &mismatched, pad_id, truncation, device)?,
            desirable: rows.iter().map(|r| r.desirable).collect(),
        })
    }

    /// The rows of one label.
    fn rows_labelled(&self, desirable: bool) -> Vec<usize> {
        (0..self.desirable.len())
            .filter(|&i| self.desirable[i] == desirable)
            .collect()
    }
}

/// A step's metrics with TRL's KTO names; a side's metrics are absent when the batch has no
/// row of it.
#[derive(Debug, Clone, Serialize)]
pub struct KtoMetrics {
    pub loss: f64,
    pub kl: f64,
    #[serde(rename = "logits/chosen", skip_serializing_if = "Option::is_none")]
    pub logits_chosen: Option<f64>,
    #[serde(rename = "logits/rejected", skip_serializing_if = "Option::is_none")]
    pub logits_rejected: Option<f64>,
    #[serde(rename = "rewards/chosen", skip_serializing_if = "Option::is_none")]
    pub rewards_chosen: Option<f64>,
    #[serde(rename = "logps/chosen", skip_serializing_if = "Option::is_none")]
    pub logps_chosen: Option<f64>,
    #[serde(rename = "rewards/rejected", skip_serializing_if = "Option::is_none")]
    pub rewards_rejected: Option<f64>,
    #[serde(rename = "logps/rejected", skip_serializing_if = "Option::is_none")]
    pub logps_rejected: Option<f64>,
    #[serde(rename = "rewards/margins", skip_serializing_if = "Option::is_none")]
    pub rewards_margins: Option<f64>,
}

/// The KTO loss of `policy` on `batch` (differentiable) and its metrics; `reference_logps`
/// are the reference's log-probs of every stacked sequence (rows, then KL rows).
pub fn kto_step(
    policy: &Qwen2,
    batch: &KtoBatch,
    reference_logps: &Tensor,
    config: &KtoLossConfig,
) -> Result<(Tensor, KtoMetrics)> {
    kto_objective(
        batch,
        &batch.sequences.score(policy, true)?,
        reference_logps,
        config,
    )
}

/// As `kto_step` under gradient checkpointing, with the tape that completes the gradients.
pub fn kto_step_checkpointed<'a>(
    policy: &'a Qwen2,
    batch: &'a KtoBatch,
    reference_logps: &Tensor,
    config: &KtoLossConfig,
) -> Result<(Tensor, KtoMetrics, Option<LayerTape<'a>>)> {
    let (scores, tape) = batch.sequences.score_checkpointed(policy)?;
    let (loss, metrics) = kto_objective(batch, &scores, reference_logps, config)?;
    Ok((loss, metrics, tape))
}

fn kto_objective(
    batch: &KtoBatch,
    scores: &CompletionScores,
    reference_logps: &Tensor,
    config: &KtoLossConfig,
) -> Result<(Tensor, KtoMetrics)> {
    let (logps, kl_logps) = batch.sequences.split(&scores.logps)?;
    let (reference, kl_reference) = batch.sequences.split(reference_logps)?;
    let kl = kl_estimate(&kl_logps, &kl_reference)?;
    let out = kto_loss(config, &logps, &reference, &batch.desirable, kl)?;

    let (chosen, rejected) = (batch.rows_labelled(true), batch.rows_labelled(false));
    let logits = |rows: &[usize]| -> Result<Option<f64>> {
        if rows.is_empty() {
            return Ok(None);
        }
        batch
            .sequences
            .rows_position_mean(&scores.position_mean_logits, rows)
            .map(Some)
    };
    let side_logps = |rows: &[usize]| -> Result<Option<f64>> {
        if rows.is_empty() {
            return Ok(None);
        }
        let values: Vec<f32> = logps.detach().to_vec1()?;
        Ok(Some(
            rows.iter().map(|&i| f64::from(values[i])).sum::<f64>() / rows.len() as f64,
        ))
    };
    let rewards_chosen = mean(&out.chosen_rewards)?;
    let rewards_rejected = mean(&out.rejected_rewards)?;
    let metrics = KtoMetrics {
        loss: scalar(&out.loss)?,
        kl,
        logits_chosen: logits(&chosen)?,
        logits_rejected: logits(&rejected)?,
        rewards_chosen,
        logps_chosen: side_logps(&chosen)?,
        rewards_rejected,
        logps_rejected: side_logps(&rejected)?,
        rewards_margins: rewards_chosen.zip(rewards_rejected).map(|(c, r)| c - r),
    };
    Ok((out.loss, metrics))
}

/// The mean of `values`, `None` when empty.
fn mean(values: &Tensor) -> Result<Option<f64>> {
    if values.elem_count() == 0 {
        return Ok(None);
    }
    scalar(&values.mean_all()?).map(Some)
}

fn scalar(t: &Tensor) -> Result<f64> {
    t.to_dtype(DType::F64)?.to_scalar::<f64>()
}
