//! LoRA adapters with PEFT's semantics: a frozen weight `W` (out × in) gains a trainable
//! low-rank update, `y = x Wᵀ + (α / r) · x Aᵀ Bᵀ`, with `A` (r × in) drawn from PEFT's
//! Kaiming-uniform (bound 1/√in) and `B` (out × r) zero, so training starts exactly at the
//! base model — which, with the adapters switched off, is also DPO's reference model.
//!
//! `lora_dropout` is recorded (it is part of the saved adapter config) but not applied: TRL's
//! DPOTrainer sets every dropout, PEFT's LoRA dropout included, to 0 (`disable_dropout`, on by
//! default), and the trainer refuses a run that asks for dropout.

use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

/// PEFT's `LoraConfig` keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoraConfig {
    pub r: usize,
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    /// Names of the linear layers that get adapters (`q_proj`, `k_proj`, `v_proj`, `o_proj`,
    /// `gate_proj`, `up_proj`, `down_proj`).
    pub target_modules: Vec<String>,
}

impl Default for LoraConfig {
    /// PEFT's defaults for Qwen2: rank 8, α 8, adapters on the query and value projections.
    fn default() -> Self {
        Self {
            r: 8,
            lora_alpha: 8.0,
            lora_dropout: 0.0,
            target_modules: vec!["q_proj".into(), "v_proj".into()],
        }
    }
}

impl LoraConfig {
    /// The linear layers adapters can attach to.
    pub const MODULES: [&'static str; 7] = [
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    ];

    /// Checks the keys; the error names the key.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.r == 0 {
            return Err("lora r must be at least 1".into());
        }
        if !(self.lora_alpha.is_finite() && self.lora_alpha > 0.0) {
            return Err(format!("lora_alpha must be > 0, got {}", self.lora_alpha));
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return Err(format!(
                "lora_dropout must be in [0, 1), got {}",
                self.lora_dropout
            ));
        }
        if self.target_modules.is_empty() {
            return Err("target_modules is empty".into());
        }
        for module in &self.target_modules {
            if !Self::MODULES.contains(&module.as_str()) {
                return Err(format!(
                    "target_modules: unknown module `{module}` (Qwen2 has {})",
                    Self::MODULES.join(", ")
                ));
            }
        }
        Ok(())
    }
}

/// One adapter: `A` (r × in), `B` (out × r) and the scale α / r.
pub struct LoraAdapter {
    pub a: Tensor,
    pub b: Tensor,
    pub scale: f64,
}

impl LoraAdapter {
    /// Creates `lora_A.weight` and `lora_B.weight` under `vb` (a `VarMap` makes them trainable).
    pub fn new(
        vb: &VarBuilder,
        (inputs, outputs): (usize, usize),
        config: &LoraConfig,
    ) -> Result<Self> {
        let bound = 1.0 / (inputs as f64).sqrt();
        let a = vb.get_with_hints(
            (config.r, inputs),
            "lora_A.weight",
            Init::Uniform {
                lo: -bound,
                up: bound,
            },
        )?;
        let b = vb.get_with_hints((outputs, config.r), "lora_B.weight", Init::Const(0.0))?;
        Ok(Self {
            a,
            b,
            scale: config.lora_alpha / config.r as f64,
        })
    }

    /// The same adapter, detached from autograd.
    pub fn detached(&self) -> Self {
        Self {
            a: self.a.detach(),
            b: self.b.detach(),
            scale: self.scale,
        }
    }

    /// `(α / r) · x Aᵀ Bᵀ`.
    pub fn delta(&self, x: &Tensor) -> Result<Tensor> {
        let down = super::linear_product::linear_product(x, &self.a)?;
        super::linear_product::linear_product(&down, &self.b)? * self.scale
    }

    /// `W + (α / r) · B A`: the weight with the adapter folded in.
    pub fn merge_into(&self, weight: &Tensor) -> Result<Tensor> {
        weight + (self.b.matmul(&self.a)? * self.scale)?
    }
}
