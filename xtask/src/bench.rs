//! `cargo xtask bench`: prefill and decode throughput on the real model for every engine —
//! our wgpu engine, our CPU engine at one thread and on every physical core, candle on the
//! CPU, and llama.cpp on the CPU at the same thread counts (through llama-cpp-python, when
//! installed) — printed as one table with each row's threads. A benchmark, not a test:
//! nothing here can fail on speed.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::{fetch_model, release_dpo_binary, workspace_root};

struct Options {
    prompt_tokens: usize,
    decode_tokens: usize,
    model: Option<String>,
}

fn parse(args: &[String]) -> Result<Options> {
    let mut options = Options {
        prompt_tokens: 512,
        decode_tokens: 128,
        model: None,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().context("a value is missing after a flag");
        match arg.as_str() {
            "--prompt-tokens" => options.prompt_tokens = value()?.parse()?,
            "--decode-tokens" => options.decode_tokens = value()?.parse()?,
            "--model" => options.model = Some(value()?.clone()),
            other => anyhow::bail!(
                "unknown flag `{other}` (flags: --model PATH --prompt-tokens N --decode-tokens N)"
            ),
        }
    }
    Ok(options)
}

pub fn run(args: &[String]) -> Result<()> {
    let options = parse(args)?;
    let dpo = release_dpo_binary()?;
    let model = match &options.model {
        Some(path) => path.into(),
        None => fetch_model(&dpo)?,
    };
    let (prompt, decode) = (
        options.prompt_tokens.to_string(),
        options.decode_tokens.to_string(),
    );
    let cores = num_cpus::get_physical().max(1);
    let thread_counts: Vec<usize> = if cores > 1 { vec![1, cores] } else { vec![1] };
    let mut rows = Vec::new();
    let mut runs: Vec<(&str, Option<usize>)> = vec![("wgpu", None)];
    runs.extend(thread_counts.iter().map(|&threads| ("cpu", Some(threads))));
    runs.push(("candle", None));
    for (engine, threads) in runs {
        eprintln!("xtask: benchmarking {engine}");
        let mut command = Command::new(&dpo);
        command
            .args(["bench", "--engine", engine, "--model"])
            .arg(&model)
            .args(["--prompt-tokens", &prompt, "--decode-tokens", &decode]);
        if let Some(threads) = threads {
            command.args(["--threads", &threads.to_string()]);
        }
        rows.push(last_json_line(&mut command)?);
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let script = workspace_root().join("xtask/scripts/llama_cpp_bench.py");
    for threads in thread_counts {
        eprintln!("xtask: benchmarking llama.cpp (llama-cpp-python), {threads} threads");
        let mut command = Command::new(&python);
        command
            .arg(&script)
            .arg(&model)
            .args([&prompt, &decode, &threads.to_string()]);
        match last_json_line(&mut command) {
            Ok(row) => rows.push(row),
            Err(error) => {
                eprintln!(
                    "xtask: llama.cpp skipped ({error:#}); `pip install \
                     llama-cpp-python==0.3.36` adds it"
                );
                break;
            }
        }
    }
    print_table(&model, &options, &rows);
    Ok(())
}

fn last_json_line(command: &mut Command) -> Result<Value> {
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("spawning {command:?}"))?;
    if !output.status.success() {
        anyhow::bail!("{command:?} failed with {}", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().context("no output")?;
    Ok(serde_json::from_str(line)?)
}

fn print_table(model: &Path, options: &Options, rows: &[Value]) {
    println!(
        "\nmodel: {}\nprefill: {}-token prompt; decode: {} greedy tokens\n",
        model.display(),
        options.prompt_tokens,
        options.decode_tokens
    );
    println!(
        "| {:<10} | {:<44} | {:>7} | {:>15} | {:>14} |",
        "engine", "device", "threads", "prefill tok/s", "decode tok/s"
    );
    println!(
        "|{:-<12}|{:-<46}|{:->9}|{:->17}|{:->16}|",
        "", "", "", "", ""
    );
    for row in rows {
        let threads = row["threads"]
            .as_u64()
            .map_or_else(|| "-".to_string(), |t| t.to_string());
        println!(
            "| {:<10} | {:<44} | {:>7} | {:>15.1} | {:>14.1} |",
            row["engine"].as_str().unwrap_or("?"),
            row["device"].as_str().unwrap_or("?"),
            threads,
            row["prefill_tokens_per_second"]
                .as_f64()
                .unwrap_or(f64::NAN),
            row["decode_tokens_per_second"].as_f64().unwrap_or(f64::NAN),
        );
    }
}
