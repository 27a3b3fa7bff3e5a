//! A Qwen2 model on the GPU, one token per step: weights uploaded in their GGUF block types,
//! a KV cache per layer, and the whole step (24 layers for the 0.5B model) recorded as one
//! compute pass of prepared kernels. The token embedding is looked up on the CPU from the raw
//! GGUF rows, so only one row per step is dequantized.

use std::io::{Read, Seek};

use bytemuck::{Pod, Zeroable};
use candle_core::quantized::{GgmlDType, ggml_file::qtensor_from_ggml};

use super::block_type::BlockType;
use super::gpu_context::{EngineError, GpuContext};
use super::matvec::{MatVecKernels, PreparedMatVec};
use super::quantized_matrix::QuantizedMatrix;
use super::readback::read_f32;
use super::vector_kernels::{Binding, PreparedOp, VectorKernel, VectorKernels};
use crate::gguf_metadata::{Architecture, GgufModel, ModelHyperparameters};

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct StepUniform {
    position: u32,
    kv_len: u32,
}

/// One entry of the recorded step, in execution order.
enum Stage {
    MatVec(PreparedMatVec),
    Op(PreparedOp),
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
        dequantize_f32(self.dtype, raw, vec![self.width])
            .map_err(|e| EngineError::Unsupported(format!("token embedding: {e}")))
    }
}

pub struct Qwen2Decoder {
    pub hyperparameters: ModelHyperparameters,
    /// Longest sequence the KV cache holds.
    pub max_positions: usize,
    embedding: EmbeddingRows,
    hidden: wgpu::Buffer,
    logits: wgpu::Buffer,
    step: wgpu::Buffer,
    stages: Vec<Stage>,
    matvec: MatVecKernels,
    ops: VectorKernels,
    // Weights and caches stay alive as long as the decoder (bind groups refer to them).
    _resources: Vec<wgpu::Buffer>,
    _matrices: Vec<QuantizedMatrix>,
}

impl Qwen2Decoder {
    /// Uploads the weights of a validated Qwen2 GGUF and prepares the step.
    pub fn load<R: Read + Seek>(
        ctx: &GpuContext,
        gguf: &GgufModel,
        reader: &mut R,
        max_positions: usize,
    ) -> Result<Self, EngineError> {
        let hp = gguf.hyperparameters.clone();
        if hp.architecture != Architecture::Qwen2 {
            return Err(EngineError::Unsupported(format!(
                "{}: the wgpu engine runs qwen2 models, this is {}",
                gguf.source_name,
                hp.architecture.as_str()
            )));
        }
        let max_positions = max_positions.clamp(1, hp.context_length);
        let tensor = |reader: &mut R, name: &str| {
            gguf.tensor_bytes(reader, name)
                .map_err(|e| EngineError::Unsupported(e.to_string()))
        };
        let matvec = MatVecKernels::new(ctx);
        let ops = VectorKernels::new(ctx);
        let (d, ff, heads, kv_heads, head_dim) = (
            hp.embedding_length,
            hp.feed_forward_length,
            hp.head_count,
            hp.head_count_kv,
            hp.head_dim,
        );
        let kv = kv_heads * head_dim;

        let mut resources = Vec::new();
        let mut matrices = Vec::new();
        let storage = |label: &str, floats: usize, extra: wgpu::BufferUsages| {
            ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: (floats.max(1) * 4) as u64,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | extra,
                mapped_at_creation: false,
            })
        };
        let upload_f32 = |reader: &mut R, name: &str| -> Result<wgpu::Buffer, EngineError> {
            let values = f32_tensor(gguf, reader, name)?;
            use wgpu::util::DeviceExt;
            Ok(ctx
                .device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some(name),
                    contents: bytemuck::cast_slice(&values),
                    usage: wgpu::BufferUsages::STORAGE,
                }))
        };
        let upload_matrix = |reader: &mut R, name: &str| -> Result<QuantizedMatrix, EngineError> {
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
            QuantizedMatrix::upload(ctx, name, block_type, rows, cols, &tensor(reader, name)?)
        };

        let hidden = storage("hidden", d, wgpu::BufferUsages::empty());
        let normed = storage("normed", d, wgpu::BufferUsages::empty());
        let q = storage("q", d, wgpu::BufferUsages::empty());
        let k = storage("k", kv, wgpu::BufferUsages::empty());
        let v = storage("v", kv, wgpu::BufferUsages::empty());
        let attn = storage("attention", d, wgpu::BufferUsages::empty());
        let projected = storage("projected", d, wgpu::BufferUsages::empty());
        let gate = storage("gate", ff, wgpu::BufferUsages::empty());
        let up = storage("up", ff, wgpu::BufferUsages::empty());
        let scores = storage("scores", heads * max_positions, wgpu::BufferUsages::empty());
        let logits = storage("logits", hp.vocab_size, wgpu::BufferUsages::COPY_SRC);
        use wgpu::util::DeviceExt;
        let step = ctx
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("step"),
                contents: bytemuck::bytes_of(&StepUniform {
                    position: 0,
                    kv_len: 1,
                }),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            });

        let n_params = |n: usize| Binding::Params((n as u32).to_le_bytes().to_vec());
        let groups = |n: usize, size: usize| n.div_ceil(size) as u32;
        let rms_params = {
            let mut bytes = (d as u32).to_le_bytes().to_vec();
            bytes.extend_from_slice(&hp.rms_norm_eps.to_le_bytes());
            bytes
        };
        let rope_params = |n_heads: usize| {
            let mut bytes = Vec::new();
            bytes.extend_from_slice(&(n_heads as u32).to_le_bytes());
            bytes.extend_from_slice(&(head_dim as u32).to_le_bytes());
            bytes.extend_from_slice(&hp.rope_freq_base.to_le_bytes());
            bytes.extend_from_slice(&[0; 4]);
            bytes
        };
        let attention_params = {
            let mut bytes = Vec::new();
            for value in [heads, kv_heads, head_dim, max_positions] {
                bytes.extend_from_slice(&(value as u32).to_le_bytes());
            }
            bytes.extend_from_slice(&(1.0 / (head_dim as f32).sqrt()).to_le_bytes());
            bytes.extend_from_slice(&[0; 12]);
            bytes
        };

        // The kernels of one step, bound to this model's buffers.
        let rms_norm = |weight: &wgpu::Buffer| {
            let bindings = [
                Binding::Buffer(&hidden),
                Binding::Buffer(weight),
                Binding::Buffer(&normed),
                Binding::Params(rms_params.clone()),
            ];
            Stage::Op(ops.prepare(ctx, VectorKernel::RmsNorm, &bindings, 1))
        };
        let add = |target: &wgpu::Buffer, addend: &wgpu::Buffer, n: usize| {
            let bindings = [
                Binding::Buffer(target),
                Binding::Buffer(addend),
                n_params(n),
            ];
            Stage::Op(ops.prepare(ctx, VectorKernel::AddInPlace, &bindings, groups(n, 256)))
        };
        let rope = |vectors: &wgpu::Buffer, n_heads: usize| {
            let bindings = [
                Binding::Buffer(vectors),
                Binding::Params(rope_params(n_heads)),
                Binding::Buffer(&step),
            ];
            let pairs = n_heads * head_dim / 2;
            Stage::Op(ops.prepare(ctx, VectorKernel::RopeNeox, &bindings, groups(pairs, 64)))
        };
        let kv_store = |source: &wgpu::Buffer, cache: &wgpu::Buffer| {
            let bindings = [
                Binding::Buffer(source),
                Binding::Buffer(cache),
                n_params(kv),
                Binding::Buffer(&step),
            ];
            Stage::Op(ops.prepare(ctx, VectorKernel::KvStore, &bindings, groups(kv, 64)))
        };
        let attention = |k_cache: &wgpu::Buffer, v_cache: &wgpu::Buffer| {
            let bindings = [
                Binding::Buffer(&q),
                Binding::Buffer(k_cache),
                Binding::Buffer(v_cache),
                Binding::Buffer(&scores),
                Binding::Buffer(&attn),
                Binding::Params(attention_params.clone()),
                Binding::Buffer(&step),
            ];
            Stage::Op(ops.prepare(ctx, VectorKernel::AttentionDecode, &bindings, heads as u32))
        };
        let silu_mul = || {
            let bindings = [Binding::Buffer(&gate), Binding::Buffer(&up), n_params(ff)];
            Stage::Op(ops.prepare(ctx, VectorKernel::SiluMul, &bindings, groups(ff, 256)))
        };
        let mv = |m: &QuantizedMatrix, x: &wgpu::Buffer, y: &wgpu::Buffer| {
            Stage::MatVec(matvec.prepare(ctx, m, x, 0, y))
        };

        let mut stages = Vec::new();
        for layer in 0..hp.block_count {
            let name = |suffix: &str| format!("blk.{layer}.{suffix}");
            let attn_norm = upload_f32(reader, &name("attn_norm.weight"))?;
            let ffn_norm = upload_f32(reader, &name("ffn_norm.weight"))?;
            let q_bias = upload_f32(reader, &name("attn_q.bias"))?;
            let k_bias = upload_f32(reader, &name("attn_k.bias"))?;
            let v_bias = upload_f32(reader, &name("attn_v.bias"))?;
            let wq = upload_matrix(reader, &name("attn_q.weight"))?;
            let wk = upload_matrix(reader, &name("attn_k.weight"))?;
            let wv = upload_matrix(reader, &name("attn_v.weight"))?;
            let wo = upload_matrix(reader, &name("attn_output.weight"))?;
            let w_gate = upload_matrix(reader, &name("ffn_gate.weight"))?;
            let w_up = upload_matrix(reader, &name("ffn_up.weight"))?;
            let w_down = upload_matrix(reader, &name("ffn_down.weight"))?;
            let k_cache = storage("k cache", max_positions * kv, wgpu::BufferUsages::empty());
            let v_cache = storage("v cache", max_positions * kv, wgpu::BufferUsages::empty());

            stages.extend([
                // Attention block.
                rms_norm(&attn_norm),
                mv(&wq, &normed, &q),
                add(&q, &q_bias, d),
                mv(&wk, &normed, &k),
                add(&k, &k_bias, kv),
                mv(&wv, &normed, &v),
                add(&v, &v_bias, kv),
                rope(&q, heads),
                rope(&k, kv_heads),
                kv_store(&k, &k_cache),
                kv_store(&v, &v_cache),
                attention(&k_cache, &v_cache),
                mv(&wo, &attn, &projected),
                add(&hidden, &projected, d),
                // SwiGLU feed-forward block.
                rms_norm(&ffn_norm),
                mv(&w_gate, &normed, &gate),
                mv(&w_up, &normed, &up),
                silu_mul(),
                mv(&w_down, &gate, &projected),
                add(&hidden, &projected, d),
            ]);
            resources.extend([
                attn_norm, ffn_norm, q_bias, k_bias, v_bias, k_cache, v_cache,
            ]);
            matrices.extend([wq, wk, wv, wo, w_gate, w_up, w_down]);
        }

        let output_norm = upload_f32(reader, "output_norm.weight")?;
        let output_name = if hp.tied_embeddings {
            "token_embd.weight"
        } else {
            "output.weight"
        };
        let output = upload_matrix(reader, output_name)?;
        stages.push(rms_norm(&output_norm));
        stages.push(mv(&output, &normed, &logits));
        matrices.push(output);
        resources.extend([
            output_norm,
            normed,
            q,
            k,
            v,
            attn,
            projected,
            gate,
            up,
            scores,
        ]);

        let embedding_info = &gguf.content.tensor_infos["token_embd.weight"];
        let embedding_bytes = tensor(reader, "token_embd.weight")?;
        let embedding = EmbeddingRows {
            dtype: embedding_info.ggml_dtype,
            row_bytes: embedding_bytes.len() / hp.vocab_size,
            width: d,
            bytes: embedding_bytes,
        };

        Ok(Self {
            hyperparameters: hp,
            max_positions,
            embedding,
            hidden,
            logits,
            step,
            stages,
            matvec,
            ops,
            _resources: resources,
            _matrices: matrices,
        })
    }

    /// Runs `token` at `position` (positions must be fed in order from 0) and returns the
    /// logits for the next token.
    pub async fn forward(
        &self,
        ctx: &GpuContext,
        token: u32,
        position: usize,
    ) -> Result<Vec<f32>, EngineError> {
        self.submit_step(ctx, token, position)?;
        self.read_logits(ctx).await
    }

    /// Queues the step for `token` at `position` without reading anything back: a prompt's
    /// tokens are submitted one after another and only the last step's logits are read.
    pub fn submit_step(
        &self,
        ctx: &GpuContext,
        token: u32,
        position: usize,
    ) -> Result<(), EngineError> {
        if position >= self.max_positions {
            return Err(EngineError::Unsupported(format!(
                "position {position} is beyond the KV cache of {} tokens",
                self.max_positions
            )));
        }
        let embedding = self.embedding.row(token)?;
        ctx.queue
            .write_buffer(&self.hidden, 0, bytemuck::cast_slice(&embedding));
        let step = StepUniform {
            position: position as u32,
            kv_len: position as u32 + 1,
        };
        ctx.queue
            .write_buffer(&self.step, 0, bytemuck::bytes_of(&step));
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("qwen2 step"),
                timestamp_writes: None,
            });
            for stage in &self.stages {
                match stage {
                    Stage::MatVec(prepared) => self.matvec.record(&mut pass, prepared),
                    Stage::Op(op) => self.ops.record(&mut pass, op),
                }
            }
        }
        ctx.queue.submit([encoder.finish()]);
        Ok(())
    }

    /// The logits written by the last submitted step.
    pub async fn read_logits(&self, ctx: &GpuContext) -> Result<Vec<f32>, EngineError> {
        read_f32(ctx, &self.logits, self.hyperparameters.vocab_size).await
    }
}

/// A small tensor (norm weight, bias) as f32, dequantized on the CPU if stored otherwise.
fn f32_tensor<R: Read + Seek>(
    gguf: &GgufModel,
    reader: &mut R,
    name: &str,
) -> Result<Vec<f32>, EngineError> {
    let info = &gguf.content.tensor_infos[name];
    let bytes = gguf
        .tensor_bytes(reader, name)
        .map_err(|e| EngineError::Unsupported(e.to_string()))?;
    dequantize_f32(info.ggml_dtype, &bytes, info.shape.dims().to_vec()).map_err(|e| {
        EngineError::Unsupported(format!("{}: tensor `{name}`: {e}", gguf.source_name))
    })
}

/// GGUF-encoded values of any type as f32, decoded on the CPU by candle.
fn dequantize_f32(
    dtype: GgmlDType,
    bytes: &[u8],
    dims: Vec<usize>,
) -> candle_core::Result<Vec<f32>> {
    let device = candle_core::Device::Cpu;
    qtensor_from_ggml(dtype, bytes, dims, &device)?
        .dequantize(&device)?
        .flatten_all()?
        .to_vec1::<f32>()
}
