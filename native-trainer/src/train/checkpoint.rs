//! Checkpoints: everything a run needs to continue exactly where it stopped, written every
//! `save_steps` into `output_dir/checkpoint-N/`:
//! - the trained weights or adapters (as the final output, `training_model.rs`),
//! - `optimizer.safetensors`: AdamW's moments; `trainer_state.json`: Adam's step count, the
//!   global step, the data position (epoch, next micro-batch), the log history and the
//!   metrics of the unfinished logging window;
//! - `training_args.json`: the run's settings (the seed fixes every epoch's data order).
//!
//! A checkpoint is written under a temporary name and renamed when complete, so a kill during
//! the write leaves the previous checkpoint as the latest one.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use candle_core::Device;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::base_model::BaseModel;
use super::metric_window::MetricWindow;
use super::optimization::TrainerOptimizer;
use super::training_config::TrainingConfig;
use super::training_model::TrainingModel;

const OPTIMIZER_FILE: &str = "optimizer.safetensors";
pub const STATE_FILE: &str = "trainer_state.json";
pub const ARGS_FILE: &str = "training_args.json";

/// Where the run stands; saved in `trainer_state.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    pub global_step: usize,
    pub max_steps: usize,
    /// The epoch of the next micro-batch, and its index within that epoch.
    pub epoch_index: usize,
    pub next_batch: usize,
    /// Adam's `t`.
    pub optimizer_steps: usize,
    /// Every line written to `metrics.jsonl` so far.
    pub log_history: Vec<Map<String, Value>>,
    /// Metrics of micro-batches since the last log line.
    pub pending: MetricWindow,
}

impl TrainerState {
    /// Epochs done, fractional, as transformers logs `epoch`.
    pub fn epoch(&self, batches_per_epoch: usize) -> f64 {
        self.epoch_index as f64 + self.next_batch as f64 / batches_per_epoch.max(1) as f64
    }
}

fn checkpoint_name(step: usize) -> String {
    format!("checkpoint-{step}")
}

/// Writes `checkpoint-{step}` into `output_dir`, then prunes to `save_total_limit`.
pub fn save_checkpoint(
    output_dir: &Path,
    model: &TrainingModel,
    base: &BaseModel,
    optimizer: &TrainerOptimizer,
    state: &TrainerState,
    config: &TrainingConfig,
) -> Result<PathBuf> {
    let name = checkpoint_name(state.global_step);
    let finished = output_dir.join(&name);
    let partial = output_dir.join(format!("{name}.tmp"));
    if partial.exists() {
        std::fs::remove_dir_all(&partial)?;
    }
    std::fs::create_dir_all(&partial)?;
    model.save(&partial, base)?;
    if config.sync_ref_model {
        model.save_reference(&partial)?;
    }
    let moments: std::collections::HashMap<_, _> = optimizer.state_tensors().into_iter().collect();
    candle_core::safetensors::save(&moments, partial.join(OPTIMIZER_FILE))?;
    std::fs::write(
        partial.join(STATE_FILE),
        serde_json::to_string_pretty(state)?,
    )?;
    std::fs::write(
        partial.join(ARGS_FILE),
        serde_json::to_string_pretty(config)?,
    )?;
    if finished.exists() {
        std::fs::remove_dir_all(&finished)?;
    }
    std::fs::rename(&partial, &finished)?;
    if let Some(limit) = config.save_total_limit {
        let mut all = list_checkpoints(output_dir)?;
        while all.len() > limit.max(1) {
            let (_, oldest) = all.remove(0);
            std::fs::remove_dir_all(&oldest)?;
        }
    }
    Ok(finished)
}

/// Complete checkpoints in `output_dir`, oldest first.
pub fn list_checkpoints(output_dir: &Path) -> Result<Vec<(usize, PathBuf)>> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(output_dir) else {
        return Ok(found);
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        if let Some(step) = name
            .strip_prefix("checkpoint-")
            .and_then(|s| s.parse::<usize>().ok())
            && entry.path().join(STATE_FILE).exists()
        {
            found.push((step, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Restores `model` and `optimizer` from `checkpoint` and returns its state; warns about
/// settings that differ from the checkpoint's (a bitwise continuation needs the same ones).
pub fn load_checkpoint(
    checkpoint: &Path,
    model: &mut TrainingModel,
    optimizer: &mut TrainerOptimizer,
    config: &TrainingConfig,
) -> Result<TrainerState> {
    let state_path = checkpoint.join(STATE_FILE);
    if !state_path.exists() {
        bail!(
            "{}: not a checkpoint (no {STATE_FILE})",
            checkpoint.display()
        );
    }
    let state: TrainerState = serde_json::from_str(&std::fs::read_to_string(&state_path)?)
        .with_context(|| format!("{}: unreadable", state_path.display()))?;
    model.load_trained(checkpoint)?;
    if config.sync_ref_model {
        model.load_reference(checkpoint)?;
    }
    let moments = candle_core::safetensors::load(checkpoint.join(OPTIMIZER_FILE), &Device::Cpu)
        .with_context(|| format!("reading {}", checkpoint.join(OPTIMIZER_FILE).display()))?;
    optimizer.restore(&moments, state.optimizer_steps)?;
    if let Ok(text) = std::fs::read_to_string(checkpoint.join(ARGS_FILE))
        && let Ok(Value::Object(saved)) = serde_json::from_str::<Value>(&text)
        && let Ok(Value::Object(current)) = serde_json::to_value(config)
    {
        let differing: Vec<&String> = current
            .iter()
            .filter(|(key, value)| saved.get(*key) != Some(value))
            .map(|(key, _)| key)
            .collect();
        if !differing.is_empty() {
            tracing::warn!(
                "resuming with settings that differ from the checkpoint's: {differing:?}; the run will not match an uninterrupted one"
            );
        }
    }
    Ok(state)
}
