//! The policy being trained, its trainable variables and its reference, and how they are
//! saved and read back:
//! - LoRA: adapters on the base weights; the reference is the same model with the adapters
//!   off (no second copy). Saved as PEFT does: `adapter_model.safetensors` (names prefixed
//!   `base_model.model.`) and `adapter_config.json` naming the base model.
//! - Full fine-tuning: every weight is an f32 variable; the reference is a frozen copy of the
//!   base (dropped once reference log-probs are precomputed; moved towards the policy by
//!   TR-DPO's `sync_ref_model`, `reference_sync.rs`). Saved as an HF directory:
//!   `model.safetensors`, `config.json`, tokenizer files.
//!
//! Adapter `A` matrices are drawn from the run's seed (PEFT's Kaiming-uniform bound), so a
//! seed fixes the whole run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use serde_json::{Value, json};
use shared::SplitMix64;

use super::base_model::{BaseModel, hf_config_json};
use super::dpo_batch::DpoBatch;
use super::lora::LoraConfig;
use super::precision::Precision;
use super::qwen2::Qwen2;
use super::reference_sync::mix_into_reference;

/// PEFT's prefix for adapter tensor names in `adapter_model.safetensors`.
const PEFT_PREFIX: &str = "base_model.model.";
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";
pub const ADAPTER_CONFIG: &str = "adapter_config.json";
pub const FULL_WEIGHTS: &str = "model.safetensors";

pub struct TrainingModel {
    pub policy: Qwen2,
    /// The variables the optimizer updates: the adapters, or every weight.
    pub trainable: VarMap,
    pub lora: Option<LoraConfig>,
    frozen_reference: Option<Qwen2>,
    /// The frozen reference's weights by name, in the compute dtype (the same storage the
    /// reference model holds): what TR-DPO's updates mix into.
    reference_weights: HashMap<String, Tensor>,
}

/// The file a TR-DPO run's checkpoint keeps its moved reference in.
pub const REFERENCE_WEIGHTS: &str = "reference.safetensors";

impl TrainingModel {
    /// A policy starting at `base`: with adapters when `lora` is given, else every weight
    /// trainable with a frozen reference copy. Frozen weights are held in `precision`'s
    /// compute dtype, trainable ones in f32.
    pub fn new(
        base: &BaseModel,
        lora: Option<&LoraConfig>,
        seed: u64,
        precision: Precision,
    ) -> Result<Self> {
        let compute = precision.compute_dtype();
        let device = base
            .weights
            .values()
            .next()
            .map(|t| t.device().clone())
            .unwrap_or(Device::Cpu);
        let frozen = |weights: &HashMap<String, Tensor>| -> Result<Qwen2> {
            let vb = VarBuilder::from_tensors(weights.clone(), compute, &device);
            Qwen2::new(&base.config, &vb)
                .with_context(|| format!("{}: building the model", base.source.display()))
        };
        let trainable = VarMap::new();
        let vb = VarBuilder::from_varmap(&trainable, DType::F32, &device);
        match lora {
            Some(lora) => {
                let mut policy = frozen(&base.weights)?;
                policy.add_lora(lora, &vb)?;
                let model = Self {
                    policy,
                    trainable,
                    lora: Some(lora.clone()),
                    frozen_reference: None,
                    reference_weights: HashMap::new(),
                };
                model.seed_adapters(seed)?;
                Ok(model)
            }
            None => {
                let policy = Qwen2::new(&base.config, &vb)?.computing_in(compute);
                for (name, var) in named_vars(&trainable) {
                    let weight = base.weights.get(&name).with_context(|| {
                        format!("{}: no tensor `{name}`", base.source.display())
                    })?;
                    var.set(weight)?;
                }
                // Converted once, so the reference model shares these tensors' storage.
                let reference_weights = base
                    .weights
                    .iter()
                    .map(|(name, weight)| Ok((name.clone(), weight.to_dtype(compute)?)))
                    .collect::<Result<HashMap<_, _>>>()?;
                Ok(Self {
                    policy,
                    trainable,
                    lora: None,
                    frozen_reference: Some(frozen(&reference_weights)?),
                    reference_weights,
                })
            }
        }
    }

    /// Redraws every adapter `A` from `seed`, in name order.
    fn seed_adapters(&self, seed: u64) -> Result<()> {
        let mut rng = SplitMix64(seed);
        for (name, var) in self.named_vars() {
            if !name.ends_with("lora_A.weight") {
                continue;
            }
            let (rank, inputs) = var.as_tensor().dims2()?;
            let bound = 1.0 / (inputs as f64).sqrt();
            let values: Vec<f32> = (0..rank * inputs)
                .map(|_| (-bound + 2.0 * bound * rng.next_f64()) as f32)
                .collect();
            var.set(&Tensor::from_vec(
                values,
                (rank, inputs),
                var.as_tensor().device(),
            )?)?;
        }
        Ok(())
    }

    /// The trainable variables sorted by name (a fixed order keeps runs reproducible).
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        named_vars(&self.trainable)
    }

    /// Whether the reference model is still at hand (not dropped after precomputing).
    pub fn has_reference(&self) -> bool {
        self.lora.is_some() || self.frozen_reference.is_some()
    }

    /// The reference model's sequence log-probs on `batch`, without a graph.
    pub fn reference_logps(&self, batch: &DpoBatch) -> Result<Tensor> {
        match (&self.frozen_reference, &self.lora) {
            (Some(reference), _) => Ok(batch.logps(reference, false)?),
            (None, Some(_)) => Ok(batch.logps(&self.policy, true)?),
            (None, None) => bail!("the reference model was dropped after precomputing"),
        }
    }

    /// Uses `reference` (another model, e.g. `dpo eval --ref-model`) as the reference.
    pub fn set_reference(&mut self, reference: &BaseModel) -> Result<()> {
        let device = self.policy.device().clone();
        let compute = self.policy.compute_dtype();
        let vb = VarBuilder::from_tensors(reference.weights.clone(), compute, &device);
        self.frozen_reference = Some(Qwen2::new(&reference.config, &vb).with_context(|| {
            format!(
                "{}: building the reference model",
                reference.source.display()
            )
        })?);
        Ok(())
    }

    /// Frees the frozen reference copy (full fine-tuning with precomputed reference log-probs).
    pub fn drop_reference(&mut self) {
        self.frozen_reference = None;
        self.reference_weights.clear();
    }

    /// TR-DPO: moves the frozen reference `alpha` of the way to the policy.
    pub fn sync_reference(&mut self, alpha: f64) -> Result<()> {
        let Some(reference) = self.frozen_reference.take() else {
            bail!("sync_ref_model needs full fine-tuning with a reference model at hand");
        };
        let config = reference.config.clone();
        drop(reference);
        let policy = self.named_vars();
        mix_into_reference(&mut self.reference_weights, &policy, alpha)?;
        self.rebuild_reference(&config)
    }

    fn rebuild_reference(&mut self, config: &super::Qwen2Config) -> Result<()> {
        let vb = VarBuilder::from_tensors(
            self.reference_weights.clone(),
            self.policy.compute_dtype(),
            self.policy.device(),
        );
        self.frozen_reference = Some(Qwen2::new(config, &vb)?);
        Ok(())
    }

    /// Writes the (TR-DPO-moved) reference into `dir`, for a checkpoint.
    pub fn save_reference(&self, dir: &Path) -> Result<()> {
        candle_core::safetensors::save(&self.reference_weights, dir.join(REFERENCE_WEIGHTS))?;
        Ok(())
    }

    /// Reads back what `save_reference` wrote.
    pub fn load_reference(&mut self, dir: &Path) -> Result<()> {
        let file = dir.join(REFERENCE_WEIGHTS);
        let saved = candle_core::safetensors::load(&file, self.policy.device())
            .with_context(|| format!("reading {}", file.display()))?;
        for (name, weight) in &mut self.reference_weights {
            let stored = saved
                .get(name)
                .with_context(|| format!("{}: no tensor `{name}`", file.display()))?;
            *weight = stored.to_dtype(weight.dtype())?;
        }
        let config = self.policy.config.clone();
        self.rebuild_reference(&config)
    }

    /// The trainable tensors under the names they are saved with.
    fn saved_tensors(&self) -> HashMap<String, Tensor> {
        self.named_vars()
            .into_iter()
            .map(|(name, var)| {
                let saved = match self.lora {
                    Some(_) => format!("{PEFT_PREFIX}{name}"),
                    None => name,
                };
                (saved, var.as_tensor().detach())
            })
            .collect()
    }

    /// Writes the trained weights into `dir`: PEFT adapter files, or an HF model directory.
    pub fn save(&self, dir: &Path, base: &BaseModel) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        let base_path = std::path::absolute(&base.source)?;
        match &self.lora {
            Some(lora) => {
                candle_core::safetensors::save(&self.saved_tensors(), dir.join(ADAPTER_WEIGHTS))?;
                let config = json!({
                    "peft_type": "LORA",
                    "task_type": "CAUSAL_LM",
                    "base_model_name_or_path": base_path,
                    "r": lora.r,
                    "lora_alpha": lora.lora_alpha,
                    "lora_dropout": lora.lora_dropout,
                    "target_modules": lora.target_modules,
                    "bias": "none",
                    "fan_in_fan_out": false,
                    "inference_mode": true,
                });
                std::fs::write(
                    dir.join(ADAPTER_CONFIG),
                    serde_json::to_string_pretty(&config)?,
                )?;
            }
            None => {
                candle_core::safetensors::save(&self.saved_tensors(), dir.join(FULL_WEIGHTS))?;
                let config = hf_config_json(&base.config, &base_path.display().to_string());
                std::fs::write(
                    dir.join("config.json"),
                    serde_json::to_string_pretty(&config)?,
                )?;
                base.write_tokenizer_files(dir)?;
            }
        }
        Ok(())
    }

    /// Sets the trainable variables from what `save` wrote into `dir`.
    pub fn load_trained(&self, dir: &Path) -> Result<()> {
        let file = dir.join(match self.lora {
            Some(_) => ADAPTER_WEIGHTS,
            None => FULL_WEIGHTS,
        });
        let saved = candle_core::safetensors::load(&file, &Device::Cpu)
            .with_context(|| format!("reading {}", file.display()))?;
        for (name, var) in self.named_vars() {
            let key = match self.lora {
                Some(_) => format!("{PEFT_PREFIX}{name}"),
                None => name,
            };
            let tensor = saved
                .get(&key)
                .with_context(|| format!("{}: no tensor `{key}`", file.display()))?;
            if tensor.dims() != var.as_tensor().dims() {
                bail!(
                    "{}: `{key}` has shape {:?}, the model needs {:?}",
                    file.display(),
                    tensor.dims(),
                    var.as_tensor().dims()
                );
            }
            var.set(&tensor.to_device(var.as_tensor().device())?)?;
        }
        Ok(())
    }
}

fn named_vars(varmap: &VarMap) -> Vec<(String, Var)> {
    let data = varmap.data().lock().expect("var map lock");
    let mut vars: Vec<(String, Var)> = data.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// A trained policy read back from a training output or checkpoint directory (adapters over
/// the base they name, or an HF directory of full weights), with the base it started from
/// when that is known.
pub struct TrainedModel {
    pub model: TrainingModel,
    pub base: BaseModel,
}

/// Reads `path`: a directory with `adapter_config.json` (LoRA over its base model) or with
/// `model.safetensors` + `config.json`; `None` when `path` is neither (a plain base model).
/// Frozen weights are held in `precision`'s compute dtype.
pub fn load_trained(
    path: &Path,
    device: &Device,
    precision: Precision,
) -> Result<Option<TrainedModel>> {
    if !path.is_dir() {
        return Ok(None);
    }
    let adapter_config = path.join(ADAPTER_CONFIG);
    if adapter_config.exists() {
        let config: Value = serde_json::from_str(&std::fs::read_to_string(&adapter_config)?)
            .with_context(|| format!("{}: not valid JSON", adapter_config.display()))?;
        let base_path = config["base_model_name_or_path"]
            .as_str()
            .map(PathBuf::from)
            .with_context(|| format!("{}: no base_model_name_or_path", adapter_config.display()))?;
        let lora: LoraConfig = serde_json::from_value(json!({
            "r": config["r"],
            "lora_alpha": config["lora_alpha"],
            "lora_dropout": config["lora_dropout"],
            "target_modules": config["target_modules"],
        }))
        .with_context(|| format!("{}: LoRA settings", adapter_config.display()))?;
        let base = BaseModel::load(&base_path, device).with_context(|| {
            format!(
                "loading the base model named in {}",
                adapter_config.display()
            )
        })?;
        let model = TrainingModel::new(&base, Some(&lora), 0, precision)?;
        model.load_trained(path)?;
        return Ok(Some(TrainedModel { model, base }));
    }
    if path.join(FULL_WEIGHTS).exists() && path.join("config.json").exists() {
        let config: Value =
            serde_json::from_str(&std::fs::read_to_string(path.join("config.json"))?)?;
        let parent = config["_name_or_path"].as_str().map(PathBuf::from);
        let base = match parent {
            Some(parent) if parent.exists() && parent != path => BaseModel::load(&parent, device)?,
            _ => BaseModel::load(path, device)?,
        };
        let model = TrainingModel::new(&base, None, 0, precision)?;
        model.load_trained(path)?;
        return Ok(Some(TrainedModel { model, base }));
    }
    Ok(None)
}
