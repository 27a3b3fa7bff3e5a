//! The training loop (DPO, or KTO with `method = kto`), top to bottom: load the model and
//! data, build the optimizer, resume if asked, then for each optimizer step take
//! `gradient_accumulation_steps` micro-batches of the epoch's seeded shuffle (KTO: in order),
//! backpropagate the loss, clip, step the
//! schedule and AdamW (and move TR-DPO's reference), log TRL's metrics to `metrics.jsonl`,
//! evaluate and checkpoint on schedule, and finally save the trained weights or adapters into
//! `output_dir`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::Device;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value};
use shared::SplitMix64;

use super::base_model::BaseModel;
use super::checkpoint::{
    ARGS_FILE, STATE_FILE, TrainerState, list_checkpoints, load_checkpoint, save_checkpoint,
};
use super::memory_profile::{self as profile, storage_bytes};
use super::metric_window::MetricWindow;
use super::optimization::{TrainerOptimizer, accumulate, clip_gradient_norm, learning_rate_factor};
use super::qwen2::LayerTape;
use super::training_config::{EvalStrategy, TrainingConfig};
use super::training_data::TrainingData;
use super::training_model::TrainingModel;

pub const METRICS_FILE: &str = "metrics.jsonl";
/// What `--memory-profile` writes into the output directory.
pub const MEMORY_PROFILE_FILE: &str = "memory_profile.json";

/// Where `--resume` continues from.
#[derive(Debug, Clone)]
pub enum Resume {
    /// The latest complete checkpoint in `output_dir`.
    Latest,
    Checkpoint(PathBuf),
}

/// What a finished run reports.
pub struct TrainOutcome {
    pub output_dir: PathBuf,
    pub global_step: usize,
    /// The last log line (training metrics) and the final eval metrics, if any.
    pub last_log: Map<String, Value>,
    pub eval: Option<Map<String, Value>>,
    /// `train_runtime`, `train_samples_per_second`, `train_steps_per_second`, `train_loss`.
    pub summary: Map<String, Value>,
}

/// The micro-batches of one epoch: a seeded shuffle of the rows (or, `in_order`, the rows in
/// order), cut into batches.
fn epoch_batches(
    rows: usize,
    batch_size: usize,
    seed: u64,
    epoch: usize,
    in_order: bool,
) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..rows).collect();
    if !in_order {
        SplitMix64(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)).shuffle(&mut order);
    }
    order.chunks(batch_size).map(<[usize]>::to_vec).collect()
}

/// Runs the training `config` describes; `memory_profile` measures the first step's memory
/// (`memory_profile.rs`) and writes it into the output directory.
pub fn train(
    config: &TrainingConfig,
    resume: Option<Resume>,
    memory_profile: bool,
) -> Result<TrainOutcome> {
    if memory_profile {
        profile::start();
    }
    let (model_path, data_path) = config.require_inputs()?;
    let device = config.device()?;
    let output_dir = config.output_dir.clone();
    std::fs::create_dir_all(&output_dir)
        .with_context(|| format!("creating {}", output_dir.display()))?;

    // Model and data.
    tracing::info!("loading {}", model_path.display());
    let lora = config.lora_config().map_err(anyhow::Error::msg)?;
    // Frozen LoRA weights are read straight into the compute dtype; full fine-tuning's
    // trainable copies are f32.
    let weights_dtype = match lora {
        Some(_) => config.precision().compute_dtype(),
        None => candle_core::DType::F32,
    };
    let mut base = BaseModel::load_as(model_path, &device, weights_dtype)?;
    let mut model = TrainingModel::new(&base, lora.as_ref(), config.seed, config.precision())?;
    base.release_weights();
    let pad_id = base.pad_token_id();
    profile::mark("model loaded (weights)");
    let mut train_data = TrainingData::load(data_path, &base.text, config)?;
    if let TrainingData::Labelled(data) = &train_data {
        data.check_balance(config);
    }
    let mut eval_data = match &config.eval_dataset_name {
        Some(path) => Some(TrainingData::load(path, &base.text, config)?),
        None => None,
    };
    if config.precompute_ref_log_probs && !config.reference_free {
        tracing::info!("precomputing reference log-probs");
        train_data.precompute_reference(
            &model,
            config,
            config.per_device_train_batch_size,
            &device,
            pad_id,
        )?;
        if let Some(eval) = &mut eval_data {
            eval.precompute_reference(
                &model,
                config,
                config.per_device_eval_batch_size,
                &device,
                pad_id,
            )?;
        }
        model.drop_reference();
    }
    profile::mark("preference data tokenized");

    // Schedule.
    let batches_per_epoch = train_data
        .len()
        .div_ceil(config.per_device_train_batch_size);
    let steps_per_epoch = batches_per_epoch
        .div_ceil(config.gradient_accumulation_steps)
        .max(1);
    let max_steps = if config.max_steps > 0 {
        config.max_steps as usize
    } else {
        (config.num_train_epochs * steps_per_epoch as f64).ceil() as usize
    };
    let warmup = config.warmup_steps_for(max_steps);
    let eval_every = match config.eval_strategy {
        EvalStrategy::Steps => config.eval_steps.unwrap_or(config.logging_steps),
        EvalStrategy::Epoch => steps_per_epoch,
        EvalStrategy::No => 0,
    };

    // Optimizer, and the state to resume.
    let named = model.named_vars();
    let vars: Vec<_> = named.iter().map(|(_, v)| v.clone()).collect();
    let trainable_count: usize = vars.iter().map(|v| v.as_tensor().elem_count()).sum();
    tracing::info!(
        "{} {}, {batches_per_epoch} batches per epoch, {max_steps} steps; {trainable_count} trainable parameters ({})",
        train_data.len(),
        train_data.unit(),
        if lora.is_some() { "LoRA" } else { "full" }
    );
    let mut optimizer = TrainerOptimizer::new(named, config.adamw())?;
    let mut state = TrainerState {
        max_steps,
        ..TrainerState::default()
    };
    if let Some(resume) = resume {
        let checkpoint = match resume {
            Resume::Checkpoint(path) => path,
            Resume::Latest => list_checkpoints(&output_dir)?
                .pop()
                .map(|(_, path)| path)
                .with_context(|| format!("--resume: no checkpoint in {}", output_dir.display()))?,
        };
        state = load_checkpoint(&checkpoint, &mut model, &mut optimizer, config)?;
        state.max_steps = max_steps;
        tracing::info!(
            "resuming from {} at step {}",
            checkpoint.display(),
            state.global_step
        );
    }
    let metrics_path = output_dir.join(METRICS_FILE);
    let mut metrics_file = rewrite_metrics(&metrics_path, &state.log_history)?;

    let progress = ProgressBar::new(max_steps as u64).with_style(
        ProgressStyle::with_template(
            "{spinner} training [{bar:30}] {pos}/{len} steps {elapsed_precise} (eta {eta}) {msg}",
        )?
        .progress_chars("=> "),
    );
    progress.set_position(state.global_step as u64);
    let mut eval_metrics = None;
    let mut batches = epoch_batches(
        train_data.len(),
        config.per_device_train_batch_size,
        config.seed,
        state.epoch_index,
        config.batches_in_order(),
    );

    let started = std::time::Instant::now();
    let first_step = state.global_step;
    let mut profiling = memory_profile;
    while state.global_step < max_steps {
        // The next accumulation group, within the current epoch.
        if state.next_batch >= batches.len() {
            state.epoch_index += 1;
            state.next_batch = 0;
            batches = epoch_batches(
                train_data.len(),
                config.per_device_train_batch_size,
                config.seed,
                state.epoch_index,
                config.batches_in_order(),
            );
        }
        let group_end = (state.next_batch + config.gradient_accumulation_steps).min(batches.len());
        let group = &batches[state.next_batch..group_end];

        // Forward and backward over the group.
        let mut grads = None;
        for indices in group {
            profile::mark("before the step");
            let batch = train_data.batch(indices, &model, config, &device, pad_id)?;
            profile::mark("reference pass");
            let (loss, metrics, tape) =
                batch.step(&model.policy, config, config.gradient_checkpointing)?;
            let kept_inputs = tape.as_ref().map_or(0, LayerTape::saved_bytes);
            profile::census(&loss, &model.policy.config, kept_inputs);
            profile::mark("loss");
            let mut micro_grads = (loss / group.len() as f64)?.backward()?;
            profile::mark("backward: loss to the last layer");
            if let Some(tape) = tape {
                // Checkpointed: the layers' gradients, one recomputed layer at a time.
                tape.backward(&mut micro_grads, &vars)?;
                profile::mark("backward: decoder layers, recomputed");
            }
            accumulate(&mut grads, micro_grads, &vars)?;
            state.pending.record(&metrics);
        }
        let mut grads = grads.expect("a group has at least one batch");
        if profiling {
            profile::gradients(
                vars.iter()
                    .filter_map(|v| grads.get(v.as_tensor()))
                    .map(|g| storage_bytes(g).1)
                    .sum(),
            );
        }
        let grad_norm = clip_gradient_norm(&mut grads, &vars, config.max_grad_norm)?;

        // Update.
        let learning_rate = config.learning_rate
            * learning_rate_factor(
                config.lr_scheduler_type,
                state.global_step,
                warmup,
                max_steps,
            );
        optimizer.set_learning_rate(learning_rate);
        optimizer.step(&grads)?;
        if profiling {
            profile::mark("optimizer step (AdamW moments)");
            drop(grads);
            if let Some(recorded) = profile::finish() {
                let table = profile::table(&recorded);
                progress.suspend(|| eprintln!("memory profile of the first step:\n{table}"));
                std::fs::write(
                    output_dir.join(MEMORY_PROFILE_FILE),
                    serde_json::to_string_pretty(&recorded)?,
                )?;
            }
            profiling = false;
        }
        state.global_step += 1;
        if config.sync_ref_model
            && state
                .global_step
                .is_multiple_of(config.ref_model_sync_steps)
        {
            model.sync_reference(config.ref_model_mixup_alpha)?;
        }
        state.next_batch = group_end;
        state.optimizer_steps = optimizer.steps_taken();
        progress.inc(1);
        let epoch = state.epoch(batches.len());

        // Log, evaluate, checkpoint.
        let last_step = state.global_step == max_steps;
        if state.global_step.is_multiple_of(config.logging_steps) || last_step {
            let line = log_line(
                &state.pending,
                grad_norm,
                learning_rate,
                epoch,
                state.global_step,
            );
            progress.set_message(format!(
                "loss {:.4} · rewards/margins {:.3}",
                state.pending.mean("loss").unwrap_or(f64::NAN),
                state.pending.mean("rewards/margins").unwrap_or(f64::NAN)
            ));
            writeln!(metrics_file, "{}", Value::Object(line.clone()))?;
            metrics_file.flush()?;
            state.log_history.push(line);
            state.pending = MetricWindow::default();
        }
        if let Some(eval) = &eval_data
            && ((eval_every > 0 && state.global_step.is_multiple_of(eval_every)) || last_step)
        {
            let mut line = evaluate(&model, eval, config, &device, pad_id)?;
            line.insert("epoch".into(), Value::from(epoch));
            line.insert("step".into(), Value::from(state.global_step));
            let value = |key: &str| line.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN);
            progress.println(format!(
                "step {}: eval_loss {:.4}, {}",
                state.global_step,
                value("eval_loss"),
                match &train_data {
                    TrainingData::Pairs(_) => format!(
                        "eval_rewards/accuracies {:.3}",
                        value("eval_rewards/accuracies")
                    ),
                    TrainingData::Labelled(_) =>
                        format!("eval_rewards/margins {:.3}", value("eval_rewards/margins")),
                }
            ));
            writeln!(metrics_file, "{}", Value::Object(line.clone()))?;
            metrics_file.flush()?;
            state.log_history.push(line.clone());
            eval_metrics = Some(line);
        }
        if config.save_steps > 0 && state.global_step.is_multiple_of(config.save_steps) {
            let path = save_checkpoint(&output_dir, &model, &base, &optimizer, &state, config)?;
            tracing::info!("saved {}", path.display());
        }
    }
    progress.finish();

    // The run summary transformers logs last: runtime and throughput of this session's
    // steps, and the mean training loss over every logged step.
    let runtime = started.elapsed().as_secs_f64();
    let steps_run = (state.global_step - first_step) as f64;
    let samples_per_step =
        (config.per_device_train_batch_size * config.gradient_accumulation_steps) as f64;
    let logged_losses: Vec<f64> = state
        .log_history
        .iter()
        .filter_map(|line| line.get("loss").and_then(Value::as_f64))
        .collect();
    let mut summary = Map::new();
    summary.insert("train_runtime".into(), Value::from(runtime));
    summary.insert(
        "train_samples_per_second".into(),
        Value::from(steps_run * samples_per_step / runtime.max(1e-9)),
    );
    summary.insert(
        "train_steps_per_second".into(),
        Value::from(steps_run / runtime.max(1e-9)),
    );
    summary.insert(
        "train_loss".into(),
        Value::from(logged_losses.iter().sum::<f64>() / logged_losses.len().max(1) as f64),
    );
    summary.insert("epoch".into(), Value::from(state.epoch(batches.len())));
    summary.insert("step".into(), Value::from(state.global_step));
    writeln!(metrics_file, "{}", Value::Object(summary.clone()))?;

    model.save(&output_dir, &base)?;
    std::fs::write(
        output_dir.join(STATE_FILE),
        serde_json::to_string_pretty(&state)?,
    )?;
    std::fs::write(
        output_dir.join(ARGS_FILE),
        serde_json::to_string_pretty(config)?,
    )?;
    tracing::info!("saved the trained model in {}", output_dir.display());
    let last_log = state
        .log_history
        .iter()
        .rev()
        .find(|line| line.contains_key("loss"))
        .cloned()
        .unwrap_or_default();
    Ok(TrainOutcome {
        output_dir,
        global_step: state.global_step,
        last_log,
        eval: eval_metrics,
        summary,
    })
}

/// One `metrics.jsonl` line in TRL's log_history order.
fn log_line(
    window: &MetricWindow,
    grad_norm: f64,
    learning_rate: f64,
    epoch: f64,
    step: usize,
) -> Map<String, Value> {
    let means = window.means("");
    let mut line = Map::new();
    line.insert(
        "loss".into(),
        means.get("loss").cloned().unwrap_or(Value::Null),
    );
    line.insert("grad_norm".into(), Value::from(grad_norm));
    line.insert("learning_rate".into(), Value::from(learning_rate));
    for (key, value) in means {
        if key != "loss" {
            line.insert(key, value);
        }
    }
    line.insert("epoch".into(), Value::from(epoch));
    line.insert("step".into(), Value::from(step));
    line
}

/// Rewrites `metrics.jsonl` with `history` (empty for a fresh run, the checkpoint's lines on
/// resume) and opens it for appending.
fn rewrite_metrics(path: &Path, history: &[Map<String, Value>]) -> Result<std::fs::File> {
    let mut file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    for line in history {
        writeln!(file, "{}", Value::Object(line.clone()))?;
    }
    Ok(file)
}

/// The eval split's metrics with `eval_` names, averaged over its batches.
pub fn evaluate(
    model: &TrainingModel,
    data: &TrainingData,
    config: &TrainingConfig,
    device: &Device,
    pad_id: u32,
) -> Result<Map<String, Value>> {
    let mut window = MetricWindow::default();
    let indices: Vec<usize> = (0..data.len()).collect();
    // Scoring only: no graph, so nothing is kept for a backward pass.
    let policy = model.policy.detached();
    for chunk in indices.chunks(config.per_device_eval_batch_size) {
        let batch = data.batch(chunk, model, config, device, pad_id)?;
        let (_, metrics, _) = batch.step(&policy, config, false)?;
        window.record(&metrics);
    }
    Ok(window.means("eval_"))
}
