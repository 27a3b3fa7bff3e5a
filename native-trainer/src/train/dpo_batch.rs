//! One DPO batch as TRL's collator builds it, and the step's loss and metrics under TRL's
//! log_history names.
//!
//! The batch stacks every pair's chosen sequence (prompt + chosen) and then every rejected one,
//! each cut to `max_length` (keeping its start or its end), right-padded to the longest, with a
//! mask on completion tokens. Metrics follow TRL 1.x: `rewards/*` from β(π − ρ), `logps/*` the
//! mean sequence log-probs, `logits/*` the mean over completion positions of the mean logit
//! over the vocabulary; `nll_loss` when `rpo_alpha` adds the chosen completions' NLL.

use candle_core::{D, DType, Device, Result, Tensor};
use serde::{Deserialize, Serialize};

use super::dpo_loss::{DpoLossConfig, LossType, PairLogps, dpo_loss, sequence_logps};
use super::pair_tokens::PairTokens;
use super::qwen2::Qwen2;

/// DPOConfig's `truncation_mode`: which end of a too-long sequence survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TruncationMode {
    #[default]
    KeepStart,
    KeepEnd,
}

/// DPOConfig's `max_length` with its `truncation_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncation {
    pub max_length: usize,
    pub mode: TruncationMode,
}

impl Truncation {
    fn apply<T>(self, sequence: &[T]) -> &[T] {
        let excess = sequence.len().saturating_sub(self.max_length);
        match self.mode {
            TruncationMode::KeepStart => &sequence[..sequence.len() - excess],
            TruncationMode::KeepEnd => &sequence[excess..],
        }
    }
}

pub struct DpoBatch {
    /// `(2 × pairs, tokens)`: chosen sequences, then rejected ones.
    pub input_ids: Tensor,
    /// 1.0 on completion tokens, `(2 × pairs, tokens)`.
    pub completion_mask: Tensor,
    pub pairs: usize,
}

impl DpoBatch {
    /// Stacks, truncates and right-pads `pairs` (padding uses `pad_id`, which the mask hides).
    pub fn collate(
        pairs: &[PairTokens],
        pad_id: u32,
        truncation: Option<Truncation>,
        device: &Device,
    ) -> Result<Self> {
        let sequences: Vec<(Vec<u32>, Vec<f32>)> = pairs
            .iter()
            .map(|p| &p.chosen_ids)
            .chain(pairs.iter().map(|p| &p.rejected_ids))
            .zip(pairs.iter().chain(pairs.iter()))
            .map(|(completion, pair)| {
                let ids: Vec<u32> = pair.prompt_ids.iter().chain(completion).copied().collect();
                let mask: Vec<f32> = std::iter::repeat_n(0f32, pair.prompt_ids.len())
                    .chain(std::iter::repeat_n(1f32, completion.len()))
                    .collect();
                match truncation {
                    Some(t) => (t.apply(&ids).to_vec(), t.apply(&mask).to_vec()),
                    None => (ids, mask),
                }
            })
            .collect();
        let width = sequences
            .iter()
            .map(|(ids, _)| ids.len())
            .max()
            .unwrap_or(0);
        let (mut ids, mut mask) = (Vec::new(), Vec::new());
        for (sequence_ids, sequence_mask) in &sequences {
            let padding = width - sequence_ids.len();
            ids.extend_from_slice(sequence_ids);
            ids.extend(std::iter::repeat_n(pad_id, padding));
            mask.extend_from_slice(sequence_mask);
            mask.extend(std::iter::repeat_n(0f32, padding));
        }
        let rows = sequences.len();
        Ok(Self {
            input_ids: Tensor::from_vec(ids, (rows, width), device)?,
            completion_mask: Tensor::from_vec(mask, (rows, width), device)?,
            pairs: pairs.len(),
        })
    }

    /// Splits a `(2 × pairs,)` tensor into its chosen and rejected halves.
    pub fn split(&self, both: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((
            both.narrow(0, 0, self.pairs)?,
            both.narrow(0, self.pairs, self.pairs)?,
        ))
    }

    /// Completion tokens per sequence, `(2 × pairs,)`, at least 1.
    pub fn completion_lengths(&self) -> Result<Tensor> {
        self.completion_mask.sum(1)?.maximum(1.0)
    }

    /// The sequence log-probs of `model` on this batch, without a graph: the reference model's
    /// (`adapters_off` for a LoRA policy's base) or an evaluation's.
    pub fn logps(&self, model: &Qwen2, adapters_off: bool) -> Result<Tensor> {
        let logits = if adapters_off {
            model.forward_reference(&self.input_ids)?
        } else {
            model.forward(&self.input_ids)?
        };
        Ok(sequence_logps(&logits, &self.input_ids, &self.completion_mask)?.detach())
    }
}

/// A step's metrics with TRL's names.
#[derive(Debug, Clone, Serialize)]
pub struct DpoMetrics {
    pub loss: f64,
    #[serde(rename = "rewards/chosen")]
    pub rewards_chosen: f64,
    #[serde(rename = "rewards/rejected")]
    pub rewards_rejected: f64,
    #[serde(rename = "rewards/accuracies")]
    pub rewards_accuracies: f64,
    #[serde(rename = "rewards/margins")]
    pub rewards_margins: f64,
    #[serde(rename = "logps/chosen")]
    pub logps_chosen: f64,
    #[serde(rename = "logps/rejected")]
    pub logps_rejected: f64,
    #[serde(rename = "logits/chosen")]
    pub logits_chosen: f64,
    #[serde(rename = "logits/rejected")]
    pub logits_rejected: f64,
    /// The chosen completions' mean token NLL, when `rpo_alpha` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nll_loss: Option<f64>,
}

/// The DPO loss of `policy` on `batch` (differentiable) and its metrics; `reference_logps`
/// are the reference model's sequence log-probs for the batch, `(2 × pairs,)`.
pub fn dpo_step(
    policy: &Qwen2,
    batch: &DpoBatch,
    reference_logps: &Tensor,
    config: &DpoLossConfig,
) -> Result<(Tensor, DpoMetrics)> {
    let logits = policy.forward(&batch.input_ids)?;
    let logps = sequence_logps(&logits, &batch.input_ids, &batch.completion_mask)?;
    let (chosen, rejected) = batch.split(&logps)?;
    let (reference_chosen, reference_rejected) = batch.split(reference_logps)?;
    let summed = PairLogps {
        chosen: &chosen,
        rejected: &rejected,
        reference_chosen: &reference_chosen,
        reference_rejected: &reference_rejected,
    };
    // Rewards always come from summed log-probs; IPO's loss from per-token averages.
    let out = dpo_loss(config, &summed)?;
    let mut loss = if config.loss_type == LossType::Ipo {
        let lengths = batch.completion_lengths()?;
        let (chosen_lengths, rejected_lengths) = batch.split(&lengths)?;
        let averaged = [
            (&chosen / &chosen_lengths)?,
            (&rejected / &rejected_lengths)?,
            (&reference_chosen / &chosen_lengths)?,
            (&reference_rejected / &rejected_lengths)?,
        ];
        dpo_loss(
            config,
            &PairLogps {
                chosen: &averaged[0],
                rejected: &averaged[1],
                reference_chosen: &averaged[2],
                reference_rejected: &averaged[3],
            },
        )?
        .loss
    } else {
        out.loss.clone()
    };
    let mut nll_loss = None;
    if let Some(alpha) = config.rpo_alpha {
        let (chosen_mask, _) = batch.split(&batch.completion_mask)?;
        let nll = (chosen.sum_all()?.neg()? / chosen_mask.sum_all()?.maximum(1.0)?)?;
        nll_loss = Some(scalar(&nll)?);
        loss = (loss + (nll * alpha)?)?;
    }

    // Mean over completion positions of the mean logit over the vocabulary.
    let tokens = batch.input_ids.dim(1)?;
    let position_means = logits.narrow(1, 0, tokens - 1)?.detach().mean(D::Minus1)?;
    let shifted_mask = batch.completion_mask.narrow(1, 1, tokens - 1)?;
    let (mean_chosen, mean_rejected) = batch.split(&position_means)?;
    let (mask_chosen, mask_rejected) = batch.split(&shifted_mask)?;
    let masked_mean = |values: &Tensor, mask: &Tensor| -> Result<f64> {
        let total = (values.to_dtype(mask.dtype())? * mask)?.sum_all()?;
        let count = mask.sum_all()?;
        scalar(&(total / count)?)
    };
    let margins = (&out.chosen_rewards - &out.rejected_rewards)?;
    let metrics = DpoMetrics {
        loss: scalar(&loss)?,
        rewards_chosen: scalar(&out.chosen_rewards.mean_all()?)?,
        rewards_rejected: scalar(&out.rejected_rewards.mean_all()?)?,
        rewards_accuracies: scalar(&margins.gt(0.0)?.to_dtype(margins.dtype())?.mean_all()?)?,
        rewards_margins: scalar(&margins.mean_all()?)?,
        logps_chosen: scalar(&chosen.detach().mean_all()?)?,
        logps_rejected: scalar(&rejected.detach().mean_all()?)?,
        logits_chosen: masked_mean(&mean_chosen, &mask_chosen)?,
        logits_rejected: masked_mean(&mean_rejected, &mask_rejected)?,
        nll_loss,
    };
    Ok((loss, metrics))
}

fn scalar(t: &Tensor) -> Result<f64> {
    t.to_dtype(DType::F64)?.to_scalar::<f64>()
}
