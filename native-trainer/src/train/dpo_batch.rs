//! One DPO batch as TRL's collator builds it, and the step's loss and metrics under TRL's
//! log_history names.
//!
//! The batch stacks every pair's chosen sequence (prompt + chosen) and then every rejected one,
//! right-padded to the longest, with a mask on completion tokens. Metrics follow TRL 1.x:
//! `rewards/*` from β(π − ρ), `logps/*` the mean sequence log-probs, `logits/*` the mean over
//! completion positions of the mean logit over the vocabulary.

use candle_core::{D, Device, Result, Tensor};
use serde::Serialize;

use super::dpo_loss::{DpoLossConfig, PairLogps, dpo_loss, sequence_logps};
use super::pair_tokens::PairTokens;
use super::qwen2::Qwen2;

pub struct DpoBatch {
    /// `(2 × pairs, tokens)`: chosen sequences, then rejected ones.
    pub input_ids: Tensor,
    /// 1.0 on completion tokens, `(2 × pairs, tokens)`.
    pub completion_mask: Tensor,
    pub pairs: usize,
}

impl DpoBatch {
    /// Stacks and right-pads `pairs` (padding uses `pad_id`, which the mask hides).
    pub fn collate(pairs: &[PairTokens], pad_id: u32, device: &Device) -> Result<Self> {
        let sequences: Vec<(&[u32], &[u32])> = pairs
            .iter()
            .map(|p| (p.prompt_ids.as_slice(), p.chosen_ids.as_slice()))
            .chain(
                pairs
                    .iter()
                    .map(|p| (p.prompt_ids.as_slice(), p.rejected_ids.as_slice())),
            )
            .collect();
        let width = sequences
            .iter()
            .map(|(p, c)| p.len() + c.len())
            .max()
            .unwrap_or(0);
        let (mut ids, mut mask) = (Vec::new(), Vec::new());
        for (prompt, completion) in &sequences {
            let padding = width - prompt.len() - completion.len();
            ids.extend(prompt.iter().chain(completion.iter()).copied());
            ids.extend(std::iter::repeat_n(pad_id, padding));
            mask.extend(std::iter::repeat_n(0f32, prompt.len()));
            mask.extend(std::iter::repeat_n(1f32, completion.len()));
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
    let out = dpo_loss(
        config,
        &PairLogps {
            chosen: &chosen,
            rejected: &rejected,
            reference_chosen: &reference_chosen,
            reference_rejected: &reference_rejected,
        },
    )?;

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
        loss: scalar(&out.loss)?,
        rewards_chosen: scalar(&out.chosen_rewards.mean_all()?)?,
        rewards_rejected: scalar(&out.rejected_rewards.mean_all()?)?,
        rewards_accuracies: scalar(&margins.gt(0.0)?.to_dtype(margins.dtype())?.mean_all()?)?,
        rewards_margins: scalar(&margins.mean_all()?)?,
        logps_chosen: scalar(&chosen.detach().mean_all()?)?,
        logps_rejected: scalar(&rejected.detach().mean_all()?)?,
        logits_chosen: masked_mean(&mean_chosen, &mask_chosen)?,
        logits_rejected: masked_mean(&mean_rejected, &mask_rejected)?,
    };
    Ok((out.loss, metrics))
}

fn scalar(t: &Tensor) -> Result<f64> {
    t.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()
}
