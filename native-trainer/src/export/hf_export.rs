//! An export source as a Hugging Face model directory transformers loads:
//! `config.json`, `generation_config.json`, `model.safetensors` (f32, f16 or bf16),
//! `tokenizer.json` and `tokenizer_config.json` (the model card, README.md, is `model_card`'s).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{DType, Tensor};
use serde_json::{Value, json};

use super::export_source::ExportSource;
use crate::train::base_model::hf_config_json;

/// The safetensors dtype of an HF export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HfDtype {
    F32,
    F16,
    Bf16,
}

impl HfDtype {
    fn dtype(self) -> DType {
        match self {
            HfDtype::F32 => DType::F32,
            HfDtype::F16 => DType::F16,
            HfDtype::Bf16 => DType::BF16,
        }
    }

    /// transformers' `torch_dtype` name.
    fn torch_name(self) -> &'static str {
        match self {
            HfDtype::F32 => "float32",
            HfDtype::F16 => "float16",
            HfDtype::Bf16 => "bfloat16",
        }
    }
}

/// The files this module writes, relative to the export directory.
pub const HF_FILES: [&str; 5] = [
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
];

pub fn write_hf_directory(source: &ExportSource, dtype: HfDtype, dir: &Path) -> Result<()> {
    let base = &source.base;
    let ids = source.special_token_ids();

    let mut config = hf_config_json(&base.config, &source.provenance.base_model);
    config["torch_dtype"] = Value::from(dtype.torch_name());
    config["bos_token_id"] = json!(ids.bos);
    config["eos_token_id"] = json!(ids.eos);
    write_json(&dir.join("config.json"), &config)?;

    // The source's own generation defaults when it has them, else greedy-safe stop tokens.
    let source_generation = base.source.join("generation_config.json");
    let generation = match std::fs::read_to_string(&source_generation) {
        Ok(text) if base.source.is_dir() => serde_json::from_str(&text)
            .with_context(|| format!("{}: not valid JSON", source_generation.display()))?,
        _ => {
            let mut stops = vec![ids.eos];
            stops.extend(ids.end_of_text.filter(|&id| id != ids.eos));
            json!({ "bos_token_id": ids.bos, "eos_token_id": stops, "pad_token_id": ids.pad })
        }
    };
    write_json(&dir.join("generation_config.json"), &generation)?;

    let tensors: HashMap<String, Tensor> = source
        .weights
        .iter()
        .map(|(name, tensor)| Ok((name.clone(), tensor.to_dtype(dtype.dtype())?)))
        .collect::<Result<_>>()?;
    let weights_path = dir.join("model.safetensors");
    candle_core::safetensors::save(&tensors, &weights_path)
        .with_context(|| format!("writing {}", weights_path.display()))?;
    base.write_tokenizer_files(dir)?;
    Ok(())
}

fn write_json(path: &Path, value: &Value) -> Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(value)? + "\n")
        .with_context(|| format!("writing {}", path.display()))
}
