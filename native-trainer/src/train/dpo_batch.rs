//! One DPO batch as TRL's collator builds it (KTO's batches reuse it: its rows, then their
//! mismatched KL completions, in place of chosen and rejected), and the step's loss and metrics under TRL's
//! log_history names.
//!
//! The batch stacks every pair's chosen sequence (prompt + chosen) and then every rejected one,
//! each cut to `max_length` (keeping its start or its end), right-padded to the longest, with a
//! mask on completion tokens. The model sees each distinct prompt once, with both answers
//! continuing it (`token_layout.rs`), and only positions that predict a completion token go
//! through the vocabulary projection (as TRL's fused LM head avoids full logits). Metrics follow TRL 1.x: `rewards/*` from β(π − ρ), `logps/*` the
//! mean sequence log-probs, `logits/*` the mean over completion positions of the mean logit
//! over the vocabulary; `nll_loss` when `rpo_alpha` adds the chosen completions' NLL. With
//! WPO's `use_weighting`, each pair's losses are weighted by the policy's length-normalised
//! probabilities of both its completions (aligned by `log Σ p²`, detached).

use candle_core::{DType, Device, Result, Tensor};
use serde::{Deserialize, Serialize};

use super::dpo_loss::{DpoLossConfig, LossType, PairLogps, pair_losses, rewards, weighted_sum};
use super::memory_profile;
use super::pair_tokens::PairTokens;
use super::qwen2::{LayerTape, Qwen2};
use super::token_layout::{Continuation, TokenLayout};
use super::vocabulary_logps::vocabulary_logps;

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
    /// The parts of `prompt` and `completion` that survive cutting `prompt + completion` to
    /// `max_length`.
    fn split<'a>(self, prompt: &'a [u32], completion: &'a [u32]) -> (&'a [u32], &'a [u32]) {
        let excess = (prompt.len() + completion.len()).saturating_sub(self.max_length);
        match self.mode {
            TruncationMode::KeepStart => {
                let prompt_kept = prompt.len().min(self.max_length);
                (
                    &prompt[..prompt_kept],
                    &completion[..completion.len() + prompt.len() - prompt_kept - excess],
                )
            }
            TruncationMode::KeepEnd => {
                let prompt_cut = excess.min(prompt.len());
                (&prompt[prompt_cut..], &completion[excess - prompt_cut..])
            }
        }
    }
}

pub struct DpoBatch {
    /// `(2 × pairs, tokens)`: chosen sequences, then rejected ones.
    pub input_ids: Tensor,
    /// 1.0 on completion tokens, `(2 × pairs, tokens)`.
    pub completion_mask: Tensor,
    pub pairs: usize,
    /// The same sequences for the model: each distinct (truncated) prompt once, the
    /// completions continuing it.
    layout: TokenLayout,
    /// Token slots of `layout` whose next token is a completion token: the only positions
    /// DPO scores, `(scored,)`.
    scored_positions: Tensor,
    /// The token each scored position predicts, `(scored,)`.
    scored_targets: Tensor,
    /// `(2 × pairs, scored)`: 1 where a scored position belongs to a row.
    position_rows: Tensor,
    /// `position_rows` with LD-DPO's weights (`ld_alpha` on the positions past the shorter
    /// completion of the pair), when set: what the sequence log-probs sum with.
    length_weights: Option<Tensor>,
    /// WPO (`use_weighting`): the policy's scores carry `probability_weights`.
    probability_weighting: bool,
}

/// A model's scores of a batch's completions.
pub struct CompletionScores {
    /// Sum of the completion tokens' log-probs per sequence, `(2 × pairs,)` (weighted by
    /// LD-DPO's `ld_alpha` past the shorter completion, when set).
    pub logps: Tensor,
    /// The plain sum (what `sft` and `rpo_alpha` average), `(2 × pairs,)`.
    pub token_logps: Tensor,
    /// Mean logit over the vocabulary at each scored position, `(scored,)`, detached.
    pub position_mean_logits: Tensor,
    /// WPO's weight of each sequence, `exp(mean over its tokens of log p(t) − log Σ_v p(v)²)`,
    /// `(2 × pairs,)`, detached; when the batch asks for them.
    pub probability_weights: Option<Tensor>,
}

impl DpoBatch {
    /// Stacks, truncates and right-pads `pairs` (padding uses `pad_id`, which the mask hides).
    pub fn collate(
        pairs: &[PairTokens],
        pad_id: u32,
        truncation: Option<Truncation>,
        device: &Device,
    ) -> Result<Self> {
        let chosen = pairs
            .iter()
            .map(|p| (p.prompt_ids.as_slice(), p.chosen_ids.as_slice()));
        let rejected = pairs
            .iter()
            .map(|p| (p.prompt_ids.as_slice(), p.rejected_ids.as_slice()));
        Self::stack(
            &chosen.collect::<Vec<_>>(),
            &rejected.collect::<Vec<_>>(),
            pad_id,
            truncation,
            device,
        )
    }

    /// Stacks `first` then `second` as (prompt, completion) sequences: a DPO batch's chosen
    /// and rejected completions, or KTO's rows and their KL completions (`second` may be
    /// shorter, or empty). `split` returns the two parts.
    pub fn stack(
        first: &[(&[u32], &[u32])],
        second: &[(&[u32], &[u32])],
        pad_id: u32,
        truncation: Option<Truncation>,
        device: &Device,
    ) -> Result<Self> {
        // Every sequence as (prompt part, completion part) after truncation.
        let sequences: Vec<(&[u32], &[u32])> = first
            .iter()
            .chain(second)
            .map(|&(prompt, completion)| match truncation {
                Some(t) => t.split(prompt, completion),
                None => (prompt, completion),
            })
            .collect();
        let rows = sequences.len();

        // The full sequences, right-padded, with the completion mask.
        let width = sequences
            .iter()
            .map(|(p, c)| p.len() + c.len())
            .max()
            .unwrap_or(0);
        let (mut ids, mut mask) = (Vec::new(), Vec::new());
        for (prompt, completion) in &sequences {
            ids.extend(prompt.iter().chain(completion.iter()).copied());
            ids.extend(std::iter::repeat_n(
                pad_id,
                width - prompt.len() - completion.len(),
            ));
            mask.extend(std::iter::repeat_n(0f32, prompt.len()));
            mask.extend(std::iter::repeat_n(1f32, completion.len()));
            mask.extend(std::iter::repeat_n(
                0f32,
                width - prompt.len() - completion.len(),
            ));
        }

        // The shared layout: distinct prompts as primary rows, completions continuing them.
        let mut prompts: Vec<&[u32]> = Vec::new();
        let parents: Vec<usize> = sequences
            .iter()
            .map(
                |(prompt, _)| match prompts.iter().position(|p| p == prompt) {
                    Some(index) => index,
                    None => {
                        prompts.push(prompt);
                        prompts.len() - 1
                    }
                },
            )
            .collect();
        let prompt_width = prompts.iter().map(|p| p.len()).max().unwrap_or(0).max(1);
        let completion_width = sequences
            .iter()
            .map(|(_, c)| c.len())
            .max()
            .unwrap_or(0)
            .max(1);
        let padded = |tokens: &[u32], width: usize| {
            let mut row = tokens.to_vec();
            row.resize(width, pad_id);
            row
        };
        let primary_ids: Vec<u32> = prompts
            .iter()
            .flat_map(|p| padded(p, prompt_width))
            .collect();
        let continuation_ids: Vec<u32> = sequences
            .iter()
            .flat_map(|(_, c)| padded(c, completion_width))
            .collect();
        let parent_lens: Vec<usize> = parents.iter().map(|&p| prompts[p].len()).collect();

        // Scored slots: the prompt's last slot predicts the first completion token, each
        // completion slot the next.
        let continuation_start = prompts.len() * prompt_width;
        let (mut positions, mut targets, mut owners) = (Vec::new(), Vec::new(), Vec::new());
        for (row, ((_, completion), &parent)) in sequences.iter().zip(&parents).enumerate() {
            let seen = parent_lens[row];
            for (j, &token) in completion.iter().enumerate() {
                let slot = if j == 0 {
                    if seen == 0 {
                        continue;
                    }
                    parent * prompt_width + seen - 1
                } else {
                    continuation_start + row * completion_width + j - 1
                };
                positions.push(slot as u32);
                targets.push(token);
                owners.push(row);
            }
        }
        let scored = positions.len();
        let mut position_rows = vec![0f32; rows * scored];
        for (i, row) in owners.into_iter().enumerate() {
            position_rows[row * scored + i] = 1.0;
        }
        let layout = TokenLayout {
            primary_ids: Tensor::from_vec(primary_ids, (prompts.len(), prompt_width), device)?,
            continuation: Some(Continuation {
                ids: Tensor::from_vec(continuation_ids, (rows, completion_width), device)?,
                parents,
                parent_lens,
            }),
        };
        Ok(Self {
            input_ids: Tensor::from_vec(ids, (rows, width), device)?,
            completion_mask: Tensor::from_vec(mask, (rows, width), device)?,
            pairs: first.len(),
            layout,
            scored_positions: Tensor::from_vec(positions, scored, device)?,
            scored_targets: Tensor::from_vec(targets, scored, device)?,
            position_rows: Tensor::from_vec(position_rows, (rows, scored), device)?,
            length_weights: None,
            probability_weighting: false,
        })
    }

    /// WPO (`use_weighting`, TRL 1.x): the policy's scores also carry each sequence's
    /// probability weight, which multiplies its pair's losses.
    pub fn weigh_by_probability(mut self) -> Self {
        self.probability_weighting = true;
        self
    }

    /// LD-DPO (`ld_alpha`, TRL 1.x): each sequence's log-probs sum the positions both
    /// completions of its pair have (the shorter one's length) at weight 1 and the longer
    /// one's tail at `alpha`.
    pub fn desensitize_lengths(mut self, alpha: f64) -> Result<Self> {
        let (rows, scored) = self.position_rows.dims2()?;
        let owners: Vec<Vec<f32>> = self.position_rows.to_vec2()?;
        let lengths: Vec<usize> = owners
            .iter()
            .map(|row| row.iter().filter(|&&v| v > 0.0).count())
            .collect();
        let mut weights = vec![0f32; rows * scored];
        for (row, owned) in owners.iter().enumerate() {
            let pair = row % self.pairs;
            let shared = lengths[pair].min(lengths[pair + self.pairs]);
            let mut position = 0;
            for (column, &v) in owned.iter().enumerate() {
                if v > 0.0 {
                    position += 1;
                    weights[row * scored + column] = if position <= shared {
                        1.0
                    } else {
                        alpha as f32
                    };
                }
            }
        }
        self.length_weights = Some(Tensor::from_vec(
            weights,
            (rows, scored),
            self.position_rows.device(),
        )?);
        Ok(self)
    }

    /// `model`'s log-probs of the completions (differentiable when the model has
    /// variables). Only the scored positions go through the vocabulary projection and the
    /// log-softmax, so prompts and padding cost only the transformer body.
    pub fn score(&self, model: &Qwen2, with_adapters: bool) -> Result<CompletionScores> {
        self.score_with(model, with_adapters, self.probability_weighting)
    }

    fn score_with(
        &self,
        model: &Qwen2,
        with_adapters: bool,
        probability_weights: bool,
    ) -> Result<CompletionScores> {
        if self.scored_positions.elem_count() == 0 {
            return self.no_scores();
        }
        let hidden = model.layout_hidden_states(&self.layout, with_adapters)?;
        self.score_hidden(model, &hidden, probability_weights)
    }

    /// As `score` with the adapters, under gradient checkpointing: also the tape whose
    /// `backward` carries the loss's gradient down through the layers.
    pub fn score_checkpointed<'a>(
        &'a self,
        model: &'a Qwen2,
    ) -> Result<(CompletionScores, Option<LayerTape<'a>>)> {
        if self.scored_positions.elem_count() == 0 {
            return Ok((self.no_scores()?, None));
        }
        let (hidden, tape) = model.checkpointed_hidden_states(&self.layout)?;
        Ok((
            self.score_hidden(model, &hidden, self.probability_weighting)?,
            Some(tape),
        ))
    }

    fn no_scores(&self) -> Result<CompletionScores> {
        let device = self.input_ids.device();
        Ok(CompletionScores {
            logps: Tensor::zeros(self.rows(), DType::F32, device)?,
            token_logps: Tensor::zeros(self.rows(), DType::F32, device)?,
            position_mean_logits: Tensor::zeros(0, DType::F32, device)?,
            probability_weights: self
                .probability_weighting
                .then(|| Tensor::ones(self.rows(), DType::F32, device))
                .transpose()?,
        })
    }

    /// Log-probs from the final hidden states of every slot: the head and the log-softmax
    /// over the vocabulary (in f32) on the scored positions only, a chunk of positions at a
    /// time with the fused vocabulary op (`vocabulary_logps.rs`).
    fn score_hidden(
        &self,
        model: &Qwen2,
        hidden: &Tensor,
        probability_weights: bool,
    ) -> Result<CompletionScores> {
        let differentiable = hidden.track_op();
        if differentiable {
            memory_profile::mark("decoder layers");
        }
        let selected = hidden.index_select(&self.scored_positions, 0)?;
        let fused = model.fused_ops();
        let (picked, position_mean_logits, log_sum_squared_probs) = if fused.vocabulary {
            let scores = vocabulary_logps(
                &selected,
                model.output_head(),
                &self.scored_targets,
                fused.chunk_bytes,
                probability_weights,
            )?;
            (
                scores.picked,
                scores.mean_logits,
                scores.log_sum_squared_probs,
            )
        } else {
            let logits = model.logits(&selected)?.to_dtype(DType::F32)?;
            let log_probs = candle_nn::ops::log_softmax(&logits, 1)?;
            let picked = log_probs.gather(&self.scored_targets.unsqueeze(1)?, 1)?;
            let squares = probability_weights
                .then(|| (log_probs.detach() * 2.0)?.exp()?.sum(1)?.log())
                .transpose()?;
            (picked, logits.detach().mean(1)?, squares)
        };
        let token_logps = self.position_rows.matmul(&picked)?.squeeze(1)?;
        let logps = match &self.length_weights {
            Some(weights) => weights.matmul(&picked)?.squeeze(1)?,
            None => token_logps.clone(),
        };
        if differentiable {
            memory_profile::mark("vocabulary: head, log-softmax, targets");
        }
        // WPO: exp of each sequence's mean of `log p(t) − log Σ p²` over its tokens.
        let probability_weights = match log_sum_squared_probs {
            Some(squares) => {
                let aligned = (picked.detach().squeeze(1)? - squares)?.unsqueeze(1)?;
                let mean = (self.position_rows.matmul(&aligned)?.squeeze(1)?
                    / self.completion_lengths()?)?;
                Some(mean.exp()?)
            }
            None => None,
        };
        Ok(CompletionScores {
            logps,
            token_logps,
            position_mean_logits,
            probability_weights,
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

    /// Splits a `(rows,)` tensor (or `(rows, …)`) into its chosen and rejected parts (the
    /// `first` and `second` of `stack`).
    pub fn split(&self, both: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((
            both.narrow(0, 0, self.pairs)?,
            both.narrow(0, self.pairs, self.rows() - self.pairs)?,
        ))
    }

    /// Sequences in the batch: `2 × pairs` for DPO.
    pub fn rows(&self) -> usize {
        self.completion_mask.dim(0).unwrap_or(0)
    }

    /// Mean of `per_position` `(scored,)` over the positions of the rows `rows`; 0 when they
    /// have none.
    pub fn rows_position_mean(&self, per_position: &Tensor, rows: &[usize]) -> Result<f64> {
        let mut total = 0.0;
        let mut count = 0.0;
        let values: Vec<f32> = per_position.to_vec1()?;
        let owners: Vec<Vec<f32>> = self.position_rows.to_vec2()?;
        for &row in rows {
            for (value, owned) in values.iter().zip(&owners[row]) {
                if *owned > 0.0 {
                    total += f64::from(*value);
                    count += 1.0;
                }
            }
        }
        Ok(if count > 0.0 { total / count } else { 0.0 })
    }

    /// Completion tokens per sequence, `(2 × pairs,)`, at least 1.
    pub fn completion_lengths(&self) -> Result<Tensor> {
        self.completion_mask.sum(1)?.maximum(1.0)
    }

    /// The sequence log-probs of `model` on this batch, without a graph: the reference model's
    /// (`adapters_off` for a LoRA policy's base) or an evaluation's.
    pub fn logps(&self, model: &Qwen2, adapters_off: bool) -> Result<Tensor> {
        Ok(self.score_with(model, !adapters_off, false)?.logps.detach())
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
    dpo_objective(batch, &batch.score(policy, true)?, reference_logps, config)
}

/// As `dpo_step` under gradient checkpointing: also the tape to run after the loss's backward
/// pass (`LayerTape::backward`), which completes the gradients through the layers.
pub fn dpo_step_checkpointed<'a>(
    policy: &'a Qwen2,
    batch: &'a DpoBatch,
    reference_logps: &Tensor,
    config: &DpoLossConfig,
) -> Result<(Tensor, DpoMetrics, Option<LayerTape<'a>>)> {
    let (scores, tape) = batch.score_checkpointed(policy)?;
    let (loss, metrics) = dpo_objective(batch, &scores, reference_logps, config)?;
    Ok((loss, metrics, tape))
}

/// The DPO loss and metrics from the policy's scores on `batch`.
fn dpo_objective(
    batch: &DpoBatch,
    scores: &CompletionScores,
    reference_logps: &Tensor,
    config: &DpoLossConfig,
) -> Result<(Tensor, DpoMetrics)> {
    let (chosen, rejected) = batch.split(&scores.logps)?;
    let (reference_chosen, reference_rejected) = batch.split(reference_logps)?;
    let summed = PairLogps {
        chosen: &chosen,
        rejected: &rejected,
        reference_chosen: &reference_chosen,
        reference_rejected: &reference_rejected,
    };
    // Rewards and the losses read summed log-probs (IPO and sigmoid_norm divide their scores by
    // the completions' lengths); sft the chosen completions' mean token NLL.
    let chosen_rewards = rewards(config, &chosen, &reference_chosen)?;
    let rejected_rewards = rewards(config, &rejected, &reference_rejected)?;
    let lengths = batch.completion_lengths()?;
    let (chosen_lengths, rejected_lengths) = batch.split(&lengths)?;
    let (chosen_mask, _) = batch.split(&batch.completion_mask)?;
    let (chosen_tokens, _) = batch.split(&scores.token_logps)?;
    let chosen_nll = (chosen_tokens.sum_all()?.neg()? / chosen_mask.sum_all()?.maximum(1.0)?)?;
    // WPO: each pair's losses times the weights of both its sequences.
    let pair_weights = match &scores.probability_weights {
        Some(weights) => {
            let (chosen_weights, rejected_weights) = batch.split(weights)?;
            Some((chosen_weights * rejected_weights)?)
        }
        None => None,
    };
    let mut loss = weighted_sum(config, |kind| {
        let losses = match kind {
            LossType::Sft => chosen_nll.broadcast_as(batch.pairs)?,
            kind => pair_losses(
                kind,
                config,
                &summed,
                Some((&chosen_lengths, &rejected_lengths)),
            )?,
        };
        match &pair_weights {
            Some(weights) => (losses * weights)?.mean_all(),
            None => losses.mean_all(),
        }
    })?;
    let mut nll_loss = None;
    if let Some(alpha) = config.rpo_alpha {
        nll_loss = Some(scalar(&chosen_nll)?);
        loss = (loss + (chosen_nll * alpha)?)?;
    }

    // Mean over completion positions of the mean logit over the vocabulary.
    let (logits_chosen, logits_rejected) = batch.side_means(&scores.position_mean_logits)?;
    let margins = (&chosen_rewards - &rejected_rewards)?;
    let metrics = DpoMetrics {
        loss: scalar(&loss)?,
        rewards_chosen: scalar(&chosen_rewards.mean_all()?)?,
        rewards_rejected: scalar(&rejected_rewards.mean_all()?)?,
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
