//! TRL's DPO losses as written in `dpo_trainer.py`, evaluated here in f64 from the formulas
//! (every sequence-level `loss_type` of TRL 1.16, sigmoid with 0.2x's label smoothing,
//! reference-free, a weighted list), against our candle implementation; rewards are β(π − ρ) and carry no gradient; sequence log-probs score token
//! i + 1 with position i's logits, completion tokens only.

use candle_core::{Device, Tensor, Var};
use native_trainer::train::dpo_loss::{
    DpoLossConfig, LossMix, LossType, PairLogps, dpo_loss, sequence_logps,
};

const CHOSEN: [f64; 4] = [-12.0, -30.5, -3.25, -80.0];
const REJECTED: [f64; 4] = [-14.5, -29.0, -9.0, -70.0];
const REFERENCE_CHOSEN: [f64; 4] = [-13.0, -31.0, -4.0, -79.0];
const REFERENCE_REJECTED: [f64; 4] = [-14.0, -30.0, -8.0, -71.0];

fn log_sigmoid(x: f64) -> f64 {
    -(1.0 + (-x).exp()).ln()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// TRL's per-pair loss of `loss`, straight from its formulas (`dpo_trainer.py`, TRL 1.16;
/// sigmoid keeps 0.2x's label smoothing).
fn expected_loss(loss: LossType, config: &DpoLossConfig, i: usize) -> f64 {
    let (mut c, mut r) = (CHOSEN[i], REJECTED[i]);
    if !config.reference_free {
        c -= REFERENCE_CHOSEN[i];
        r -= REFERENCE_REJECTED[i];
    }
    let h = c - r;
    let (beta, e) = (config.beta, config.label_smoothing);
    match loss {
        LossType::Sigmoid => -log_sigmoid(beta * h) * (1.0 - e) - log_sigmoid(-beta * h) * e,
        LossType::Robust => {
            (-log_sigmoid(beta * h) * (1.0 - e) + log_sigmoid(-beta * h) * e) / (1.0 - 2.0 * e)
        }
        LossType::Hinge => (1.0 - beta * h).max(0.0),
        LossType::Ipo => (h - 1.0 / (2.0 * beta)).powi(2),
        LossType::SigmoidNorm => -log_sigmoid(beta * h),
        LossType::ExoPair => {
            let (qw, ql) = (sigmoid(beta * h), sigmoid(-beta * h));
            qw * (log_sigmoid(beta * h) - (1.0 - e).ln()) + ql * (log_sigmoid(-beta * h) - e.ln())
        }
        LossType::NcaPair => {
            -log_sigmoid(beta * c) - 0.5 * log_sigmoid(-beta * c) - 0.5 * log_sigmoid(-beta * r)
        }
        LossType::BcoPair => -log_sigmoid(beta * c) - log_sigmoid(-beta * r),
        LossType::SppoHard => (c - 0.5 / beta).powi(2) + (r + 0.5 / beta).powi(2),
        LossType::ApoZero => 1.0 - sigmoid(beta * c) + sigmoid(beta * r),
        LossType::ApoDown => sigmoid(beta * c) + 1.0 - sigmoid(beta * (c - r)),
        LossType::Discopop => {
            let x = beta * h;
            let m = sigmoid(x / config.discopop_tau);
            -log_sigmoid(x) * (1.0 - m) + (-x).exp() * m
        }
        LossType::Aot | LossType::AotUnpaired => {
            // The i-th smallest against the i-th smallest, over the batch.
            let sorted = |values: [f64; 4]| {
                let mut values = values;
                values.sort_by(f64::total_cmp);
                values
            };
            let ratio = |free: bool, a: [f64; 4], b: [f64; 4]| -> [f64; 4] {
                std::array::from_fn(|k| if free { a[k] } else { a[k] - b[k] })
            };
            let delta = if loss == LossType::Aot {
                let policy = sorted(std::array::from_fn(|k| CHOSEN[k] - REJECTED[k]));
                let reference = sorted(std::array::from_fn(|k| {
                    REFERENCE_CHOSEN[k] - REFERENCE_REJECTED[k]
                }));
                policy[i] - reference[i]
            } else {
                let free = config.reference_free;
                sorted(ratio(free, CHOSEN, REFERENCE_CHOSEN))[i]
                    - sorted(ratio(free, REJECTED, REFERENCE_REJECTED))[i]
            };
            -log_sigmoid(beta * delta) * (1.0 - e) - log_sigmoid(-beta * delta) * e
        }
        LossType::Sft => unreachable!("sft reads token log-probs"),
    }
}

fn tensor(values: &[f64]) -> Tensor {
    Tensor::new(values, &Device::Cpu).unwrap()
}

#[test]
fn every_loss_type_matches_trls_formula() {
    let one = |loss, adjust: fn(&mut DpoLossConfig)| {
        let mut config = DpoLossConfig {
            losses: LossMix::one(loss),
            ..DpoLossConfig::default()
        };
        adjust(&mut config);
        config
    };
    let mut configs = vec![
        DpoLossConfig::default(),
        one(LossType::Sigmoid, |c| {
            c.label_smoothing = 0.1;
            c.beta = 0.5;
        }),
        one(LossType::Robust, |c| c.label_smoothing = 0.2),
        one(LossType::Hinge, |c| c.beta = 0.3),
        one(LossType::Ipo, |c| c.beta = 0.25),
        one(LossType::ExoPair, |c| c.label_smoothing = 1e-3),
        one(LossType::Discopop, |c| c.discopop_tau = 0.5),
        DpoLossConfig {
            reference_free: true,
            ..DpoLossConfig::default()
        },
    ];
    // Every loss at TRL's defaults (exo_pair needs label smoothing: above).
    for loss in LossType::ALL {
        if !matches!(loss, LossType::Sft | LossType::ExoPair) {
            configs.push(one(loss, |_| {}));
        }
    }
    // A weighted list: the sum of each loss's mean times its weight.
    configs.push(DpoLossConfig {
        losses: LossMix::new(&[
            (LossType::Sigmoid, 0.8),
            (LossType::BcoPair, 0.2),
            (LossType::ApoZero, 1.5),
        ])
        .unwrap(),
        ..DpoLossConfig::default()
    });
    let (c, r, rc, rr) = (
        tensor(&CHOSEN),
        tensor(&REJECTED),
        tensor(&REFERENCE_CHOSEN),
        tensor(&REFERENCE_REJECTED),
    );
    for config in configs {
        let logps = PairLogps {
            chosen: &c,
            rejected: &r,
            reference_chosen: &rc,
            reference_rejected: &rr,
        };
        let out = dpo_loss(&config, &logps).unwrap();
        let ours: f64 = out.loss.to_scalar().unwrap();
        let expected: f64 = config
            .losses
            .iter()
            .map(|(loss, weight)| {
                weight * (0..4).map(|i| expected_loss(loss, &config, i)).sum::<f64>() / 4.0
            })
            .sum();
        assert!(
            (ours - expected).abs() <= 1e-12 * expected.abs().max(1.0),
            "{config:?}: ours {ours}, TRL's formula {expected}"
        );
        let rewards: Vec<f64> = out.chosen_rewards.to_vec1().unwrap();
        for (i, reward) in rewards.iter().enumerate() {
            let reference = if config.reference_free {
                0.0
            } else {
                REFERENCE_CHOSEN[i]
            };
            assert!((reward - config.beta * (CHOSEN[i] - reference)).abs() < 1e-12);
        }
    }
}

#[test]
fn the_sigmoid_loss_pushes_chosen_up_and_rewards_carry_no_gradient() {
    let chosen = Var::new(&CHOSEN, &Device::Cpu).unwrap();
    let rejected = Var::new(&REJECTED, &Device::Cpu).unwrap();
    let (rc, rr) = (tensor(&REFERENCE_CHOSEN), tensor(&REFERENCE_REJECTED));
    let out = dpo_loss(
        &DpoLossConfig::default(),
        &PairLogps {
            chosen: chosen.as_tensor(),
            rejected: rejected.as_tensor(),
            reference_chosen: &rc,
            reference_rejected: &rr,
        },
    )
    .unwrap();
    let grads = out.loss.backward().unwrap();
    let chosen_grad: Vec<f64> = grads.get(chosen.as_tensor()).unwrap().to_vec1().unwrap();
    let rejected_grad: Vec<f64> = grads.get(rejected.as_tensor()).unwrap().to_vec1().unwrap();
    assert!(chosen_grad.iter().all(|g| *g < 0.0), "{chosen_grad:?}");
    assert!(rejected_grad.iter().all(|g| *g > 0.0), "{rejected_grad:?}");
    let reward_grads = out.chosen_rewards.sum_all().unwrap().backward().unwrap();
    assert!(
        reward_grads.get(chosen.as_tensor()).is_none(),
        "rewards must be detached"
    );
}

#[test]
fn sequence_log_probs_score_the_next_token_on_completion_positions() {
    // One sequence of 4 tokens over a vocabulary of 3; tokens 2 and 3 are the completion.
    let logits: Vec<f64> = vec![
        0.5, 1.0, -1.0, // position 0 scores token 1
        2.0, 0.0, 0.0, // position 1 scores token 2
        -1.0, 3.0, 0.5, // position 2 scores token 3
        9.0, 9.0, 9.0, // position 3 scores nothing
    ];
    let ids = [0u32, 1, 2, 1];
    let mask = [0f64, 0.0, 1.0, 1.0];
    let log_softmax = |row: &[f64], k: usize| {
        let total: f64 = row.iter().map(|v| v.exp()).sum();
        row[k] - total.ln()
    };
    let expected = log_softmax(&logits[3..6], 2) + log_softmax(&logits[6..9], 1);
    let ours: Vec<f64> = sequence_logps(
        &Tensor::from_vec(logits, (1, 4, 3), &Device::Cpu).unwrap(),
        &Tensor::new(&[ids], &Device::Cpu).unwrap(),
        &Tensor::new(&[mask], &Device::Cpu).unwrap(),
    )
    .unwrap()
    .to_vec1()
    .unwrap();
    assert!(
        (ours[0] - expected).abs() < 1e-12,
        "ours {}, expected {expected}",
        ours[0]
    );
}

#[test]
fn log_sigmoid_is_accurate_and_smooth_where_dpo_starts() {
    use native_trainer::train::dpo_loss::log_sigmoid;
    let x = Var::new(&[0.0f64, 3.0, -3.0, 100.0, -100.0], &Device::Cpu).unwrap();
    let y = log_sigmoid(x.as_tensor()).unwrap();
    let values: Vec<f64> = y.to_vec1().unwrap();
    for (v, x) in values.iter().zip([0.0f64, 3.0, -3.0, 100.0, -100.0]) {
        let expected = -(1.0 + (-x).exp()).ln();
        assert!(
            (v - expected).abs() < 1e-9,
            "log σ({x}) = {v}, expected {expected}"
        );
    }
    let grads = y.sum_all().unwrap().backward().unwrap();
    let slopes: Vec<f64> = grads.get(x.as_tensor()).unwrap().to_vec1().unwrap();
    // d/dx log σ(x) = σ(−x): ½ at 0, where policy = reference.
    for (slope, x) in slopes.iter().zip([0.0f64, 3.0, -3.0, 100.0, -100.0]) {
        let expected = 1.0 / (1.0 + x.exp());
        assert!(
            (slope - expected).abs() < 1e-9,
            "slope at {x}: {slope}, expected {expected}"
        );
    }
}
