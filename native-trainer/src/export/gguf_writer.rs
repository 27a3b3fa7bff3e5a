//! A GGUF v3 writer: header, metadata key/values, tensor infos, then each tensor's data at a
//! 32-byte-aligned offset (`general.alignment` default). Tensor data is produced one tensor at
//! a time by the caller, so an export holds at most one converted tensor in memory; the file's
//! sha256 is computed as it is written, and the file appears under its name only once complete
//! (written as `NAME.partial`, then renamed).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::Value;
use sha2::{Digest, Sha256};

const GGUF_MAGIC: &[u8; 4] = b"GGUF";
const GGUF_VERSION: u32 = 3;
const ALIGNMENT: u64 = 32;

/// One tensor's header entry.
#[derive(Debug, Clone)]
pub struct TensorEntry {
    pub name: String,
    /// candle order, outermost first (`(rows, row length)`); GGUF stores them reversed.
    pub dims: Vec<usize>,
    pub dtype: GgmlDType,
}

impl TensorEntry {
    /// Bytes of the tensor's data in `dtype`.
    pub fn byte_size(&self) -> u64 {
        let elements: usize = self.dims.iter().product();
        (elements / self.dtype.block_size() * self.dtype.type_size()) as u64
    }
}

/// What was written: the file's sha256 (lower-case hex) and size.
#[derive(Debug, Clone)]
pub struct WrittenFile {
    pub sha256: String,
    pub size: u64,
}

/// Writes a GGUF at `path`. `tensor_data(i)` returns the bytes of `tensors[i]` (exactly
/// `byte_size()` of them); `progress(bytes)` is told after each tensor.
pub fn write_gguf(
    path: &Path,
    metadata: &[(String, Value)],
    tensors: &[TensorEntry],
    mut tensor_data: impl FnMut(usize) -> Result<Vec<u8>>,
    mut progress: impl FnMut(u64),
) -> Result<WrittenFile> {
    let partial = path.with_extension("gguf.partial");
    let file = File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let mut out = HashingWriter::new(BufWriter::with_capacity(1 << 22, file));
    let result = (|| -> Result<()> {
        out.write_all(GGUF_MAGIC)?;
        out.write_all(&GGUF_VERSION.to_le_bytes())?;
        out.write_all(&(tensors.len() as u64).to_le_bytes())?;
        out.write_all(&(metadata.len() as u64).to_le_bytes())?;
        for (key, value) in metadata {
            write_string(&mut out, key)?;
            out.write_all(&value_type(value, key)?.to_le_bytes())?;
            write_value(&mut out, value, key)?;
        }
        let mut offset = 0u64;
        for tensor in tensors {
            write_string(&mut out, &tensor.name)?;
            out.write_all(&(tensor.dims.len() as u32).to_le_bytes())?;
            for &dim in tensor.dims.iter().rev() {
                out.write_all(&(dim as u64).to_le_bytes())?;
            }
            out.write_all(&ggml_type_id(tensor.dtype).to_le_bytes())?;
            out.write_all(&offset.to_le_bytes())?;
            offset = (offset + tensor.byte_size()).next_multiple_of(ALIGNMENT);
        }
        out.pad_to_alignment()?;
        for (index, tensor) in tensors.iter().enumerate() {
            let data = tensor_data(index)?;
            if data.len() as u64 != tensor.byte_size() {
                bail!(
                    "tensor `{}`: {} bytes of data for {} expected",
                    tensor.name,
                    data.len(),
                    tensor.byte_size()
                );
            }
            out.write_all(&data)?;
            out.pad_to_alignment()?;
            progress(data.len() as u64);
        }
        out.inner.flush()?;
        out.inner.get_ref().sync_all()?;
        Ok(())
    })();
    if let Err(error) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(error.context(format!("writing {}", path.display())));
    }
    let written = WrittenFile {
        sha256: hex::encode(out.hasher.finalize()),
        size: out.written,
    };
    std::fs::rename(&partial, path)
        .with_context(|| format!("renaming {} to {}", partial.display(), path.display()))?;
    Ok(written)
}

/// Counts and hashes everything written through it.
struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    fn pad_to_alignment(&mut self) -> std::io::Result<()> {
        let padding = self.written.next_multiple_of(ALIGNMENT) - self.written;
        self.write_all(&vec![0u8; padding as usize])
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// ggml's `ggml_type` number of a tensor type.
fn ggml_type_id(dtype: GgmlDType) -> u32 {
    match dtype {
        GgmlDType::F32 => 0,
        GgmlDType::F16 => 1,
        GgmlDType::Q4_0 => 2,
        GgmlDType::Q4_1 => 3,
        GgmlDType::Q5_0 => 6,
        GgmlDType::Q5_1 => 7,
        GgmlDType::Q8_0 => 8,
        GgmlDType::Q8_1 => 9,
        GgmlDType::Q2K => 10,
        GgmlDType::Q3K => 11,
        GgmlDType::Q4K => 12,
        GgmlDType::Q5K => 13,
        GgmlDType::Q6K => 14,
        GgmlDType::Q8K => 15,
        GgmlDType::BF16 => 30,
    }
}

fn write_string(out: &mut impl Write, text: &str) -> std::io::Result<()> {
    out.write_all(&(text.len() as u64).to_le_bytes())?;
    out.write_all(text.as_bytes())
}

/// GGUF's value type codes.
fn value_type(value: &Value, key: &str) -> Result<u32> {
    Ok(match value {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(items) => {
            if let Some(Value::Array(_)) = items.first() {
                bail!("metadata `{key}`: nested arrays are not written");
            }
            9
        }
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    })
}

fn write_value(out: &mut impl Write, value: &Value, key: &str) -> Result<()> {
    match value {
        Value::U8(v) => out.write_all(&v.to_le_bytes())?,
        Value::I8(v) => out.write_all(&v.to_le_bytes())?,
        Value::U16(v) => out.write_all(&v.to_le_bytes())?,
        Value::I16(v) => out.write_all(&v.to_le_bytes())?,
        Value::U32(v) => out.write_all(&v.to_le_bytes())?,
        Value::I32(v) => out.write_all(&v.to_le_bytes())?,
        Value::U64(v) => out.write_all(&v.to_le_bytes())?,
        Value::I64(v) => out.write_all(&v.to_le_bytes())?,
        Value::F32(v) => out.write_all(&v.to_le_bytes())?,
        Value::F64(v) => out.write_all(&v.to_le_bytes())?,
        Value::Bool(v) => out.write_all(&[u8::from(*v)])?,
        Value::String(v) => write_string(out, v)?,
        Value::Array(items) => {
            // An empty array still needs an element type; u8 is as good as any.
            let element_type = match items.first() {
                Some(first) => value_type(first, key)?,
                None => 0,
            };
            out.write_all(&element_type.to_le_bytes())?;
            out.write_all(&(items.len() as u64).to_le_bytes())?;
            for (i, item) in items.iter().enumerate() {
                if value_type(item, key)? != element_type {
                    bail!("metadata `{key}`: element {i} differs in type from element 0");
                }
                write_value(out, item, key)?;
            }
        }
    }
    Ok(())
}
