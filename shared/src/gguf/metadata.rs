//! GGUF model metadata: checks a GGUF header's structure first (`gguf_header_check`: bounds,
//! counts, types, memory), then reads it with candle's `gguf_file`, validates the
//! architecture's hyperparameters and the tensor table (shapes, bounds, overlaps), and reports
//! every problem with the key, tensor name or byte offset at fault — never a panic.

use std::collections::HashMap;
use std::io::{Read, Seek};

use candle_core::quantized::gguf_file::{Content, TensorInfo, Value};

use crate::gguf::Qwen2Tensor;
use crate::gguf::header_check::check_header;

/// Longest context a model may declare: 2^20 positions (Qwen2.5's longest variants declare
/// about a million).
pub const MAX_CONTEXT_LENGTH: usize = 1 << 20;

/// Model families whose GGUF metadata we understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    Qwen2,
    Llama,
}

impl Architecture {
    pub fn as_str(self) -> &'static str {
        match self {
            Architecture::Qwen2 => "qwen2",
            Architecture::Llama => "llama",
        }
    }
}

/// The transformer shape a GGUF declares, validated for consistency.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelHyperparameters {
    pub architecture: Architecture,
    pub block_count: usize,
    pub embedding_length: usize,
    pub feed_forward_length: usize,
    pub head_count: usize,
    pub head_count_kv: usize,
    pub head_dim: usize,
    pub context_length: usize,
    pub rope_freq_base: f32,
    pub rms_norm_eps: f32,
    pub vocab_size: usize,
    /// No separate `output.weight`: the output head reuses the token embedding.
    pub tied_embeddings: bool,
}

/// Everything wrong with a GGUF file that we can name.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("{source_name}: not a readable GGUF file (failed near byte offset {offset}): {reason}")]
    Corrupt {
        source_name: String,
        offset: u64,
        reason: String,
    },
    #[error("{source_name}: metadata key `{key}` is missing")]
    MissingKey { source_name: String, key: String },
    #[error("{source_name}: metadata key `{key}` is invalid: {reason}")]
    InvalidKey {
        source_name: String,
        key: String,
        reason: String,
    },
    #[error(
        "{source_name}: architecture `{architecture}` is not supported (supported: qwen2, llama)"
    )]
    UnknownArchitecture {
        source_name: String,
        architecture: String,
    },
    #[error("{source_name}: tensor `{tensor}` is missing")]
    MissingTensor { source_name: String, tensor: String },
    #[error("{source_name}: tensor `{tensor}` has shape {found:?}, expected {expected:?}")]
    WrongShape {
        source_name: String,
        tensor: String,
        found: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error(
        "{source_name}: tensors `{first}` (bytes {first_start}..{first_end}) and `{second}` (from byte {second_start}) overlap"
    )]
    OverlappingTensors {
        source_name: String,
        first: String,
        first_start: u64,
        first_end: u64,
        second: String,
        second_start: u64,
    },
    #[error(
        "{source_name}: tensor `{tensor}` spans bytes {start}..{end} but the file has only {file_size} bytes (truncated file?)"
    )]
    TensorOutOfBounds {
        source_name: String,
        tensor: String,
        start: u64,
        end: u64,
        file_size: u64,
    },
}

/// A parsed and validated GGUF header. Tensor data stays in the file.
#[derive(Debug)]
pub struct GgufModel {
    pub source_name: String,
    pub content: Content,
    pub hyperparameters: ModelHyperparameters,
    pub file_size: u64,
}

impl GgufModel {
    /// Reads and validates the header of a GGUF file. `source_name` (usually the path) is
    /// put in every error message.
    pub fn read<R: Read + Seek>(reader: &mut R, source_name: &str) -> Result<Self, GgufError> {
        let corrupt = |reader: &mut R, reason: String| GgufError::Corrupt {
            source_name: source_name.to_string(),
            offset: reader.stream_position().unwrap_or(0),
            reason,
        };
        let file_size = reader
            .seek(std::io::SeekFrom::End(0))
            .and_then(|size| reader.rewind().map(|_| size))
            .map_err(|e| corrupt(reader, e.to_string()))?;
        let layout =
            check_header(reader, file_size, false).map_err(|problem| GgufError::Corrupt {
                source_name: source_name.to_string(),
                offset: problem.offset,
                reason: problem.reason,
            })?;
        reader
            .rewind()
            .map_err(|e| corrupt(reader, e.to_string()))?;
        let content = Content::read(reader).map_err(|e| corrupt(reader, e.to_string()))?;
        if content.tensor_data_offset != layout.tensor_data_offset {
            return Err(GgufError::Corrupt {
                source_name: source_name.to_string(),
                offset: layout.tensor_data_offset,
                reason: format!(
                    "the tensor data starts at byte {} by the header's layout, {} as read",
                    layout.tensor_data_offset, content.tensor_data_offset
                ),
            });
        }
        let metadata = MetadataReader {
            source_name,
            metadata: &content.metadata,
        };
        let hyperparameters = read_hyperparameters(&metadata, &content)?;
        check_tensor_table(source_name, &content, &hyperparameters, file_size)?;
        Ok(Self {
            source_name: source_name.to_string(),
            content,
            hyperparameters,
            file_size,
        })
    }

    /// Opens and validates a GGUF file on disk.
    pub fn open(path: &std::path::Path) -> Result<Self, GgufError> {
        let source_name = path.display().to_string();
        let mut file = std::fs::File::open(path).map_err(|e| GgufError::Corrupt {
            source_name: source_name.clone(),
            offset: 0,
            reason: e.to_string(),
        })?;
        Self::read(&mut file, &source_name)
    }

    pub fn metadata(&self) -> &HashMap<String, Value> {
        &self.content.metadata
    }

    /// The Jinja chat template stored in the file, if any.
    pub fn chat_template(&self) -> Option<&str> {
        match self.metadata().get("tokenizer.chat_template") {
            Some(Value::String(s)) => Some(s.as_str()),
            _ => None,
        }
    }

    /// Where tensor `name` is and what it holds; a missing one is an error naming it.
    fn tensor_info(&self, name: &str) -> Result<&TensorInfo, GgufError> {
        self.content
            .tensor_infos
            .get(name)
            .ok_or_else(|| GgufError::MissingTensor {
                source_name: self.source_name.clone(),
                tensor: name.to_string(),
            })
    }

    /// The raw bytes of tensor `name` (its GGUF encoding), read from `reader`.
    pub fn tensor_bytes<R: Read + Seek>(
        &self,
        reader: &mut R,
        name: &str,
    ) -> Result<Vec<u8>, GgufError> {
        let info = self.tensor_info(name)?;
        let start = self.content.tensor_data_offset + info.offset;
        let mut bytes = vec![0u8; tensor_byte_len(info) as usize];
        reader
            .seek(std::io::SeekFrom::Start(start))
            .and_then(|_| reader.read_exact(&mut bytes))
            .map_err(|e| GgufError::Corrupt {
                source_name: self.source_name.clone(),
                offset: start,
                reason: format!("reading tensor `{name}`: {e}"),
            })?;
        Ok(bytes)
    }

    /// Rows `first_row..first_row + rows` of matrix `name` (its first dimension counts the
    /// rows), as the file stores them, into `out`: a piece of a large tensor without reading
    /// all of it.
    pub fn tensor_rows<R: Read + Seek>(
        &self,
        reader: &mut R,
        name: &str,
        first_row: usize,
        rows: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), GgufError> {
        let info = self.tensor_info(name)?;
        let all_rows = info.shape.dims().first().copied().unwrap_or(1).max(1) as u64;
        let row_bytes = tensor_byte_len(info) / all_rows;
        let start = self.content.tensor_data_offset + info.offset + first_row as u64 * row_bytes;
        let corrupt = |reason: String| GgufError::Corrupt {
            source_name: self.source_name.clone(),
            offset: start,
            reason,
        };
        if (first_row + rows) as u64 > all_rows {
            return Err(corrupt(format!(
                "tensor `{name}` has {all_rows} rows, not {}",
                first_row + rows
            )));
        }
        out.resize(rows * row_bytes as usize, 0);
        reader
            .seek(std::io::SeekFrom::Start(start))
            .and_then(|_| reader.read_exact(out))
            .map_err(|e| {
                corrupt(format!(
                    "reading rows {first_row}.. of tensor `{name}`: {e}"
                ))
            })
    }

    /// `general.name`, when present.
    pub fn name(&self) -> Option<&str> {
        match self.metadata().get("general.name") {
            Some(Value::String(s)) => Some(s.as_str()),
            _ => None,
        }
    }
}

/// Typed access to metadata values with errors that name the key.
pub(crate) struct MetadataReader<'a> {
    pub source_name: &'a str,
    pub metadata: &'a HashMap<String, Value>,
}

impl MetadataReader<'_> {
    pub fn get(&self, key: &str) -> Result<&Value, GgufError> {
        self.metadata.get(key).ok_or_else(|| GgufError::MissingKey {
            source_name: self.source_name.to_string(),
            key: key.to_string(),
        })
    }

    pub fn invalid(&self, key: &str, reason: impl Into<String>) -> GgufError {
        GgufError::InvalidKey {
            source_name: self.source_name.to_string(),
            key: key.to_string(),
            reason: reason.into(),
        }
    }

    pub fn string(&self, key: &str) -> Result<&str, GgufError> {
        match self.get(key)? {
            Value::String(s) => Ok(s),
            other => Err(self.invalid(key, format!("expected a string, found {other:?}"))),
        }
    }

    pub fn optional_string(&self, key: &str) -> Result<Option<&str>, GgufError> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(_) => self.string(key).map(Some),
        }
    }

    /// A non-negative integer of any GGUF integer type.
    pub fn count(&self, key: &str) -> Result<usize, GgufError> {
        let value = self.get(key)?;
        let as_i128: i128 = match value {
            Value::U8(v) => *v as i128,
            Value::I8(v) => *v as i128,
            Value::U16(v) => *v as i128,
            Value::I16(v) => *v as i128,
            Value::U32(v) => *v as i128,
            Value::I32(v) => *v as i128,
            Value::U64(v) => *v as i128,
            Value::I64(v) => *v as i128,
            other => {
                return Err(self.invalid(key, format!("expected an integer, found {other:?}")));
            }
        };
        usize::try_from(as_i128).map_err(|_| self.invalid(key, format!("{as_i128} is negative")))
    }

    pub fn optional_count(&self, key: &str) -> Result<Option<usize>, GgufError> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(_) => self.count(key).map(Some),
        }
    }

    pub fn positive_count(&self, key: &str) -> Result<usize, GgufError> {
        let n = self.count(key)?;
        if n == 0 {
            return Err(self.invalid(key, "must be greater than 0"));
        }
        Ok(n)
    }

    pub fn optional_float(&self, key: &str) -> Result<Option<f32>, GgufError> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(Value::F32(v)) => Ok(Some(*v)),
            Some(Value::F64(v)) => Ok(Some(*v as f32)),
            Some(other) => Err(self.invalid(key, format!("expected a float, found {other:?}"))),
        }
    }

    pub fn array(&self, key: &str) -> Result<&[Value], GgufError> {
        match self.get(key)? {
            Value::Array(values) => Ok(values),
            other => Err(self.invalid(key, format!("expected an array, found {other:?}"))),
        }
    }

    pub fn optional_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        match self.metadata.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.invalid(key, format!("expected a bool, found {other:?}"))),
        }
    }
}

fn read_hyperparameters(
    md: &MetadataReader<'_>,
    content: &Content,
) -> Result<ModelHyperparameters, GgufError> {
    let architecture_name = md.string("general.architecture")?;
    let architecture = match architecture_name {
        "qwen2" => Architecture::Qwen2,
        "llama" => Architecture::Llama,
        other => {
            return Err(GgufError::UnknownArchitecture {
                source_name: md.source_name.to_string(),
                architecture: other.to_string(),
            });
        }
    };
    let arch = architecture.as_str();
    let key = |suffix: &str| format!("{arch}.{suffix}");

    let block_count = md.positive_count(&key("block_count"))?;
    // Each block has at least nine tensors: a larger count cannot be right, and would have
    // every check below walk (and allocate for) blocks that are not there.
    if block_count > content.tensor_infos.len() / 9 {
        return Err(md.invalid(
            &key("block_count"),
            format!(
                "{block_count} blocks, but the file has only {} tensors",
                content.tensor_infos.len()
            ),
        ));
    }
    let embedding_length = md.positive_count(&key("embedding_length"))?;
    let feed_forward_length = md.positive_count(&key("feed_forward_length"))?;
    let head_count = md.positive_count(&key("attention.head_count"))?;
    let head_count_kv = match md.optional_count(&key("attention.head_count_kv"))? {
        Some(0) => {
            return Err(md.invalid(&key("attention.head_count_kv"), "must be greater than 0"));
        }
        Some(n) => n,
        None => head_count,
    };
    let context_length = md.positive_count(&key("context_length"))?;
    if context_length > MAX_CONTEXT_LENGTH {
        // Engines size position tables by it (candle's RoPE table, for one).
        return Err(md.invalid(
            &key("context_length"),
            format!(
                "{context_length} positions is beyond the {MAX_CONTEXT_LENGTH} any engine here                  holds"
            ),
        ));
    }
    let rope_key = key("rope.freq_base");
    let rope_freq_base = md.optional_float(&rope_key)?.unwrap_or(10_000.0);
    if !(rope_freq_base.is_finite() && rope_freq_base > 0.0) {
        return Err(md.invalid(
            &rope_key,
            format!("{rope_freq_base} is not a positive number"),
        ));
    }
    let eps_key = key("attention.layer_norm_rms_epsilon");
    let rms_norm_eps = md
        .optional_float(&eps_key)?
        .ok_or_else(|| GgufError::MissingKey {
            source_name: md.source_name.to_string(),
            key: eps_key.clone(),
        })?;
    if !(rms_norm_eps.is_finite() && rms_norm_eps > 0.0) {
        return Err(md.invalid(&eps_key, format!("{rms_norm_eps} is not a positive number")));
    }
    if embedding_length % head_count != 0 {
        return Err(md.invalid(
            &key("attention.head_count"),
            format!("{head_count} heads do not divide embedding_length {embedding_length}"),
        ));
    }
    if head_count % head_count_kv != 0 {
        return Err(md.invalid(
            &key("attention.head_count_kv"),
            format!("{head_count_kv} key/value heads do not divide {head_count} query heads"),
        ));
    }
    let head_dim = embedding_length / head_count;
    if head_dim % 2 != 0 {
        return Err(md.invalid(
            &key("embedding_length"),
            format!("head dimension {head_dim} must be even for rotary embeddings"),
        ));
    }

    let source_name = md.source_name;
    let embedding = content
        .tensor_infos
        .get(Qwen2Tensor::TokenEmbedding.gguf_model())
        .ok_or_else(|| GgufError::MissingTensor {
            source_name: source_name.to_string(),
            tensor: Qwen2Tensor::TokenEmbedding.gguf_model().into(),
        })?;
    let vocab_size = match embedding.shape.dims() {
        [vocab, width] if *width == embedding_length => *vocab,
        dims => {
            return Err(GgufError::WrongShape {
                source_name: source_name.to_string(),
                tensor: Qwen2Tensor::TokenEmbedding.gguf_model().into(),
                found: dims.to_vec(),
                expected: vec![0, embedding_length],
            });
        }
    };
    let tied_embeddings = !content
        .tensor_infos
        .contains_key(Qwen2Tensor::Output.gguf_model());

    Ok(ModelHyperparameters {
        architecture,
        block_count,
        embedding_length,
        feed_forward_length,
        head_count,
        head_count_kv,
        head_dim,
        context_length,
        rope_freq_base,
        rms_norm_eps,
        vocab_size,
        tied_embeddings,
    })
}

/// Every tensor a transformer block needs, with its expected (rows, columns) shape.
fn expected_tensors(hp: &ModelHyperparameters) -> Vec<(String, Vec<usize>)> {
    let mut tensors = vec![Qwen2Tensor::OutputNorm];
    if !hp.tied_embeddings {
        tensors.push(Qwen2Tensor::Output);
    }
    let mut named: Vec<(String, Vec<usize>)> = tensors
        .into_iter()
        .map(|t| (t.gguf_model().to_string(), t.shape(hp)))
        .collect();
    // Per layer: the matrices and norms, then the biases (Qwen2 has them, Llama not).
    let with_biases = hp.architecture == Architecture::Qwen2;
    let per_layer = Qwen2Tensor::PER_LAYER
        .into_iter()
        .filter(|t| !t.is_bias())
        .chain(
            Qwen2Tensor::PER_LAYER
                .into_iter()
                .filter(|t| with_biases && t.is_bias()),
        );
    for layer in 0..hp.block_count {
        named.extend(per_layer.clone().map(|t| (t.gguf(layer), t.shape(hp))));
    }
    named
}

/// Bytes a tensor's data occupies in the file: whole blocks of its GGML type.
fn tensor_byte_len(info: &TensorInfo) -> u64 {
    let elements = info.shape.elem_count() as u64;
    let blocks = elements.div_ceil(info.ggml_dtype.block_size() as u64);
    blocks * info.ggml_dtype.type_size() as u64
}

fn check_tensor_table(
    source_name: &str,
    content: &Content,
    hp: &ModelHyperparameters,
    file_size: u64,
) -> Result<(), GgufError> {
    for (name, expected) in expected_tensors(hp) {
        let info = content
            .tensor_infos
            .get(&name)
            .ok_or_else(|| GgufError::MissingTensor {
                source_name: source_name.to_string(),
                tensor: name.clone(),
            })?;
        if info.shape.dims() != expected.as_slice() {
            return Err(GgufError::WrongShape {
                source_name: source_name.to_string(),
                tensor: name,
                found: info.shape.dims().to_vec(),
                expected,
            });
        }
    }
    // Sorted so that the first reported problem is the same on every run.
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let mut spans = Vec::with_capacity(names.len());
    for name in names {
        let info = &content.tensor_infos[name];
        let start = content.tensor_data_offset.saturating_add(info.offset);
        let end = start.saturating_add(tensor_byte_len(info));
        if end > file_size {
            return Err(GgufError::TensorOutOfBounds {
                source_name: source_name.to_string(),
                tensor: name.clone(),
                start,
                end,
                file_size,
            });
        }
        spans.push((start, end, name));
    }
    spans.sort();
    for pair in spans.windows(2) {
        let ((first_start, first_end, first), (second_start, _, second)) = (pair[0], pair[1]);
        if second_start < first_end {
            return Err(GgufError::OverlappingTensors {
                source_name: source_name.to_string(),
                first: first.clone(),
                first_start,
                first_end,
                second: second.clone(),
                second_start,
            });
        }
    }
    Ok(())
}
