//! A `.safetensors` file's tensors read one at a time, converted as they arrive. candle's
//! `safetensors::load` reads the whole file into memory first, so loading a model held the
//! file and its tensors at once: twice the model (12 GB for Qwen2.5-1.5B in f32). Here the
//! header is read, then each tensor's bytes alone, so a load peaks at the model plus its
//! largest tensor. Offsets outside the file are an error naming the file and the tensor.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor};
use serde_json::Value;

/// The header may not be larger than this (safetensors' own limit).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Reads every tensor of `path`, each converted to `dtype` on `device` before the next is
/// read, and hands it to `keep` with its name.
pub fn read_tensors(
    path: &Path,
    dtype: DType,
    device: &Device,
    mut keep: impl FnMut(String, Tensor),
) -> Result<()> {
    let shown = path.display();
    let mut file = File::open(path).with_context(|| format!("opening {shown}"))?;
    let file_len = file.metadata()?.len();
    let mut length = [0u8; 8];
    file.read_exact(&mut length)
        .with_context(|| format!("{shown}: shorter than a safetensors header"))?;
    let header_len = u64::from_le_bytes(length);
    if header_len > MAX_HEADER_BYTES || 8 + header_len > file_len {
        bail!(
            "{shown}: header length {header_len} at offset 0 does not fit the file ({file_len} bytes)"
        );
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)?;
    let header: serde_json::Map<String, Value> = serde_json::from_slice(&header)
        .with_context(|| format!("{shown}: the header is not a JSON object"))?;
    let data_start = 8 + header_len;
    for (name, info) in header {
        if name == "__metadata__" {
            continue;
        }
        let field = |key: &str| {
            info.get(key)
                .with_context(|| format!("{shown}: tensor `{name}` has no `{key}`"))
        };
        let tensor_dtype = parse_dtype(field("dtype")?.as_str().unwrap_or(""))
            .with_context(|| format!("{shown}: tensor `{name}`"))?;
        let shape: Vec<usize> = serde_json::from_value(field("shape")?.clone())
            .with_context(|| format!("{shown}: tensor `{name}`: `shape`"))?;
        let (start, end): (u64, u64) = serde_json::from_value(field("data_offsets")?.clone())
            .with_context(|| format!("{shown}: tensor `{name}`: `data_offsets`"))?;
        let expected = shape.iter().product::<usize>() as u64 * tensor_dtype.size_in_bytes() as u64;
        if end < start || end - start != expected || data_start + end > file_len {
            bail!(
                "{shown}: tensor `{name}` at bytes {start}..{end} of the data (from offset \
                 {data_start}): {expected} bytes expected for {shape:?} {tensor_dtype:?}, the \
                 file has {file_len}"
            );
        }
        let mut bytes = vec![0u8; expected as usize];
        file.seek(SeekFrom::Start(data_start + start))?;
        file.read_exact(&mut bytes)?;
        let tensor = Tensor::from_raw_buffer(&bytes, tensor_dtype, &shape, &Device::Cpu)?;
        drop(bytes);
        keep(name, tensor.to_dtype(dtype)?.to_device(device)?);
    }
    Ok(())
}

fn parse_dtype(name: &str) -> Result<DType> {
    Ok(match name {
        "F32" => DType::F32,
        "F16" => DType::F16,
        "BF16" => DType::BF16,
        "F64" => DType::F64,
        "U8" => DType::U8,
        "U32" => DType::U32,
        "I64" => DType::I64,
        other => bail!("dtype `{other}` (accepted: F32, F16, BF16, F64, U8, U32, I64)"),
    })
}
