//! The model a run starts from, read from a GGUF file (dequantized, renamed by
//! `gguf_import`) or a Hugging Face directory (`config.json`, `model.safetensors` or a sharded
//! `model.safetensors.index.json`, `tokenizer.json`, `tokenizer_config.json` with its chat
//! template or a `chat_template.jinja` beside it). Either way: transformers-named tensors (f32,
//! or the dtype asked for), the `Qwen2Config`, and the text side (tokenizer and chat template).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor};
use serde_json::Value;
use shared::{ChatTemplate, GgufModel, ModelText, TextTokenizer};

use super::gguf_import::load_tensors;
use super::qwen2_config::Qwen2Config;
use super::safetensors_reader::read_tensors;

/// The chat template and special tokens as text, to write an HF `tokenizer_config.json`.
#[derive(Debug, Clone)]
pub struct TokenizerSettings {
    pub chat_template: Option<String>,
    pub eos_token: String,
    pub bos_token: Option<String>,
}

pub struct BaseModel {
    pub config: Qwen2Config,
    /// Every weight under its transformers name.
    pub weights: HashMap<String, Tensor>,
    pub text: ModelText,
    pub tokenizer_settings: TokenizerSettings,
    pub source: PathBuf,
}

impl BaseModel {
    /// Reads a GGUF file or an HF model directory, weights in f32.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        Self::load_as(path, device, DType::F32)
    }

    /// As `load`, with the weights in `dtype` (each tensor converted as it is read, so a load
    /// never holds the model twice).
    pub fn load_as(path: &Path, device: &Device, dtype: DType) -> Result<Self> {
        if path.is_dir() {
            Self::from_hf_dir(path, device, dtype)
        } else {
            Self::from_gguf(path, device, dtype)
        }
    }

    /// Lets go of the weights once a model holds what it needs of them (the tokenizer,
    /// config and source stay for saving).
    pub fn release_weights(&mut self) {
        self.weights.clear();
    }

    fn from_gguf(path: &Path, device: &Device, dtype: DType) -> Result<Self> {
        let gguf = GgufModel::open(path)?;
        let text = ModelText::from_gguf(&gguf)?;
        let mut file = std::fs::File::open(path)?;
        let weights = load_tensors(&gguf, &mut file, dtype, device)?;
        let token = |id: Option<u32>| id.and_then(|id| text.tokenizer.id_to_token(id));
        let tokenizer_settings = TokenizerSettings {
            chat_template: gguf.chat_template().map(str::to_string),
            eos_token: token(Some(text.tokenizer.eos_token_id)).unwrap_or_default(),
            bos_token: token(text.tokenizer.bos_token_id),
        };
        Ok(Self {
            config: Qwen2Config::from_hyperparameters(&gguf.hyperparameters),
            weights,
            text,
            tokenizer_settings,
            source: path.to_path_buf(),
        })
    }

    fn from_hf_dir(dir: &Path, device: &Device, dtype: DType) -> Result<Self> {
        let read_json = |name: &str| -> Result<Value> {
            let path = dir.join(name);
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{}: not valid JSON", path.display()))
        };
        let mut config_json = read_json("config.json")?;
        // transformers 5 nests RoPE settings under `rope_parameters`.
        if config_json.get("rope_theta").is_none()
            && let Some(theta) = config_json["rope_parameters"].get("rope_theta").cloned()
        {
            config_json["rope_theta"] = theta;
        }
        for scaled in [
            &config_json["rope_scaling"],
            &config_json["rope_parameters"]["rope_type"],
        ] {
            if !(scaled.is_null() || scaled == "default") {
                bail!(
                    "{}: RoPE scaling {scaled} is not supported (plain RoPE only)",
                    dir.join("config.json").display()
                );
            }
        }
        let model_type = config_json["model_type"].as_str().unwrap_or("qwen2");
        if model_type != "qwen2" {
            bail!(
                "{}: model_type `{model_type}`; only qwen2 models are supported (training, export)",
                dir.join("config.json").display()
            );
        }
        let config: Qwen2Config = serde_json::from_value(config_json).with_context(|| {
            format!("{}: not a Qwen2 config", dir.join("config.json").display())
        })?;

        let mut weights = HashMap::new();
        for shard in safetensors_files(dir)? {
            read_tensors(&shard, dtype, device, |name, tensor| {
                weights.insert(name, tensor);
            })?;
        }

        let tokenizer_config = read_json("tokenizer_config.json")?;
        let token_text = |value: &Value| -> Option<String> {
            match value {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_string),
                _ => None,
            }
        };
        let config_path = dir.join("tokenizer_config.json");
        let eos_token = token_text(&tokenizer_config["eos_token"])
            .with_context(|| format!("{}: no `eos_token`", config_path.display()))?;
        let bos_token = token_text(&tokenizer_config["bos_token"]);
        let chat_template = match &tokenizer_config["chat_template"] {
            Value::String(s) => Some(s.clone()),
            Value::Array(named) => named
                .iter()
                .find(|t| t["name"] == "default")
                .and_then(|t| t["template"].as_str())
                .map(str::to_string),
            _ => std::fs::read_to_string(dir.join("chat_template.jinja")).ok(),
        };
        let tokenizer_path = dir.join("tokenizer.json");
        let tokenizer_bytes = std::fs::read(&tokenizer_path)
            .with_context(|| format!("reading {}", tokenizer_path.display()))?;
        let tokenizer = TextTokenizer::from_tokenizer_json(
            &tokenizer_bytes,
            &eos_token,
            &tokenizer_path.display().to_string(),
        )?;
        let template = ChatTemplate::new(
            chat_template.as_deref(),
            bos_token.as_deref().unwrap_or(""),
            &eos_token,
        )
        .with_context(|| format!("{}: chat_template", config_path.display()))?;
        Ok(Self {
            config,
            weights,
            text: ModelText {
                tokenizer,
                template,
            },
            tokenizer_settings: TokenizerSettings {
                chat_template,
                eos_token,
                bos_token,
            },
            source: dir.to_path_buf(),
        })
    }

    /// Writes `tokenizer.json` and `tokenizer_config.json` into `dir` (an HF directory's text
    /// side, as `from_hf_dir` reads it).
    pub fn write_tokenizer_files(&self, dir: &Path) -> Result<()> {
        std::fs::write(
            dir.join("tokenizer.json"),
            self.text.tokenizer.to_tokenizer_json()?,
        )?;
        let settings = &self.tokenizer_settings;
        let config = serde_json::json!({
            "tokenizer_class": "Qwen2Tokenizer",
            "eos_token": settings.eos_token,
            "bos_token": settings.bos_token,
            "pad_token": settings.eos_token,
            "chat_template": settings.chat_template,
            "model_max_length": self.config.max_position_embeddings,
        });
        std::fs::write(
            dir.join("tokenizer_config.json"),
            serde_json::to_string_pretty(&config)?,
        )?;
        Ok(())
    }

    /// The token that pads batches (hidden by the completion mask, so any id works).
    pub fn pad_token_id(&self) -> u32 {
        self.text.tokenizer.eos_token_id
    }
}

/// The safetensors files of an HF directory: the index's shards, or `model.safetensors`.
fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index_path = dir.join("model.safetensors.index.json");
    if index_path.exists() {
        let index: Value = serde_json::from_str(&std::fs::read_to_string(&index_path)?)
            .with_context(|| format!("{}: not valid JSON", index_path.display()))?;
        let map = index["weight_map"]
            .as_object()
            .with_context(|| format!("{}: no `weight_map` object", index_path.display()))?;
        let shards: BTreeSet<&str> = map.values().filter_map(Value::as_str).collect();
        return Ok(shards.into_iter().map(|shard| dir.join(shard)).collect());
    }
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    bail!(
        "{}: no model.safetensors or model.safetensors.index.json",
        dir.display()
    )
}

/// `config.json` for `config` in transformers' Qwen2 form.
pub fn hf_config_json(config: &Qwen2Config, name_or_path: &str) -> Value {
    let mut json = serde_json::to_value(config).expect("a config serializes");
    let extra = serde_json::json!({
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_act": "silu",
        "torch_dtype": "float32",
        "_name_or_path": name_or_path,
    });
    if let (Value::Object(fields), Value::Object(extra)) = (&mut json, extra) {
        fields.extend(extra);
    }
    json
}
