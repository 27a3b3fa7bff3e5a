//! `cargo xtask bench-train`: DPO training speed of `dpo train` beside TRL + PyTorch on the
//! CPU, same models, data and settings — DPO's sigmoid loss and MPO's weighted list
//! (`["sigmoid", "bco_pair", "sft"]`, `[0.8, 0.2, 1.0]`) — printed as one table. TRL's side runs
//! `xtask/scripts/trl_train_bench.py` (needs `pip install trl peft torch transformers
//! datasets gguf`), which also writes the two Hugging Face directories both trainers read:
//! a tiny Qwen2 with the real tokenizer, and the real 0.5B model dequantized. A benchmark,
//! not a test: nothing here fails on speed.

use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::{fetch_model, release_dpo_binary, target_dir, workspace_root};

const STEPS: &str = "6";
const BATCH: &str = "4";

pub fn run(_args: &[String]) -> Result<()> {
    let dpo = release_dpo_binary()?;
    let model = fetch_model(&dpo)?;
    let data = workspace_root().join("tests/fixtures/preferences/uppercase_train.jsonl");
    let workdir = target_dir().join("bench-train");
    std::fs::create_dir_all(&workdir)?;

    eprintln!("xtask: TRL (xtask/scripts/trl_train_bench.py)");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let output = Command::new(&python)
        .arg(workspace_root().join("xtask/scripts/trl_train_bench.py"))
        .arg(&model)
        .arg(&data)
        .arg(&workdir)
        .args([STEPS, BATCH])
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {python}"))?;
    anyhow::ensure!(
        output.status.success(),
        "the TRL side failed; it needs `pip install trl peft torch transformers datasets gguf` \
         (set PYTHON to an interpreter that has them)"
    );
    let trl_rows: Vec<Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();

    let mut rows = Vec::new();
    for trl in trl_rows {
        let model_dir = trl["model_dir"].as_str().context("model_dir")?.to_string();
        let model_name = trl["model"].as_str().unwrap_or("?");
        let loss = trl["loss"].as_str().unwrap_or("sigmoid");
        let name = format!("{model_name}, {loss}");
        eprintln!("xtask: dpo train on {name}");
        let out = workdir.join(format!("dpo-{model_name}-{loss}"));
        // The same objective: TRL's loss_type list and weights as --set values.
        let settings = &trl["loss_settings"];
        let mut loss_args = vec![
            "--set".to_string(),
            format!("loss_type={}", settings["loss_type"]),
        ];
        if let Some(weights) = settings.get("loss_weights") {
            loss_args.extend(["--set".to_string(), format!("loss_weights={weights}")]);
        }
        let _ = std::fs::remove_dir_all(&out);
        let output = Command::new(&dpo)
            .args(["train", "--use-peft", "--model", &model_dir, "--data"])
            .arg(&data)
            .arg("--output-dir")
            .arg(&out)
            .args([
                "--max-steps",
                STEPS,
                "--learning-rate",
                "1e-4",
                "--set",
                &format!("per_device_train_batch_size={BATCH}"),
                "--set",
                "lora_r=8",
                "--set",
                "lora_alpha=16",
                "--set",
                "lora_target_modules=[\"q_proj\",\"v_proj\"]",
                "--set",
                "lr_scheduler_type=\"constant\"",
                "--set",
                "logging_steps=1",
            ])
            .args(&loss_args)
            .stderr(Stdio::inherit())
            .output()?;
        anyhow::ensure!(output.status.success(), "dpo train failed on {name}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let ours: Value = serde_json::from_str(stdout.lines().last().context("no summary")?)?;
        let runtime = ours["train_runtime"].as_f64().context("train_runtime")?;
        rows.push((
            name.clone(),
            "dpo train (ours, candle CPU)".to_string(),
            runtime,
        ));
        rows.push((
            name,
            trl["trainer"].as_str().unwrap_or("TRL").to_string(),
            trl["train_runtime"].as_f64().unwrap_or(f64::NAN),
        ));
    }

    println!(
        "\nLoRA DPO (r 8, α 16, q/v), {BATCH} pairs per step, {STEPS} steps, f32 on the CPU; data: {}\n",
        data.display()
    );
    println!(
        "| {:<22} | {:<58} | {:>10} | {:>10} |",
        "model, loss", "trainer", "s / step", "pairs / s"
    );
    println!("|{:-<24}|{:-<60}|{:->12}|{:->12}|", "", "", "", "");
    let (steps, batch): (f64, f64) = (STEPS.parse()?, BATCH.parse()?);
    for (model, trainer, runtime) in rows {
        println!(
            "| {model:<22} | {trainer:<58} | {:>10.2} | {:>10.2} |",
            runtime / steps,
            steps * batch / runtime
        );
    }
    Ok(())
}
