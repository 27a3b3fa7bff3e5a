//! KTO's objectives on sequence log-probabilities (`trl/trainer/kto_trainer.py`,
//! `_compute_loss`, TRL 1.16), for rows labelled desirable or undesirable.
//!
//! With the policy's log-prob π and the reference's ρ of a row's completion, `r = π − ρ`, σ the
//! logistic function and `z` the batch's KL estimate (below):
//! - kto: desirable `1 − σ(β(r − z))`, undesirable `1 − σ(β(z − r))` (the KTO paper's eq. 7);
//! - apo_zero_unpaired: desirable `1 − σ(βr)`, undesirable `σ(βr)` (no KL term).
//!
//! `z = max(0, mean over the batch of π(y′|x) − ρ(y′|x))`, detached, where y′ is another
//! row's completion (`kto_batch.rs` rotates them within the batch). The loss is the mean over
//! the batch's rows of `desirable_weight` × the desirable losses and `undesirable_weight` ×
//! the undesirable ones; rewards are `βr`, detached.

use candle_core::{DType, Result, Tensor};
use serde::{Deserialize, Serialize};

/// KTOConfig's `loss_type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KtoLossType {
    Kto,
    ApoZeroUnpaired,
}

impl KtoLossType {
    pub const ALL: [KtoLossType; 2] = [Self::Kto, Self::ApoZeroUnpaired];

    pub fn name(self) -> &'static str {
        match self {
            Self::Kto => "kto",
            Self::ApoZeroUnpaired => "apo_zero_unpaired",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Whether the loss needs the KL estimate (and so each row's mismatched completion).
    pub fn estimates_kl(self) -> bool {
        self == Self::Kto
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KtoLossConfig {
    pub loss: KtoLossType,
    pub beta: f64,
    pub desirable_weight: f64,
    pub undesirable_weight: f64,
}

/// A batch's loss, and each side's rewards (empty tensors when the batch has no such row).
pub struct KtoLossOutput {
    pub loss: Tensor,
    pub chosen_rewards: Tensor,
    pub rejected_rewards: Tensor,
}

/// The KL estimate from the policy's and the reference's log-probs of the mismatched
/// completions: `max(0, mean(π − ρ))`.
pub fn kl_estimate(policy: &Tensor, reference: &Tensor) -> Result<f64> {
    if policy.elem_count() == 0 {
        return Ok(0.0);
    }
    let mean = (policy.detach() - reference)?
        .to_dtype(DType::F64)?
        .mean_all()?
        .to_scalar::<f64>()?;
    Ok(mean.max(0.0))
}

/// The loss of rows with policy log-probs `logps` (differentiable) and reference log-probs
/// `reference` (both `(rows,)`), labelled by `desirable`, given the batch's KL estimate `kl`.
pub fn kto_loss(
    config: &KtoLossConfig,
    logps: &Tensor,
    reference: &Tensor,
    desirable: &[bool],
    kl: f64,
) -> Result<KtoLossOutput> {
    let device = logps.device();
    let indices = |wanted: bool| -> Result<Tensor> {
        let rows: Vec<u32> = (0..desirable.len() as u32)
            .filter(|&i| desirable[i as usize] == wanted)
            .collect();
        let count = rows.len();
        Tensor::from_vec(rows, count, device)
    };
    let log_ratios = (logps - reference)?;
    let beta = config.beta;
    let kl = if config.loss.estimates_kl() { kl } else { 0.0 };
    let side = |wanted: bool, weight: f64| -> Result<(Tensor, Tensor)> {
        let ratios = log_ratios.index_select(&indices(wanted)?, 0)?;
        let losses = match (config.loss, wanted) {
            (KtoLossType::Kto, true) => {
                (1.0 - candle_nn::ops::sigmoid(&((&ratios - kl)? * beta)?)?)?
            }
            (KtoLossType::Kto, false) => {
                (1.0 - candle_nn::ops::sigmoid(&((ratios.neg()? + kl)? * beta)?)?)?
            }
            (KtoLossType::ApoZeroUnpaired, true) => {
                (1.0 - candle_nn::ops::sigmoid(&(&ratios * beta)?)?)?
            }
            (KtoLossType::ApoZeroUnpaired, false) => candle_nn::ops::sigmoid(&(&ratios * beta)?)?,
        };
        Ok(((losses.sum_all()? * weight)?, (ratios.detach() * beta)?))
    };
    let (chosen_sum, chosen_rewards) = side(true, config.desirable_weight)?;
    let (rejected_sum, rejected_rewards) = side(false, config.undesirable_weight)?;
    let rows = desirable.len().max(1) as f64;
    Ok(KtoLossOutput {
        loss: ((chosen_sum + rejected_sum)? / rows)?,
        chosen_rewards,
        rejected_rewards,
    })
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    fn sigmoid(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    #[test]
    fn losses_follow_the_formulas_with_their_weights() {
        let device = Device::Cpu;
        let logps = Tensor::new(&[-10f32, -12.0, -9.0], &device).unwrap();
        let reference = Tensor::new(&[-11f32, -11.0, -9.5], &device).unwrap();
        let desirable = [true, false, true];
        let (beta, kl) = (0.5, 0.2);
        let config = KtoLossConfig {
            loss: KtoLossType::Kto,
            beta,
            desirable_weight: 2.0,
            undesirable_weight: 0.5,
        };
        let out = kto_loss(&config, &logps, &reference, &desirable, kl).unwrap();
        let expected = (2.0 * (1.0 - sigmoid(beta * (1.0 - kl)))
            + 0.5 * (1.0 - sigmoid(beta * (kl + 1.0)))
            + 2.0 * (1.0 - sigmoid(beta * (0.5 - kl))))
            / 3.0;
        let loss = out.loss.to_scalar::<f32>().unwrap() as f64;
        assert!((loss - expected).abs() < 1e-6, "{loss} vs {expected}");
        assert_eq!(
            out.chosen_rewards.to_vec1::<f32>().unwrap(),
            vec![0.5, 0.25]
        );
        assert_eq!(out.rejected_rewards.to_vec1::<f32>().unwrap(), vec![-0.5]);

        let apo = KtoLossConfig {
            loss: KtoLossType::ApoZeroUnpaired,
            ..config
        };
        let out = kto_loss(&apo, &logps, &reference, &desirable, kl).unwrap();
        let expected = (2.0 * (1.0 - sigmoid(beta))
            + 0.5 * sigmoid(-beta)
            + 2.0 * (1.0 - sigmoid(beta * 0.5)))
            / 3.0;
        let loss = out.loss.to_scalar::<f32>().unwrap() as f64;
        assert!((loss - expected).abs() < 1e-6, "apo: {loss} vs {expected}");
    }

    #[test]
    fn a_batch_of_one_label_and_the_kl_floor() {
        let device = Device::Cpu;
        let logps = Tensor::new(&[-3f32, -4.0], &device).unwrap();
        let config = KtoLossConfig {
            loss: KtoLossType::Kto,
            beta: 0.1,
            desirable_weight: 1.0,
            undesirable_weight: 1.0,
        };
        let out = kto_loss(&config, &logps, &logps, &[false, false], 0.0).unwrap();
        assert!((out.loss.to_scalar::<f32>().unwrap() - 0.5).abs() < 1e-7);
        assert_eq!(out.chosen_rewards.elem_count(), 0);
        // The KL estimate is never negative.
        let lower = Tensor::new(&[-5f32, -6.0], &device).unwrap();
        assert_eq!(kl_estimate(&lower, &logps).unwrap(), 0.0);
        assert!((kl_estimate(&logps, &lower).unwrap() - 2.0).abs() < 1e-9);
        assert_eq!(
            kl_estimate(&Tensor::zeros(0, DType::F32, &device).unwrap(), &lower).unwrap(),
            0.0
        );
    }
}
