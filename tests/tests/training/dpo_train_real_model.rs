//! Learning on the real model: LoRA DPO on the real Qwen2.5-0.5B-Instruct GGUF with a small
//! hand-written, clearly learnable preference set (answers in capitals preferred to the same
//! answers in lower case) raises held-out `rewards/accuracies` above 0.8 within 6 CPU steps.
//! Long tier: about 2.5 minutes on a 2-core VM (model load ~20 s, ~20 s per step of 4 pairs).

use flywheel_tests::{dpo, real_model, workspace_root};
use serde_json::{Map, Value};

#[test]
fn lora_dpo_on_the_real_model_learns_a_held_out_preference() {
    let fixtures = workspace_root().join("tests/fixtures/preferences");
    let out = tempfile::tempdir().unwrap();
    let output = dpo()
        .args(["train", "--use-peft", "--model"])
        .arg(real_model())
        .arg("--data")
        .arg(fixtures.join("uppercase_train.jsonl"))
        .arg("--eval-data")
        .arg(fixtures.join("uppercase_eval.jsonl"))
        .arg("--output-dir")
        .arg(out.path())
        .args([
            "--learning-rate",
            "2e-4",
            "--max-steps",
            "6",
            "--set",
            "per_device_train_batch_size=4",
            "--set",
            "logging_steps=1",
            "--set",
            "lr_scheduler_type=\"constant\"",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "dpo train failed: {stderr}");
    let lines: Vec<Map<String, Value>> = std::fs::read_to_string(out.path().join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let losses: Vec<f64> = lines
        .iter()
        .filter_map(|l| l.get("loss").and_then(Value::as_f64))
        .collect();
    eprintln!("losses: {losses:?}");
    assert_eq!(losses.len(), 6);
    assert!(
        (losses[0] - std::f64::consts::LN_2).abs() < 1e-4,
        "the first step starts at the reference (loss ln 2), got {}",
        losses[0]
    );
    assert!(losses[5] < losses[0] - 0.1, "loss did not fall: {losses:?}");
    let eval = lines
        .iter()
        .rfind(|l| l.contains_key("eval_loss"))
        .expect("an eval line");
    eprintln!("held-out: {eval:?}");
    let accuracy = eval["eval_rewards/accuracies"].as_f64().unwrap();
    assert!(
        accuracy > 0.8,
        "held-out rewards/accuracies {accuracy} ≤ 0.8"
    );
    assert!(eval["eval_rewards/margins"].as_f64().unwrap() > 0.0);
    assert!(out.path().join("adapter_model.safetensors").is_file());
}
