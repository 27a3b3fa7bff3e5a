//! The token embedding kept on the CPU in its GGUF encoding (a 151,936-row table is the
//! largest tensor of a small model): a step dequantizes only the rows of its tokens. Both
//! engines, the GPU one and the CPU one, read it so.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, ggml_file::qtensor_from_ggml};

use crate::generation::EngineError;

pub struct EmbeddingRows {
    dtype: GgmlDType,
    row_bytes: usize,
    width: usize,
    /// Shared with the output head where the model ties the two (the CPU engine).
    bytes: Arc<Vec<u8>>,
}

impl EmbeddingRows {
    /// `bytes`: the whole table, `vocab_size` rows of `width` values.
    pub fn new(dtype: GgmlDType, bytes: Vec<u8>, vocab_size: usize, width: usize) -> Self {
        Self {
            dtype,
            row_bytes: bytes.len() / vocab_size.max(1),
            width,
            bytes: Arc::new(bytes),
        }
    }

    /// The whole table as the GGUF stores it.
    pub fn table_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The whole table, shared rather than copied (a tied output head reads the same bytes).
    pub fn shared_table(&self) -> Arc<Vec<u8>> {
        Arc::clone(&self.bytes)
    }

    /// The rows of `tokens`, one after another.
    pub fn rows(&self, tokens: &[u32]) -> Result<Vec<f32>, EngineError> {
        let mut rows = Vec::with_capacity(tokens.len() * self.width);
        for &token in tokens {
            rows.extend(self.row(token)?);
        }
        Ok(rows)
    }

    fn row(&self, token: u32) -> Result<Vec<f32>, EngineError> {
        let start = token as usize * self.row_bytes;
        let raw = self
            .bytes
            .get(start..start + self.row_bytes)
            .ok_or_else(|| {
                EngineError::Unsupported(format!("token id {token} is outside the vocabulary"))
            })?;
        dequantize_f32(self.dtype, raw, &[self.width])
            .map_err(|e| EngineError::Unsupported(format!("token embedding: {e}")))
    }
}

/// GGUF-encoded values of any type as f32, decoded on the CPU by candle.
pub fn dequantize_f32(
    dtype: GgmlDType,
    bytes: &[u8],
    dims: &[usize],
) -> candle_core::Result<Vec<f32>> {
    let device = candle_core::Device::Cpu;
    qtensor_from_ggml(dtype, bytes, dims.to_vec(), &device)?
        .dequantize(&device)?
        .flatten_all()?
        .to_vec1::<f32>()
}
