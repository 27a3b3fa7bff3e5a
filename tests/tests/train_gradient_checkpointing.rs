//! `gradient_checkpointing = true` keeps only each decoder layer's input and recomputes the
//! layer in the backward pass: the loss and every trainable tensor's gradient must equal the
//! plain backward pass's within 1e-5 relative — full fine-tuning (tied and untied heads, so
//! the embedding's gradient arrives by both paths) and LoRA on every linear layer — on a batch
//! whose pairs share prompts (the continuation path of the attention) — and a `dpo train` run
//! with it logs the same losses as one without.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use flywheel_tests::tiny_gguf::TinyQwen2;
use flywheel_tests::{run_dpo, succeed, tiny_qwen2_config, workspace_root};
use native_trainer::train::dpo_batch::{DpoBatch, dpo_step, dpo_step_checkpointed};
use native_trainer::train::dpo_loss::DpoLossConfig;
use native_trainer::train::pair_tokens::PairTokens;
use native_trainer::train::{LoraConfig, Qwen2};

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

/// (loss, gradient of every variable by name), plain or checkpointed.
fn loss_and_gradients(
    model: &Qwen2,
    vars: &[(String, Var)],
    checkpointed: bool,
) -> (f32, HashMap<String, Tensor>) {
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
    let by_name = vars
        .iter()
        .map(|(name, var)| {
            let grad = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("no gradient for {name}"))
                .clone();
            (name.clone(), grad)
        })
        .collect();
    (loss.to_scalar::<f32>().unwrap(), by_name)
}

fn max_abs(t: &Tensor) -> f32 {
    t.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn assert_same_gradients(model: &Qwen2, vars: &[(String, Var)], what: &str) {
    let (plain_loss, plain) = loss_and_gradients(model, vars, false);
    let (checkpointed_loss, checkpointed) = loss_and_gradients(model, vars, true);
    assert_eq!(plain_loss, checkpointed_loss, "{what}: the loss");
    let mut nonzero = 0;
    for (name, expected) in &plain {
        let got = &checkpointed[name];
        let scale = max_abs(expected);
        let difference = max_abs(&(got - expected).unwrap());
        assert!(
            difference <= 1e-5 * scale,
            "{what}: {name}: gradients differ by {difference} (largest entry {scale})"
        );
        if scale > 0.0 {
            nonzero += 1;
        }
    }
    assert!(
        nonzero * 10 >= plain.len() * 9,
        "{what}: only {nonzero} of {} gradients are non-zero",
        plain.len()
    );
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

#[test]
fn full_fine_tuning_gradients_match_with_and_without_checkpointing() {
    for tied in [true, false] {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let model = Qwen2::new(&tiny_qwen2_config(tied), &vb).unwrap();
        let vars = named(&varmap);
        assert_same_gradients(&model, &vars, &format!("full, tied head {tied}"));
    }
}

#[test]
fn lora_gradients_match_with_and_without_checkpointing() {
    let base = VarMap::new();
    let config = tiny_qwen2_config(true);
    Qwen2::new(
        &config,
        &VarBuilder::from_varmap(&base, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let frozen: HashMap<String, Tensor> = named(&base)
        .into_iter()
        .map(|(n, v)| (n, v.as_tensor().detach()))
        .collect();
    let mut model = Qwen2::new(
        &config,
        &VarBuilder::from_tensors(frozen, DType::F32, &Device::Cpu),
    )
    .unwrap();
    let adapters = VarMap::new();
    let lora = LoraConfig {
        r: 4,
        lora_alpha: 8.0,
        target_modules: LoraConfig::MODULES.iter().map(|m| m.to_string()).collect(),
        ..LoraConfig::default()
    };
    model
        .add_lora(
            &lora,
            &VarBuilder::from_varmap(&adapters, DType::F32, &Device::Cpu),
        )
        .unwrap();
    // B starts at zero, which would leave A without a gradient: give it values.
    let vars = named(&adapters);
    for (index, (name, var)) in vars.iter().enumerate() {
        if name.ends_with("lora_B.weight") {
            let shape = var.as_tensor().shape().clone();
            let values = Tensor::randn(0f32, 0.05, shape, &Device::Cpu).unwrap();
            var.set(&((values + index as f64 * 1e-3).unwrap())).unwrap();
        }
    }
    assert_same_gradients(&model, &vars, "LoRA on every linear layer");
}

#[test]
fn dpo_train_with_gradient_checkpointing_logs_the_same_losses() {
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
