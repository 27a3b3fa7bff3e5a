//! The optimiser side of training, as transformers' Trainer does it: AdamW (decoupled weight
//! decay, bias correction, f32 state) with weight decay on every weight except biases and
//! norms, learning-rate schedules with warmup, gradient accumulation and clipping of the
//! global gradient norm.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
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

/// TrainingArguments' AdamW keys.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWParams {
    pub learning_rate: f64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub adam_epsilon: f64,
    pub weight_decay: f64,
}

impl Default for AdamWParams {
    /// TrainingArguments' defaults (DPOConfig's learning rate).
    fn default() -> Self {
        Self {
            learning_rate: 1e-6,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_epsilon: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// One trainable variable and its Adam moments.
struct AdamSlot {
    name: String,
    var: Var,
    decays: bool,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

/// AdamW as torch implements it (`torch.optim.AdamW`, single-tensor path): decoupled decay
/// `p ← p(1 − lr·wd)`, moments `m ← β₁m + (1 − β₁)g`, `v ← β₂v + (1 − β₂)g²`, then
/// `p ← p − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)`. Weight decay only where `decays`
/// says so. The moments and step count are exposed for checkpoints, so a resumed run
/// continues bit for bit.
pub struct TrainerOptimizer {
    slots: Vec<AdamSlot>,
    params: AdamWParams,
    steps_taken: usize,
}

impl TrainerOptimizer {
    pub fn new(vars: Vec<(String, Var)>, params: AdamWParams) -> Result<Self> {
        let slots = vars
            .into_iter()
            .map(|(name, var)| {
                let zeros = var.as_tensor().zeros_like()?;
                Ok(AdamSlot {
                    decays: decays(&name),
                    name,
                    exp_avg: zeros.clone(),
                    exp_avg_sq: zeros,
                    var,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            slots,
            params,
            steps_taken: 0,
        })
    }

    pub fn set_learning_rate(&mut self, learning_rate: f64) {
        self.params.learning_rate = learning_rate;
    }

    /// Optimizer steps taken so far (Adam's `t`).
    pub fn steps_taken(&self) -> usize {
        self.steps_taken
    }

    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.steps_taken += 1;
        let p = self.params;
        let t = self.steps_taken as i32;
        let step_size = p.learning_rate / (1.0 - p.adam_beta1.powi(t));
        let bias_correction2_sqrt = (1.0 - p.adam_beta2.powi(t)).sqrt();
        for slot in &mut self.slots {
            let Some(grad) = grads.get(slot.var.as_tensor()) else {
                continue;
            };
            let mut weight = slot.var.as_tensor().detach();
            if slot.decays && p.weight_decay != 0.0 {
                weight = (weight * (1.0 - p.learning_rate * p.weight_decay))?;
            }
            slot.exp_avg = ((&slot.exp_avg * p.adam_beta1)? + (grad * (1.0 - p.adam_beta1))?)?;
            slot.exp_avg_sq =
                ((&slot.exp_avg_sq * p.adam_beta2)? + (grad.sqr()? * (1.0 - p.adam_beta2))?)?;
            let denominator =
                ((slot.exp_avg_sq.sqrt()? / bias_correction2_sqrt)? + p.adam_epsilon)?;
            let update = ((&slot.exp_avg / denominator)? * step_size)?;
            slot.var.set(&(weight - update)?)?;
        }
        Ok(())
    }

    /// The moments by `{name}.exp_avg` / `{name}.exp_avg_sq`, for a checkpoint.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        self.slots
            .iter()
            .flat_map(|slot| {
                [
                    (format!("{}.exp_avg", slot.name), slot.exp_avg.clone()),
                    (format!("{}.exp_avg_sq", slot.name), slot.exp_avg_sq.clone()),
                ]
            })
            .collect()
    }

    /// Restores the moments saved by `state_tensors` and the step count.
    pub fn restore(
        &mut self,
        state: &std::collections::HashMap<String, Tensor>,
        steps_taken: usize,
    ) -> Result<()> {
        for slot in &mut self.slots {
            for (suffix, moment) in [
                ("exp_avg", &mut slot.exp_avg),
                ("exp_avg_sq", &mut slot.exp_avg_sq),
            ] {
                let key = format!("{}.{suffix}", slot.name);
                let saved = state.get(&key).ok_or_else(|| {
                    candle_core::Error::msg(format!("optimizer state has no `{key}`"))
                })?;
                if saved.dims() != moment.dims() {
                    candle_core::bail!(
                        "optimizer state `{key}` has shape {:?}, the variable {:?}",
                        saved.dims(),
                        moment.dims()
                    );
                }
                *moment = saved.to_device(moment.device())?.to_dtype(moment.dtype())?;
            }
        }
        self.steps_taken = steps_taken;
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
    match total {
        Some(total) => add_gradients(total, &step, vars),
        None => {
            *total = Some(step);
            Ok(())
        }
    }
}

/// `total[v] += step[v]` for every variable of `vars` that `step` has a gradient for.
pub fn add_gradients(total: &mut GradStore, step: &GradStore, vars: &[Var]) -> Result<()> {
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
