//! TRL's DPO objectives on sequence log-probabilities (`trl/trainer/dpo_trainer.py`, the
//! loop over `loss_type` in `_compute_loss`, TRL 1.16), with its metric names.
//!
//! With policy log-probs π_c, π_r of the chosen and rejected completions and the reference
//! model's ρ_c, ρ_r (zero with `reference_free`), the log-ratios `c = π_c − ρ_c`,
//! `r = π_r − ρ_r` and `d = c − r`, σ the logistic function, per pair:
//! - sigmoid: `−log σ(βd)(1 − ε) − log σ(−βd) ε`   (ε = `label_smoothing`)
//! - robust: `(−log σ(βd)(1 − ε) + log σ(−βd) ε) / (1 − 2ε)`
//! - hinge: `max(0, 1 − βd)`
//! - ipo: `(d − 1/(2β))²` and sigmoid_norm: `−log σ(βd)`, both on per-token averages
//! - exo_pair: `σ(βd)(log σ(βd) − log(1 − ε)) + σ(−βd)(log σ(−βd) − log ε)`
//! - nca_pair: `−log σ(βc) − ½ log σ(−βc) − ½ log σ(−βr)`
//! - bco_pair: `−log σ(βc) − log σ(−βr)`
//! - sppo_hard: `(c − 1/(2β))² + (r + 1/(2β))²`
//! - apo_zero: `1 − σ(βc) + σ(βr)`; apo_down: `σ(βc) + 1 − σ(β(c − r))`
//! - discopop: with `x = βd`, `m = σ(x/τ)`: `−log σ(x)(1 − m) + e^{−x} m` (τ = `discopop_tau`)
//! - sft: the chosen completions' mean token NLL (over all their tokens in the batch)
//! - aot / aot_unpaired: sigmoid on `sort(π_c − π_r) − sort(ρ_c − ρ_r)` / `sort(c) − sort(r)`
//!   (sorted over the batch)
//!
//! `f_divergence_type` replaces `c` and `r` in the first group's `d` by the divergence's
//! scores (forward KL `1 − e^{−u}`, JS `log 2 + log σ(u)`, α `(e^{(α−1)u} − 1)/(α − 1)`).
//! A list of losses is their weighted sum, each the mean over pairs (`loss_weights`, 1 each
//! by default). Rewards are `β(π − ρ)` from summed log-probs, detached from the graph.

use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

/// DPOConfig's `loss_type` values supported here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LossType {
    #[default]
    Sigmoid,
    Robust,
    Hinge,
    Ipo,
    ExoPair,
    NcaPair,
    BcoPair,
    SppoHard,
    ApoZero,
    ApoDown,
    Discopop,
    Sft,
    SigmoidNorm,
    Aot,
    AotUnpaired,
}

impl LossType {
    pub const ALL: [LossType; 15] = [
        Self::Sigmoid,
        Self::Robust,
        Self::Hinge,
        Self::Ipo,
        Self::ExoPair,
        Self::NcaPair,
        Self::BcoPair,
        Self::SppoHard,
        Self::ApoZero,
        Self::ApoDown,
        Self::Discopop,
        Self::Sft,
        Self::SigmoidNorm,
        Self::Aot,
        Self::AotUnpaired,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Sigmoid => "sigmoid",
            Self::Robust => "robust",
            Self::Hinge => "hinge",
            Self::Ipo => "ipo",
            Self::ExoPair => "exo_pair",
            Self::NcaPair => "nca_pair",
            Self::BcoPair => "bco_pair",
            Self::SppoHard => "sppo_hard",
            Self::ApoZero => "apo_zero",
            Self::ApoDown => "apo_down",
            Self::Discopop => "discopop",
            Self::Sft => "sft",
            Self::SigmoidNorm => "sigmoid_norm",
            Self::Aot => "aot",
            Self::AotUnpaired => "aot_unpaired",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Whether the loss reads per-token average scores instead of sums (TRL's IPO).
    pub fn uses_token_averages(self) -> bool {
        matches!(self, Self::Ipo | Self::SigmoidNorm)
    }

    /// Whether an f-divergence other than reverse KL may replace its log-ratios (TRL's set).
    pub fn takes_f_divergence(self) -> bool {
        matches!(
            self,
            Self::Sigmoid
                | Self::SigmoidNorm
                | Self::Hinge
                | Self::Ipo
                | Self::ExoPair
                | Self::Robust
                | Self::Discopop
                | Self::Sft
        )
    }
}

/// `f_divergence_type`: how a log-ratio `u = log(π/ρ)` becomes the score the pairwise losses
/// compare (f′ of the divergence at `t = e^u`).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum FDivergence {
    /// `u` (standard DPO).
    #[default]
    ReverseKl,
    /// `1 − e^{−u}`.
    ForwardKl,
    /// `log 2 + log σ(u)`.
    JsDivergence,
    /// `(e^{(α−1)u} − 1) / (α − 1)` (exponent clamped at 80, as TRL in f32); `u` at α = 1.
    AlphaDivergence(f64),
}

impl FDivergence {
    pub const NAMES: [&str; 4] = [
        "reverse_kl",
        "forward_kl",
        "js_divergence",
        "alpha_divergence",
    ];

    /// From TRL's `f_divergence_type` and `f_alpha_divergence_coef`.
    pub fn from_name(name: &str, alpha: f64) -> Option<Self> {
        Some(match name {
            "reverse_kl" => Self::ReverseKl,
            "forward_kl" => Self::ForwardKl,
            "js_divergence" => Self::JsDivergence,
            "alpha_divergence" => Self::AlphaDivergence(alpha),
            _ => return None,
        })
    }

    fn score(self, log_ratio: &Tensor) -> Result<Tensor> {
        match self {
            Self::ReverseKl => Ok(log_ratio.clone()),
            Self::ForwardKl => log_ratio.neg()?.exp()?.neg()? + 1.0,
            Self::JsDivergence => log_sigmoid(log_ratio)? + std::f64::consts::LN_2,
            Self::AlphaDivergence(alpha) if (alpha - 1.0).abs() < 1e-6 => Ok(log_ratio.clone()),
            Self::AlphaDivergence(alpha) => {
                let t = (log_ratio * (alpha - 1.0))?.minimum(80.0)?;
                (t.exp()? - 1.0)? / (alpha - 1.0)
            }
        }
    }
}

/// A weighted list of losses, each type at most once (a list of every type fits).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossMix {
    entries: [(LossType, f64); LossType::ALL.len()],
    len: usize,
}

impl LossMix {
    pub fn one(loss: LossType) -> Self {
        Self::new(&[(loss, 1.0)]).expect("one loss")
    }

    /// `losses` with their weights; an error names a type listed twice or an empty list.
    pub fn new(losses: &[(LossType, f64)]) -> std::result::Result<Self, String> {
        if losses.is_empty() {
            return Err("loss_type: the list is empty".into());
        }
        let mut entries = [(LossType::Sigmoid, 0.0); LossType::ALL.len()];
        for (i, &(loss, weight)) in losses.iter().enumerate() {
            if losses[..i].iter().any(|(earlier, _)| *earlier == loss) {
                return Err(format!("loss_type: `{}` is listed twice", loss.name()));
            }
            entries[i] = (loss, weight);
        }
        Ok(Self {
            entries,
            len: losses.len(),
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = (LossType, f64)> + '_ {
        self.entries[..self.len].iter().copied()
    }

    pub fn contains(&self, loss: LossType) -> bool {
        self.iter().any(|(t, _)| t == loss)
    }
}

/// The DPOConfig keys the loss reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DpoLossConfig {
    pub losses: LossMix,
    pub beta: f64,
    pub label_smoothing: f64,
    pub reference_free: bool,
    /// RPO (TRL 0.2x): adds `rpo_alpha` × the chosen completions' mean token NLL to the loss.
    pub rpo_alpha: Option<f64>,
    /// DiscoPOP's temperature τ.
    pub discopop_tau: f64,
    pub f_divergence: FDivergence,
}

impl Default for DpoLossConfig {
    /// TRL's defaults: sigmoid loss, β = 0.1, no smoothing, with a reference model.
    fn default() -> Self {
        Self {
            losses: LossMix::one(LossType::Sigmoid),
            beta: 0.1,
            label_smoothing: 0.0,
            reference_free: false,
            rpo_alpha: None,
            discopop_tau: 0.05,
            f_divergence: FDivergence::ReverseKl,
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

/// The per-pair losses of `loss` (any type but `sft`, which needs token log-probs) on summed
/// `logps`; `lengths` (chosen, rejected completion tokens) divide the scores of the losses on
/// per-token averages (as 1 when `None`).
pub fn pair_losses(
    loss: LossType,
    config: &DpoLossConfig,
    logps: &PairLogps<'_>,
    lengths: Option<(&Tensor, &Tensor)>,
) -> Result<Tensor> {
    let beta = config.beta;
    let epsilon = config.label_smoothing;
    let c = log_ratio(config, logps.chosen, logps.reference_chosen)?;
    let r = log_ratio(config, logps.rejected, logps.reference_rejected)?;
    // The pairwise losses compare the f-divergence's scores (the log-ratios under reverse KL).
    let (mut chosen_score, mut rejected_score) = (
        config.f_divergence.score(&c)?,
        config.f_divergence.score(&r)?,
    );
    if let (true, Some((chosen_lengths, rejected_lengths))) = (loss.uses_token_averages(), lengths)
    {
        chosen_score = (chosen_score / chosen_lengths)?;
        rejected_score = (rejected_score / rejected_lengths)?;
    }
    let d = (&chosen_score - &rejected_score)?;
    let scaled = (&d * beta)?;
    let sigmoid = |x: &Tensor| log_sigmoid(x)?.exp();
    match loss {
        LossType::SigmoidNorm => log_sigmoid(&scaled)?.neg(),
        LossType::Sigmoid => smoothed_sigmoid_loss(&scaled, epsilon),
        LossType::Robust => {
            let agree = (log_sigmoid(&scaled)? * -(1.0 - epsilon))?;
            let disagree = (log_sigmoid(&scaled.neg()?)? * epsilon)?;
            (agree + disagree)? / (1.0 - 2.0 * epsilon)
        }
        LossType::Hinge => (scaled.neg()? + 1.0)?.relu(),
        LossType::Ipo => (d - 1.0 / (2.0 * beta))?.sqr(),
        LossType::ExoPair => {
            let (log_win, log_lose) = (log_sigmoid(&scaled)?, log_sigmoid(&scaled.neg()?)?);
            let win = (log_win.exp()? * (log_win - (-epsilon).ln_1p())?)?;
            let lose = (log_lose.exp()? * (log_lose - epsilon.ln())?)?;
            win + lose
        }
        LossType::NcaPair => {
            let (chosen, rejected) = ((&c * beta)?, (&r * beta)?);
            let first = log_sigmoid(&chosen)?.neg()?;
            let second = (log_sigmoid(&chosen.neg()?)? * -0.5)?;
            let third = (log_sigmoid(&rejected.neg()?)? * -0.5)?;
            (first + second)? + third
        }
        LossType::BcoPair => {
            let chosen = log_sigmoid(&(&c * beta)?)?.neg()?;
            let rejected = log_sigmoid(&(&r * -beta)?)?.neg()?;
            chosen + rejected
        }
        LossType::SppoHard => {
            let winner = (&c - 0.5 / beta)?.sqr()?;
            let loser = (&r + 0.5 / beta)?.sqr()?;
            winner + loser
        }
        LossType::ApoZero => {
            let chosen = (sigmoid(&(&c * beta)?)?.neg()? + 1.0)?;
            chosen + sigmoid(&(&r * beta)?)?
        }
        LossType::ApoDown => {
            let chosen = sigmoid(&(&c * beta)?)?;
            chosen + (sigmoid(&scaled)?.neg()? + 1.0)?
        }
        LossType::Discopop => {
            let modulation = sigmoid(&(&scaled / config.discopop_tau)?)?;
            let logistic = log_sigmoid(&scaled)?.neg()?;
            let exponential = scaled.neg()?.exp()?;
            let keep = (modulation.neg()? + 1.0)?;
            (logistic * keep)? + (exponential * modulation)?
        }
        LossType::Aot | LossType::AotUnpaired => {
            // Sorted over the batch: AOT aligns the quantiles of two distributions.
            let sorted = |t: &Tensor| -> Result<Tensor> {
                t.index_select(&t.detach().arg_sort_last_dim(true)?, 0)
            };
            let delta = if loss == LossType::Aot {
                let policy = (logps.chosen - logps.rejected)?;
                let reference = (logps.reference_chosen - logps.reference_rejected)?;
                (sorted(&policy)? - sorted(&reference)?)?
            } else {
                (sorted(&c)? - sorted(&r)?)?
            };
            smoothed_sigmoid_loss(&(delta * beta)?, epsilon)
        }
        LossType::Sft => candle_core::bail!("sft needs the completions' token log-probs"),
    }
}

/// `−log σ(x)(1 − ε) − log σ(−x) ε`: the sigmoid loss with label smoothing ε (sigmoid, aot).
fn smoothed_sigmoid_loss(x: &Tensor, epsilon: f64) -> Result<Tensor> {
    let agree = (log_sigmoid(x)? * -(1.0 - epsilon))?;
    let disagree = (log_sigmoid(&x.neg()?)? * -epsilon)?;
    agree + disagree
}

/// The weighted sum `Σ weight × term(loss)` over the mix: how every list of losses combines.
pub fn weighted_sum(
    config: &DpoLossConfig,
    mut term: impl FnMut(LossType) -> Result<Tensor>,
) -> Result<Tensor> {
    let mut total: Option<Tensor> = None;
    for (loss, weight) in config.losses.iter() {
        let weighted = (term(loss)? * weight)?;
        total = Some(match total {
            Some(sum) => (sum + weighted)?,
            None => weighted,
        });
    }
    Ok(total.expect("a mix has a loss"))
}

/// The mix's losses on `logps` taken as they are (no length averaging, no `sft`), each the
/// mean over pairs, and the rewards. Training goes through `dpo_batch`, which also has the
/// completions' lengths and token log-probs.
pub fn dpo_loss(config: &DpoLossConfig, logps: &PairLogps<'_>) -> Result<DpoLossOutput> {
    Ok(DpoLossOutput {
        loss: weighted_sum(config, |loss| {
            pair_losses(loss, config, logps, None)?.mean_all()
        })?,
        chosen_rewards: rewards(config, logps.chosen, logps.reference_chosen)?,
        rejected_rewards: rewards(config, logps.rejected, logps.reference_rejected)?,
    })
}

/// `π − ρ` per pair (`π` reference-free): what the losses and the rewards compare.
fn log_ratio(config: &DpoLossConfig, policy: &Tensor, reference: &Tensor) -> Result<Tensor> {
    if config.reference_free {
        Ok(policy.clone())
    } else {
        policy - reference
    }
}

/// `β(π − ρ)` per pair (`βπ` reference-free), detached.
pub fn rewards(config: &DpoLossConfig, policy: &Tensor, reference: &Tensor) -> Result<Tensor> {
    log_ratio(config, policy, reference)?.detach() * config.beta
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
