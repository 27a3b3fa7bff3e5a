//! DPO parity with TRL (fixture: `tests/fixtures/make_dpo_fixtures.py`, TRL's DPOTrainer on a
//! tiny Qwen2 with the real Qwen2.5 tokenizer, weights from a closed formula both sides
//! compute). From the token ids TRL built, our training model gives TRL's per-pair log-probs
//! at initialisation (±1e-3), and 10 full-batch steps of our DPO loss with AdamW (constant
//! learning rate, no clipping) give TRL's loss (±1e-3 relative), gradient norm and reward
//! metrics at every step, for standard and conversational pairs. Our tokenizer, chat template
//! and row tokenization build exactly TRL's token ids from the rows.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use flywheel_tests::{fixture, real_model};
use native_trainer::train::dpo_batch::{DpoBatch, dpo_step};
use native_trainer::train::dpo_loss::{DpoLossConfig, FDivergence, LossMix, LossType};
use native_trainer::train::optimization::{AdamWParams, TrainerOptimizer};
use native_trainer::train::pair_tokens::{PairTokens, tokenize_pair};
use native_trainer::train::reference_sync::mix_into_reference;
use native_trainer::train::{Qwen2, Qwen2Config};
use serde_json::Value;
use shared::{GgufModel, ModelText, TrlRow};

/// The fixture's closed-form weights: f64 sine values rounded to f32.
fn formula_weight(name: &str, shape: &[usize]) -> Tensor {
    let seed = f64::from(name.bytes().map(u32::from).sum::<u32>() % 97);
    let count: usize = shape.iter().product();
    let values: Vec<f32> = (0..count)
        .map(|i| {
            let i = i as f64;
            let value = if name.ends_with("norm.weight") {
                1.0 + 0.1 * (0.37 * i + seed).sin()
            } else if name.ends_with(".bias") {
                0.01 * (0.53 * i + seed).sin()
            } else {
                0.05 * (0.71 * i + seed).sin()
            };
            value as f32
        })
        .collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

/// Every weight the model asks for, by name and shape (a `VarMap` records them).
pub(crate) fn formula_weights(config: &Qwen2Config) -> Vec<(String, Tensor)> {
    let probe = VarMap::new();
    Qwen2::new(
        config,
        &VarBuilder::from_varmap(&probe, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let data = probe.data().lock().unwrap();
    data.iter()
        .map(|(name, var)| (name.clone(), formula_weight(name, var.as_tensor().dims())))
        .collect()
}

/// A `VarMap`'s variables with their names, for the optimizer.
pub(crate) fn named_vars(varmap: &VarMap) -> Vec<(String, candle_core::Var)> {
    let data = varmap.data().lock().unwrap();
    data.iter().map(|(n, v)| (n.clone(), v.clone())).collect()
}

/// The pairs' token ids as TRL built them.
fn fixture_pairs(examples: &[Value]) -> Vec<PairTokens> {
    let ids = |v: &Value| -> Vec<u32> { serde_json::from_value(v.clone()).unwrap() };
    examples
        .iter()
        .map(|e| PairTokens {
            prompt_ids: ids(&e["prompt_ids"]),
            chosen_ids: ids(&e["chosen_ids"]),
            rejected_ids: ids(&e["rejected_ids"]),
        })
        .collect()
}

pub(crate) fn close(ours: f64, theirs: f64, relative: f64, absolute: f64) -> bool {
    (ours - theirs).abs() <= relative * theirs.abs() + absolute
}

#[test]
fn log_probs_and_ten_steps_match_trl() {
    let fixture = fixture("dpo_trl.json");
    let config: Qwen2Config = serde_json::from_value(fixture["config"].clone()).unwrap();
    let beta = fixture["beta"].as_f64().unwrap();
    let learning_rate = fixture["learning_rate"].as_f64().unwrap();
    for style in ["standard", "conversational"] {
        let data = &fixture["datasets"][style];
        let batch = DpoBatch::collate(
            &fixture_pairs(data["examples"].as_array().unwrap()),
            0,
            None,
            &Device::Cpu,
        )
        .unwrap();

        let weights = formula_weights(&config);
        let reference = Qwen2::new(
            &config,
            &VarBuilder::from_tensors(weights.iter().cloned().collect(), DType::F32, &Device::Cpu),
        )
        .unwrap();
        let mut trainable = VarMap::new();
        let policy = Qwen2::new(
            &config,
            &VarBuilder::from_varmap(&trainable, DType::F32, &Device::Cpu),
        )
        .unwrap();
        for (name, value) in &weights {
            trainable.set_one(name, value).unwrap();
        }

        // The reference's log-probs as the trainer computes them (completion positions only).
        let reference_logps = batch.logps(&reference, false).unwrap();
        let (reference_chosen, reference_rejected) = batch.split(&reference_logps).unwrap();
        for (side, ours, key) in [
            ("chosen", &reference_chosen, "initial_chosen_logps"),
            ("rejected", &reference_rejected, "initial_rejected_logps"),
        ] {
            let ours: Vec<f32> = ours.to_vec1().unwrap();
            let theirs: Vec<f64> = serde_json::from_value(data[key].clone()).unwrap();
            for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
                eprintln!("{style} pair {i} {side}: ours {a:.5}, TRL {b:.5}");
                assert!(
                    (f64::from(*a) - b).abs() <= 1e-3,
                    "{style} pair {i} {side} log-prob"
                );
            }
        }

        let mut optimizer = TrainerOptimizer::new(
            named_vars(&trainable),
            AdamWParams {
                learning_rate,
                ..AdamWParams::default()
            },
        )
        .unwrap();
        let loss_config = DpoLossConfig {
            beta,
            ..DpoLossConfig::default()
        };
        for (step, expected) in data["log_history"].as_array().unwrap().iter().enumerate() {
            let (loss, metrics) =
                dpo_step(&policy, &batch, &reference_logps, &loss_config).unwrap();
            let grads = loss.backward().unwrap();
            let grad_norm = trainable
                .all_vars()
                .iter()
                .map(|var| {
                    let g = grads.get(var.as_tensor()).unwrap();
                    f64::from(
                        g.sqr()
                            .unwrap()
                            .sum_all()
                            .unwrap()
                            .to_scalar::<f32>()
                            .unwrap(),
                    )
                })
                .sum::<f64>()
                .sqrt();
            let ours = serde_json::to_value(&metrics).unwrap();
            let step_name = format!("{style} step {}", step + 1);
            eprintln!(
                "{step_name}: loss {:.6} (TRL {:.6}), grad_norm {grad_norm:.5} (TRL {:.5}), logits/chosen {:.6} (TRL {:.6})",
                metrics.loss,
                expected["loss"].as_f64().unwrap(),
                expected["grad_norm"].as_f64().unwrap(),
                metrics.logits_chosen,
                expected["logits/chosen"].as_f64().unwrap(),
            );
            assert!(
                close(
                    grad_norm,
                    expected["grad_norm"].as_f64().unwrap(),
                    1e-2,
                    1e-4
                ),
                "{step_name}: grad_norm"
            );
            // Every metric TRL logs that we compute, under the same name.
            for (key, relative, absolute) in [
                ("loss", 1e-3, 0.0),
                ("rewards/chosen", 1e-2, 1e-3),
                ("rewards/rejected", 1e-2, 1e-3),
                ("rewards/accuracies", 0.0, 1e-9),
                ("rewards/margins", 1e-2, 1e-3),
                ("logps/chosen", 1e-3, 1e-3),
                ("logps/rejected", 1e-3, 1e-3),
                ("logits/chosen", 1e-2, 1e-4),
                ("logits/rejected", 1e-2, 1e-4),
            ] {
                let (a, b) = (ours[key].as_f64().unwrap(), expected[key].as_f64().unwrap());
                assert!(
                    close(a, b, relative, absolute),
                    "{step_name}: {key} ours {a}, TRL {b}"
                );
            }
            optimizer.step(&grads).unwrap();
        }
    }
}

#[test]
fn rows_tokenize_to_trls_token_ids() {
    // The fixture's tokenizer and chat template are the real model's, read from its GGUF.
    let path = real_model();
    let mut file = std::fs::File::open(&path).unwrap();
    let gguf = GgufModel::read(&mut file, &path.display().to_string()).unwrap();
    let text = ModelText::from_gguf(&gguf).unwrap();
    let fixture = fixture("dpo_trl.json");
    for style in ["standard", "conversational"] {
        let data = &fixture["datasets"][style];
        let rows: Vec<TrlRow> = serde_json::from_value(data["rows"].clone()).unwrap();
        for (row, expected) in rows.iter().zip(data["examples"].as_array().unwrap()) {
            let ours = tokenize_pair(&text, row).unwrap();
            let ids =
                |key: &str| -> Vec<u32> { serde_json::from_value(expected[key].clone()).unwrap() };
            assert_eq!(
                ours.prompt_ids,
                ids("prompt_ids"),
                "{style}: prompt of {row:?}"
            );
            assert_eq!(
                ours.chosen_ids,
                ids("chosen_ids"),
                "{style}: chosen of {row:?}"
            );
            assert_eq!(
                ours.rejected_ids,
                ids("rejected_ids"),
                "{style}: rejected of {row:?}"
            );
        }
    }
}

/// The formula-weight reference model, and a trainable policy starting from the same weights.
pub(crate) fn reference_and_policy(config: &Qwen2Config) -> (Qwen2, VarMap, Qwen2) {
    let weights = formula_weights(config);
    let reference = Qwen2::new(
        config,
        &VarBuilder::from_tensors(weights.iter().cloned().collect(), DType::F32, &Device::Cpu),
    )
    .unwrap();
    let mut trainable = VarMap::new();
    let policy = Qwen2::new(
        config,
        &VarBuilder::from_varmap(&trainable, DType::F32, &Device::Cpu),
    )
    .unwrap();
    for (name, value) in &weights {
        trainable.set_one(name, value).unwrap();
    }
    (reference, trainable, policy)
}

#[test]
fn accumulation_clipping_weight_decay_and_schedules_match_trl() {
    use native_trainer::train::optimization::{
        SchedulerType, accumulate, clip_gradient_norm, learning_rate_factor, warmup_steps,
    };
    let fixture = fixture("dpo_trl.json");
    let config: Qwen2Config = serde_json::from_value(fixture["config"].clone()).unwrap();
    let pairs = fixture_pairs(
        fixture["datasets"]["standard"]["examples"]
            .as_array()
            .unwrap(),
    );
    for run in fixture["optimisation"].as_array().unwrap() {
        let settings = &run["settings"];
        let kind: SchedulerType =
            serde_json::from_value(settings["lr_scheduler_type"].clone()).unwrap();
        let total = settings["max_steps"].as_u64().unwrap() as usize;
        let warmup = warmup_steps(settings["warmup_steps"].as_f64().unwrap(), total);
        let base_lr = settings["learning_rate"].as_f64().unwrap();
        let accumulation = settings["gradient_accumulation_steps"].as_u64().unwrap() as usize;
        let max_grad_norm = settings["max_grad_norm"].as_f64().unwrap();

        let (reference, trainable, policy) = reference_and_policy(&config);
        // One pair per micro-batch; the accumulation window covers both, so the sampler's
        // order does not matter.
        let micro_batches: Vec<(DpoBatch, Tensor)> = pairs
            .iter()
            .map(|pair| {
                let batch =
                    DpoBatch::collate(std::slice::from_ref(pair), 0, None, &Device::Cpu).unwrap();
                let logps = batch.logps(&reference, false).unwrap();
                (batch, logps)
            })
            .collect();
        assert_eq!(micro_batches.len(), accumulation);
        let named = named_vars(&trainable);
        let vars = trainable.all_vars();
        let mut optimizer = TrainerOptimizer::new(
            named,
            AdamWParams {
                learning_rate: base_lr,
                weight_decay: settings["weight_decay"].as_f64().unwrap(),
                ..AdamWParams::default()
            },
        )
        .unwrap();
        let loss_config = DpoLossConfig {
            beta: fixture["beta"].as_f64().unwrap(),
            ..DpoLossConfig::default()
        };
        for (step, expected) in run["log_history"].as_array().unwrap().iter().enumerate() {
            let learning_rate = base_lr * learning_rate_factor(kind, step, warmup, total);
            optimizer.set_learning_rate(learning_rate);
            let (mut grads, mut loss_sum, mut chosen_sum) = (None, 0.0, 0.0);
            for (batch, reference_logps) in &micro_batches {
                let (loss, metrics) =
                    dpo_step(&policy, batch, reference_logps, &loss_config).unwrap();
                let micro_grads = (loss / accumulation as f64).unwrap().backward().unwrap();
                accumulate(&mut grads, micro_grads, &vars).unwrap();
                loss_sum += metrics.loss;
                chosen_sum += metrics.rewards_chosen;
            }
            let mut grads = grads.unwrap();
            let norm = clip_gradient_norm(&mut grads, &vars, max_grad_norm).unwrap();
            let (loss, chosen) = (
                loss_sum / accumulation as f64,
                chosen_sum / accumulation as f64,
            );
            let metric = |key: &str| expected[key].as_f64().unwrap();
            let name = format!("{kind:?} step {}", step + 1);
            eprintln!(
                "{name}: lr {learning_rate:.6} (TRL {:.6}), loss {loss:.6} (TRL {:.6}), grad_norm {norm:.5} (TRL {:.5})",
                metric("learning_rate"),
                metric("loss"),
                metric("grad_norm")
            );
            assert!(
                close(learning_rate, metric("learning_rate"), 1e-9, 1e-12),
                "{name}: learning_rate"
            );
            assert!(close(loss, metric("loss"), 1e-3, 0.0), "{name}: loss");
            assert!(
                close(norm, metric("grad_norm"), 1e-2, 1e-4),
                "{name}: grad_norm"
            );
            assert!(
                close(chosen, metric("rewards/chosen"), 1e-2, 1e-3),
                "{name}: rewards/chosen"
            );
            optimizer.step(&grads).unwrap();
        }
    }
}

/// TRL 1.16's other losses (`tests/fixtures/make_dpo_loss_fixtures.py`): each `loss_type`
/// alone, MPO's weighted list, the f-divergences (forward KL, JS, α) on the losses that take
/// them, LD-DPO's `ld_alpha` (alone and with MPO's `sft`), WPO's `use_weighting` and TR-DPO's
/// `sync_ref_model` (the reference moved every 2 or 3 steps), trained 10 full-batch steps from
/// the same start on the standard pairs, give TRL's loss at every step (±2e-3 relative) and
/// its reward metrics.
#[test]
fn every_trl_1_x_loss_and_mpo_follow_trls_ten_steps() {
    let pairs_fixture = fixture("dpo_trl.json");
    let losses = fixture("dpo_trl_losses.json");
    let config: Qwen2Config = serde_json::from_value(pairs_fixture["config"].clone()).unwrap();
    let examples = pairs_fixture["datasets"]["standard"]["examples"]
        .as_array()
        .unwrap();
    for (name, case) in losses["cases"].as_object().unwrap() {
        let settings = &case["settings"];
        let mut batch = DpoBatch::collate(&fixture_pairs(examples), 0, None, &Device::Cpu).unwrap();
        if let Some(alpha) = settings.get("ld_alpha").and_then(Value::as_f64) {
            batch = batch.desensitize_lengths(alpha).unwrap();
        }
        if settings.get("use_weighting") == Some(&Value::Bool(true)) {
            batch = batch.weigh_by_probability();
        }
        // TR-DPO: (every how many steps, alpha).
        let sync = (settings.get("sync_ref_model") == Some(&Value::Bool(true))).then(|| {
            (
                settings["ref_model_sync_steps"].as_u64().unwrap() as usize,
                settings["ref_model_mixup_alpha"].as_f64().unwrap(),
            )
        });
        let names: Vec<String> = serde_json::from_value(settings["loss_type"].clone()).unwrap();
        let weights: Vec<f64> = match settings.get("loss_weights") {
            Some(weights) => serde_json::from_value(weights.clone()).unwrap(),
            None => vec![1.0; names.len()],
        };
        let mix: Vec<(LossType, f64)> = names
            .iter()
            .zip(weights)
            .map(|(n, w)| (LossType::from_name(n).unwrap(), w))
            .collect();
        let loss_config = DpoLossConfig {
            losses: LossMix::new(&mix).unwrap(),
            beta: losses["beta"].as_f64().unwrap(),
            label_smoothing: settings
                .get("label_smoothing")
                .and_then(Value::as_f64)
                .unwrap_or(0.0),
            f_divergence: FDivergence::from_name(
                settings
                    .get("f_divergence_type")
                    .and_then(Value::as_str)
                    .unwrap_or("reverse_kl"),
                settings
                    .get("f_alpha_divergence_coef")
                    .and_then(Value::as_f64)
                    .unwrap_or(0.5),
            )
            .unwrap(),
            ..DpoLossConfig::default()
        };
        let (reference, trainable, policy) = reference_and_policy(&config);
        let mut reference_weights: HashMap<String, Tensor> =
            formula_weights(&config).into_iter().collect();
        let mut reference_logps = batch.logps(&reference, false).unwrap();
        let mut optimizer = TrainerOptimizer::new(
            named_vars(&trainable),
            AdamWParams {
                learning_rate: losses["learning_rate"].as_f64().unwrap(),
                ..AdamWParams::default()
            },
        )
        .unwrap();
        for (step, expected) in case["log_history"].as_array().unwrap().iter().enumerate() {
            let (loss, metrics) =
                dpo_step(&policy, &batch, &reference_logps, &loss_config).unwrap();
            let grads = loss.backward().unwrap();
            let ours = serde_json::to_value(&metrics).unwrap();
            let step_name = format!("{name} step {}", step + 1);
            eprintln!(
                "{step_name}: loss {:.6} (TRL {:.6})",
                metrics.loss,
                expected["loss"].as_f64().unwrap()
            );
            for (key, relative, absolute) in [
                ("loss", 2e-3, 1e-5),
                ("rewards/chosen", 1e-2, 1e-3),
                ("rewards/rejected", 1e-2, 1e-3),
                ("rewards/margins", 1e-2, 1e-3),
                ("logps/chosen", 1e-3, 1e-3),
            ] {
                let (a, b) = (ours[key].as_f64().unwrap(), expected[key].as_f64().unwrap());
                assert!(
                    close(a, b, relative, absolute),
                    "{step_name}: {key} ours {a}, TRL {b}"
                );
            }
            optimizer.step(&grads).unwrap();
            if let Some((every, alpha)) = sync
                && (step + 1) % every == 0
            {
                mix_into_reference(&mut reference_weights, &named_vars(&trainable), alpha).unwrap();
                let vb =
                    VarBuilder::from_tensors(reference_weights.clone(), DType::F32, &Device::Cpu);
                let reference = Qwen2::new(&config, &vb).unwrap();
                reference_logps = batch.logps(&reference, false).unwrap();
            }
        }
    }
}
