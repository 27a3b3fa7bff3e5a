//! A training run's settings under TRL's names: `DPOConfig` / `TrainingArguments` keys, the
//! script arguments TRL's `dpo.py` takes (`model_name_or_path`, `dataset_name`), LoRA as
//! TRL's `ModelConfig` (`use_peft`, `lora_r`, …) or as a PEFT `[lora]` table (`r`,
//! `lora_alpha`, `lora_dropout`, `target_modules`). Read from a TOML file, with `key=value`
//! overrides from the command line applied on top. Defaults are DPOConfig's.
//!
//! Keys TRL accepts that change nothing here (reporting, hub, data loading) are accepted with
//! a warning; any other unknown key is an error naming it. Mixed precision (`bf16`, `fp16`,
//! `tf32`) and `gradient_checkpointing` take effect.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::dpo_batch::{Truncation, TruncationMode};
use super::dpo_loss::{DpoLossConfig, FDivergence, LossMix, LossType};
use super::kto_loss::{KtoLossConfig, KtoLossType};
use super::lora::LoraConfig;
use super::optimization::{AdamWParams, SchedulerType};
use super::precision::Precision;

/// TrainingArguments keys accepted for compatibility that do not change a CPU/CUDA run here.
const IGNORED_KEYS: &[&str] = &[
    // Reentrant or not, checkpointing here recomputes each layer in the backward pass.
    "gradient_checkpointing_kwargs",
    "report_to",
    "run_name",
    "logging_dir",
    "logging_first_step",
    "push_to_hub",
    "hub_model_id",
    "dataloader_num_workers",
    "dataset_num_proc",
    "remove_unused_columns",
    "torch_dtype",
    "dtype",
    "attn_implementation",
    "trust_remote_code",
    "do_train",
    "do_eval",
    "overwrite_output_dir",
    "model_revision",
    "dataset_train_split",
    "dataset_test_split",
    "optim",
    // DPOConfig (TRL 1.x) keys that change memory or speed there, not the result.
    "padding_free",
    "pad_to_multiple_of",
    "precompute_ref_batch_size",
    "activation_offloading",
    "model_init_kwargs",
    "router_aux_loss_coef",
    "pad_token",
];

/// Which trainer a run is: TRL's `DPOTrainer` (pairs) or `KTOTrainer` (labelled rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TrainingMethod {
    #[default]
    Dpo,
    Kto,
}

impl TrainingMethod {
    pub fn name(self) -> &'static str {
        match self {
            Self::Dpo => "dpo",
            Self::Kto => "kto",
        }
    }
}

/// `train_sampling_strategy` (TrainingArguments): the order of the training batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplingStrategy {
    /// A seeded shuffle per epoch (DPO's default).
    Random,
    /// The rows in order, every epoch (KTO's default).
    Sequential,
    /// Not supported here.
    GroupByLength,
}

/// `eval_strategy`: when the eval split is scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EvalStrategy {
    /// Only once, after training (when an eval dataset is given).
    #[default]
    No,
    Steps,
    Epoch,
}

/// `loss_type` as DPOConfig takes it: a name, or a list of names (weighted by
/// `loss_weights`). Names are checked by `validate`, which names a bad one and the accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LossTypeSetting {
    One(String),
    List(Vec<String>),
}

impl LossTypeSetting {
    fn names(&self) -> Vec<&str> {
        match self {
            Self::One(name) => vec![name.as_str()],
            Self::List(names) => names.iter().map(String::as_str).collect(),
        }
    }
}

/// `target_modules`: a list, or `"all-linear"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetModules {
    Named(String),
    List(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainingConfig {
    // Script arguments
    /// A GGUF file or a Hugging Face model directory.
    pub model_name_or_path: Option<PathBuf>,
    /// A JSON Lines or Parquet file of preference rows.
    pub dataset_name: Option<PathBuf>,
    /// A second file scored as the eval split (`eval_` metrics).
    pub eval_dataset_name: Option<PathBuf>,
    /// Leave malformed data lines out (counted and logged) instead of stopping.
    pub skip_malformed: bool,
    pub output_dir: PathBuf,

    // TrainingArguments
    pub learning_rate: f64,
    pub per_device_train_batch_size: usize,
    pub per_device_eval_batch_size: usize,
    pub gradient_accumulation_steps: usize,
    pub num_train_epochs: f64,
    /// Optimizer steps; `-1` trains for `num_train_epochs`.
    pub max_steps: i64,
    pub lr_scheduler_type: SchedulerType,
    pub warmup_steps: f64,
    pub warmup_ratio: f64,
    pub weight_decay: f64,
    pub adam_beta1: f64,
    pub adam_beta2: f64,
    pub adam_epsilon: f64,
    pub max_grad_norm: f64,
    pub seed: u64,
    /// Train on the CPU even when built with `--features cuda` and a GPU is present.
    pub use_cpu: bool,
    /// Mixed precision: frozen weights and activations in bf16; trainable parameters, their
    /// gradients and AdamW's moments, RMSNorm, the attention softmax, the log-softmax over
    /// the vocabulary and the loss in f32.
    pub bf16: bool,
    /// As `bf16`, in f16.
    pub fp16: bool,
    /// TF32 tensor cores for f32 matrix products (NVIDIA Ampere and newer).
    pub tf32: bool,
    /// Keep only each decoder layer's input in the forward pass and recompute the layer in
    /// the backward pass: less activation memory for about one more forward pass.
    pub gradient_checkpointing: bool,
    pub logging_steps: usize,
    /// Checkpoint every this many steps; 0 never.
    pub save_steps: usize,
    pub save_total_limit: Option<usize>,
    pub eval_strategy: EvalStrategy,
    /// Defaults to `logging_steps`.
    pub eval_steps: Option<usize>,
    /// `random` (DPO's default) or `sequential` (KTO's).
    pub train_sampling_strategy: Option<SamplingStrategy>,

    /// `dpo` (DPOConfig's keys) or `kto` (KTOConfig's): set by `dpo train --method`.
    pub method: TrainingMethod,

    // DPOConfig
    pub beta: f64,
    /// DPO: one of `LossType`'s names or a weighted list; KTO: `kto` or `apo_zero_unpaired`.
    pub loss_type: LossTypeSetting,
    /// One weight per `loss_type` entry; all 1 when unset (TRL 1.x).
    pub loss_weights: Option<Vec<f64>>,
    pub label_smoothing: f64,
    /// DiscoPOP's temperature (TRL 1.x).
    pub discopop_tau: f64,
    /// `reverse_kl` (standard DPO), `forward_kl`, `js_divergence` or `alpha_divergence`.
    pub f_divergence_type: String,
    pub f_alpha_divergence_coef: f64,
    /// LD-DPO: the weight of the longer completion's tokens past the shorter one's length.
    pub ld_alpha: Option<f64>,
    /// WPO: weight each pair's losses by the policy's length-normalised probabilities of its
    /// two completions.
    pub use_weighting: bool,
    /// TR-DPO: every `ref_model_sync_steps` steps the reference becomes
    /// `ref_model_mixup_alpha` × policy + (1 − alpha) × reference.
    pub sync_ref_model: bool,
    pub ref_model_mixup_alpha: f64,
    pub ref_model_sync_steps: usize,
    /// KTO: the weight of desirable rows' losses.
    pub desirable_weight: f64,
    /// KTO: the weight of undesirable rows' losses.
    pub undesirable_weight: f64,
    /// Longest prompt + completion in tokens; 0 keeps every token.
    pub max_length: usize,
    /// Longest prompt in tokens (its end is kept); 0 keeps every token.
    pub max_prompt_length: usize,
    pub truncation_mode: TruncationMode,
    pub precompute_ref_log_probs: bool,
    pub rpo_alpha: Option<f64>,
    pub reference_free: bool,
    /// As TRL: every dropout, LoRA's included, is off. `false` (dropout during training) is
    /// not supported.
    pub disable_dropout: bool,

    // LoRA, as TRL's ModelConfig
    pub use_peft: bool,
    pub lora_r: usize,
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    pub lora_target_modules: Option<TargetModules>,
    /// LoRA as a PEFT `LoraConfig` table (implies `use_peft`).
    pub lora: Option<PeftLoraTable>,
}

/// A `[lora]` table with PEFT's key names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PeftLoraTable {
    pub r: usize,
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    pub target_modules: TargetModules,
}

impl Default for PeftLoraTable {
    fn default() -> Self {
        let peft = LoraConfig::default();
        Self {
            r: peft.r,
            lora_alpha: peft.lora_alpha,
            lora_dropout: peft.lora_dropout,
            target_modules: TargetModules::List(peft.target_modules),
        }
    }
}

impl Default for TrainingConfig {
    /// DPOConfig's defaults (TRL 1.x); `lora_dropout` 0 (TRL's `disable_dropout` turns it
    /// off anyway).
    fn default() -> Self {
        Self {
            model_name_or_path: None,
            dataset_name: None,
            eval_dataset_name: None,
            skip_malformed: false,
            output_dir: PathBuf::from("dpo-output"),
            learning_rate: 1e-6,
            per_device_train_batch_size: 8,
            per_device_eval_batch_size: 8,
            gradient_accumulation_steps: 1,
            num_train_epochs: 3.0,
            max_steps: -1,
            lr_scheduler_type: SchedulerType::Linear,
            warmup_steps: 0.0,
            warmup_ratio: 0.0,
            weight_decay: 0.0,
            adam_beta1: 0.9,
            adam_beta2: 0.999,
            adam_epsilon: 1e-8,
            max_grad_norm: 1.0,
            seed: 42,
            use_cpu: false,
            bf16: false,
            fp16: false,
            tf32: false,
            gradient_checkpointing: false,
            logging_steps: 10,
            save_steps: 500,
            save_total_limit: None,
            eval_strategy: EvalStrategy::No,
            eval_steps: None,
            train_sampling_strategy: None,
            beta: 0.1,
            loss_type: LossTypeSetting::One("sigmoid".into()),
            loss_weights: None,
            discopop_tau: 0.05,
            f_divergence_type: "reverse_kl".into(),
            f_alpha_divergence_coef: 0.5,
            ld_alpha: None,
            use_weighting: false,
            sync_ref_model: false,
            ref_model_mixup_alpha: 0.6,
            ref_model_sync_steps: 512,
            desirable_weight: 1.0,
            undesirable_weight: 1.0,
            method: TrainingMethod::Dpo,
            label_smoothing: 0.0,
            max_length: 1024,
            max_prompt_length: 0,
            truncation_mode: TruncationMode::KeepStart,
            precompute_ref_log_probs: false,
            rpo_alpha: None,
            reference_free: false,
            disable_dropout: true,
            use_peft: false,
            lora_r: 16,
            lora_alpha: 32.0,
            lora_dropout: 0.0,
            lora_target_modules: None,
            lora: None,
        }
    }
}

/// Parses `key=value` (the value as TOML, or as a plain string when it is not TOML).
pub fn parse_override(setting: &str) -> Result<(String, toml::Value), String> {
    let (key, value) = setting
        .split_once('=')
        .ok_or_else(|| format!("`{setting}` is not KEY=VALUE"))?;
    let key = key.trim().trim_start_matches("--").replace('-', "_");
    let value = value.trim();
    let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut table| table.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    Ok((key, parsed))
}

impl TrainingConfig {
    /// The file's settings (or the defaults), then `overrides` in order, validated.
    pub fn load(path: Option<&Path>, overrides: &[(String, toml::Value)]) -> Result<Self> {
        match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let table: toml::Table = toml::from_str(&text)
                    .with_context(|| format!("{}: not valid TOML", path.display()))?;
                Self::from_table(table, &path.display().to_string(), overrides)
            }
            None => Self::from_table(toml::Table::new(), "settings", overrides),
        }
    }

    /// The settings a finished run saved (`training_args.json`), then `overrides`.
    pub fn load_saved(path: &Path, overrides: &[(String, toml::Value)]) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let saved: Self = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a run's settings", path.display()))?;
        let table = toml::Table::try_from(&saved)
            .with_context(|| format!("{}: re-reading settings", path.display()))?;
        Self::from_table(table, &path.display().to_string(), overrides)
    }

    fn from_table(
        mut table: toml::Table,
        source: &str,
        overrides: &[(String, toml::Value)],
    ) -> Result<Self> {
        for (key, value) in overrides {
            table.insert(key.clone(), value.clone());
        }
        for key in IGNORED_KEYS {
            if let Some(value) = table.remove(*key) {
                tracing::warn!("{source}: `{key} = {value}` has no effect here; ignored");
            }
        }
        // KTOConfig's default loss.
        if table.get("method").and_then(toml::Value::as_str) == Some("kto")
            && !table.contains_key("loss_type")
        {
            table.insert("loss_type".into(), toml::Value::String("kto".into()));
        }
        let config: Self = table
            .try_into()
            .with_context(|| format!("{source}: invalid training settings"))?;
        config
            .validate()
            .map_err(|reason| anyhow::anyhow!("{source}: {reason}"))?;
        Ok(config)
    }

    /// Checks the values; the error names the key.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let positive = |key: &str, value: f64| {
            if value.is_finite() && value > 0.0 {
                Ok(())
            } else {
                Err(format!("{key} must be > 0, got {value}"))
            }
        };
        positive("learning_rate", self.learning_rate)?;
        positive("beta", self.beta)?;
        positive("adam_epsilon", self.adam_epsilon)?;
        for (key, value) in [
            (
                "per_device_train_batch_size",
                self.per_device_train_batch_size,
            ),
            (
                "per_device_eval_batch_size",
                self.per_device_eval_batch_size,
            ),
            (
                "gradient_accumulation_steps",
                self.gradient_accumulation_steps,
            ),
            ("logging_steps", self.logging_steps),
        ] {
            if value == 0 {
                return Err(format!("{key} must be at least 1"));
            }
        }
        if self.max_steps <= 0
            && self.num_train_epochs.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
        {
            return Err("set max_steps > 0 or num_train_epochs > 0".into());
        }
        if self.max_steps == 0 || self.max_steps < -1 {
            return Err(format!(
                "max_steps must be -1 (use num_train_epochs) or at least 1, got {}",
                self.max_steps
            ));
        }
        for (key, value) in [
            ("adam_beta1", self.adam_beta1),
            ("adam_beta2", self.adam_beta2),
        ] {
            if !(0.0..1.0).contains(&value) {
                return Err(format!("{key} must be in [0, 1), got {value}"));
            }
        }
        if !(0.0..=1.0).contains(&self.warmup_ratio) {
            return Err(format!(
                "warmup_ratio must be in [0, 1], got {}",
                self.warmup_ratio
            ));
        }
        if self.warmup_steps < 0.0 || self.weight_decay < 0.0 || self.max_grad_norm < 0.0 {
            return Err("warmup_steps, weight_decay and max_grad_norm must be ≥ 0".into());
        }
        if !(0.0..0.5).contains(&self.label_smoothing) {
            return Err(format!(
                "label_smoothing must be in [0, 0.5), got {}",
                self.label_smoothing
            ));
        }
        if let Some(alpha) = self.rpo_alpha
            && !(alpha.is_finite() && alpha >= 0.0)
        {
            return Err(format!("rpo_alpha must be ≥ 0, got {alpha}"));
        }
        if self.sync_ref_model {
            if self.lora_config()?.is_some() {
                return Err(
                    "sync_ref_model = true with LoRA (use_peft): the reference is the \
                            base with the adapters off, there is no separate reference to \
                            update (TRL refuses it too); use full fine-tuning"
                        .into(),
                );
            }
            if self.precompute_ref_log_probs {
                return Err(
                    "sync_ref_model = true with precompute_ref_log_probs = true: the \
                            reference changes during training, so precomputed log-probs would \
                            go stale (TRL refuses it too)"
                        .into(),
                );
            }
        }
        if !(0.0..=1.0).contains(&self.ref_model_mixup_alpha) {
            return Err(format!(
                "ref_model_mixup_alpha must be in [0, 1], got {}",
                self.ref_model_mixup_alpha
            ));
        }
        if self.ref_model_sync_steps == 0 {
            return Err("ref_model_sync_steps must be at least 1".into());
        }
        if self.method == TrainingMethod::Kto {
            return self.validate_kto();
        }
        let losses = self.loss_mix()?;
        if self.use_weighting
            && let Some((loss, _)) = losses
                .iter()
                .find(|(loss, _)| matches!(loss, LossType::Aot | LossType::AotUnpaired))
        {
            return Err(format!(
                "use_weighting = true with loss_type `{}`: WPO's weighting is not defined for \
                 aot and aot_unpaired, which sort the pairs (TRL refuses it too)",
                loss.name()
            ));
        }
        if losses.contains(LossType::ExoPair) && self.label_smoothing == 0.0 {
            return Err(
                "loss_type exo_pair needs label_smoothing > 0 (the EXO paper recommends 1e-3)"
                    .into(),
            );
        }
        let divergence = self.f_divergence()?;
        if divergence != FDivergence::ReverseKl
            && let Some((loss, _)) = losses.iter().find(|(loss, _)| !loss.takes_f_divergence())
        {
            return Err(format!(
                "f_divergence_type = {} is only supported for the loss types {} (TRL's rule: the \
                 reparameterization cancels only in the chosen-rejected difference); loss_type \
                 has `{}`",
                self.f_divergence_type,
                LossType::ALL
                    .into_iter()
                    .filter(|t| t.takes_f_divergence())
                    .map(LossType::name)
                    .collect::<Vec<_>>()
                    .join(", "),
                loss.name()
            ));
        }
        if let Some(alpha) = self.ld_alpha
            && !(0.0..=1.0).contains(&alpha)
        {
            return Err(format!("ld_alpha must be in [0, 1], got {alpha}"));
        }
        if !(self.discopop_tau.is_finite() && self.discopop_tau > 0.0) {
            return Err(format!(
                "discopop_tau must be > 0, got {}",
                self.discopop_tau
            ));
        }
        self.validate_shared()
    }

    /// KTOConfig's rules: its loss types, the weights, and a batch of more than one row when
    /// the KL term is estimated from the batch's mismatched completions.
    fn validate_kto(&self) -> std::result::Result<(), String> {
        self.kto_loss()?;
        for (key, value) in [
            ("desirable_weight", self.desirable_weight),
            ("undesirable_weight", self.undesirable_weight),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(format!("{key} must be ≥ 0, got {value}"));
            }
        }
        if self.kto_loss()? == KtoLossType::Kto && !self.batches_in_order() {
            return Err(
                "loss_type kto needs train_sampling_strategy = sequential: each row's \
                        KL completion is another row of its batch in the data's order (TRL's \
                        rule)"
                    .into(),
            );
        }
        if self.kto_loss()? == KtoLossType::Kto && self.per_device_train_batch_size <= 1 {
            return Err(
                "loss_type kto needs per_device_train_batch_size > 1: its KL term \
                        pairs each prompt with another row's completion of the same batch \
                        (TRL's rule)"
                    .into(),
            );
        }
        for (key, set) in [
            ("use_weighting", self.use_weighting),
            ("rpo_alpha", self.rpo_alpha.is_some()),
            ("ld_alpha", self.ld_alpha.is_some()),
            ("reference_free", self.reference_free),
            ("loss_weights", self.loss_weights.is_some()),
            (
                "truncation_mode",
                self.truncation_mode != TruncationMode::KeepStart,
            ),
        ] {
            if set {
                return Err(format!(
                    "{key} is a DPOConfig key; KTO (method = kto) does not take it"
                ));
            }
        }
        self.validate_shared()
    }

    /// The checks both methods share.
    fn validate_shared(&self) -> std::result::Result<(), String> {
        if self.train_sampling_strategy == Some(SamplingStrategy::GroupByLength) {
            return Err(
                "train_sampling_strategy = group_by_length is not supported here \
                        (accepted: random, sequential)"
                    .into(),
            );
        }
        if self.eval_strategy != EvalStrategy::No && self.eval_dataset_name.is_none() {
            return Err("eval_strategy is set but there is no eval_dataset_name".into());
        }
        if self.bf16 && self.fp16 {
            return Err("bf16 and fp16 are both set: choose one mixed precision".into());
        }
        if self.eval_steps == Some(0) {
            return Err("eval_steps must be at least 1".into());
        }
        if let Some(lora) = self.lora_config()? {
            lora.validate()?;
            if !self.disable_dropout && lora.lora_dropout > 0.0 {
                return Err(format!(
                    "lora_dropout = {} with disable_dropout = false: dropout during training is not supported; \
                     keep disable_dropout = true (TRL's default, which turns LoRA dropout off)",
                    lora.lora_dropout
                ));
            }
        }
        Ok(())
    }

    /// `loss_type` with `loss_weights`; an error names an unknown loss (with the accepted
    /// ones), a repeated one, or weights that do not match the list.
    pub fn loss_mix(&self) -> std::result::Result<LossMix, String> {
        let names = self.loss_type.names();
        let weights = match &self.loss_weights {
            Some(weights) if weights.len() != names.len() => {
                return Err(format!(
                    "loss_weights has {} entries for {} loss_type entries",
                    weights.len(),
                    names.len()
                ));
            }
            Some(weights) => weights.clone(),
            None => vec![1.0; names.len()],
        };
        let mut losses = Vec::new();
        for (name, weight) in names.into_iter().zip(weights) {
            let loss = LossType::from_name(name).ok_or_else(|| {
                format!(
                    "loss_type: unknown loss `{name}` (accepted: {})",
                    LossType::ALL.map(LossType::name).join(", ")
                )
            })?;
            if !weight.is_finite() {
                return Err(format!(
                    "loss_weights: `{weight}` for {name} is not a number"
                ));
            }
            losses.push((loss, weight));
        }
        LossMix::new(&losses)
    }

    /// Whether training batches follow the data's order (`train_sampling_strategy`, by
    /// default sequential for KTO and random for DPO).
    pub fn batches_in_order(&self) -> bool {
        let default = match self.method {
            TrainingMethod::Dpo => SamplingStrategy::Random,
            TrainingMethod::Kto => SamplingStrategy::Sequential,
        };
        self.train_sampling_strategy.unwrap_or(default) == SamplingStrategy::Sequential
    }

    /// KTO's `loss_type`; an error names the accepted ones.
    pub fn kto_loss(&self) -> std::result::Result<KtoLossType, String> {
        match self.loss_type.names().as_slice() {
            [name] => KtoLossType::from_name(name).ok_or_else(|| {
                format!(
                    "loss_type: `{name}` is not a KTO loss (accepted with method = kto: {})",
                    KtoLossType::ALL.map(KtoLossType::name).join(", ")
                )
            }),
            names => Err(format!(
                "loss_type: KTO takes one loss, got the list {names:?} (accepted: {})",
                KtoLossType::ALL.map(KtoLossType::name).join(", ")
            )),
        }
    }

    pub fn kto_loss_config(&self) -> KtoLossConfig {
        KtoLossConfig {
            loss: self.kto_loss().expect("validate() checked loss_type"),
            beta: self.beta,
            desirable_weight: self.desirable_weight,
            undesirable_weight: self.undesirable_weight,
        }
    }

    /// `f_divergence_type` with its coefficient; an error names the accepted types.
    pub fn f_divergence(&self) -> std::result::Result<FDivergence, String> {
        FDivergence::from_name(&self.f_divergence_type, self.f_alpha_divergence_coef).ok_or_else(
            || {
                format!(
                    "f_divergence_type: unknown `{}` (accepted: {})",
                    self.f_divergence_type,
                    FDivergence::NAMES.join(", ")
                )
            },
        )
    }

    pub fn loss_config(&self) -> DpoLossConfig {
        DpoLossConfig {
            f_divergence: self
                .f_divergence()
                .expect("validate() checked f_divergence_type"),
            losses: self
                .loss_mix()
                .expect("validate() checked loss_type and loss_weights"),
            discopop_tau: self.discopop_tau,
            beta: self.beta,
            label_smoothing: self.label_smoothing,
            reference_free: self.reference_free,
            rpo_alpha: self.rpo_alpha,
        }
    }

    pub fn adamw(&self) -> AdamWParams {
        AdamWParams {
            learning_rate: self.learning_rate,
            adam_beta1: self.adam_beta1,
            adam_beta2: self.adam_beta2,
            adam_epsilon: self.adam_epsilon,
            weight_decay: self.weight_decay,
        }
    }

    pub fn truncation(&self) -> Option<Truncation> {
        (self.max_length > 0).then_some(Truncation {
            max_length: self.max_length,
            mode: self.truncation_mode,
        })
    }

    /// Warmup steps for a run of `total_steps`: `warmup_steps` when set, else the ratio.
    pub fn warmup_steps_for(&self, total_steps: usize) -> usize {
        if self.warmup_steps > 0.0 {
            super::optimization::warmup_steps(self.warmup_steps, total_steps)
        } else {
            (total_steps as f64 * self.warmup_ratio).ceil() as usize
        }
    }

    /// The LoRA settings, `None` for full fine-tuning.
    pub fn lora_config(&self) -> std::result::Result<Option<LoraConfig>, String> {
        let (r, lora_alpha, lora_dropout, modules) = match (&self.lora, self.use_peft) {
            (Some(table), _) => (
                table.r,
                table.lora_alpha,
                table.lora_dropout,
                Some(table.target_modules.clone()),
            ),
            (None, true) => (
                self.lora_r,
                self.lora_alpha,
                self.lora_dropout,
                self.lora_target_modules.clone(),
            ),
            (None, false) => return Ok(None),
        };
        let target_modules = match modules {
            None => LoraConfig::default().target_modules,
            Some(TargetModules::List(list)) => list,
            Some(TargetModules::Named(name)) if name == "all-linear" => {
                LoraConfig::MODULES.iter().map(|m| m.to_string()).collect()
            }
            Some(TargetModules::Named(name)) => {
                name.split(',').map(|m| m.trim().to_string()).collect()
            }
        };
        Ok(Some(LoraConfig {
            r,
            lora_alpha,
            lora_dropout,
            target_modules,
        }))
    }

    /// Where training runs: the first CUDA GPU when built with `--features cuda` (and
    /// `use_cpu` is off), else the CPU. `tf32` is switched on here, and refused on the CPU.
    pub fn device(&self) -> Result<candle_core::Device> {
        let device = if self.use_cpu {
            candle_core::Device::Cpu
        } else {
            candle_core::Device::cuda_if_available(0)?
        };
        if self.tf32 {
            if !device.is_cuda() {
                bail!(
                    "tf32 = true needs an NVIDIA GPU (Ampere or newer) and a `--features cuda`                      build; this run is on the CPU, where f32 products are exact f32 anyway"
                );
            }
            candle_core::cuda::set_gemm_reduced_precision_f32(true);
        }
        tracing::info!("training on {device:?} in {}", self.precision().describe());
        Ok(device)
    }

    /// The run's mixed precision, from `bf16` / `fp16`.
    pub fn precision(&self) -> Precision {
        match (self.bf16, self.fp16) {
            (true, _) => Precision::Bf16,
            (false, true) => Precision::F16,
            _ => Precision::F32,
        }
    }

    /// Rejects a run that names no model or data.
    pub fn require_inputs(&self) -> Result<(&Path, &Path)> {
        let Some(model) = &self.model_name_or_path else {
            bail!("no model: pass --model or set model_name_or_path");
        };
        let Some(data) = &self.dataset_name else {
            bail!("no training data: pass --data or set dataset_name");
        };
        Ok((model, data))
    }
}
