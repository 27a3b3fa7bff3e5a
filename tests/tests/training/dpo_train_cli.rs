//! `dpo train` and `dpo eval` as a user runs them, on a tiny generated Qwen2 GGUF: TRL's
//! metric names in `metrics.jsonl`, a learnable preference set learned (full and LoRA), the
//! eval split scored with `eval_` names and `dpo eval` agreeing with it, a run killed after a
//! checkpoint and resumed giving bitwise the uninterrupted run, HF directories (single and
//! sharded safetensors) as models, and bad data or settings named precisely.

use std::path::{Path, PathBuf};

use flywheel_tests::tiny_gguf::TinyQwen2;
use flywheel_tests::{dpo, run_dpo, succeed};
use serde_json::{Map, Value};

/// TRL's log_history keys every training log line carries.
const TRL_KEYS: [&str; 13] = [
    "loss",
    "grad_norm",
    "learning_rate",
    "epoch",
    "step",
    "rewards/chosen",
    "rewards/rejected",
    "rewards/accuracies",
    "rewards/margins",
    "logps/chosen",
    "logps/rejected",
    "logits/chosen",
    "logits/rejected",
];

struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("tiny.gguf"),
            TinyQwen2::default().to_bytes(),
        )
        .unwrap();
        std::fs::write(dir.path().join("train.jsonl"), preference_lines(0..12)).unwrap();
        std::fs::write(dir.path().join("eval.jsonl"), preference_lines(100..106)).unwrap();
        Self { dir }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn model(&self) -> PathBuf {
        self.path("tiny.gguf")
    }
}

/// A clearly learnable set: every prompt prefers the same answer. Standard, conversational
/// and implicit-prompt rows mixed.
fn preference_lines(range: std::ops::Range<usize>) -> String {
    range
        .map(|i| {
            let question = format!("Question {i}: which colour?");
            let row = match i % 3 {
                0 => serde_json::json!({"prompt": question, "chosen": " blue sky", "rejected": " red mud"}),
                1 => serde_json::json!({
                    "prompt": [{"role": "user", "content": question}],
                    "chosen": [{"role": "assistant", "content": "blue sky"}],
                    "rejected": [{"role": "assistant", "content": "red mud"}],
                }),
                _ => serde_json::json!({
                    "chosen": [{"role": "user", "content": question}, {"role": "assistant", "content": "blue sky"}],
                    "rejected": [{"role": "user", "content": question}, {"role": "assistant", "content": "red mud"}],
                }),
            };
            format!("{row}\n")
        })
        .collect()
}

fn last_json_line(stdout: &str) -> Map<String, Value> {
    let line = stdout.lines().last().expect("stdout has a line");
    serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("last stdout line is not JSON ({e}): {line}"))
}

fn metrics(dir: &Path) -> Vec<Map<String, Value>> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn number(line: &Map<String, Value>, key: &str) -> f64 {
    line[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} in {line:?}"))
}

#[test]
fn full_and_lora_training_learn_log_trl_metrics_and_dpo_eval_agrees() {
    let ws = Workspace::new();
    std::fs::write(
        ws.path("run.toml"),
        "learning_rate = 1e-2\nbeta = 0.5\nper_device_train_batch_size = 4\n\
         per_device_eval_batch_size = 4\nmax_steps = 24\nlogging_steps = 4\nsave_steps = 0\n\
         eval_strategy = \"steps\"\neval_steps = 12\nlr_scheduler_type = \"linear\"\n\
         warmup_ratio = 0.1\nreport_to = \"none\"\n",
    )
    .unwrap();
    for (name, extra) in [
        ("full", vec![]),
        (
            "lora",
            vec![
                "--use-peft",
                "--set",
                "lora_r=8",
                "--set",
                "lora_target_modules=\"all-linear\"",
                "--learning-rate",
                "1e-2",
            ],
        ),
    ] {
        let out = ws.path(name);
        let mut args = vec!["train"];
        args.extend(extra.iter());
        let (stdout, stderr) = succeed(
            run_dpo(
                &args,
                &[
                    ("--model", &ws.model()),
                    ("--data", &ws.path("train.jsonl")),
                    ("--eval-data", &ws.path("eval.jsonl")),
                    ("--config", &ws.path("run.toml")),
                    ("--output-dir", &out),
                ],
            ),
            &format!("dpo train ({name})"),
        );
        assert!(
            stderr.contains("`report_to = \"none\"` has no effect"),
            "{stderr}"
        );

        let lines = metrics(&out);
        let train: Vec<_> = lines.iter().filter(|l| l.contains_key("loss")).collect();
        let eval: Vec<_> = lines
            .iter()
            .filter(|l| l.contains_key("eval_loss"))
            .collect();
        let summary_line = lines.last().unwrap();
        for key in [
            "train_runtime",
            "train_samples_per_second",
            "train_steps_per_second",
            "train_loss",
        ] {
            assert!(
                summary_line[key].is_number(),
                "{name}: run summary lacks {key}: {summary_line:?}"
            );
        }
        assert_eq!(
            train
                .iter()
                .map(|l| number(l, "step") as usize)
                .collect::<Vec<_>>(),
            vec![4, 8, 12, 16, 20, 24],
            "{name}: a log line every logging_steps"
        );
        for line in &train {
            for key in TRL_KEYS {
                assert!(line[key].is_number(), "{name}: `{key}` missing in {line:?}");
            }
        }
        // Linear schedule with 3 warmup steps (ceil(0.1 × 24)), peak at step 4.
        let peak = 1e-2;
        let lr_at = |step: f64| peak * (24.0 - step) / 21.0;
        for line in &train {
            let step = number(line, "step");
            let expected = lr_at(step - 1.0);
            assert!(
                (number(line, "learning_rate") - expected).abs() < 1e-12,
                "{name} step {step}: learning_rate {} expected {expected}",
                number(line, "learning_rate")
            );
        }
        let first = train.first().unwrap();
        let last = train.last().unwrap();
        assert!(
            number(last, "loss") < number(first, "loss") - 0.05,
            "{name}: loss did not fall: {} → {}",
            number(first, "loss"),
            number(last, "loss")
        );
        assert_eq!(number(last, "rewards/accuracies"), 1.0, "{name}: {last:?}");
        assert!(number(last, "rewards/margins") > 0.0);
        assert_eq!(
            eval.iter()
                .map(|l| number(l, "step") as usize)
                .collect::<Vec<_>>(),
            vec![12, 24],
            "{name}: eval every eval_steps"
        );
        let final_eval = eval.last().unwrap();
        assert!(
            number(final_eval, "eval_rewards/accuracies") >= 0.99,
            "{name}: held-out pairs not learned: {final_eval:?}"
        );

        let summary = last_json_line(&stdout);
        assert_eq!(summary["global_step"], 24);
        assert_eq!(summary["eval_loss"], final_eval["eval_loss"]);

        let saved: &[&str] = if name == "full" {
            &[
                "model.safetensors",
                "config.json",
                "tokenizer.json",
                "tokenizer_config.json",
            ]
        } else {
            &["adapter_model.safetensors", "adapter_config.json"]
        };
        for file in saved {
            assert!(out.join(file).is_file(), "{name}: {file} not written");
        }

        // `dpo eval` on the output scores the eval split as training's last eval did.
        let (stdout, _) = succeed(
            run_dpo(
                &["eval", "--set", "per_device_eval_batch_size=4"],
                &[("--model", &out), ("--data", &ws.path("eval.jsonl"))],
            ),
            "dpo eval",
        );
        let scored = last_json_line(&stdout);
        for (key, value) in &scored {
            let expected = number(final_eval, key);
            let ours = value.as_f64().unwrap();
            assert!(
                (ours - expected).abs() <= 1e-5 * expected.abs().max(1.0),
                "{name}: dpo eval {key} = {ours}, training's eval {expected}"
            );
        }
    }
}

#[test]
fn dpo_eval_of_a_model_against_itself_has_zero_rewards_and_loss_ln2() {
    let ws = Workspace::new();
    let (stdout, _) = succeed(
        run_dpo(
            &["eval", "--beta", "0.5"],
            &[("--model", &ws.model()), ("--data", &ws.path("eval.jsonl"))],
        ),
        "dpo eval",
    );
    let scored = last_json_line(&stdout);
    assert!(
        (number(&scored, "eval_loss") - std::f64::consts::LN_2).abs() < 1e-6,
        "{scored:?}"
    );
    for key in [
        "eval_rewards/chosen",
        "eval_rewards/rejected",
        "eval_rewards/margins",
        "eval_rewards/accuracies",
    ] {
        assert_eq!(number(&scored, key), 0.0, "{key}");
    }
    assert!(number(&scored, "eval_logps/chosen") < 0.0);
}

#[test]
fn a_run_killed_after_a_checkpoint_and_resumed_matches_the_uninterrupted_run_bit_for_bit() {
    let ws = Workspace::new();
    std::fs::write(
        ws.path("run.toml"),
        "learning_rate = 1e-3\nper_device_train_batch_size = 3\ngradient_accumulation_steps = 2\n\
         lr_scheduler_type = \"constant\"\nlogging_steps = 1\nsave_steps = 3\nuse_peft = true\n\
         lora_r = 4\nweight_decay = 0.01\nmax_grad_norm = 0.5\nseed = 7\n",
    )
    .unwrap();
    let train = |out: &Path, extra: &[&str]| {
        let mut command = dpo();
        command
            .arg("train")
            .args(extra)
            .arg("--model")
            .arg(ws.model())
            .arg("--data")
            .arg(ws.path("train.jsonl"))
            .arg("--config")
            .arg(ws.path("run.toml"))
            .arg("--output-dir")
            .arg(out);
        command
    };

    let straight = ws.path("straight");
    succeed(
        train(&straight, &["--max-steps", "6"]).output().unwrap(),
        "straight run",
    );

    // A run that would go on for a long time, killed (SIGKILL) once checkpoint-3 exists.
    let killed = ws.path("killed");
    let mut child = train(&killed, &["--max-steps", "1000000"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let checkpoint = killed.join("checkpoint-3");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while !checkpoint.join("trainer_state.json").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "checkpoint-3 never appeared"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it was killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let (_, stderr) = succeed(
        train(
            &killed,
            &["--max-steps", "6", "--resume", checkpoint.to_str().unwrap()],
        )
        .output()
        .unwrap(),
        "resumed run",
    );
    assert!(stderr.contains("resuming from"), "{stderr}");

    let losses = |dir: &Path| -> Vec<String> {
        metrics(dir)
            .iter()
            .filter(|l| l.contains_key("loss"))
            .map(|l| format!("{} {}", l["step"], l["loss"]))
            .collect()
    };
    // Every step's line (the run summary's wall-clock times aside).
    let step_lines = |dir: &Path| -> Vec<String> {
        std::fs::read_to_string(dir.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .filter(|l| !l.contains("train_runtime"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(losses(&straight).len(), 6);
    assert_eq!(
        losses(&killed),
        losses(&straight),
        "loss trajectories differ"
    );
    assert_eq!(
        step_lines(&killed),
        step_lines(&straight),
        "every metric of every step must be bitwise the same"
    );
    assert_eq!(
        std::fs::read(killed.join("adapter_model.safetensors")).unwrap(),
        std::fs::read(straight.join("adapter_model.safetensors")).unwrap(),
        "the final adapters must be bitwise the same"
    );
}

#[test]
fn hf_directories_single_and_sharded_load_like_the_gguf() {
    let ws = Workspace::new();
    // A full fine-tune's output is an HF directory; one step at a tiny learning rate.
    let out = ws.path("hf");
    succeed(
        run_dpo(
            &["train", "--max-steps", "1", "--learning-rate", "1e-9"],
            &[
                ("--model", &ws.model()),
                ("--data", &ws.path("train.jsonl")),
                ("--output-dir", &out),
            ],
        ),
        "dpo train",
    );
    // The same tensors split over two shards with an index, as large checkpoints ship.
    let sharded = ws.path("sharded");
    std::fs::create_dir_all(&sharded).unwrap();
    for file in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(out.join(file), sharded.join(file)).unwrap();
    }
    let tensors =
        candle_core::safetensors::load(out.join("model.safetensors"), &candle_core::Device::Cpu)
            .unwrap();
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let mut weight_map = Map::new();
    for (shard, chunk) in names.chunks(names.len().div_ceil(2)).enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", shard + 1);
        let part: std::collections::HashMap<String, candle_core::Tensor> = chunk
            .iter()
            .map(|n| ((*n).clone(), tensors[*n].clone()))
            .collect();
        candle_core::safetensors::save(&part, sharded.join(&file)).unwrap();
        for name in chunk {
            weight_map.insert((*name).clone(), Value::from(file.clone()));
        }
    }
    std::fs::write(
        sharded.join("model.safetensors.index.json"),
        serde_json::json!({"metadata": {}, "weight_map": weight_map}).to_string(),
    )
    .unwrap();

    let score = |model: &Path| -> Map<String, Value> {
        let (stdout, _) = succeed(
            run_dpo(
                &["eval"],
                &[
                    ("--model", model),
                    ("--ref-model", &ws.model()),
                    ("--data", &ws.path("eval.jsonl")),
                ],
            ),
            "dpo eval",
        );
        last_json_line(&stdout)
    };
    let from_gguf = score(&ws.model());
    for dir in [&out, &sharded] {
        let from_dir = score(dir);
        for key in [
            "eval_logps/chosen",
            "eval_logps/rejected",
            "eval_logits/chosen",
        ] {
            let (a, b) = (number(&from_dir, key), number(&from_gguf, key));
            assert!(
                (a - b).abs() < 1e-4 * b.abs().max(1.0),
                "{}: {key} {a} vs GGUF {b}",
                dir.display()
            );
        }
    }
}

#[test]
fn malformed_data_lines_are_named_by_file_line_and_field_or_skipped_on_request() {
    let ws = Workspace::new();
    let data = ws.path("bad.jsonl");
    let good = preference_lines(0..2);
    std::fs::write(
        &data,
        format!("{good}{{\"prompt\": \"q\", \"chosen\": 5, \"rejected\": \"no\"}}\n\n{{\"prompt\": \"q\", \"chosen\": \"yes\"}}\n"),
    )
    .unwrap();
    let out = ws.path("out");
    let output = run_dpo(
        &["train", "--max-steps", "1"],
        &[
            ("--model", &ws.model()),
            ("--data", &data),
            ("--output-dir", &out),
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "bad.jsonl:3: field `chosen`: expected a string or a list of messages, got a number"
        ),
        "{stderr}"
    );

    let (_, stderr) = succeed(
        run_dpo(
            &["train", "--max-steps", "1", "--skip-malformed"],
            &[
                ("--model", &ws.model()),
                ("--data", &data),
                ("--output-dir", &out),
            ],
        ),
        "dpo train --skip-malformed",
    );
    assert!(
        stderr.contains("bad.jsonl:5: skipped: field `rejected`: missing"),
        "{stderr}"
    );
    assert!(stderr.contains("2 malformed lines skipped"), "{stderr}");
}

#[test]
fn bad_settings_name_the_key() {
    let ws = Workspace::new();
    let cases: [(&[&str], &str); 21] = [
        (
            &["method=\"kto\"", "train_sampling_strategy=\"random\""],
            "loss_type kto needs train_sampling_strategy = sequential",
        ),
        (
            &["train_sampling_strategy=\"group_by_length\""],
            "train_sampling_strategy = group_by_length is not supported here",
        ),
        (&["ld_alpha=2.0"], "ld_alpha must be in [0, 1], got 2"),
        (
            &["loss_type=\"aot\"", "use_weighting=true"],
            "use_weighting = true with loss_type `aot`: WPO's weighting is not defined for aot and aot_unpaired",
        ),
        (
            &["sync_ref_model=true", "precompute_ref_log_probs=true"],
            "sync_ref_model = true with precompute_ref_log_probs = true",
        ),
        (
            &["lora_r=8", "sync_ref_model=true"],
            "sync_ref_model = true with LoRA (use_peft)",
        ),
        (
            &["sync_ref_model=true", "ref_model_mixup_alpha=1.5"],
            "ref_model_mixup_alpha must be in [0, 1], got 1.5",
        ),
        (
            &["method=\"kto\"", "loss_type=\"sigmoid\""],
            "loss_type: `sigmoid` is not a KTO loss (accepted with method = kto: kto, apo_zero_unpaired)",
        ),
        (
            &["method=\"kto\"", "per_device_train_batch_size=1"],
            "loss_type kto needs per_device_train_batch_size > 1",
        ),
        (
            &["method=\"kto\"", "rpo_alpha=0.5"],
            "rpo_alpha is a DPOConfig key; KTO (method = kto) does not take it",
        ),
        (
            &["method=\"ktoo\""],
            "unknown variant `ktoo`, expected `dpo` or `kto`",
        ),
        (
            &[
                "loss_type=[\"bco_pair\"]",
                "f_divergence_type=\"js_divergence\"",
            ],
            "f_divergence_type = js_divergence is only supported for the loss types sigmoid",
        ),
        (
            &["f_divergence_type=\"kl\""],
            "f_divergence_type: unknown `kl` (accepted: reverse_kl, forward_kl, js_divergence, alpha_divergence)",
        ),
        (&["learning_rat=1e-5"], "unknown field `learning_rat`"),
        (&["beta=-1"], "beta must be > 0"),
        (
            &["loss_type=\"exo_pair\""],
            "loss_type exo_pair needs label_smoothing > 0",
        ),
        (
            &["loss_type=[\"apo_zeroo\"]"],
            "loss_type: unknown loss `apo_zeroo` (accepted: sigmoid, robust, hinge, ipo, exo_pair",
        ),
        (
            &["loss_type=[\"sigmoid\", \"sft\"]", "loss_weights=[1.0]"],
            "loss_weights has 1 entries for 2 loss_type entries",
        ),
        (
            &["loss_type=[\"sigmoid\", \"sigmoid\"]"],
            "`sigmoid` is listed twice",
        ),
        (
            &["lora_target_modules=[\"q_proj\",\"attn\"]"],
            "unknown module `attn`",
        ),
        (
            &["lora_dropout=0.1", "disable_dropout=false"],
            "dropout during training is not supported",
        ),
    ];
    for (settings, expected) in cases {
        let mut args = vec!["train"];
        for setting in settings {
            args.extend(["--set", setting]);
        }
        if settings[0].starts_with("lora") {
            args.push("--use-peft");
        }
        let output = run_dpo(
            &args,
            &[
                ("--model", &ws.model()),
                ("--data", &ws.path("train.jsonl")),
            ],
        );
        assert!(!output.status.success(), "{settings:?} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(expected),
            "{settings:?}: expected `{expected}` in {stderr}"
        );
    }
}

/// TRL 1.x's list form: MPO's three losses with their weights (and LD-DPO's `ld_alpha`), and
/// a one-entry list with WPO and TR-DPO, train from the command line (their values are checked
/// against TRL in `train_trl_parity.rs`).
#[test]
fn weighted_loss_lists_train_from_the_command_line() {
    let ws = Workspace::new();
    for (i, settings) in [
        &[
            "loss_type=[\"sigmoid\", \"bco_pair\", \"sft\"]",
            "loss_weights=[0.8, 0.2, 1.0]",
            "ld_alpha=0.5",
        ][..],
        // WPO and TR-DPO (the reference moved after every step), and a key that changes only
        // memory in TRL.
        &[
            "loss_type=[\"apo_zero\"]",
            "use_weighting=true",
            "sync_ref_model=true",
            "ref_model_sync_steps=1",
            "padding_free=true",
        ][..],
    ]
    .into_iter()
    .enumerate()
    {
        let mut args = vec!["train", "--max-steps", "2"];
        for setting in settings {
            args.extend(["--set", setting]);
        }
        let out = ws.path(&format!("run-{i}"));
        succeed(
            run_dpo(
                &args,
                &[
                    ("--model", &ws.model()),
                    ("--data", &ws.path("train.jsonl")),
                    ("--output-dir", &out),
                ],
            ),
            "dpo train with a loss list",
        );
        let logged = metrics(&out);
        assert!(logged.iter().any(|l| l.contains_key("loss")), "{logged:?}");
    }
}

#[test]
fn precomputed_reference_log_probs_train_like_the_live_reference() {
    let ws = Workspace::new();
    for peft in [true, false] {
        let mut losses = Vec::new();
        for precompute in ["false", "true"] {
            let out = ws.path(&format!("peft-{peft}-precompute-{precompute}"));
            let mut args = vec![
                "train",
                "--max-steps",
                "4",
                "--learning-rate",
                "1e-2",
                "--set",
                "logging_steps=1",
                "--set",
                "per_device_train_batch_size=4",
            ];
            let setting = format!("precompute_ref_log_probs={precompute}");
            args.extend(["--set", &setting]);
            if peft {
                args.push("--use-peft");
            }
            succeed(
                run_dpo(
                    &args,
                    &[
                        ("--model", &ws.model()),
                        ("--data", &ws.path("train.jsonl")),
                        ("--output-dir", &out),
                    ],
                ),
                "dpo train",
            );
            losses.push(
                metrics(&out)
                    .iter()
                    .filter(|l| l.contains_key("loss"))
                    .map(|l| (number(l, "loss"), number(l, "rewards/margins")))
                    .collect::<Vec<_>>(),
            );
        }
        assert_eq!(losses[0].len(), 4);
        for (step, (live, stored)) in losses[0].iter().zip(&losses[1]).enumerate() {
            assert!(
                (live.0 - stored.0).abs() < 1e-5 && (live.1 - stored.1).abs() < 1e-5,
                "peft {peft} step {}: live reference {live:?}, precomputed {stored:?}",
                step + 1
            );
        }
        // And training moved: the margins of the last step are positive.
        assert!(losses[0][3].1 > 0.0, "peft {peft}: {:?}", losses[0]);
    }
}

/// `dpo train --method kto` (TRL's KTOTrainer): unpaired rows (standard and conversational in
/// one file) and a paired file (unpaired as TRL does) train with KTO's metrics, `eval_` ones
/// on an eval split, and a saved reference for TR-DPO-free runs; a file mixing unpaired rows
/// and pairs is refused at the first row of the other kind.
#[test]
fn kto_trains_on_unpaired_rows_and_on_pairs() {
    let ws = Workspace::new();
    let unpaired: String = (0..12)
        .map(|i| {
            let question = format!("Question {i}: which colour?");
            let row = match i % 4 {
                0 => serde_json::json!({"prompt": question, "completion": " blue sky", "label": true}),
                1 => serde_json::json!({"prompt": question, "completion": " red mud", "label": false}),
                2 => serde_json::json!({
                    "prompt": [{"role": "user", "content": question}],
                    "completion": [{"role": "assistant", "content": "blue sky"}],
                    "label": true,
                }),
                _ => serde_json::json!({
                    "prompt": [{"role": "user", "content": question}],
                    "completion": [{"role": "assistant", "content": "red mud"}],
                    "label": false,
                }),
            };
            format!("{row}\n")
        })
        .collect();
    std::fs::write(ws.path("unpaired.jsonl"), &unpaired).unwrap();
    for (data, out, eval) in [
        ("unpaired.jsonl", "kto-unpaired", None),
        ("train.jsonl", "kto-pairs", Some("eval.jsonl")),
    ] {
        let mut paths = vec![
            ("--model", ws.model()),
            ("--data", ws.path(data)),
            ("--output-dir", ws.path(out)),
        ];
        if let Some(eval) = eval {
            paths.push(("--eval-data", ws.path(eval)));
        }
        let paths: Vec<(&str, &Path)> = paths.iter().map(|(k, p)| (*k, p.as_path())).collect();
        let (stdout, stderr) = succeed(
            run_dpo(
                &[
                    "train",
                    "--method",
                    "kto",
                    "--max-steps",
                    "6",
                    "--learning-rate",
                    "1e-3",
                    "--set",
                    "per_device_train_batch_size=4",
                    "--set",
                    "logging_steps=1",
                ],
                &paths,
            ),
            "dpo train --method kto",
        );
        assert!(
            stderr.contains("12 labelled rows (6 desirable, 6 undesirable)")
                || stderr.contains("24 labelled rows (12 desirable, 12 undesirable)"),
            "{data}: {stderr}"
        );
        let logged = metrics(&ws.path(out));
        let steps: Vec<_> = logged.iter().filter(|l| l.contains_key("loss")).collect();
        assert_eq!(steps.len(), 6, "{data}: {logged:?}");
        // Every step logs the loss and the KL estimate; a side's metrics only when its batch
        // had rows of that side (TRL's rule: the unpaired pairs file's first batches hold
        // only chosen completions).
        for line in &steps {
            assert!(number(line, "loss").is_finite(), "{data}: {line:?}");
            assert!(number(line, "kl") >= 0.0, "{data}: {line:?}");
            for (key, value) in line.iter() {
                assert!(
                    value.as_f64().is_some_and(f64::is_finite),
                    "{data}: {key} in {line:?}"
                );
            }
        }
        for key in [
            "logits/chosen",
            "logits/rejected",
            "rewards/chosen",
            "logps/chosen",
            "rewards/rejected",
            "logps/rejected",
        ] {
            assert!(
                steps.iter().any(|l| l.contains_key(key)),
                "{data}: no {key}"
            );
        }
        if data == "unpaired.jsonl" {
            // Each batch of this file has both labels: desirable completions gain on
            // undesirable ones.
            let last = steps.last().unwrap();
            assert!(number(last, "rewards/margins") > 0.0, "{data}: {last:?}");
        }
        let summary: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        if eval.is_some() {
            assert!(summary["eval_kl"].as_f64().unwrap() >= 0.0, "{summary}");
            assert!(
                summary["eval_loss"].as_f64().unwrap().is_finite(),
                "{summary}"
            );
        }
        let args = std::fs::read_to_string(ws.path(out).join("training_args.json")).unwrap();
        assert!(args.contains("\"method\": \"kto\""), "{args}");
    }

    let first_pair = preference_lines(0..1);
    std::fs::write(
        ws.path("mixed.jsonl"),
        format!(
            "{}{first_pair}",
            unpaired.lines().next().unwrap().to_owned() + "\n"
        ),
    )
    .unwrap();
    let output = run_dpo(
        &["train", "--method", "kto", "--max-steps", "1"],
        &[
            ("--model", &ws.model()),
            ("--data", &ws.path("mixed.jsonl")),
            ("--output-dir", &ws.path("mixed")),
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success()
            && stderr.contains("mixed.jsonl:2: this row is a pair, the file's first row unpaired"),
        "{stderr}"
    );
}

/// TR-DPO's moved reference is part of a checkpoint: a full fine-tuning run with
/// `sync_ref_model` stopped at a checkpoint and resumed logs every step as the uninterrupted
/// run does (a resumed run that restarted from the base as its reference would not).
#[test]
fn a_tr_dpo_run_resumes_with_its_moved_reference() {
    let ws = Workspace::new();
    std::fs::write(
        ws.path("run.toml"),
        "learning_rate = 1e-2\nper_device_train_batch_size = 4\nlr_scheduler_type = \"constant\"\n\
         logging_steps = 1\nsave_steps = 3\nsync_ref_model = true\nref_model_sync_steps = 2\n\
         ref_model_mixup_alpha = 0.5\nseed = 3\n",
    )
    .unwrap();
    let train = |out: &Path, extra: &[&str]| {
        let mut args = vec!["train"];
        args.extend(extra);
        run_dpo(
            &args,
            &[
                ("--model", &ws.model()),
                ("--data", &ws.path("train.jsonl")),
                ("--config", &ws.path("run.toml")),
                ("--output-dir", out),
            ],
        )
    };
    let straight = ws.path("straight");
    succeed(train(&straight, &["--max-steps", "6"]), "straight run");
    let stopped = ws.path("stopped");
    succeed(train(&stopped, &["--max-steps", "3"]), "first half");
    assert!(stopped.join("checkpoint-3/reference.safetensors").exists());
    succeed(
        train(&stopped, &["--max-steps", "6", "--resume"]),
        "resumed run",
    );
    let steps = |dir: &Path| -> Vec<String> {
        metrics(dir)
            .iter()
            .filter(|l| l.contains_key("loss"))
            .map(|l| format!("{} {} {}", l["step"], l["loss"], l["rewards/margins"]))
            .collect()
    };
    assert_eq!(steps(&straight).len(), 6);
    assert_eq!(steps(&stopped), steps(&straight));
}
