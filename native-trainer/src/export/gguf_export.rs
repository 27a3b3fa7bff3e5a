//! An export source as a GGUF llama.cpp loads: llama.cpp's tensor names and order, each matrix
//! in the type the preset gives it (`quant_preset`), and the metadata llama.cpp's converter
//! writes — `general.*` (name, base model, license, file type, quantization version),
//! `qwen2.*` hyperparameters, `tokenizer.ggml.*` (vocabulary, merges, token types, special
//! ids) and `tokenizer.chat_template`. Tied embeddings are written as llama.cpp expects them:
//! no `output.weight`, the head reads `token_embd.weight`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::Value;
use indicatif::{ProgressBar, ProgressStyle};
use shared::gguf::Qwen2Tensor;
use shared::gguf::qwen2_tensors::gguf_name;

use super::export_source::ExportSource;
use super::gguf_writer::{TensorEntry, WrittenFile, write_gguf};
use super::quant_preset::{QuantPreset, TensorRole};
use super::tensor_quantizer::tensor_bytes;

use crate::train::Qwen2Config;

/// ggml's quantization format version (`GGML_QNT_VERSION`).
const QUANTIZATION_VERSION: u32 = 2;

/// A written GGUF and the type each tensor got.
pub struct GgufExport {
    pub file: WrittenFile,
    pub tensor_types: Vec<(String, GgmlDType)>,
}

pub fn write_model_gguf(
    source: &ExportSource,
    preset: QuantPreset,
    model_name: &str,
    path: &Path,
) -> Result<GgufExport> {
    let config = &source.base.config;
    let mut planned: Vec<(TensorEntry, usize)> = Vec::new();
    let has_output = source
        .weights
        .iter()
        .any(|(name, _)| name == "lm_head.weight");
    let mut fallbacks: BTreeMap<(String, String, usize), usize> = BTreeMap::new();
    for (index, (name, tensor)) in source.weights.iter().enumerate() {
        let gguf = gguf_name(name)
            .with_context(|| format!("tensor `{name}` is not part of a Qwen2 model"))?;
        let expected = expected_dims(config, name);
        if expected.as_deref() != Some(tensor.dims()) {
            bail!(
                "tensor `{name}` has shape {:?}; the model's config.json needs {:?}",
                tensor.dims(),
                expected.unwrap_or_default()
            );
        }
        let chosen = preset.tensor_type(TensorRole {
            gguf_name: &gguf,
            dims: tensor.dims(),
            layer_count: config.num_hidden_layers,
            has_output,
        });
        if let Some((wanted, row_length)) = chosen.fallback_from {
            let key = (
                format!("{wanted:?}"),
                format!("{:?}", chosen.dtype),
                row_length,
            );
            *fallbacks.entry(key).or_default() += 1;
        }
        planned.push((
            TensorEntry {
                name: gguf,
                dims: tensor.dims().to_vec(),
                dtype: chosen.dtype,
            },
            index,
        ));
    }
    for ((wanted, used, row_length), count) in &fallbacks {
        tracing::warn!(
            "{count} tensors have rows of {row_length} values, not whole {wanted} blocks: \
             written as {used} instead (as llama.cpp does)"
        );
    }
    planned.sort_by_key(|(entry, _)| file_order(&entry.name));
    let (entries, sources): (Vec<TensorEntry>, Vec<usize>) = planned.into_iter().unzip();

    let metadata = metadata(source, preset, model_name)?;
    let total: u64 = entries.iter().map(TensorEntry::byte_size).sum();
    let progress = ProgressBar::new(total);
    progress.set_style(
        ProgressStyle::with_template(
            "{msg:24} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    progress.set_message(format!("writing {}", preset.name()));
    let file = write_gguf(
        path,
        &metadata,
        &entries,
        |i| {
            let (_, tensor) = &source.weights[sources[i]];
            tensor_bytes(tensor, entries[i].dtype)
                .with_context(|| format!("tensor `{}`", entries[i].name))
        },
        |bytes| progress.inc(bytes),
    )?;
    progress.finish_and_clear();
    Ok(GgufExport {
        file,
        tensor_types: entries.iter().map(|e| (e.name.clone(), e.dtype)).collect(),
    })
}

/// The shape (candle order) a transformers tensor must have under `config`.
fn expected_dims(config: &Qwen2Config, name: &str) -> Option<Vec<usize>> {
    let d = config.hidden_size;
    let q = config.num_attention_heads * config.head_dim();
    let kv = config.num_key_value_heads * config.head_dim();
    let ff = config.intermediate_size;
    let dims = match name {
        "model.embed_tokens.weight" | "lm_head.weight" => vec![config.vocab_size, d],
        "model.norm.weight" => vec![d],
        _ => {
            let tensor = name.strip_prefix("model.layers.")?.split_once('.')?.1;
            match tensor {
                "input_layernorm.weight" | "post_attention_layernorm.weight" => vec![d],
                "self_attn.q_proj.weight" => vec![q, d],
                "self_attn.q_proj.bias" => vec![q],
                "self_attn.k_proj.weight" | "self_attn.v_proj.weight" => vec![kv, d],
                "self_attn.k_proj.bias" | "self_attn.v_proj.bias" => vec![kv],
                "self_attn.o_proj.weight" => vec![d, q],
                "mlp.gate_proj.weight" | "mlp.up_proj.weight" => vec![ff, d],
                "mlp.down_proj.weight" => vec![d, ff],
                _ => return None,
            }
        }
    };
    Some(dims)
}

/// llama.cpp's converter order: embeddings, the blocks in order, final norm, head.
fn file_order(gguf_name: &str) -> (usize, usize, String) {
    match Qwen2Tensor::from_gguf(gguf_name) {
        Some((Qwen2Tensor::TokenEmbedding, _)) => (0, 0, String::new()),
        Some((Qwen2Tensor::OutputNorm, _)) => (2, 0, String::new()),
        Some((Qwen2Tensor::Output, _)) => (3, 0, String::new()),
        Some((_, layer)) => (1, layer, gguf_name.to_string()),
        None => (1, usize::MAX, gguf_name.to_string()),
    }
}

fn metadata(
    source: &ExportSource,
    preset: QuantPreset,
    model_name: &str,
) -> Result<Vec<(String, Value)>> {
    let config = &source.base.config;
    let tokenizer = &source.base.text.tokenizer;
    let provenance = &source.provenance;
    let vocabulary = tokenizer
        .gguf_vocabulary(config.vocab_size)
        .context("writing the vocabulary")?;
    let count = |n: usize| Value::U32(n as u32);
    let text = |s: &str| Value::String(s.to_string());
    let ids = source.special_token_ids();

    let mut md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), text("qwen2")),
        ("general.type".into(), text("model")),
        ("general.name".into(), text(model_name)),
    ];
    if let Some(license) = &provenance.license {
        md.push(("general.license".into(), text(license)));
    }
    md.push(("general.base_model.count".into(), Value::U32(1)));
    md.push((
        "general.base_model.0.name".into(),
        text(&provenance.base_model),
    ));
    if provenance.training.is_some() {
        md.push((
            "general.tags".into(),
            Value::Array(vec![text("dpo"), text("dpo-flywheel")]),
        ));
    }
    md.extend([
        (
            "qwen2.context_length".into(),
            count(config.max_position_embeddings),
        ),
        ("qwen2.embedding_length".into(), count(config.hidden_size)),
        ("qwen2.block_count".into(), count(config.num_hidden_layers)),
        (
            "qwen2.feed_forward_length".into(),
            count(config.intermediate_size),
        ),
        (
            "qwen2.attention.head_count".into(),
            count(config.num_attention_heads),
        ),
        (
            "qwen2.attention.head_count_kv".into(),
            count(config.num_key_value_heads),
        ),
        (
            "qwen2.rope.freq_base".into(),
            Value::F32(config.rope_theta as f32),
        ),
        (
            "qwen2.attention.layer_norm_rms_epsilon".into(),
            Value::F32(config.rms_norm_eps as f32),
        ),
        ("general.file_type".into(), Value::U32(preset.file_type())),
        ("tokenizer.ggml.model".into(), text("gpt2")),
        ("tokenizer.ggml.pre".into(), text(&vocabulary.pre)),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(vocabulary.tokens.into_iter().map(Value::String).collect()),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(vocabulary.token_types.into_iter().map(Value::I32).collect()),
        ),
        (
            "tokenizer.ggml.merges".into(),
            Value::Array(vocabulary.merges.into_iter().map(Value::String).collect()),
        ),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(ids.eos)),
        (
            "tokenizer.ggml.padding_token_id".into(),
            Value::U32(ids.pad),
        ),
    ]);
    if let Some(bos) = ids.bos {
        md.push(("tokenizer.ggml.bos_token_id".into(), Value::U32(bos)));
    }
    md.push((
        "tokenizer.ggml.add_bos_token".into(),
        Value::Bool(tokenizer.add_bos),
    ));
    if let Some(template) = &source.base.tokenizer_settings.chat_template {
        md.push(("tokenizer.chat_template".into(), text(template)));
    }
    md.push((
        "general.quantization_version".into(),
        Value::U32(QUANTIZATION_VERSION),
    ));
    Ok(md)
}
