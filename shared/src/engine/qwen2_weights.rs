//! A Qwen2 model's weights on the GPU, loaded once and shared by every sequence that runs on
//! it (the two candidates of the compare view decode side by side on one copy). Matrices stay
//! in their GGUF block types; norms and biases are small and kept as f32. The token embedding
//! stays on the CPU in its GGUF encoding: a step dequantizes only the rows of its tokens.

use std::io::{Read, Seek};
use std::sync::Arc;

use candle_core::quantized::{GgmlDType, ggml_file::qtensor_from_ggml};
use wgpu::util::DeviceExt;

use super::block_type::BlockType;
use super::gpu_context::{EngineError, GpuContext};
use super::kernel_plan::KernelPlan;
use super::quantized_matmul::QuantizedMatmulKernels;
use super::quantized_matrix::QuantizedMatrix;
use super::sampling_kernels::SamplingKernels;
use super::vector_kernels::VectorKernels;
use crate::gguf_metadata::{Architecture, GgufModel, ModelHyperparameters};

/// One transformer block's weights.
pub struct LayerWeights {
    pub attn_norm: wgpu::Buffer,
    pub q_bias: wgpu::Buffer,
    pub k_bias: wgpu::Buffer,
    pub v_bias: wgpu::Buffer,
    pub wq: QuantizedMatrix,
    pub wk: QuantizedMatrix,
    pub wv: QuantizedMatrix,
    pub wo: QuantizedMatrix,
    pub ffn_norm: wgpu::Buffer,
    pub ffn_in: FeedForwardIn,
    pub w_down: QuantizedMatrix,
}

/// The feed-forward block's two input projections.
pub enum FeedForwardIn {
    /// Gate and up of one block type, their rows interleaved in one matrix: one product
    /// yields silu(gate · x) · (up · x).
    GateUpPairs(QuantizedMatrix),
    /// Gate and up of different block types: two products and an elementwise SwiGLU.
    Separate {
        gate: QuantizedMatrix,
        up: QuantizedMatrix,
    },
}

/// The compiled kernels, compiled once per model.
pub struct Kernels {
    pub matmul: QuantizedMatmulKernels,
    pub ops: VectorKernels,
    pub sampling: SamplingKernels,
}

pub struct Qwen2Weights {
    pub ctx: GpuContext,
    pub hyperparameters: ModelHyperparameters,
    pub layers: Vec<LayerWeights>,
    pub output_norm: wgpu::Buffer,
    /// The output head (`output.weight`, or the token embedding when tied).
    pub output: QuantizedMatrix,
    pub kernels: Kernels,
    embedding: EmbeddingRows,
}

impl Qwen2Weights {
    /// Uploads the weights of a validated Qwen2 GGUF. A tensor the engine cannot run (unknown
    /// block type, missing, wrong shape) is an error naming it.
    pub fn load<R: Read + Seek>(
        ctx: &GpuContext,
        gguf: &GgufModel,
        reader: &mut R,
    ) -> Result<Arc<Self>, EngineError> {
        Self::load_with_plan(ctx, gguf, reader, KernelPlan::for_adapter(ctx))
    }

    /// As `load`, with explicit kernel variants (tests run the GPU variants on a CPU driver;
    /// benchmarks compare them).
    #[cfg_attr(
        target_arch = "wasm32",
        expect(
            clippy::arc_with_non_send_sync,
            reason = "WebGPU handles are not Send in the browser; natively the Arc lets threads share the weights"
        )
    )]
    pub fn load_with_plan<R: Read + Seek>(
        ctx: &GpuContext,
        gguf: &GgufModel,
        reader: &mut R,
        plan: KernelPlan,
    ) -> Result<Arc<Self>, EngineError> {
        let hp = gguf.hyperparameters.clone();
        if hp.architecture != Architecture::Qwen2 {
            return Err(EngineError::Unsupported(format!(
                "{}: the wgpu engine runs qwen2 models, this is {}",
                gguf.source_name,
                hp.architecture.as_str()
            )));
        }
        let raw = |reader: &mut R, name: &str| {
            gguf.tensor_bytes(reader, name)
                .map_err(|e| EngineError::Unsupported(e.to_string()))
        };
        let vector = |reader: &mut R, name: &str| -> Result<wgpu::Buffer, EngineError> {
            let info = &gguf.content.tensor_infos[name];
            let values = dequantize_f32(info.ggml_dtype, &raw(reader, name)?, info.shape.dims())
                .map_err(|e| {
                    EngineError::Unsupported(format!("{}: tensor `{name}`: {e}", gguf.source_name))
                })?;
            Ok(ctx
                .device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(name),
                    contents: bytemuck::cast_slice(&values),
                    usage: wgpu::BufferUsages::STORAGE,
                }))
        };
        // A matrix's block type and (rows, columns).
        let matrix_shape = |name: &str| -> Result<(BlockType, usize, usize), EngineError> {
            let info = &gguf.content.tensor_infos[name];
            let block_type = BlockType::from_ggml(info.ggml_dtype).ok_or_else(|| {
                EngineError::Unsupported(format!(
                    "{}: tensor `{name}` has type {:?}, which the wgpu engine cannot read",
                    gguf.source_name, info.ggml_dtype
                ))
            })?;
            let (rows, cols) = info
                .shape
                .dims2()
                .map_err(|e| EngineError::Unsupported(e.to_string()))?;
            Ok((block_type, rows, cols))
        };
        let matrix = |reader: &mut R, name: &str| -> Result<QuantizedMatrix, EngineError> {
            let (block_type, rows, cols) = matrix_shape(name)?;
            QuantizedMatrix::upload(ctx, name, block_type, rows, cols, &raw(reader, name)?)
        };
        let feed_forward_in = |reader: &mut R, gate: &str, up: &str| {
            let shape = matrix_shape(gate)?;
            if shape != matrix_shape(up)? {
                return Ok(FeedForwardIn::Separate {
                    gate: matrix(reader, gate)?,
                    up: matrix(reader, up)?,
                });
            }
            let (block_type, rows, cols) = shape;
            let pair = [raw(reader, gate)?, raw(reader, up)?];
            let pairs = QuantizedMatrix::upload_row_pairs(
                ctx,
                [gate, up],
                block_type,
                rows,
                cols,
                [&pair[0], &pair[1]],
                ctx.max_binding_bytes,
            )?;
            Ok(FeedForwardIn::GateUpPairs(pairs))
        };

        let mut layers = Vec::with_capacity(hp.block_count);
        for layer in 0..hp.block_count {
            let name = |suffix: &str| format!("blk.{layer}.{suffix}");
            layers.push(LayerWeights {
                attn_norm: vector(reader, &name("attn_norm.weight"))?,
                q_bias: vector(reader, &name("attn_q.bias"))?,
                k_bias: vector(reader, &name("attn_k.bias"))?,
                v_bias: vector(reader, &name("attn_v.bias"))?,
                wq: matrix(reader, &name("attn_q.weight"))?,
                wk: matrix(reader, &name("attn_k.weight"))?,
                wv: matrix(reader, &name("attn_v.weight"))?,
                wo: matrix(reader, &name("attn_output.weight"))?,
                ffn_norm: vector(reader, &name("ffn_norm.weight"))?,
                ffn_in: feed_forward_in(reader, &name("ffn_gate.weight"), &name("ffn_up.weight"))?,
                w_down: matrix(reader, &name("ffn_down.weight"))?,
            });
        }
        let output_norm = vector(reader, "output_norm.weight")?;
        let output_name = if hp.tied_embeddings {
            "token_embd.weight"
        } else {
            "output.weight"
        };
        let output = matrix(reader, output_name)?;
        let embedding_info = &gguf.content.tensor_infos["token_embd.weight"];
        let embedding_bytes = raw(reader, "token_embd.weight")?;
        let embedding = EmbeddingRows {
            dtype: embedding_info.ggml_dtype,
            row_bytes: embedding_bytes.len() / hp.vocab_size,
            width: hp.embedding_length,
            bytes: embedding_bytes,
        };
        let mut block_types = vec![output.block_type];
        let mut row_pair_types = Vec::new();
        for layer in &layers {
            block_types.extend(
                [&layer.wq, &layer.wk, &layer.wv, &layer.wo, &layer.w_down].map(|m| m.block_type),
            );
            match &layer.ffn_in {
                FeedForwardIn::GateUpPairs(pairs) => row_pair_types.push(pairs.block_type),
                FeedForwardIn::Separate { gate, up } => {
                    block_types.extend([gate.block_type, up.block_type]);
                }
            }
        }
        let kernels = Kernels {
            matmul: QuantizedMatmulKernels::with_plan(
                ctx,
                &block_types,
                &row_pair_types,
                plan.matmul,
            ),
            ops: VectorKernels::new(ctx, hp.head_dim, plan.attention_workgroup),
            sampling: SamplingKernels::new(ctx),
        };
        Ok(Arc::new(Self {
            ctx: ctx.clone(),
            hyperparameters: hp,
            layers,
            output_norm,
            output,
            kernels,
            embedding,
        }))
    }

    /// The embedding rows of `tokens`, one after another.
    pub fn embed(&self, tokens: &[u32]) -> Result<Vec<f32>, EngineError> {
        let mut rows = Vec::with_capacity(tokens.len() * self.embedding.width);
        for &token in tokens {
            rows.extend(self.embedding.row(token)?);
        }
        Ok(rows)
    }
}

/// Token embedding rows kept in their GGUF encoding on the CPU.
struct EmbeddingRows {
    dtype: GgmlDType,
    row_bytes: usize,
    width: usize,
    bytes: Vec<u8>,
}

impl EmbeddingRows {
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
fn dequantize_f32(dtype: GgmlDType, bytes: &[u8], dims: &[usize]) -> candle_core::Result<Vec<f32>> {
    let device = candle_core::Device::Cpu;
    qtensor_from_ggml(dtype, bytes, dims.to_vec(), &device)?
        .dequantize(&device)?
        .flatten_all()?
        .to_vec1::<f32>()
}
