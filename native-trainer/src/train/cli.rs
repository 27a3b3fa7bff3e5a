//! `dpo train` and `dpo eval`: the command-line side of training. Settings come from a TOML
//! file with TRL's key names, then the flags below, then `--set KEY=VALUE` overrides.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::Value;

use super::base_model::BaseModel;
use super::trainer::{Resume, evaluate, train};
use super::training_config::{TrainingConfig, parse_override};
use super::training_data::TrainingData;
use super::training_model::{TrainingModel, load_trained};

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Base model: a GGUF file or a Hugging Face directory (config.json, safetensors,
    /// tokenizer.json). Same as `model_name_or_path` in the config.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Preference data, JSON Lines or Parquet in TRL's standard, conversational or implicit-prompt
    /// format, or the votes in a `dpo serve` store: `sqlite:PATH` or `postgres://…`, with an
    /// optional selection `?model_version=V&since=T&until=T&annotator=ID&min_agreement=F`.
    /// Same as `dataset_name` in the config.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Eval split (same formats), scored with `eval_` metrics. Same as `eval_dataset_name`.
    #[arg(long)]
    pub eval_data: Option<PathBuf>,
    /// TOML file of DPOConfig / TrainingArguments keys (`learning_rate`, `beta`,
    /// `per_device_train_batch_size`, `use_peft`, …).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The trainer: `dpo` (pairs; DPOConfig's keys) or `kto` (TRL's KTOTrainer: unpaired
    /// rows `prompt`, `completion`, `label`, a paired file unpaired, or the store's votes,
    /// both-bad ones included; KTOConfig's keys `desirable_weight`, `undesirable_weight`,
    /// `loss_type = kto | apo_zero_unpaired`). Same as `method` in the config.
    #[arg(long, value_parser = ["dpo", "kto"])]
    pub method: Option<String>,
    /// Where metrics.jsonl, checkpoints and the trained weights or adapters go.
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    #[arg(long)]
    pub max_steps: Option<i64>,
    #[arg(long)]
    pub learning_rate: Option<f64>,
    #[arg(long)]
    pub beta: Option<f64>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Train LoRA adapters (`lora_r`, `lora_alpha`, `lora_target_modules`) instead of
    /// every weight.
    #[arg(long)]
    pub use_peft: bool,
    /// Leave malformed data lines out (counted) instead of stopping at the first.
    #[arg(long)]
    pub skip_malformed: bool,
    /// Any other setting, as `key=value` with TRL's key name (repeatable), e.g.
    /// `--set lr_scheduler_type=cosine --set save_steps=50`.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_override)]
    pub overrides: Vec<(String, toml::Value)>,
    /// Continue from a checkpoint: the latest in output_dir (`--resume` alone), or the
    /// checkpoint directory given. Steps, optimizer, schedule and data order continue exactly.
    #[arg(long, value_name = "CHECKPOINT", num_args = 0..=1, default_missing_value = LATEST)]
    pub resume: Option<PathBuf>,
    /// Measure where the first optimizer step's memory goes (weights, the reference pass,
    /// what autograd keeps by kind, the vocabulary, gradients, optimizer state): a table on
    /// stderr and `memory_profile.json` in the output directory.
    #[arg(long)]
    pub memory_profile: bool,
}

/// `--resume` without a path.
const LATEST: &str = "latest";

fn flag_overrides(pairs: Vec<(&str, Option<toml::Value>)>) -> Vec<(String, toml::Value)> {
    pairs
        .into_iter()
        .filter_map(|(key, value)| value.map(|v| (key.to_string(), v)))
        .collect()
}

fn path_value(path: &Option<PathBuf>) -> Option<toml::Value> {
    path.as_ref()
        .map(|p| toml::Value::String(p.display().to_string()))
}

impl TrainArgs {
    fn settings(&self) -> Result<TrainingConfig> {
        let mut overrides = flag_overrides(vec![
            ("model_name_or_path", path_value(&self.model)),
            ("dataset_name", path_value(&self.data)),
            ("eval_dataset_name", path_value(&self.eval_data)),
            ("output_dir", path_value(&self.output_dir)),
            ("method", self.method.clone().map(toml::Value::String)),
            ("max_steps", self.max_steps.map(toml::Value::Integer)),
            ("learning_rate", self.learning_rate.map(toml::Value::Float)),
            ("beta", self.beta.map(toml::Value::Float)),
            ("seed", self.seed.map(|s| toml::Value::Integer(s as i64))),
            (
                "use_peft",
                self.use_peft.then_some(toml::Value::Boolean(true)),
            ),
            (
                "skip_malformed",
                self.skip_malformed.then_some(toml::Value::Boolean(true)),
            ),
        ]);
        overrides.extend(self.overrides.iter().cloned());
        TrainingConfig::load(self.config.as_deref(), &overrides)
    }
}

pub fn run_train(args: &TrainArgs) -> Result<()> {
    crate::process_allocator::keep_freed_memory();
    let config = args.settings()?;
    let resume = args.resume.as_ref().map(|path| {
        if path.as_os_str() == LATEST {
            Resume::Latest
        } else {
            Resume::Checkpoint(path.clone())
        }
    });
    let outcome = train(&config, resume, args.memory_profile)?;
    let mut summary = serde_json::Map::new();
    summary.insert(
        "output_dir".into(),
        Value::from(outcome.output_dir.display().to_string()),
    );
    summary.insert("global_step".into(), Value::from(outcome.global_step));
    for (key, value) in outcome
        .last_log
        .into_iter()
        .chain(outcome.eval.unwrap_or_default())
        .chain(outcome.summary)
    {
        if key != "step" && key != "epoch" {
            summary.insert(key, value);
        }
    }
    println!("{}", Value::Object(summary));
    Ok(())
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// The policy: a GGUF file, an HF directory, or a `dpo train` output or checkpoint
    /// (adapters are scored against their base model with the adapters off).
    #[arg(long)]
    pub model: PathBuf,
    /// Preference data, JSON Lines or Parquet (TRL formats).
    #[arg(long)]
    pub data: PathBuf,
    /// The reference model (default: the base a training output started from, else the
    /// policy itself).
    #[arg(long)]
    pub ref_model: Option<PathBuf>,
    #[arg(long)]
    pub beta: Option<f64>,
    /// TOML settings (`loss_type`, `max_length`, `per_device_eval_batch_size`, …); a
    /// training output's own settings (its training_args.json) when not given.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub skip_malformed: bool,
    /// Any other setting as `key=value` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_override)]
    pub overrides: Vec<(String, toml::Value)>,
}

/// Scores `--data` and prints one JSON object of `eval_…` metrics as the last stdout line.
pub fn run_eval(args: &EvalArgs) -> Result<()> {
    crate::process_allocator::keep_freed_memory();
    let mut overrides = flag_overrides(vec![
        ("beta", args.beta.map(toml::Value::Float)),
        (
            "skip_malformed",
            args.skip_malformed.then_some(toml::Value::Boolean(true)),
        ),
    ]);
    overrides.extend(args.overrides.iter().cloned());
    // A training output is scored with its run's settings (beta, loss, lengths) unless told.
    let saved_settings = args.model.join(super::checkpoint::ARGS_FILE);
    let config = if args.config.is_none() && saved_settings.is_file() {
        TrainingConfig::load_saved(&saved_settings, &overrides)?
    } else {
        TrainingConfig::load(args.config.as_deref(), &overrides)?
    };
    let device = config.device()?;
    let (mut model, base) = match load_trained(&args.model, &device, config.precision())? {
        Some(trained) => (trained.model, trained.base),
        None => {
            let base = BaseModel::load(&args.model, &device)
                .with_context(|| format!("loading {}", args.model.display()))?;
            (
                TrainingModel::new(&base, None, config.seed, config.precision())?,
                base,
            )
        }
    };
    if let Some(reference) = &args.ref_model {
        model.set_reference(&BaseModel::load(reference, &device)?)?;
    }
    let data = TrainingData::load(&args.data, &base.text, &config)?;
    let metrics = evaluate(&model, &data, &config, &device, base.pad_token_id())?;
    println!("{}", Value::Object(metrics));
    Ok(())
}
