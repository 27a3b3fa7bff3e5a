//! A GGUF's weights as the training model's tensors: every tensor dequantized to the training
//! dtype and renamed from llama.cpp's names to transformers' (`blk.3.attn_q.weight` →
//! `model.layers.3.self_attn.q_proj.weight`, see `shared::gguf::qwen2_tensors`). Qwen2's GGUF tensors are not permuted (NeoX
//! RoPE), so no reordering is needed.

use std::collections::HashMap;
use std::io::{Read, Seek};

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor};
use shared::GgufModel;

use shared::gguf::qwen2_tensors::transformers_name;

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
            "{}: only qwen2 models are supported (training, export), this is {}",
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
