//! The optimiser side of training, as transformers' Trainer does it: AdamW (decoupled weight
//! decay, bias correction, f32 state) with weight decay on every weight except biases and
//! norms, learning-rate schedules with warmup, gradient accumulation and clipping of the
//! global gradient norm.

use candle_core::backprop::GradStore;
use candle_core::{Result, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use serde::{Deserialize, Serialize};

/// TrainingArguments' `lr_scheduler_type` values supported here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SchedulerType {
    #[default]
    Linear,
    Cosine,
    Constant,
    ConstantWithWarmup,
}

/// Warmup steps from TrainingArguments' `warmup_steps`: a count, or below 1 a fraction of the
/// total (rounded up), as transformers reads it.
pub fn warmup_steps(setting: f64, total_steps: usize) -> usize {
    if setting >= 1.0 {
        setting as usize
    } else {
        (total_steps as f64 * setting).ceil() as usize
    }
}

/// The learning-rate multiplier for the update after `completed` optimizer steps (the first
/// update has `completed = 0`): linear warmup from 0, then constant, linear decay to 0, or a
/// half cosine to 0 at `total_steps`.
pub fn learning_rate_factor(
    kind: SchedulerType,
    completed: usize,
    warmup: usize,
    total_steps: usize,
) -> f64 {
    let step = completed as f64;
    if kind != SchedulerType::Constant && completed < warmup {
        return step / warmup.max(1) as f64;
    }
    let progress = (step - warmup as f64) / (total_steps.saturating_sub(warmup)).max(1) as f64;
    match kind {
        SchedulerType::Constant | SchedulerType::ConstantWithWarmup => 1.0,
        SchedulerType::Linear => (1.0 - progress).max(0.0),
        SchedulerType::Cosine => (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0),
    }
}

/// Whether transformers decays a parameter: not biases, not norm weights.
pub fn decays(name: &str) -> bool {
    let lower = name.to_lowercase();
    let norm_segment = lower.split('.').any(|part| part == "norm")
        || lower.contains("_norm.")
        || lower.ends_with("_norm");
    !(lower.contains("bias")
        || lower.contains("layernorm")
        || lower.contains("rmsnorm")
        || norm_segment)
}

/// AdamW over named variables, weight decay only where `decays` says so.
pub struct TrainerOptimizer {
    with_decay: Option<AdamW>,
    without_decay: Option<AdamW>,
}

impl TrainerOptimizer {
    pub fn new(vars: Vec<(String, Var)>, learning_rate: f64, weight_decay: f64) -> Result<Self> {
        let (decayed, plain): (Vec<_>, Vec<_>) = vars.into_iter().partition(|(n, _)| decays(n));
        let adamw = |vars: Vec<(String, Var)>, weight_decay: f64| -> Result<Option<AdamW>> {
            if vars.is_empty() {
                return Ok(None);
            }
            let params = ParamsAdamW {
                lr: learning_rate,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay,
            };
            Ok(Some(AdamW::new(
                vars.into_iter().map(|(_, v)| v).collect(),
                params,
            )?))
        };
        Ok(Self {
            with_decay: adamw(decayed, weight_decay)?,
            without_decay: adamw(plain, 0.0)?,
        })
    }

    pub fn set_learning_rate(&mut self, learning_rate: f64) {
        for optimizer in [&mut self.with_decay, &mut self.without_decay]
            .into_iter()
            .flatten()
        {
            optimizer.set_learning_rate(learning_rate);
        }
    }

    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        for optimizer in [&mut self.with_decay, &mut self.without_decay]
            .into_iter()
            .flatten()
        {
            optimizer.step(grads)?;
        }
        Ok(())
    }
}

/// The global L2 norm of the gradients of `vars`.
pub fn gradient_norm(grads: &GradStore, vars: &[Var]) -> Result<f64> {
    let mut total = 0f64;
    for var in vars {
        if let Some(grad) = grads.get(var.as_tensor()) {
            let square = grad.sqr()?.sum_all()?.to_dtype(candle_core::DType::F64)?;
            total += square.to_scalar::<f64>()?;
        }
    }
    Ok(total.sqrt())
}

/// Scales the gradients so their global norm is at most `max_norm` (as torch's
/// `clip_grad_norm_`: factor `max_norm / (norm + 1e-6)` when below 1); returns the norm
/// before clipping. `max_norm <= 0` clips nothing.
pub fn clip_gradient_norm(grads: &mut GradStore, vars: &[Var], max_norm: f64) -> Result<f64> {
    let norm = gradient_norm(grads, vars)?;
    let factor = max_norm / (norm + 1e-6);
    if max_norm > 0.0 && factor < 1.0 {
        for var in vars {
            if let Some(grad) = grads.remove(var.as_tensor()) {
                grads.insert(var.as_tensor(), (grad * factor)?);
            }
        }
    }
    Ok(norm)
}

/// Adds `step` into `total` (gradient accumulation), for the gradients of `vars`.
pub fn accumulate(total: &mut Option<GradStore>, step: GradStore, vars: &[Var]) -> Result<()> {
    let Some(total) = total else {
        *total = Some(step);
        return Ok(());
    };
    for var in vars {
        if let Some(grad) = step.get(var.as_tensor()) {
            let sum = match total.remove(var.as_tensor()) {
                Some(previous) => (previous + grad)?,
                None => grad.clone(),
            };
            total.insert(var.as_tensor(), sum);
        }
    }
    Ok(())
}
