//! One DPO batch as TRL's collator builds it, and the step's loss and metrics under TRL's
//! log_history names.
//!
//! The batch stacks every pair's chosen sequence (prompt + chosen) and then every rejected one,
//! each cut to `max_length` (keeping its start or its end), right-padded to the longest, with a
//! mask on completion tokens. Only positions that predict a completion token go through the
//! vocabulary projection (as TRL's fused LM head avoids full logits). Metrics follow TRL 1.x: `rewards/*` from β(π − ρ), `logps/*` the
//! mean sequence log-probs, `logits/*` the mean over completion positions of the mean logit
//! over the vocabulary; `nll_loss` when `rpo_alpha` adds the chosen completions' NLL.

use candle_core::{DType, Device, Result, Tensor};
use serde::{Deserialize, Serialize};

use super::dpo_loss::{DpoLossConfig, LossType, PairLogps, dpo_loss};
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
    /// Flat indices (`row × tokens + t`) of the positions whose next token is a completion
    /// token: the only positions DPO scores, `(scored,)`.
    scored_positions: Tensor,
    /// The token each scored position predicts, `(scored,)`.
    scored_targets: Tensor,
    /// `(2 × pairs, scored)`: 1 where a scored position belongs to a row.
    position_rows: Tensor,
}

/// A model's scores of a batch's completions.
pub struct CompletionScores {
    /// Sum of the completion tokens' log-probs per sequence, `(2 × pairs,)`.
    pub logps: Tensor,
    /// Mean logit over the vocabulary at each scored position, `(scored,)`, detached.
    pub position_mean_logits: Tensor,
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
        let (mut positions, mut targets, mut owners) = (Vec::new(), Vec::new(), Vec::new());
        for (row, (sequence_ids, sequence_mask)) in sequences.iter().enumerate() {
            for t in 1..sequence_ids.len() {
                if sequence_mask[t] == 1.0 {
                    positions.push((row * width + t - 1) as u32);
                    targets.push(sequence_ids[t]);
                    owners.push(row);
                }
            }
            let padding = width - sequence_ids.len();
            ids.extend_from_slice(sequence_ids);
            ids.extend(std::iter::repeat_n(pad_id, padding));
            mask.extend_from_slice(sequence_mask);
            mask.extend(std::iter::repeat_n(0f32, padding));
        }
        let rows = sequences.len();
        let scored = positions.len();
        let mut position_rows = vec![0f32; rows * scored];
        for (i, row) in owners.into_iter().enumerate() {
            position_rows[row * scored + i] = 1.0;
        }
        Ok(Self {
            input_ids: Tensor::from_vec(ids, (rows, width), device)?,
            completion_mask: Tensor::from_vec(mask, (rows, width), device)?,
            pairs: pairs.len(),
            scored_positions: Tensor::from_vec(positions, scored, device)?,
            scored_targets: Tensor::from_vec(targets, scored, device)?,
            position_rows: Tensor::from_vec(position_rows, (rows, scored), device)?,
        })
    }

    /// `model`'s log-probs of the completions (differentiable when the model has
    /// variables). Only the scored positions go through the vocabulary projection and the
    /// log-softmax, so prompts and padding cost only the transformer body.
    pub fn score(&self, model: &Qwen2, with_adapters: bool) -> Result<CompletionScores> {
        let device = self.input_ids.device();
        let rows = 2 * self.pairs;
        if self.scored_positions.elem_count() == 0 {
            return Ok(CompletionScores {
                logps: Tensor::zeros(rows, DType::F32, device)?,
                position_mean_logits: Tensor::zeros(0, DType::F32, device)?,
            });
        }
        let hidden = model.hidden_states(&self.input_ids, with_adapters)?;
        let (_, tokens, width) = hidden.dims3()?;
        let selected = hidden
            .reshape((rows * tokens, width))?
            .index_select(&self.scored_positions, 0)?;
        let logits = model.logits(&selected)?;
        let log_probs = candle_nn::ops::log_softmax(&logits, 1)?;
        let picked = log_probs.gather(&self.scored_targets.unsqueeze(1)?, 1)?;
        let logps = self.position_rows.matmul(&picked)?.squeeze(1)?;
        Ok(CompletionScores {
            logps,
            position_mean_logits: logits.detach().mean(1)?,
        })
    }

    /// Mean of `per_position` `(scored,)` over the positions of the chosen and of the
    /// rejected sequences.
    fn side_means(&self, per_position: &Tensor) -> Result<(f64, f64)> {
        let (chosen_rows, rejected_rows) = self.split(&self.position_rows)?;
        let mean = |owners: &Tensor| -> Result<f64> {
            let in_side = owners.sum(0)?;
            let count = scalar(&in_side.sum_all()?)?;
            let total = scalar(&(per_position * &in_side)?.sum_all()?)?;
            Ok(if count > 0.0 { total / count } else { 0.0 })
        };
        Ok((mean(&chosen_rows)?, mean(&rejected_rows)?))
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
        Ok(self.score(model, !adapters_off)?.logps.detach())
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
    let scores = batch.score(policy, true)?;
    let (chosen, rejected) = batch.split(&scores.logps)?;
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
    let (logits_chosen, logits_rejected) = batch.side_means(&scores.position_mean_logits)?;
    let margins = (&out.chosen_rewards - &out.rejected_rewards)?;
    let metrics = DpoMetrics {
        loss: scalar(&loss)?,
        rewards_chosen: scalar(&out.chosen_rewards.mean_all()?)?,
        rewards_rejected: scalar(&out.rejected_rewards.mean_all()?)?,
        rewards_accuracies: scalar(&margins.gt(0.0)?.to_dtype(margins.dtype())?.mean_all()?)?,
        rewards_margins: scalar(&margins.mean_all()?)?,
        logps_chosen: scalar(&chosen.detach().mean_all()?)?,
        logps_rejected: scalar(&rejected.detach().mean_all()?)?,
        logits_chosen,
        logits_rejected,
        nll_loss,
    };
    Ok((loss, metrics))
}

fn scalar(t: &Tensor) -> Result<f64> {
    t.to_dtype(DType::F64)?.to_scalar::<f64>()
}
