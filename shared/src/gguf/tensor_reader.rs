//! Reading a validated Qwen2 GGUF's tensors for an inference engine, the wgpu one and the CPU
//! one alike: the architecture check, a tensor's bytes, small tensors (norms, biases) as f32,
//! a matrix's block type and shape, and the token embedding. Every error names the file, the
//! tensor and the engine.

use std::io::{Read, Seek};

use crate::generation::EngineError;
use crate::gguf::Qwen2Tensor;
use crate::gguf::block_type::BlockType;
use crate::gguf::embedding_rows::{EmbeddingRows, dequantize_f32};
use crate::gguf::metadata::{Architecture, GgufModel};

pub struct GgufTensors<'a, R> {
    gguf: &'a GgufModel,
    reader: &'a mut R,
    /// "the wgpu engine", "the CPU engine": for errors.
    engine: &'static str,
}

impl<'a, R: Read + Seek> GgufTensors<'a, R> {
    /// The tensors of `gguf` (read from `reader`) for `engine`, which runs qwen2 models only.
    pub fn open(
        gguf: &'a GgufModel,
        reader: &'a mut R,
        engine: &'static str,
    ) -> Result<Self, EngineError> {
        let architecture = gguf.hyperparameters.architecture;
        if architecture != Architecture::Qwen2 {
            return Err(EngineError::Unsupported(format!(
                "{}: {engine} runs qwen2 models, this is {}",
                gguf.source_name,
                architecture.as_str()
            )));
        }
        Ok(Self {
            gguf,
            reader,
            engine,
        })
    }

    fn error(&self, name: &str, what: impl std::fmt::Display) -> EngineError {
        EngineError::Unsupported(format!(
            "{}: tensor `{name}`: {what}",
            self.gguf.source_name
        ))
    }

    /// The tensor's bytes as the file stores them.
    pub fn bytes(&mut self, name: &str) -> Result<Vec<u8>, EngineError> {
        self.gguf
            .tensor_bytes(self.reader, name)
            .map_err(|e| EngineError::Unsupported(e.to_string()))
    }

    /// Rows `first_row..first_row + rows` of matrix `name`'s bytes, into `out`.
    pub fn rows(
        &mut self,
        name: &str,
        first_row: usize,
        rows: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), EngineError> {
        self.gguf
            .tensor_rows(self.reader, name, first_row, rows, out)
            .map_err(|e| EngineError::Unsupported(e.to_string()))
    }

    /// The tensor's values as f32, whatever its type.
    pub fn f32_values(&mut self, name: &str) -> Result<Vec<f32>, EngineError> {
        let bytes = self.bytes(name)?;
        let info = &self.gguf.content.tensor_infos[name];
        dequantize_f32(info.ggml_dtype, &bytes, info.shape.dims()).map_err(|e| self.error(name, e))
    }

    /// A matrix's block type and (rows, columns); a type no kernel reads is an error.
    pub fn matrix_shape(&self, name: &str) -> Result<(BlockType, usize, usize), EngineError> {
        let info = self
            .gguf
            .content
            .tensor_infos
            .get(name)
            .ok_or_else(|| self.error(name, "missing"))?;
        let block_type = BlockType::from_ggml(info.ggml_dtype).ok_or_else(|| {
            self.error(
                name,
                format!(
                    "has type {:?}, which {} cannot read",
                    info.ggml_dtype, self.engine
                ),
            )
        })?;
        let (rows, cols) = info.shape.dims2().map_err(|e| self.error(name, e))?;
        Ok((block_type, rows, cols))
    }

    /// The token embedding, kept in its GGUF encoding.
    pub fn embedding(&mut self) -> Result<EmbeddingRows, EngineError> {
        let name = Qwen2Tensor::TokenEmbedding.gguf_model();
        let bytes = self.bytes(name)?;
        let dtype = self.gguf.content.tensor_infos[name].ggml_dtype;
        let hp = &self.gguf.hyperparameters;
        Ok(EmbeddingRows::new(
            dtype,
            bytes,
            hp.vocab_size,
            hp.embedding_length,
        ))
    }
}
