//! A Qwen2 model's weights on the GPU, loaded once and shared by every sequence that runs on
//! it (the two candidates of the compare view decode side by side on one copy). Matrices stay
//! in their GGUF block types (Q, K and V stacked into one matrix where they share one, and
//! SwiGLU's gate and up interleaved); norms and biases are small and kept as f32. The token embedding
//! stays on the CPU in its GGUF encoding: a step dequantizes only the rows of its tokens.

use std::io::{Read, Seek};
use std::sync::Arc;

use wgpu::util::DeviceExt;

use super::gpu_context::GpuContext;
use super::kernel_plan::KernelPlan;
use super::quantized_matmul::QuantizedMatmulKernels;
use super::quantized_matrix::QuantizedMatrix;
use super::sampling_kernels::SamplingKernels;
use super::vector_kernels::VectorKernels;
use crate::generation::EngineError;
use crate::gguf::Qwen2Tensor;
use crate::gguf::embedding_rows::EmbeddingRows;
use crate::gguf::metadata::{GgufModel, ModelHyperparameters};
use crate::gguf::tensor_reader::GgufTensors;

/// One transformer block's weights.
pub struct LayerWeights {
    pub attn_norm: wgpu::Buffer,
    pub qkv: QkvProjection,
    /// Q's, K's and V's biases one after another, as their outputs lie in a row.
    pub qkv_bias: wgpu::Buffer,
    pub wo: QuantizedMatrix,
    pub ffn_norm: wgpu::Buffer,
    pub ffn_in: FeedForwardIn,
    pub w_down: QuantizedMatrix,
}

/// The attention block's Q, K and V projections. Their outputs lie side by side in one row
/// per token: q (heads × head_dim), then k and v (kv_heads × head_dim each).
pub enum QkvProjection {
    /// Q, K and V of one block type, their rows stacked in one matrix: one product.
    Stacked(QuantizedMatrix),
    /// Of different block types (Q4_K_M keeps some layers' V in Q6_K): three products, each
    /// into its own columns of the row.
    Separate([QuantizedMatrix; 3]),
}

impl QkvProjection {
    /// The matrices, one product each.
    pub fn matrices(&self) -> &[QuantizedMatrix] {
        match self {
            Self::Stacked(stacked) => std::slice::from_ref(stacked),
            Self::Separate(matrices) => matrices,
        }
    }
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
        let mut tensors = GgufTensors::open(gguf, reader, "the wgpu engine")?;
        type Tensors<'t, 'a, R> = &'t mut GgufTensors<'a, R>;
        let f32_buffer = |name: &str, values: &[f32]| {
            ctx.device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(name),
                    contents: bytemuck::cast_slice(values),
                    usage: wgpu::BufferUsages::STORAGE,
                })
        };
        let vector = |t: Tensors<'_, '_, R>, name: &str| -> Result<wgpu::Buffer, EngineError> {
            Ok(f32_buffer(name, &t.f32_values(name)?))
        };
        // Read a piece of rows at a time: an output head is the largest tensor of a small
        // model, and the browser's worker would keep its size in wasm memory for good.
        let matrix = |t: Tensors<'_, '_, R>, name: &str| -> Result<QuantizedMatrix, EngineError> {
            let shape = t.matrix_shape(name)?;
            QuantizedMatrix::upload_streamed(ctx, name, shape, &mut |first, rows, out| {
                t.rows(name, first, rows, out)
            })
        };
        let qkv = |t: Tensors<'_, '_, R>, names: [&str; 3]| -> Result<QkvProjection, EngineError> {
            let [q, k, v] = names;
            let (q_type, q_rows, cols) = t.matrix_shape(q)?;
            let (k_type, k_rows, k_cols) = t.matrix_shape(k)?;
            let (v_type, v_rows, v_cols) = t.matrix_shape(v)?;
            if [k_type, v_type] != [q_type; 2] || [k_cols, v_cols] != [cols; 2] {
                return Ok(QkvProjection::Separate([
                    matrix(t, q)?,
                    matrix(t, k)?,
                    matrix(t, v)?,
                ]));
            }
            let mut stacked = Vec::new();
            for name in names {
                stacked.extend(t.bytes(name)?);
            }
            let label = q.replace("attn_q", "attn_qkv");
            let rows = q_rows + k_rows + v_rows;
            QuantizedMatrix::upload(ctx, &label, q_type, rows, cols, &stacked)
                .map(QkvProjection::Stacked)
        };
        let qkv_bias =
            |t: Tensors<'_, '_, R>, names: [&str; 3]| -> Result<wgpu::Buffer, EngineError> {
                let mut biases = Vec::new();
                for name in names {
                    biases.extend(t.f32_values(name)?);
                }
                Ok(f32_buffer(&names[0].replace("attn_q", "attn_qkv"), &biases))
            };
        let feed_forward_in = |t: Tensors<'_, '_, R>, gate: &str, up: &str| {
            let shape = t.matrix_shape(gate)?;
            if shape != t.matrix_shape(up)? {
                return Ok(FeedForwardIn::Separate {
                    gate: matrix(t, gate)?,
                    up: matrix(t, up)?,
                });
            }
            let (block_type, rows, cols) = shape;
            let pair = [t.bytes(gate)?, t.bytes(up)?];
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

        let t = &mut tensors;
        let mut layers = Vec::with_capacity(hp.block_count);
        for layer in 0..hp.block_count {
            let name = |tensor: Qwen2Tensor| tensor.gguf(layer);
            let [q, k, v] = [Qwen2Tensor::AttnQ, Qwen2Tensor::AttnK, Qwen2Tensor::AttnV].map(name);
            let [q_bias, k_bias, v_bias] = [
                Qwen2Tensor::AttnQBias,
                Qwen2Tensor::AttnKBias,
                Qwen2Tensor::AttnVBias,
            ]
            .map(name);
            layers.push(LayerWeights {
                attn_norm: vector(t, &name(Qwen2Tensor::AttnNorm))?,
                qkv: qkv(t, [&q, &k, &v])?,
                qkv_bias: qkv_bias(t, [&q_bias, &k_bias, &v_bias])?,
                wo: matrix(t, &name(Qwen2Tensor::AttnOutput))?,
                ffn_norm: vector(t, &name(Qwen2Tensor::FfnNorm))?,
                ffn_in: feed_forward_in(t, &name(Qwen2Tensor::FfnGate), &name(Qwen2Tensor::FfnUp))?,
                w_down: matrix(t, &name(Qwen2Tensor::FfnDown))?,
            });
        }
        let output_norm = vector(t, Qwen2Tensor::OutputNorm.gguf_model())?;
        let embedding = t.embedding()?;
        // Tied weights: the output head is the embedding table, uploaded from the copy the
        // embedding keeps rather than read a second time.
        let output = if hp.tied_embeddings {
            let name = Qwen2Tensor::TokenEmbedding.gguf_model();
            let (block_type, rows, cols) = t.matrix_shape(name)?;
            QuantizedMatrix::upload(ctx, name, block_type, rows, cols, embedding.table_bytes())?
        } else {
            matrix(t, Qwen2Tensor::Output.gguf_model())?
        };
        let mut block_types = vec![output.block_type];
        let mut row_pair_types = Vec::new();
        for layer in &layers {
            block_types.extend([&layer.wo, &layer.w_down].map(|m| m.block_type));
            block_types.extend(layer.qkv.matrices().iter().map(|m| m.block_type));
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
            ops: VectorKernels::new(ctx, hp.head_dim, &plan),
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
        self.embedding.rows(tokens)
    }
}
