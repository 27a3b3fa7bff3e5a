//! TRL's DPO objective on sequence log-probabilities (`trl/trainer/dpo_trainer.py`,
//! `dpo_loss`), with its metric names.
//!
//! With policy log-probs π_c, π_r of the chosen and rejected completions and the reference
//! model's ρ_c, ρ_r (zero with `reference_free`), `h = (π_c − π_r) − (ρ_c − ρ_r)` and
//! - sigmoid: `−log σ(βh)(1 − ε) − log σ(−βh) ε`   (ε = `label_smoothing`)
//! - robust:  `(−log σ(βh)(1 − ε) + log σ(−βh) ε) / (1 − 2ε)`
//! - hinge:   `max(0, 1 − βh)`
//! - ipo:     `(h − 1/(2β))²`  (TRL feeds IPO length-averaged log-probs)
//!
//! The loss is the mean over pairs. Rewards are `β(π − ρ)`, detached from the graph.

use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

/// DPOConfig's `loss_type` values supported here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LossType {
    #[default]
    Sigmoid,
    Robust,
    Hinge,
    Ipo,
}

/// The DPOConfig keys the loss reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DpoLossConfig {
    pub loss_type: LossType,
    pub beta: f64,
    pub label_smoothing: f64,
    pub reference_free: bool,
    /// RPO: adds `rpo_alpha` × the chosen completions' mean token NLL to the loss.
    pub rpo_alpha: Option<f64>,
}

impl Default for DpoLossConfig {
    /// TRL's defaults: sigmoid loss, β = 0.1, no smoothing, with a reference model.
    fn default() -> Self {
        Self {
            loss_type: LossType::Sigmoid,
            beta: 0.1,
            label_smoothing: 0.0,
            reference_free: false,
            rpo_alpha: None,
        }
    }
}

/// Per-pair sequence log-probabilities, each of shape `(pairs,)`.
pub struct PairLogps<'a> {
    pub chosen: &'a Tensor,
    pub rejected: &'a Tensor,
    pub reference_chosen: &'a Tensor,
    pub reference_rejected: &'a Tensor,
}

pub struct DpoLossOutput {
    /// Mean loss over the pairs (differentiable).
    pub loss: Tensor,
    /// `β(π_c − ρ_c)` per pair, detached.
    pub chosen_rewards: Tensor,
    /// `β(π_r − ρ_r)` per pair, detached.
    pub rejected_rewards: Tensor,
}

/// `log σ(x) = −softplus(−x)`, with `softplus(y) = log(1 + eʸ)` taken as `y` beyond 20
/// (equal in f32). Smooth at 0 — a `min(x, 0) − log(1 + e^{−|x|})` form is exact in value
/// but autodiff gives it slope 1 instead of ½ at the kink, which is where DPO starts (policy
/// = reference).
pub fn log_sigmoid(x: &Tensor) -> Result<Tensor> {
    let y = x.neg()?;
    let smooth = (y.minimum(20.0)?.exp()? + 1.0)?.log()?;
    y.ge(20.0)?.where_cond(&y, &smooth)?.neg()
}

pub fn dpo_loss(config: &DpoLossConfig, logps: &PairLogps<'_>) -> Result<DpoLossOutput> {
    let beta = config.beta;
    let epsilon = config.label_smoothing;
    let policy_ratio = (logps.chosen - logps.rejected)?;
    let h = if config.reference_free {
        policy_ratio
    } else {
        (policy_ratio - (logps.reference_chosen - logps.reference_rejected)?)?
    };
    let scaled = (&h * beta)?;
    let losses = match config.loss_type {
        LossType::Sigmoid => {
            let agree = (log_sigmoid(&scaled)? * -(1.0 - epsilon))?;
            let disagree = (log_sigmoid(&scaled.neg()?)? * -epsilon)?;
            (agree + disagree)?
        }
        LossType::Robust => {
            let agree = (log_sigmoid(&scaled)? * -(1.0 - epsilon))?;
            let disagree = (log_sigmoid(&scaled.neg()?)? * epsilon)?;
            ((agree + disagree)? / (1.0 - 2.0 * epsilon))?
        }
        LossType::Hinge => (scaled.neg()? + 1.0)?.relu()?,
        LossType::Ipo => (h - 1.0 / (2.0 * beta))?.sqr()?,
    };
    let rewards = |policy: &Tensor, reference: &Tensor| -> Result<Tensor> {
        let difference = if config.reference_free {
            policy.clone()
        } else {
            (policy - reference)?
        };
        difference.detach() * beta
    };
    Ok(DpoLossOutput {
        loss: losses.mean_all()?,
        chosen_rewards: rewards(logps.chosen, logps.reference_chosen)?,
        rejected_rewards: rewards(logps.rejected, logps.reference_rejected)?,
    })
}

/// Sum over each sequence of the log-probability of its next tokens where `mask` is 1:
/// `logits` `(batch, tokens, vocab)` from positions `0..tokens`, `input_ids` `(batch,
/// tokens)`, `mask` `(batch, tokens)` marking completion tokens (as f32 0/1). Position i's
/// logits score token i + 1, as in TRL. Returns `(batch,)`.
pub fn sequence_logps(logits: &Tensor, input_ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let (_, tokens, _) = logits.dims3()?;
    let predictions = logits.narrow(1, 0, tokens - 1)?;
    let targets = input_ids.narrow(1, 1, tokens - 1)?.contiguous()?;
    let target_mask = mask.narrow(1, 1, tokens - 1)?.to_dtype(logits.dtype())?;
    let log_probs = candle_nn::ops::log_softmax(&predictions, 2)?;
    let picked = log_probs.gather(&targets.unsqueeze(2)?, 2)?.squeeze(2)?;
    (picked * target_mask)?.sum(1)
}
