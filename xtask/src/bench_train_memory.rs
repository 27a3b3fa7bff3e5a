//! `cargo xtask bench-train-memory`: the peak memory and time of one LoRA DPO step of
//! `dpo train` beside TRL's DPOTrainer, at 256, 512, 1,024 and 2,048 tokens, without and with
//! gradient checkpointing, printed as tables — plus, for ours, where the peak goes
//! (`dpo train --memory-profile`).
//!
//! Both train Qwen2.5-Coder-0.5B-Instruct in f32 on this machine's threads: ours from the GGUF
//! (as a user runs it), TRL from the HF directory `dpo export --hf-dtype f32` writes from that
//! GGUF (the same weights). Same data: two pairs per step, a ~100-token prompt and answers
//! longer than 2,048 tokens, cut to `max_length` (TRL's `keep_start`); same LoRA (r 16, α 32,
//! q/v). Each run is its own process; its peak resident memory is the kernel's (`wait4`'s
//! `ru_maxrss`), and a run that passes `--limit-gb` (default 22.5, below this machine's
//! 24 GiB) is stopped and reported as such. s/step is each trainer's own `train_runtime`
//! for its one step (the reference pass included).
//!
//! Flags: `--lengths 256,1024` (a subset), `--qwen-1.5b` (also Qwen2.5-1.5B's shapes, random
//! weights, 4 pairs of 512 + 512 tokens, checkpointed), `--dpo PATH` (measure another `dpo`
//! build, e.g. an older one, instead of this one's release build), `--only dpo|trl`,
//! `--limit-gb N`. TRL's side needs `pip install trl peft torch transformers datasets`
//! (`PYTHON` picks the interpreter). A benchmark, not a test: nothing here fails on a number.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{fetch_model, release_dpo_binary, target_dir, workspace_root};

const LENGTHS: [usize; 4] = [256, 512, 1024, 2048];

/// One measured process.
struct Run {
    /// Peak resident set, bytes.
    peak_rss: u64,
    /// Stopped for passing the memory limit.
    stopped: bool,
    /// The trainer's own step time.
    seconds_per_step: Option<f64>,
    /// `memory_profile.json` of a `dpo train` run.
    profile: Option<Value>,
}

struct Options {
    lengths: Vec<usize>,
    qwen_1_5b: bool,
    dpo: Option<PathBuf>,
    only: Option<String>,
    limit_bytes: u64,
}

fn options(args: &[String]) -> Result<Options> {
    let mut options = Options {
        lengths: LENGTHS.to_vec(),
        qwen_1_5b: false,
        dpo: None,
        only: None,
        limit_bytes: (22.5e9) as u64,
    };
    let mut args = args.iter();
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{flag} needs a value"))
                .cloned()
        };
        match flag.as_str() {
            "--lengths" => {
                options.lengths = value()?
                    .split(',')
                    .map(|n| {
                        n.trim()
                            .parse()
                            .with_context(|| format!("--lengths: `{n}`"))
                    })
                    .collect::<Result<_>>()?
            }
            "--qwen-1.5b" => options.qwen_1_5b = true,
            "--dpo" => options.dpo = Some(PathBuf::from(value()?)),
            "--only" => {
                let only = value()?;
                if only != "dpo" && only != "trl" {
                    bail!("--only takes `dpo` or `trl`, not `{only}`");
                }
                options.only = Some(only);
            }
            "--limit-gb" => {
                let gb: f64 = value()?.parse().context("--limit-gb")?;
                options.limit_bytes = (gb * 1e9) as u64;
            }
            other => bail!(
                "unknown flag `{other}` (accepted: --lengths, --qwen-1.5b, --dpo, --only, --limit-gb)"
            ),
        }
    }
    Ok(options)
}

pub fn run(args: &[String]) -> Result<()> {
    let options = options(args)?;
    let dpo = match &options.dpo {
        Some(path) => {
            std::fs::canonicalize(path).with_context(|| format!("--dpo {}", path.display()))?
        }
        None => release_dpo_binary()?,
    };
    let model = fetch_model(&dpo)?;
    let workdir = target_dir().join("bench-train-memory");
    std::fs::create_dir_all(&workdir)?;
    let data = workdir.join("long_pairs.jsonl");
    write_pairs(&data, 2, 95, 2300)?;
    let hf_dir = workdir.join("qwen2.5-0.5b-f32-hf");
    export_hf(&dpo, &model, &hf_dir)?;
    let profiles = supports_profile(&dpo)?;
    let run_dpo = options.only.as_deref() != Some("trl");
    let run_trl = options.only.as_deref() != Some("dpo");

    let mut rows = Vec::new();
    for &length in &options.lengths {
        for checkpointed in [false, true] {
            let label = format!("{length} tokens, checkpointing {checkpointed}");
            let trl = if run_trl {
                eprintln!("xtask: TRL, {label}");
                Some(trl_step(
                    &hf_dir,
                    &data,
                    &workdir,
                    length,
                    checkpointed,
                    2,
                    options.limit_bytes,
                )?)
            } else {
                None
            };
            let ours = if run_dpo {
                eprintln!("xtask: dpo train, {label}");
                let settings = DpoStep {
                    length,
                    checkpointed,
                    pairs: 2,
                    profile: profiles,
                };
                Some(dpo_step(
                    &dpo,
                    &model,
                    &data,
                    &workdir,
                    &settings,
                    options.limit_bytes,
                )?)
            } else {
                None
            };
            rows.push((length, checkpointed, trl, ours));
        }
    }

    println!(
        "\nOne LoRA DPO step (r 16, α 32, q/v), 2 pairs, f32, Qwen2.5-Coder-0.5B-Instruct, {} threads; peak RSS and s/step\n",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "| max_length | checkpointing | TRL peak | `dpo train` peak | TRL s/step | `dpo train` s/step |"
    );
    println!("|---:|---|---:|---:|---:|---:|");
    for (length, checkpointed, trl, ours) in &rows {
        println!(
            "| {length} | {} | {} | {} | {} | {} |",
            if *checkpointed { "yes" } else { "no" },
            trl.as_ref().map_or("—".into(), peak_cell),
            ours.as_ref().map_or("—".into(), |o| ratio_cell(
                peak_cell(o),
                o,
                trl.as_ref(),
                |r| Some(r.peak_rss as f64)
            )),
            trl.as_ref().map_or("—".into(), time_cell),
            ours.as_ref().map_or("—".into(), |o| ratio_cell(
                time_cell(o),
                o,
                trl.as_ref(),
                |r| r.seconds_per_step
            )),
        );
    }
    print_profiles(&rows);

    if options.qwen_1_5b {
        qwen_1_5b(&dpo, &hf_dir, &workdir, &options, profiles)?;
    }
    Ok(())
}

/// Writes `pairs` preference rows of deterministic English-like text: a prompt of about
/// `prompt_words` words, answers of `answer_words`.
fn write_pairs(path: &Path, pairs: usize, prompt_words: usize, answer_words: usize) -> Result<()> {
    const WORDS: &[&str] = &[
        "the",
        "a",
        "model",
        "answer",
        "question",
        "labeller",
        "vote",
        "prefers",
        "shorter",
        "longer",
        "clear",
        "reply",
        "train",
        "step",
        "memory",
        "token",
        "vocabulary",
        "gradient",
        "layer",
        "attention",
        "value",
        "key",
        "query",
        "head",
        "python",
        "rust",
        "code",
        "function",
        "returns",
        "list",
        "string",
        "number",
        "error",
        "file",
        "line",
        "field",
        "offset",
        "browser",
        "server",
        "store",
        "round",
        "version",
        "rating",
        "interval",
    ];
    let text = |seed: u64, count: usize| -> String {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut out = Vec::with_capacity(count);
        for i in 0..count {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let word = WORDS[(state % WORDS.len() as u64) as usize];
            out.push(if i % 12 == 11 {
                format!("{word}.")
            } else {
                word.to_string()
            });
        }
        out.join(" ")
    };
    let mut lines = String::new();
    for pair in 0..pairs as u64 {
        let row = serde_json::json!({
            "prompt": format!("Question {pair}: {}?", text(100 + pair, prompt_words)),
            "chosen": text(200 + pair, answer_words),
            "rejected": text(300 + pair, answer_words),
        });
        lines += &format!("{row}\n");
    }
    std::fs::write(path, lines).with_context(|| format!("writing {}", path.display()))
}

/// The f32 HF directory TRL reads, from `dpo export` (once).
fn export_hf(dpo: &Path, model: &Path, dir: &Path) -> Result<()> {
    if dir.join("config.json").is_file() {
        return Ok(());
    }
    eprintln!("xtask: dpo export --hf-dtype f32 (the HF directory TRL reads)");
    let status = Command::new(dpo)
        .args([
            "export",
            "--quant",
            "f32",
            "--hf-dtype",
            "f32",
            "--force",
            "--model",
        ])
        .arg(model)
        .arg("--out")
        .arg(dir)
        .stdout(Stdio::null())
        .status()?;
    anyhow::ensure!(status.success(), "dpo export failed");
    // TRL reads the safetensors; the f32 GGUF beside them is not needed.
    let _ = std::fs::remove_file(dir.join("model.gguf"));
    Ok(())
}

/// Whether `dpo` has `train --memory-profile` (older builds do not).
fn supports_profile(dpo: &Path) -> Result<bool> {
    let help = Command::new(dpo).args(["train", "--help"]).output()?;
    Ok(String::from_utf8_lossy(&help.stdout).contains("--memory-profile"))
}

struct DpoStep {
    length: usize,
    checkpointed: bool,
    pairs: usize,
    profile: bool,
}

fn dpo_step(
    dpo: &Path,
    model: &Path,
    data: &Path,
    workdir: &Path,
    step: &DpoStep,
    limit: u64,
) -> Result<Run> {
    let out = workdir.join(format!("dpo-{}-{}", step.length, step.checkpointed));
    let _ = std::fs::remove_dir_all(&out);
    let mut command = Command::new(dpo);
    command
        .args(["train", "--use-peft", "--max-steps", "1", "--model"])
        .arg(model)
        .arg("--data")
        .arg(data)
        .arg("--output-dir")
        .arg(&out);
    for setting in [
        format!("per_device_train_batch_size={}", step.pairs),
        format!("max_length={}", step.length),
        format!("gradient_checkpointing={}", step.checkpointed),
        "lora_r=16".into(),
        "lora_alpha=32".into(),
        "lora_target_modules=[\"q_proj\",\"v_proj\"]".into(),
        "learning_rate=1e-4".into(),
        "lr_scheduler_type=\"constant\"".into(),
    ] {
        command.arg("--set").arg(setting);
    }
    if step.profile {
        command.arg("--memory-profile");
    }
    let (mut run, stdout) = measure(command, limit)?;
    if !run.stopped {
        let summary: Value = serde_json::from_str(stdout.lines().last().unwrap_or("{}"))
            .context("dpo train's summary line")?;
        run.seconds_per_step = summary["train_runtime"].as_f64();
        run.profile = std::fs::read_to_string(out.join("memory_profile.json"))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok());
    }
    Ok(run)
}

fn trl_step(
    hf_dir: &Path,
    data: &Path,
    workdir: &Path,
    length: usize,
    checkpointed: bool,
    pairs: usize,
    limit: u64,
) -> Result<Run> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let mut command = Command::new(&python);
    command
        .arg(workspace_root().join("xtask/scripts/trl_memory_step.py"))
        .arg(hf_dir)
        .arg(data)
        .arg(workdir.join("trl-out"))
        .arg(length.to_string())
        .arg(if checkpointed { "1" } else { "0" })
        .arg(pairs.to_string());
    let (mut run, stdout) = measure(command, limit)?;
    if !run.stopped {
        let line = stdout
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .next_back()
            .context(
                "the TRL side printed no result; it needs `pip install trl peft torch \
                 transformers datasets` (PYTHON picks the interpreter)",
            )?;
        run.seconds_per_step = line["train_runtime"].as_f64();
    }
    Ok(run)
}

/// Runs `command` to its end (or stops it above `limit` resident bytes), returning its peak
/// resident set as the kernel counted it, and its stdout.
fn measure(mut command: Command, limit: u64) -> Result<(Run, String)> {
    let stdout_path =
        std::env::temp_dir().join(format!("bench-train-memory-{}.out", std::process::id()));
    let child = command
        .stdout(std::fs::File::create(&stdout_path)?)
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("spawning {command:?}"))?;
    let pid = child.id() as libc::pid_t;
    let started = Instant::now();
    let mut stopped = false;
    let (status, peak_kb) = loop {
        let mut status = 0;
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let done = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if done == pid {
            break (status, usage.ru_maxrss as u64);
        }
        if done < 0 {
            bail!(
                "waiting for {command:?}: {}",
                std::io::Error::last_os_error()
            );
        }
        if !stopped && resident_bytes(pid).is_some_and(|rss| rss > limit) {
            stopped = true;
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    let _ = std::fs::remove_file(&stdout_path);
    let succeeded = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    if !stopped && !succeeded {
        bail!(
            "{command:?} failed after {:.0} s (status {status}); run it by hand to see why",
            started.elapsed().as_secs_f64()
        );
    }
    Ok((
        Run {
            peak_rss: peak_kb * 1024,
            stopped,
            seconds_per_step: None,
            profile: None,
        },
        stdout,
    ))
}

/// A process's resident set now, from `/proc`.
fn resident_bytes(pid: libc::pid_t) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn peak_cell(run: &Run) -> String {
    if run.stopped {
        format!("stopped above {:.1} GB", run.peak_rss as f64 / 1e9)
    } else {
        format!("{:.2} GB", run.peak_rss as f64 / 1e9)
    }
}

fn time_cell(run: &Run) -> String {
    match (run.stopped, run.seconds_per_step) {
        (false, Some(seconds)) => format!("{seconds:.1}"),
        _ => "—".into(),
    }
}

/// `cell` with ours ÷ TRL's of `value` where both ran to the end.
fn ratio_cell(
    cell: String,
    ours: &Run,
    trl: Option<&Run>,
    value: impl Fn(&Run) -> Option<f64>,
) -> String {
    let Some(trl) = trl.filter(|t| !t.stopped && !ours.stopped) else {
        return cell;
    };
    match (value(ours), value(trl)) {
        (Some(ours), Some(theirs)) if theirs > 0.0 => format!("{cell} ({:.2}×)", ours / theirs),
        _ => cell,
    }
}

/// Where each of our runs' peak went, from `--memory-profile`.
fn print_profiles(rows: &[(usize, bool, Option<Run>, Option<Run>)]) {
    let profiled: Vec<_> = rows
        .iter()
        .filter_map(|(length, checkpointed, _, ours)| {
            ours.as_ref()?
                .profile
                .as_ref()
                .map(|p| (length, checkpointed, p))
        })
        .collect();
    if profiled.is_empty() {
        return;
    }
    println!(
        "\nWhere `dpo train`'s peak goes (heap MB, counted by its allocator; `dpo train --memory-profile`)\n"
    );
    println!(
        "| max_length | checkpointing | weights | reference pass (peak above) | kept for backward | \
         vocabulary (peak above) | backward (peak above) | gradients | AdamW | heap peak |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (length, checkpointed, profile) in profiled {
        let marks: Vec<(String, f64, f64)> = profile["marks"]
            .as_array()
            .map(|marks| {
                marks
                    .iter()
                    .map(|m| {
                        let mb = |key: &str| m[key].as_f64().unwrap_or(f64::NAN) / 1e6;
                        (
                            m["label"].as_str().unwrap_or("").to_string(),
                            mb("live"),
                            mb("peak_since_previous"),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let index = |label: &str| marks.iter().position(|m| m.0 == label);
        let live = |label: &str| index(label).map_or(f64::NAN, |i| marks[i].1);
        // What a phase added to the live bytes, and its peak above the live bytes before it.
        let kept = |label: &str| {
            index(label)
                .filter(|&i| i > 0)
                .map_or(f64::NAN, |i| marks[i].1 - marks[i - 1].1)
        };
        let above = |label: &str| {
            index(label)
                .filter(|&i| i > 0)
                .map_or(f64::NAN, |i| marks[i].2 - marks[i - 1].1)
        };
        let saved: f64 = profile["saved_for_backward"]
            .as_object()
            .map_or(0.0, |kinds| {
                kinds.values().filter_map(Value::as_f64).sum::<f64>() / 1e6
            });
        let backward = above("backward: loss to the last layer")
            .max(above("backward: decoder layers, recomputed"));
        println!(
            "| {length} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} | {:.0} |",
            if *checkpointed { "yes" } else { "no" },
            live("model loaded (weights)"),
            above("reference pass"),
            saved,
            above("vocabulary: head, log-softmax, targets"),
            backward,
            profile["gradients"].as_f64().unwrap_or(0.0) / 1e6,
            kept("optimizer step (AdamW moments)"),
            profile["peak"].as_f64().unwrap_or(0.0) / 1e6,
        );
    }
    println!(
        "\n`kept for backward`: what autograd keeps for the backward pass when the loss is computed, by kind:\n"
    );
    for (length, checkpointed, _, ours) in rows {
        if let Some(profile) = ours.as_ref().and_then(|o| o.profile.as_ref()) {
            println!(
                "- {length} tokens, checkpointing {checkpointed}: {}",
                kept_by_kind(profile)
            );
        }
    }
}

/// A profile's tensors kept for the backward pass, by kind: `kind 12 MB; …`.
fn kept_by_kind(profile: &Value) -> String {
    let parts: Vec<String> = profile["saved_for_backward"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(kind, bytes)| format!("{kind} {:.0} MB", bytes.as_f64().unwrap_or(0.0) / 1e6))
        .collect();
    parts.join("; ")
}

/// Qwen2.5-1.5B's shapes (random weights), 4 pairs of 512 + 512 tokens, checkpointed.
fn qwen_1_5b(
    dpo: &Path,
    tokenizer_dir: &Path,
    workdir: &Path,
    options: &Options,
    profile: bool,
) -> Result<()> {
    let model_dir = workdir.join("qwen2.5-1.5b-shaped-random-hf");
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    eprintln!("xtask: writing a random-weight Qwen2.5-1.5B-shaped HF directory");
    let status = Command::new(&python)
        .arg(workspace_root().join("xtask/scripts/random_qwen2_hf.py"))
        .arg(tokenizer_dir)
        .arg(&model_dir)
        .status()?;
    anyhow::ensure!(
        status.success(),
        "random_qwen2_hf.py failed (needs torch, transformers)"
    );
    let data = workdir.join("pairs_512_512.jsonl");
    write_pairs(&data, 4, 470, 600)?;
    let trl = if options.only.as_deref() != Some("dpo") {
        eprintln!("xtask: TRL, 1.5B shapes");
        Some(trl_step(
            &model_dir,
            &data,
            workdir,
            1024,
            true,
            4,
            options.limit_bytes,
        )?)
    } else {
        None
    };
    let ours = if options.only.as_deref() != Some("trl") {
        eprintln!("xtask: dpo train, 1.5B shapes");
        let settings = DpoStep {
            length: 1024,
            checkpointed: true,
            pairs: 4,
            profile,
        };
        Some(dpo_step(
            dpo,
            &model_dir,
            &data,
            workdir,
            &settings,
            options.limit_bytes,
        )?)
    } else {
        None
    };
    println!(
        "\nQwen2.5-1.5B-Instruct's shapes (random weights), LoRA r 16 q/v, 4 pairs, 512 + 512 tokens, checkpointed, f32\n"
    );
    println!("| trainer | peak RSS | s/step |");
    println!("|---|---:|---:|");
    for (name, run) in [("TRL", &trl), ("`dpo train`", &ours)] {
        if let Some(run) = run {
            println!("| {name} | {} | {} |", peak_cell(run), time_cell(run));
        }
    }
    if let Some(profile) = ours.as_ref().and_then(|o| o.profile.as_ref()) {
        println!(
            "\n`dpo train --memory-profile`: weights {:.0} MB, heap peak {:.0} MB; kept for \
             backward: {}",
            profile["marks"][1]["live"].as_f64().unwrap_or(0.0) / 1e6,
            profile["peak"].as_f64().unwrap_or(0.0) / 1e6,
            kept_by_kind(profile)
        );
    }
    Ok(())
}
