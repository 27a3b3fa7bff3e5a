//! A GGUF's weights as the training model's tensors: every tensor dequantized to the training
//! dtype and renamed from llama.cpp's names to transformers' (`blk.3.attn_q.weight` →
//! `model.layers.3.self_attn.q_proj.weight`). Qwen2's GGUF tensors are not permuted (NeoX
//! RoPE), so no reordering is needed.

use std::collections::HashMap;
use std::io::{Read, Seek};

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor};
use shared::GgufModel;

/// transformers' name for a GGUF tensor name, `None` for tensors training does not use.
pub fn transformers_name(gguf_name: &str) -> Option<String> {
    let top = match gguf_name {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(name) = top {
        return Some(name.to_string());
    }
    let rest = gguf_name.strip_prefix("blk.")?;
    let (layer, tensor) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let mapped = match tensor {
        "attn_norm.weight" => "input_layernorm.weight",
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_q.bias" => "self_attn.q_proj.bias",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_k.bias" => "self_attn.k_proj.bias",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_v.bias" => "self_attn.v_proj.bias",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{mapped}"))
}

/// Every tensor of a validated qwen2 GGUF, dequantized to `dtype` on `device`, by transformers
/// name.
pub fn load_tensors<R: Read + Seek>(
    gguf: &GgufModel,
    reader: &mut R,
    dtype: DType,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    if gguf.hyperparameters.architecture != shared::Architecture::Qwen2 {
        bail!(
            "{}: training runs qwen2 models, this is {}",
            gguf.source_name,
            gguf.hyperparameters.architecture.as_str()
        );
    }
    let mut tensors = HashMap::new();
    for gguf_name in gguf.content.tensor_infos.keys() {
        let Some(name) = transformers_name(gguf_name) else {
            continue;
        };
        let quantized = gguf
            .content
            .tensor(reader, gguf_name, &Device::Cpu)
            .with_context(|| format!("{}: reading tensor `{gguf_name}`", gguf.source_name))?;
        let tensor = quantized
            .dequantize(&Device::Cpu)?
            .to_dtype(dtype)?
            .to_device(device)?;
        tensors.insert(name, tensor);
    }
    Ok(tensors)
}
