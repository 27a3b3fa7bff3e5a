//! The model an export starts from, whatever form it comes in — a `dpo train` output or
//! checkpoint (full weights, or LoRA adapters merged into their base), an HF directory, or a
//! GGUF (dequantized, to be requantized) — as f32 weights under transformers' names plus the
//! text side, and where it came from: its name, the base model of its lineage, its license,
//! the served version it descends from, and the DPO run that made it.

use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use serde_json::{Map, Value};
use shared::model_manifest::{MANIFEST_FILE, ModelManifest};
use shared::{GgufModel, TrainingRunSummary};

use crate::train::base_model::BaseModel;
use crate::train::checkpoint::{ARGS_FILE, STATE_FILE};
use crate::train::precision::Precision;
use crate::train::training_model::{ADAPTER_CONFIG, load_trained};

pub struct ExportSource {
    /// Config and text side (tokenizer, chat template) of the model.
    pub base: BaseModel,
    /// Every weight to export, f32 on the CPU, transformers' names, adapters merged; no
    /// `lm_head.weight` when the embeddings are tied.
    pub weights: Vec<(String, Tensor)>,
    pub provenance: Provenance,
}

#[derive(Debug, Clone)]
pub struct Provenance {
    /// The source's own name (GGUF `general.name`, or its directory's name).
    pub source_name: String,
    /// The model this one is a fine-tune of (or the source itself for a plain conversion of
    /// a model that names no base).
    pub base_model: String,
    pub license: Option<String>,
    /// The served version the starting weights came from (the `manifest.json` beside them).
    pub parent_version: Option<String>,
    pub training: Option<TrainingRunSummary>,
}

/// TrainingArguments keys that describe where a run read and wrote, not how it trained.
const NOT_HYPERPARAMETERS: [&str; 14] = [
    "model_name_or_path",
    "dataset_name",
    "eval_dataset_name",
    "output_dir",
    "skip_malformed",
    "use_cpu",
    "logging_steps",
    "save_steps",
    "save_total_limit",
    "eval_strategy",
    "eval_steps",
    "per_device_eval_batch_size",
    "disable_dropout",
    "lora",
];

impl ExportSource {
    pub fn load(path: &Path) -> Result<Self> {
        let device = Device::Cpu;
        // A training output or checkpoint has its trainer state; any other directory is a
        // plain HF model, even one with full weights.
        let is_training_output = path.join(STATE_FILE).is_file();
        if is_training_output && let Some(trained) = load_trained(path, &device, Precision::F32)? {
            let weights = trained.model.policy.merged_weights()?;
            let start = &trained.base.source;
            let start_provenance = model_provenance(start)?;
            let provenance = Provenance {
                source_name: directory_name(path),
                base_model: start_provenance.source_name,
                license: start_provenance.license,
                parent_version: manifest_beside(start).map(|m| m.version),
                training: Some(training_summary(path)?),
            };
            return Ok(Self {
                base: trained.base,
                weights,
                provenance,
            });
        }
        let base = BaseModel::load(path, &device)
            .with_context(|| format!("loading {}", path.display()))?;
        let provenance = model_provenance(path)?;
        let mut weights: Vec<(String, Tensor)> = base
            .weights
            .iter()
            .filter(|(name, _)| !(base.config.tie_word_embeddings && *name == "lm_head.weight"))
            .map(|(name, tensor)| (name.clone(), tensor.clone()))
            .collect();
        weights.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Self {
            base,
            weights,
            provenance,
        })
    }
}

/// The special token ids both export formats record.
#[derive(Debug, Clone, Copy)]
pub struct SpecialTokenIds {
    pub eos: u32,
    /// `<|endoftext|>` when the vocabulary has it (Qwen's document end).
    pub end_of_text: Option<u32>,
    /// The tokenizer's own BOS, else `<|endoftext|>` (as Qwen's config.json names it).
    pub bos: Option<u32>,
    /// `<|endoftext|>`, else EOS.
    pub pad: u32,
}

impl ExportSource {
    pub fn special_token_ids(&self) -> SpecialTokenIds {
        let tokenizer = &self.base.text.tokenizer;
        let end_of_text = tokenizer.token_to_id("<|endoftext|>");
        SpecialTokenIds {
            eos: tokenizer.eos_token_id,
            end_of_text,
            bos: tokenizer.bos_token_id.or(end_of_text),
            pad: end_of_text.unwrap_or(tokenizer.eos_token_id),
        }
    }
}

/// The provenance of a plain model (GGUF file or HF directory), no training involved.
fn model_provenance(path: &Path) -> Result<Provenance> {
    let manifest = manifest_beside(path);
    let (source_name, declared_base, license) = if path.is_dir() {
        let card = std::fs::read_to_string(path.join("README.md")).unwrap_or_default();
        (
            directory_name(path),
            card_field(&card, "base_model"),
            card_field(&card, "license"),
        )
    } else {
        let gguf = GgufModel::open(path)?;
        let text = |key: &str| {
            gguf.metadata()
                .get(key)
                .and_then(|v| v.to_string().ok())
                .cloned()
        };
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        (
            text("general.name").unwrap_or(stem),
            text("general.base_model.0.name"),
            text("general.license"),
        )
    };
    Ok(Provenance {
        base_model: declared_base.unwrap_or_else(|| source_name.clone()),
        source_name,
        license,
        parent_version: manifest.map(|m| m.version),
        training: None,
    })
}

/// The `manifest.json` in the directory of (or, for a directory, inside) `path`.
fn manifest_beside(path: &Path) -> Option<ModelManifest> {
    let dir = if path.is_dir() { path } else { path.parent()? };
    let text = std::fs::read_to_string(dir.join(MANIFEST_FILE)).ok()?;
    match serde_json::from_str(&text) {
        Ok(manifest) => Some(manifest),
        Err(error) => {
            tracing::warn!(
                "{}: not a manifest ({error}); no parent version recorded",
                dir.join(MANIFEST_FILE).display()
            );
            None
        }
    }
}

fn directory_name(path: &Path) -> String {
    std::path::absolute(path)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| path.display().to_string())
}

/// A top-level `key: value` of a model card's YAML front matter.
fn card_field(card: &str, key: &str) -> Option<String> {
    let front = card.strip_prefix("---\n")?.split("\n---").next()?;
    front.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?.trim();
        (!value.is_empty()).then(|| value.trim_matches('"').to_string())
    })
}

/// The run behind a training output: its settings (training_args.json) and its last logged
/// train, eval and summary metrics (metrics.jsonl, or a checkpoint's trainer_state.json).
fn training_summary(dir: &Path) -> Result<TrainingRunSummary> {
    let read = |name: &str| -> Result<Value> {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{}: not valid JSON", path.display()))
    };
    let args = read(ARGS_FILE)?;
    let state = read(STATE_FILE)?;
    let use_peft = args["use_peft"] == true || dir.join(ADAPTER_CONFIG).exists();
    let hyperparameters: Map<String, Value> = args
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(key, value)| {
            !NOT_HYPERPARAMETERS.contains(&key.as_str())
                && !value.is_null()
                && (use_peft || !key.starts_with("lora_"))
        })
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    // metrics.jsonl (a finished run's, with its summary line), else the checkpoint's history.
    let history: Vec<Value> = match std::fs::read_to_string(dir.join("metrics.jsonl")) {
        Ok(lines) => lines
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()
            .with_context(|| format!("{}: not JSON Lines", dir.join("metrics.jsonl").display()))?,
        Err(_) => state["log_history"].as_array().cloned().unwrap_or_default(),
    };
    let last_with = |key: &str| history.iter().rev().find(|line| line.get(key).is_some());
    let mut metrics = Map::new();
    for line in ["loss", "eval_loss", "train_runtime"]
        .into_iter()
        .filter_map(last_with)
    {
        for (key, value) in line.as_object().into_iter().flatten() {
            if key != "step" && key != "epoch" {
                metrics.insert(key.clone(), value.clone());
            }
        }
    }
    Ok(TrainingRunSummary {
        // `dpo` or `kto` (runs before `method` existed were DPO).
        method: args["method"].as_str().unwrap_or("dpo").into(),
        adaptation: if use_peft { "lora" } else { "full" }.into(),
        global_step: state["global_step"].as_u64().unwrap_or(0),
        epoch: history
            .last()
            .and_then(|line| line["epoch"].as_f64())
            .unwrap_or(0.0),
        hyperparameters,
        metrics,
    })
}
