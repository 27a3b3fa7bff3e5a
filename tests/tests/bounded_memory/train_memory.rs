//! Training's memory savings change no number: gradient checkpointing (each decoder layer's
//! input kept, the layer recomputed in the backward pass) and each fused op (`FusedOps`: the
//! vocabulary's log-probs in chunks, RoPE and attention, RMSNorm, frozen linear layers with
//! their LoRA adapters, SwiGLU with the down projection) give the plain chain of candle ops'
//! loss, log-probs and every trainable tensor's gradient within 1e-5 relative in f32 — full
//! fine-tuning (tied and untied heads, so the embedding's gradient arrives by both paths) and
//! LoRA (on every linear layer, and on q/v only) — on a batch whose pairs share prompts (the
//! continuation path of the attention), with chunks small enough that every chunked op runs
//! many; under bf16 mixed precision as close to the f32 result as the chain. A `dpo train`
//! run with checkpointing logs the same losses as one without. And one LoRA step of the real
//! 0.5B model at 1,024 tokens stays under a bound set from `cargo xtask bench-train-memory`'s
//! measurement, counted by this binary's allocator (so every test here holds
//! `one_test_at_a_time`).

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use flywheel_tests::logit_comparison::noise;
use flywheel_tests::peak_memory::{one_test_at_a_time, peak_growth};
use flywheel_tests::tiny_gguf::TinyQwen2;
use flywheel_tests::{real_model, run_dpo, succeed, tiny_qwen2_config, workspace_root};
use native_trainer::train::base_model::BaseModel;
use native_trainer::train::dpo_batch::{
    DpoBatch, Truncation, TruncationMode, dpo_step, dpo_step_checkpointed,
};
use native_trainer::train::dpo_loss::DpoLossConfig;
use native_trainer::train::pair_tokens::PairTokens;
use native_trainer::train::precision::Precision;
use native_trainer::train::training_model::TrainingModel;
use native_trainer::train::{FusedOps, LoraConfig, Qwen2};

fn pair(prompt: &[u32], chosen: &[u32], rejected: &[u32]) -> PairTokens {
    PairTokens {
        prompt_ids: prompt.to_vec(),
        chosen_ids: chosen.to_vec(),
        rejected_ids: rejected.to_vec(),
    }
}

/// Three pairs, two of them on one prompt, so the batch has continuation rows.
fn batch() -> DpoBatch {
    DpoBatch::collate(
        &[
            pair(&[1, 2, 3], &[4, 5, 6], &[7]),
            pair(&[1, 2, 3], &[8, 9], &[10, 11, 12, 13]),
            pair(&[14], &[15, 16], &[17, 18, 19]),
        ],
        0,
        None,
        &Device::Cpu,
    )
    .unwrap()
}

/// What a step computes: the loss, the policy's sequence log-probs and the gradient of every
/// variable by name.
struct Step {
    loss: f32,
    logps: Vec<f32>,
    gradients: HashMap<String, Tensor>,
}

fn step(model: &Qwen2, vars: &[(String, Var)], checkpointed: bool) -> Step {
    let batch = batch();
    let reference = Tensor::new(&[-20.0f32, -9.0, -14.0, -25.0, -30.0, -12.0], &Device::Cpu)
        .unwrap()
        .narrow(0, 0, 2 * batch.pairs)
        .unwrap();
    let config = DpoLossConfig {
        beta: 0.3,
        ..DpoLossConfig::default()
    };
    let plain_vars: Vec<Var> = vars.iter().map(|(_, v)| v.clone()).collect();
    let (loss, grads) = if checkpointed {
        let (loss, _, tape) = dpo_step_checkpointed(model, &batch, &reference, &config).unwrap();
        let mut grads = loss.backward().unwrap();
        tape.expect("the batch scores positions")
            .backward(&mut grads, &plain_vars)
            .unwrap();
        (loss, grads)
    } else {
        let (loss, _) = dpo_step(model, &batch, &reference, &config).unwrap();
        let grads = loss.backward().unwrap();
        (loss, grads)
    };
    let gradients = vars
        .iter()
        .map(|(name, var)| {
            let grad = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("no gradient for {name}"))
                .clone();
            (name.clone(), grad)
        })
        .collect();
    Step {
        loss: loss.to_scalar::<f32>().unwrap(),
        logps: batch.logps(model, false).unwrap().to_vec1().unwrap(),
        gradients,
    }
}

fn max_abs(t: &Tensor) -> f32 {
    t.to_dtype(DType::F32)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// `got` equals `expected` within `tolerance` relative: the loss and log-probs each, every
/// gradient against its largest entry; and nearly every gradient is non-zero.
fn assert_same_step(expected: &Step, got: &Step, tolerance: f32, what: &str) {
    let close = |a: f32, b: f32| (a - b).abs() <= tolerance * a.abs().max(b.abs()).max(1e-6);
    assert!(
        close(expected.loss, got.loss),
        "{what}: the loss {} vs {}",
        expected.loss,
        got.loss
    );
    for (a, b) in expected.logps.iter().zip(&got.logps) {
        assert!(
            close(*a, *b),
            "{what}: log-probs {:?} vs {:?}",
            expected.logps,
            got.logps
        );
    }
    let mut nonzero = 0;
    for (name, expected) in &expected.gradients {
        let got = &got.gradients[name];
        let scale = max_abs(expected);
        let difference = max_abs(
            &(got.to_dtype(DType::F32).unwrap() - expected.to_dtype(DType::F32).unwrap()).unwrap(),
        );
        assert!(
            difference <= tolerance * scale,
            "{what}: {name}: gradients differ by {difference} (largest entry {scale})"
        );
        if scale > 0.0 {
            nonzero += 1;
        }
    }
    assert!(
        nonzero * 10 >= expected.gradients.len() * 9,
        "{what}: only {nonzero} of {} gradients are non-zero",
        expected.gradients.len()
    );
}

fn assert_same_gradients(model: &Qwen2, vars: &[(String, Var)], what: &str) {
    let plain = step(model, vars, false);
    let checkpointed = step(model, vars, true);
    assert_eq!(plain.loss, checkpointed.loss, "{what}: the loss");
    assert_same_step(&plain, &checkpointed, 1e-5, what);
}

fn named(varmap: &VarMap) -> Vec<(String, Var)> {
    let mut vars: Vec<(String, Var)> = varmap
        .data()
        .lock()
        .unwrap()
        .iter()
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// A tiny model whose every weight is trainable.
fn full_model(tied: bool) -> (Qwen2, Vec<(String, Var)>) {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model = Qwen2::new(&tiny_qwen2_config(tied), &vb).unwrap();
    let vars = named(&varmap);
    (model, vars)
}

/// A tiny model's weights, the same in every run: norms at one (as transformers initialises
/// Qwen2), every other tensor uniform with transformers' standard deviation, 0.02, from a
/// seed per tensor (candle's own initialisation is unseeded, and the bf16 comparison's
/// margins moved with it from run to run).
fn tiny_weights() -> HashMap<String, Tensor> {
    let base = VarMap::new();
    Qwen2::new(
        &tiny_qwen2_config(true),
        &VarBuilder::from_varmap(&base, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let half_width = 0.02 * 3f32.sqrt();
    named(&base)
        .into_iter()
        .enumerate()
        .map(|(index, (name, var))| {
            let tensor = var.as_tensor().detach();
            if name.contains("norm") {
                return (name, tensor);
            }
            let values: Vec<f32> = noise(tensor.elem_count(), 1000 + index as u64)
                .into_iter()
                .map(|v| v * half_width)
                .collect();
            let tensor = Tensor::from_vec(values, tensor.shape(), &Device::Cpu).unwrap();
            (name, tensor)
        })
        .collect()
}

/// A tiny model with frozen `weights` held in `dtype` and LoRA adapters on `modules`, their
/// `B` matrices non-zero (at zero, `A` would get no gradient) and the same for every call.
fn lora_model_on(
    weights: &HashMap<String, Tensor>,
    modules: &[&str],
    dtype: DType,
) -> (Qwen2, Vec<(String, Var)>) {
    let mut model = Qwen2::new(
        &tiny_qwen2_config(true),
        &VarBuilder::from_tensors(weights.clone(), dtype, &Device::Cpu),
    )
    .unwrap();
    let adapters = VarMap::new();
    let lora = LoraConfig {
        r: 4,
        lora_alpha: 8.0,
        target_modules: modules.iter().map(|m| m.to_string()).collect(),
        ..LoraConfig::default()
    };
    model
        .add_lora(
            &lora,
            &VarBuilder::from_varmap(&adapters, DType::F32, &Device::Cpu),
        )
        .unwrap();
    let vars = named(&adapters);
    for (index, (name, var)) in vars.iter().enumerate() {
        let shape = var.as_tensor().shape().clone();
        let count = shape.elem_count();
        let values: Vec<f32> = (0..count)
            .map(|i| (i as f32 * 0.37 + index as f32).sin() * 0.05)
            .collect();
        let values = Tensor::from_vec(values, shape, &Device::Cpu).unwrap();
        if name.ends_with("lora_B.weight") {
            var.set(&values).unwrap();
        } else {
            var.set(&(values * 4.0).unwrap()).unwrap();
        }
    }
    (model, vars)
}

fn lora_model(modules: &[&str], dtype: DType) -> (Qwen2, Vec<(String, Var)>) {
    lora_model_on(&tiny_weights(), modules, dtype)
}

/// Chunks of 256 bytes: one or two positions of the tiny vocabulary, two queries of attention.
const SMALL_CHUNKS: usize = 256;

/// With `NONE` as the reference: each fused op alone, then all of them, plain and
/// checkpointed, equal within `tolerance`.
fn assert_fused_ops_change_nothing(
    model: &mut Qwen2,
    vars: &[(String, Var)],
    tolerance: f32,
    what: &str,
) {
    for checkpointed in [false, true] {
        model.set_fused_ops(FusedOps::NONE);
        let chain = step(model, vars, checkpointed);
        let mut settings = FusedOps::each().to_vec();
        settings.push(("all", FusedOps::ALL));
        for (name, ops) in settings {
            model.set_fused_ops(FusedOps {
                chunk_bytes: SMALL_CHUNKS,
                ..ops
            });
            let fused = step(model, vars, checkpointed);
            assert_same_step(
                &chain,
                &fused,
                tolerance,
                &format!("{what}, checkpointed {checkpointed}, fused {name}"),
            );
        }
    }
}

#[test]
fn each_fused_op_gives_the_chains_loss_and_gradients() {
    let _one = one_test_at_a_time();
    for tied in [true, false] {
        let (mut model, vars) = full_model(tied);
        assert_fused_ops_change_nothing(&mut model, &vars, 1e-5, &format!("full, tied {tied}"));
    }
    let every: Vec<&str> = LoraConfig::MODULES.to_vec();
    for modules in [every, vec!["q_proj", "v_proj"]] {
        let (mut model, vars) = lora_model(&modules, DType::F32);
        let what = format!("LoRA on {}", modules.join(", "));
        assert_fused_ops_change_nothing(&mut model, &vars, 1e-5, &what);
    }
}

/// The largest difference between two tensors.
fn max_difference(a: &Tensor, b: &Tensor) -> f32 {
    max_abs(&(a.to_dtype(DType::F32).unwrap() - b.to_dtype(DType::F32).unwrap()).unwrap())
}

#[test]
fn under_bf16_the_fused_ops_are_as_accurate_as_the_chain() {
    let _one = one_test_at_a_time();
    // The f32 computation on the bf16-rounded weights is what both bf16 paths approximate.
    let weights = tiny_weights();
    let rounded: HashMap<String, Tensor> = weights
        .iter()
        .map(|(n, t)| {
            let t = t
                .to_dtype(DType::BF16)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap();
            (n.clone(), t)
        })
        .collect();
    let modules = ["q_proj", "v_proj"];
    let (exact_model, exact_vars) = lora_model_on(&rounded, &modules, DType::F32);
    let (mut model, vars) = lora_model_on(&weights, &modules, DType::BF16);
    for checkpointed in [false, true] {
        let exact = step(&exact_model, &exact_vars, checkpointed);
        model.set_fused_ops(FusedOps::NONE);
        let chain = step(&model, &vars, checkpointed);
        model.set_fused_ops(FusedOps {
            chunk_bytes: SMALL_CHUNKS,
            ..FusedOps::ALL
        });
        let fused = step(&model, &vars, checkpointed);
        assert_as_accurate(&exact, &chain, &fused, checkpointed);
    }
}

/// Under bf16 both the chain and the fused ops round: the fused ops' errors against the f32
/// computation are no larger than the chain's, within the noise of bf16's rounding (the loss
/// and log-probs within 1.5 times the chain's error or half a bf16 step, 2⁻⁹).
fn assert_as_accurate(exact: &Step, chain: &Step, fused: &Step, checkpointed: bool) {
    let half_step = 2f32.powi(-9);
    let within = |chain_error: f32, fused_error: f32, scale: f32| {
        fused_error <= 1.5 * chain_error.max(half_step * scale)
    };
    let what = format!("bf16, checkpointed {checkpointed}");
    let scalar_errors = |a: f32, b: f32| (a - b).abs();
    assert!(
        within(
            scalar_errors(chain.loss, exact.loss),
            scalar_errors(fused.loss, exact.loss),
            exact.loss.abs()
        ),
        "{what}: loss f32 {}, chain {}, fused {}",
        exact.loss,
        chain.loss,
        fused.loss
    );
    for ((truth, chain_logp), fused_logp) in exact.logps.iter().zip(&chain.logps).zip(&fused.logps)
    {
        assert!(
            within(
                scalar_errors(*chain_logp, *truth),
                scalar_errors(*fused_logp, *truth),
                truth.abs()
            ),
            "{what}: log-probs f32 {:?}, chain {:?}, fused {:?}",
            exact.logps,
            chain.logps,
            fused.logps
        );
    }
    // Each gradient's error relative to its largest entry: no tensor's more than twice the
    // chain's (or one bf16 step, 2⁻⁸), and on average no more than the chain's plus a quarter.
    let (mut chain_total, mut fused_total) = (0f32, 0f32);
    for (name, truth) in &exact.gradients {
        let scale = max_abs(truth).max(f32::MIN_POSITIVE);
        let chain_error = max_difference(&chain.gradients[name], truth) / scale;
        let fused_error = max_difference(&fused.gradients[name], truth) / scale;
        assert!(
            fused_error <= 2.0 * chain_error.max(2.0 * half_step),
            "{what}: {name}: off the f32 gradient by {fused_error:.2e} fused, {chain_error:.2e} \
             chained (relative to its largest entry)"
        );
        chain_total += chain_error;
        fused_total += fused_error;
    }
    assert!(
        fused_total <= 1.25 * chain_total,
        "{what}: gradients off the f32 ones by {fused_total:.2e} fused, {chain_total:.2e} chained \
         (sum of relative errors)"
    );
    println!(
        "{what}: gradients off the f32 ones by {fused_total:.2e} fused, {chain_total:.2e} chained"
    );
}

#[test]
fn the_fused_ops_give_the_chains_logits_on_plain_rows() {
    let _one = one_test_at_a_time();
    let (mut model, _) = lora_model(&["q_proj", "v_proj"], DType::F32);
    let ids = Tensor::new(&[[3u32, 9, 27, 4, 0], [5, 6, 7, 8, 9]], &Device::Cpu).unwrap();
    model.set_fused_ops(FusedOps::NONE);
    let chain = model.forward(&ids).unwrap();
    model.set_fused_ops(FusedOps {
        chunk_bytes: SMALL_CHUNKS,
        ..FusedOps::ALL
    });
    let fused = model.forward(&ids).unwrap();
    let difference = max_abs(&(fused - &chain).unwrap());
    assert!(
        difference <= 1e-5 * max_abs(&chain),
        "logits differ by {difference}"
    );
}

#[test]
fn full_fine_tuning_gradients_match_with_and_without_checkpointing() {
    let _one = one_test_at_a_time();
    for tied in [true, false] {
        let (model, vars) = full_model(tied);
        assert_same_gradients(&model, &vars, &format!("full, tied head {tied}"));
    }
}

#[test]
fn lora_gradients_match_with_and_without_checkpointing() {
    let _one = one_test_at_a_time();
    let (model, vars) = lora_model(LoraConfig::MODULES.as_slice(), DType::F32);
    assert_same_gradients(&model, &vars, "LoRA on every linear layer");
}

#[test]
fn dpo_train_with_gradient_checkpointing_logs_the_same_losses() {
    let _one = one_test_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    std::fs::write(&model, TinyQwen2::default().to_bytes()).unwrap();
    let data = workspace_root().join("tests/fixtures/preferences/uppercase_train.jsonl");
    let losses = |checkpointing: bool| -> Vec<f64> {
        let out = dir.path().join(format!("run-{checkpointing}"));
        let setting = format!("gradient_checkpointing={checkpointing}");
        succeed(
            run_dpo(
                &[
                    "train",
                    "--max-steps",
                    "3",
                    "--learning-rate",
                    "1e-3",
                    "--set",
                    "logging_steps=1",
                    "--set",
                    "per_device_train_batch_size=2",
                    "--set",
                    &setting,
                ],
                &[
                    ("--model", &model),
                    ("--data", &data),
                    ("--output-dir", &out),
                ],
            ),
            "dpo train",
        );
        std::fs::read_to_string(out.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter_map(|line| line["loss"].as_f64())
            .collect()
    };
    let plain = losses(false);
    let checkpointed = losses(true);
    assert_eq!(plain.len(), 3);
    for (a, b) in plain.iter().zip(&checkpointed) {
        assert!(
            (a - b).abs() <= 1e-5 * a.abs().max(1e-3),
            "{plain:?} vs {checkpointed:?}"
        );
    }
}

/// Peak heap of one LoRA step (reference pass, forward, backward) of the real model at 1,024
/// tokens, 2 pairs, beyond its weights, with and without gradient checkpointing. Measured
/// with `dpo train --memory-profile` (docs/benchmarks.md): 1.4 GB checkpointed, 6.9 GB plain;
/// before the fused ops, 10.5 GB checkpointed, and plain was killed at 24 GB.
const CHECKPOINTED_STEP_BOUND: usize = 2_000_000_000;
const PLAIN_STEP_BOUND: usize = 8_000_000_000;

#[test]
fn one_lora_step_of_the_real_model_at_1024_tokens_stays_under_its_bound() {
    let _one = one_test_at_a_time();
    // As `dpo train` runs.
    native_trainer::process_allocator::keep_freed_memory();
    let base = BaseModel::load(&real_model(), &Device::Cpu).unwrap();
    let lora = LoraConfig {
        r: 16,
        lora_alpha: 32.0,
        ..LoraConfig::default()
    };
    let model = TrainingModel::new(&base, Some(&lora), 0, Precision::F32).unwrap();
    // Two pairs of a 100-token prompt and answers cut at 1,024 tokens in all.
    let ids = |seed: u32, count: usize| -> Vec<u32> {
        (0..count as u32)
            .map(|i| 200 + (i * 7919 + seed * 104_729) % 30_000)
            .collect()
    };
    let pairs: Vec<PairTokens> = (0..2)
        .map(|pair| PairTokens {
            prompt_ids: ids(pair, 100),
            chosen_ids: ids(pair + 10, 1_200),
            rejected_ids: ids(pair + 20, 1_200),
        })
        .collect();
    let truncation = Truncation {
        max_length: 1_024,
        mode: TruncationMode::KeepStart,
    };
    let batch = DpoBatch::collate(&pairs, 0, Some(truncation), &Device::Cpu).unwrap();
    let vars: Vec<Var> = model.named_vars().into_iter().map(|(_, v)| v).collect();
    let config = DpoLossConfig::default();
    for (checkpointed, bound) in [(true, CHECKPOINTED_STEP_BOUND), (false, PLAIN_STEP_BOUND)] {
        let (loss, peak) = peak_growth(|| {
            let reference = model.reference_logps(&batch).unwrap();
            let (loss, tape) = if checkpointed {
                let (loss, _, tape) =
                    dpo_step_checkpointed(&model.policy, &batch, &reference, &config).unwrap();
                (loss, tape)
            } else {
                let (loss, _) = dpo_step(&model.policy, &batch, &reference, &config).unwrap();
                (loss, None)
            };
            let mut grads = loss.backward().unwrap();
            if let Some(tape) = tape {
                tape.backward(&mut grads, &vars).unwrap();
            }
            assert!(vars.iter().all(|v| grads.get(v.as_tensor()).is_some()));
            loss.to_scalar::<f32>().unwrap()
        });
        // Policy = reference at the start: DPO's loss is log 2.
        assert!((loss - std::f32::consts::LN_2).abs() < 1e-4, "loss {loss}");
        assert!(
            peak <= bound,
            "checkpointed {checkpointed}: the step's peak was {:.2} GB, over the {:.2} GB bound",
            peak as f64 / 1e9,
            bound as f64 / 1e9
        );
        println!(
            "checkpointed {checkpointed}: the step's peak was {:.2} GB",
            peak as f64 / 1e9
        );
    }
}
