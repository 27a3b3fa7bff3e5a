//! One sequence running on shared Qwen2 weights: its activations, its KV cache, and the step
//! recorded as one compute pass — the whole model (24 blocks for the 0.5B model) for a batch
//! of up to `MAX_STEP_TOKENS` consecutive tokens. A prompt runs as a few batched steps, a
//! reply as one-token steps; both are the same kernels with a different token count.
//!
//! After a step only the last token's logits exist (the final norm and the output head run
//! on it alone), and the sampler's candidates are picked on the GPU. The last step `feed`
//! records waits and goes to the GPU in one submission with the candidate selection that
//! follows it: one submission per generated token.
//!
//! A sequence may grow: `growing` starts with room for `INITIAL_POSITIONS` and `reserve`
//! reallocates its caches and scratch (keeping what is cached) up to the model's context
//! limit, or what one GPU buffer holds, as long as the GPU has the memory.

use std::sync::{Arc, Mutex};

use bytemuck::{Pod, Zeroable};
use wgpu::util::DeviceExt;

use super::quantized_matmul::{
    InputNorm, MatmulOperands, OutputColumns, PreparedMatmul, TokenCount,
};
use super::quantized_matrix::QuantizedMatrix;
use super::qwen2_weights::{FeedForwardIn, Qwen2Weights};
use super::readback::{read_f32, read_u32};
use super::sampling_kernels::{GPU_TOP_K, MAX_PENALIZED_TOKENS, SamplingKernels};
use super::vector_kernels::{
    ATTENTION_SLICE_POSITIONS, Binding, Grid, PreparedOp, StepShape, VectorKernel,
};
use crate::generation::EngineError;
use crate::generation::GeneratingSequence;
use crate::token_sampler::{TokenScore, apply_repetition_penalty, top_scores};

/// Most tokens one step runs; longer prompts take several steps.
pub const MAX_STEP_TOKENS: usize = 64;

/// Positions a growing sequence holds before its first `reserve` grows it.
pub const INITIAL_POSITIONS: usize = 2048;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct StepUniform {
    position: u32,
    tokens: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PenaltyParams {
    count: u32,
    penalty: f32,
}

/// One entry of the recorded step, in execution order.
enum Stage {
    Matmul(PreparedMatmul),
    Op(PreparedOp),
    /// Attention: `whole`, or for decode steps past one slice of positions the split
    /// attention and its merge, where the plan splits.
    Attention {
        whole: PreparedOp,
        split: Option<[PreparedOp; 2]>,
    },
}

pub struct Qwen2Sequence {
    weights: Arc<Qwen2Weights>,
    /// Positions the caches and scratch hold now.
    capacity: usize,
    /// Positions `reserve` may grow them to.
    limit: usize,
    /// Each layer's key and value caches, `cache_bytes_per_position` per position.
    caches: Vec<[wgpu::Buffer; 2]>,
    cache_bytes_per_position: u64,
    /// Tokens whose keys and values are in the cache, in order.
    tokens: Vec<u32>,
    hidden: wgpu::Buffer,
    step: wgpu::Buffer,
    logits: wgpu::Buffer,
    stages: Vec<Stage>,
    penalty_ids: wgpu::Buffer,
    penalty_params: wgpu::Buffer,
    penalty_bind_group: wgpu::BindGroup,
    /// (slices, merge) bind groups for each of `SamplingKernels::top`.
    top_bind_groups: Vec<[wgpu::BindGroup; 2]>,
    top: wgpu::Buffer,
    /// The last recorded step, not yet submitted: it goes with whatever reads its logits.
    pending_step: Mutex<Option<wgpu::CommandBuffer>>,
    // Activations and caches the bind groups refer to.
    _buffers: Vec<wgpu::Buffer>,
}

impl Qwen2Sequence {
    /// A sequence of up to `max_positions` tokens (prompt and reply) on `weights`, all
    /// allocated now.
    pub fn new(weights: &Arc<Qwen2Weights>, max_positions: usize) -> Result<Self, EngineError> {
        let max_positions = max_positions.clamp(1, weights.hyperparameters.context_length);
        Self::allocate(weights, max_positions, max_positions)
    }

    /// A sequence that holds `INITIAL_POSITIONS` now and grows on `reserve` up to the
    /// longest context the model and one GPU buffer allow, or `ceiling` positions if fewer.
    pub fn growing(weights: &Arc<Qwen2Weights>, ceiling: usize) -> Result<Self, EngineError> {
        let limit = Self::longest_context(weights).min(ceiling).max(1);
        Self::with_room(weights, INITIAL_POSITIONS, limit)
    }

    /// A sequence that holds `capacity` positions now and may grow to `limit` (each at most
    /// `longest_context`).
    pub fn with_room(
        weights: &Arc<Qwen2Weights>,
        capacity: usize,
        limit: usize,
    ) -> Result<Self, EngineError> {
        let limit = limit.clamp(1, Self::longest_context(weights));
        Self::allocate(weights, capacity.clamp(1, limit), limit)
    }

    /// The model's context limit, or the most positions whose attention scratch and layer
    /// caches each fit one GPU buffer, whichever is fewer.
    pub fn longest_context(weights: &Qwen2Weights) -> usize {
        let hp = &weights.hyperparameters;
        let binding = weights.ctx.max_binding_bytes as usize;
        let scores = binding / (hp.head_count * MAX_STEP_TOKENS * 4);
        let cache_element = if weights.kernels.ops.kv_cache_f16 {
            2
        } else {
            4
        };
        let cache = binding / (hp.head_count_kv * hp.head_dim * cache_element);
        hp.context_length.min(scores).min(cache).max(1)
    }

    /// Caches and scratch for `max_positions` positions, which `reserve` may grow to `limit`.
    fn allocate(
        weights: &Arc<Qwen2Weights>,
        max_positions: usize,
        limit: usize,
    ) -> Result<Self, EngineError> {
        let ctx = &weights.ctx;
        let hp = &weights.hyperparameters;
        let (d, ff, heads, kv_heads, head_dim) = (
            hp.embedding_length,
            hp.feed_forward_length,
            hp.head_count,
            hp.head_count_kv,
            hp.head_dim,
        );
        if !head_dim.is_multiple_of(4) || !d.is_multiple_of(4) {
            return Err(EngineError::Unsupported(format!(
                "the wgpu engine needs a head dimension and width divisible by 4 (got {head_dim} and {d})"
            )));
        }
        let kv = kv_heads * head_dim;
        let batch = MAX_STEP_TOKENS;
        let storage = |label: &str, floats: usize, extra: wgpu::BufferUsages| {
            ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: (floats.max(1) * 4) as u64,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | extra,
                mapped_at_creation: false,
            })
        };
        let none = wgpu::BufferUsages::empty();
        let scores_floats = heads * batch * max_positions;
        if (scores_floats * 4) as u64 > ctx.max_binding_bytes {
            return Err(EngineError::Unsupported(format!(
                "a context of {max_positions} tokens needs more attention scratch than one GPU buffer holds"
            )));
        }
        let hidden = storage("hidden", batch * d, none);
        let normed = storage("normed", batch * d, none);
        // Q, K and V side by side per token, as the projections write them; the attention
        // reads the positioned queries from `q`.
        let qkv_width = d + 2 * kv;
        let qkv = storage("qkv", batch * qkv_width, none);
        let q = storage("q", batch * d, none);
        let attn = storage("attention", batch * d, none);
        let gate = storage("gate", batch * ff, none);
        let up = storage("up", batch * ff, none);
        let scores = storage("scores", scores_floats, none);
        let final_normed = storage("final normed", d, none);
        let logits = storage("logits", hp.vocab_size, wgpu::BufferUsages::COPY_SRC);
        let step = ctx
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("step"),
                contents: bytemuck::bytes_of(&StepUniform {
                    position: 0,
                    tokens: 1,
                }),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            });

        let kernels = &weights.kernels;
        let params = |values: &[u32]| -> Binding<'_> {
            Binding::Params(values.iter().flat_map(|v| v.to_le_bytes()).collect())
        };
        let bits = f32::to_bits;
        let rms_norm = |input: &wgpu::Buffer,
                        weight: &wgpu::Buffer,
                        output: &wgpu::Buffer,
                        last_only: bool| {
            let bindings = [
                Binding::Buffer(input),
                Binding::Buffer(weight),
                Binding::Buffer(output),
                params(&[d as u32, bits(hp.rms_norm_eps), u32::from(last_only), 0]),
                Binding::Buffer(&step),
            ];
            let grid = if last_only {
                Grid::Fixed(1)
            } else {
                Grid::PerToken
            };
            Stage::Op(
                kernels
                    .ops
                    .prepare(ctx, VectorKernel::RmsNorm, &bindings, grid),
            )
        };
        let elementwise = |kernel: VectorKernel, a: &wgpu::Buffer, b: &wgpu::Buffer, n: usize| {
            let bindings = [
                Binding::Buffer(a),
                Binding::Buffer(b),
                params(&[n as u32]),
                Binding::Buffer(&step),
            ];
            let grid = Grid::Elements {
                per_token: n as u32,
                size: 256,
            };
            Stage::Op(kernels.ops.prepare(ctx, kernel, &bindings, grid))
        };
        let rope_kv_store = |k_cache: &wgpu::Buffer, v_cache: &wgpu::Buffer| {
            let bindings = [
                Binding::Buffer(&qkv),
                Binding::Buffer(&q),
                Binding::Buffer(k_cache),
                Binding::Buffer(v_cache),
                params(&[
                    heads as u32,
                    kv_heads as u32,
                    head_dim as u32,
                    bits(hp.rope_freq_base),
                ]),
                Binding::Buffer(&step),
            ];
            let grid = Grid::Elements {
                per_token: ((heads + kv_heads) * head_dim / 2) as u32,
                size: 64,
            };
            Stage::Op(
                kernels
                    .ops
                    .prepare(ctx, VectorKernel::RopeKvStore, &bindings, grid),
            )
        };
        // Split attention's partials: per head and slice of the context, a summary vec4 and
        // the value sum.
        let slots = max_positions.div_ceil(ATTENTION_SLICE_POSITIONS as usize);
        let partials = storage("attention partials", heads * slots * (4 + head_dim), none);
        let attention = |k_cache: &wgpu::Buffer, v_cache: &wgpu::Buffer| {
            let scale = 1.0 / (head_dim as f32).sqrt();
            let attention_params = || {
                params(&[
                    heads as u32,
                    kv_heads as u32,
                    max_positions as u32,
                    bits(scale),
                ])
            };
            let over_cache = |kernel, output, grid| {
                let bindings = [
                    Binding::Buffer(&q),
                    Binding::Buffer(k_cache),
                    Binding::Buffer(v_cache),
                    Binding::Buffer(&scores),
                    Binding::Buffer(output),
                    attention_params(),
                    Binding::Buffer(&step),
                ];
                kernels.ops.prepare(ctx, kernel, &bindings, grid)
            };
            let whole = over_cache(
                VectorKernel::Attention,
                &attn,
                Grid::EachToken { x: heads as u32 },
            );
            let split = kernels.ops.split_attention.then(|| {
                let merge_bindings = [
                    Binding::Buffer(&partials),
                    Binding::Buffer(&attn),
                    attention_params(),
                    Binding::Buffer(&step),
                ];
                [
                    over_cache(
                        VectorKernel::AttentionSplit,
                        &partials,
                        Grid::EachContextSlice { x: heads as u32 },
                    ),
                    kernels.ops.prepare(
                        ctx,
                        VectorKernel::AttentionMerge,
                        &merge_bindings,
                        Grid::Fixed(heads as u32),
                    ),
                ]
            });
            Stage::Attention { whole, split }
        };
        // `y = m · x (+ bias)`, into `y_columns` of y's rows if given; with `add_to_y`,
        // `y += m · x` (the residual connections).
        let matmul_into = |m: &QuantizedMatrix,
                           x: &wgpu::Buffer,
                           y: &wgpu::Buffer,
                           bias: Option<&wgpu::Buffer>,
                           add_to_y: bool,
                           y_columns: Option<OutputColumns>,
                           input_norm: Option<InputNorm<'_>>|
         -> Result<Stage, EngineError> {
            let operands = MatmulOperands {
                x,
                x_offset: 0,
                x_stride: m.cols,
                y,
                bias,
                add_to_y,
                tokens: TokenCount::FromStep,
                y_columns,
                input_norm,
            };
            Ok(Stage::Matmul(
                kernels.matmul.prepare(ctx, m, &operands, &step)?,
            ))
        };
        let matmul =
            |m: &QuantizedMatrix,
             x: &wgpu::Buffer,
             y: &wgpu::Buffer,
             bias: Option<&wgpu::Buffer>,
             add_to_y: bool| matmul_into(m, x, y, bias, add_to_y, None, None);
        // The norms before the attention and the feed-forward block run inside the products
        // that read them where the plan's products normalize their inputs (they then read
        // `hidden`), else as a dispatch of their own writing `normed`.
        let folds_norms = kernels.matmul.normalizes_inputs();
        let normed_input = if folds_norms { &hidden } else { &normed };
        let input_norm = |weight| {
            folds_norms.then_some(InputNorm {
                weight,
                eps: hp.rms_norm_eps,
            })
        };

        let mut stages = Vec::new();
        let mut buffers = Vec::new();
        // f16 caches take half the floats' bytes (kv is a multiple of 4).
        let cache_floats = if kernels.ops.kv_cache_f16 {
            max_positions * kv / 2
        } else {
            max_positions * kv
        };
        let mut caches = Vec::new();
        for layer in &weights.layers {
            // Copied out when the sequence grows.
            let k_cache = storage("k cache", cache_floats, wgpu::BufferUsages::COPY_SRC);
            let v_cache = storage("v cache", cache_floats, wgpu::BufferUsages::COPY_SRC);
            // Attention block: one product for Q, K and V of one block type, or one each
            // into its columns of the qkv rows.
            if !folds_norms {
                stages.push(rms_norm(&hidden, &layer.attn_norm, &normed, false));
            }
            let (input, norm) = (normed_input, input_norm(&layer.attn_norm));
            let mut first = 0;
            for m in layer.qkv.matrices() {
                let columns = Some(OutputColumns {
                    first,
                    per_token: qkv_width,
                });
                let bias = Some(&layer.qkv_bias);
                stages.push(matmul_into(m, input, &qkv, bias, false, columns, norm)?);
                first += m.outputs();
            }
            stages.extend([
                rope_kv_store(&k_cache, &v_cache),
                attention(&k_cache, &v_cache),
                matmul(&layer.wo, &attn, &hidden, None, true)?,
            ]);
            // SwiGLU feed-forward block: `gate` = silu(gate · x) · (up · x) of the normed x.
            if !folds_norms {
                stages.push(rms_norm(&hidden, &layer.ffn_norm, &normed, false));
            }
            let (input, norm) = (normed_input, input_norm(&layer.ffn_norm));
            match &layer.ffn_in {
                FeedForwardIn::GateUpPairs(pairs) => {
                    stages.push(matmul_into(pairs, input, &gate, None, false, None, norm)?);
                }
                FeedForwardIn::Separate {
                    gate: w_gate,
                    up: w_up,
                } => stages.extend([
                    matmul_into(w_gate, input, &gate, None, false, None, norm)?,
                    matmul_into(w_up, input, &up, None, false, None, norm)?,
                    elementwise(VectorKernel::SiluMul, &gate, &up, ff),
                ]),
            }
            stages.push(matmul(&layer.w_down, &gate, &hidden, None, true)?);
            caches.push([k_cache, v_cache]);
        }
        // Only the last token's logits are needed.
        stages.push(rms_norm(&hidden, &weights.output_norm, &final_normed, true));
        let head = MatmulOperands {
            x: &final_normed,
            x_offset: 0,
            x_stride: d,
            y: &logits,
            bias: None,
            add_to_y: false,
            tokens: TokenCount::Fixed(1),
            y_columns: None,
            input_norm: None,
        };
        stages.push(Stage::Matmul(kernels.matmul.prepare(
            ctx,
            &weights.output,
            &head,
            &step,
        )?));

        // Sampling: penalty in place, then the two top-K passes.
        let penalty_ids = storage("penalized tokens", MAX_PENALIZED_TOKENS, none);
        let penalty_params = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("penalty params"),
            size: 8,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let slices = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("top candidates per slice"),
            size: SamplingKernels::slice_buffer_bytes(),
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let top = storage(
            "top candidates",
            GPU_TOP_K * 2,
            wgpu::BufferUsages::COPY_SRC,
        );
        let vocab_params = ctx
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("vocab"),
                contents: bytemuck::bytes_of(&[hp.vocab_size as u32, 0, 0, 0]),
                usage: wgpu::BufferUsages::UNIFORM,
            });
        let bind = |pipeline: &wgpu::ComputePipeline, buffers: &[&wgpu::Buffer]| {
            ctx.bind_buffers("sampling", &pipeline.get_bind_group_layout(0), buffers)
        };
        let sampling = &kernels.sampling;
        let penalty_bind_group = bind(&sampling.penalty, &[&logits, &penalty_ids, &penalty_params]);
        let top_bind_groups = sampling
            .top
            .iter()
            .map(|variant| {
                [
                    bind(&variant.slices, &[&logits, &slices, &vocab_params]),
                    bind(&variant.merge, &[&slices, &top]),
                ]
            })
            .collect();

        buffers.extend([
            normed,
            qkv,
            q,
            attn,
            gate,
            up,
            scores,
            partials,
            final_normed,
            slices,
            vocab_params,
        ]);
        Ok(Self {
            weights: Arc::clone(weights),
            capacity: max_positions,
            limit,
            caches,
            cache_bytes_per_position: (cache_floats / max_positions * 4) as u64,
            tokens: Vec::new(),
            hidden,
            step,
            logits,
            stages,
            penalty_ids,
            penalty_params,
            penalty_bind_group,
            top_bind_groups,
            top,
            pending_step: Mutex::new(None),
            _buffers: buffers,
        })
    }

    pub fn weights(&self) -> &Arc<Qwen2Weights> {
        &self.weights
    }

    /// Longest sequence (prompt + reply) this sequence holds, growing if need be.
    pub fn max_positions(&self) -> usize {
        self.limit
    }

    /// Positions it holds without growing.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Makes room for `positions` in all (prompt and reply), growing the caches and scratch
    /// to the next power of two (at least double) up to `max_positions` and keeping what is
    /// cached. Fails, the sequence unchanged, past `max_positions` or when the GPU has no
    /// memory for the larger caches.
    pub async fn reserve(&mut self, positions: usize) -> Result<(), EngineError> {
        if positions <= self.capacity {
            return Ok(());
        }
        if positions > self.limit {
            return Err(EngineError::Unsupported(format!(
                "{positions} positions exceed the sequence's limit of {}",
                self.limit
            )));
        }
        let capacity = positions
            .next_power_of_two()
            .max(self.capacity * 2)
            .min(self.limit);
        let ctx = self.weights.ctx.clone();
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let grown = Self::allocate(&self.weights, capacity, self.limit);
        let out_of_memory = scope.pop().await;
        let mut grown = grown?;
        if let Some(error) = out_of_memory {
            return Err(EngineError::Device(format!(
                "the GPU has no memory for a context of {capacity} positions (it holds {}): \
                 {error}; start a new chat, or use a smaller model",
                self.capacity
            )));
        }
        // The pending step writes the caches and the logits that are copied.
        self.submit_pending(Vec::new());
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        let used = self.tokens.len() as u64 * self.cache_bytes_per_position;
        if used > 0 {
            for (old, new) in self.caches.iter().zip(&grown.caches) {
                for (from, to) in old.iter().zip(new) {
                    encoder.copy_buffer_to_buffer(from, 0, to, 0, used);
                }
            }
        }
        let logits_bytes = (self.weights.hyperparameters.vocab_size * 4) as u64;
        encoder.copy_buffer_to_buffer(&self.logits, 0, &grown.logits, 0, logits_bytes);
        ctx.queue.submit([encoder.finish()]);
        grown.tokens = std::mem::take(&mut self.tokens);
        *self = grown;
        Ok(())
    }

    /// The tokens in the cache, in order.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Forgets every position from `len` on (the next tokens overwrite them).
    pub fn truncate(&mut self, len: usize) {
        self.tokens.truncate(len);
    }

    /// Runs `tokens` after the cached ones, in steps of up to `MAX_STEP_TOKENS`, without
    /// reading anything back; afterwards the logits are those for the token after the last.
    pub fn feed(&mut self, tokens: &[u32]) -> Result<(), EngineError> {
        if self.tokens.len() + tokens.len() > self.capacity {
            let grow = if self.capacity < self.limit {
                " (`reserve` makes room first)"
            } else {
                ""
            };
            return Err(EngineError::Unsupported(format!(
                "{} tokens do not fit the sequence's {} positions ({} in use){grow}",
                tokens.len(),
                self.capacity,
                self.tokens.len()
            )));
        }
        for batch in tokens.chunks(MAX_STEP_TOKENS) {
            // A step's inputs are written to the queue before its commands, so the previous
            // step must be submitted before the next one's are written.
            self.submit_pending(Vec::new());
            let step = self.record_step(batch)?;
            *self.pending() = Some(step);
            self.tokens.extend_from_slice(batch);
        }
        Ok(())
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Option<wgpu::CommandBuffer>> {
        self.pending_step
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Submits the pending step, if any, followed by `then`, as one submission.
    fn submit_pending(&self, then: Vec<wgpu::CommandBuffer>) {
        let step = self.pending().take();
        if step.is_some() || !then.is_empty() {
            self.weights.ctx.queue.submit(step.into_iter().chain(then));
        }
    }

    /// Writes a step's inputs to the queue and records its commands.
    fn record_step(&self, batch: &[u32]) -> Result<wgpu::CommandBuffer, EngineError> {
        let ctx = &self.weights.ctx;
        let embedding = self.weights.embed(batch)?;
        ctx.queue
            .write_buffer(&self.hidden, 0, bytemuck::cast_slice(&embedding));
        let step = StepUniform {
            position: self.tokens.len() as u32,
            tokens: batch.len() as u32,
        };
        ctx.queue
            .write_buffer(&self.step, 0, bytemuck::bytes_of(&step));
        let kernels = &self.weights.kernels;
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("qwen2 step"),
                timestamp_writes: None,
            });
            let shape = StepShape {
                position: step.position,
                tokens: step.tokens,
            };
            // Split where a decode step's context spans more than one slice.
            let long_decode = step.tokens == 1 && step.position >= ATTENTION_SLICE_POSITIONS;
            for stage in &self.stages {
                match stage {
                    Stage::Matmul(prepared) => {
                        kernels.matmul.record(&mut pass, prepared, step.tokens)
                    }
                    Stage::Op(op) => kernels.ops.record(&mut pass, op, shape),
                    Stage::Attention {
                        split: Some(ops), ..
                    } if long_decode => {
                        for op in ops {
                            kernels.ops.record(&mut pass, op, shape);
                        }
                    }
                    Stage::Attention { whole, .. } => kernels.ops.record(&mut pass, whole, shape),
                }
            }
        }
        Ok(encoder.finish())
    }

    /// All logits for the next token (the whole vocabulary; prefer `next_token_scores`).
    pub async fn logits(&self) -> Result<Vec<f32>, EngineError> {
        self.submit_pending(Vec::new());
        read_f32(
            &self.weights.ctx,
            &self.logits,
            self.weights.hyperparameters.vocab_size,
        )
        .await
    }

    /// The `needed` best next tokens after the repetition penalty on `penalized` (distinct
    /// ids), best first. Up to `GPU_TOP_K` are picked on the GPU (one alone when one is
    /// needed) and only they are read back; more fall back to reading every logit. The
    /// penalty is applied to the logits in place.
    pub async fn next_token_scores(
        &self,
        needed: usize,
        penalized: &[u32],
        penalty: f32,
    ) -> Result<Vec<TokenScore>, EngineError> {
        let ctx = &self.weights.ctx;
        let vocab = self.weights.hyperparameters.vocab_size;
        let sampling = &self.weights.kernels.sampling;
        let variant = match sampling.top_for(needed) {
            Some(variant) if penalized.len() <= MAX_PENALIZED_TOKENS => variant,
            _ => {
                let mut logits = self.logits().await?;
                apply_repetition_penalty(&mut logits, penalized, penalty);
                return Ok(top_scores(&logits, needed));
            }
        };
        let (top, [slices_bind_group, merge_bind_group]) =
            (&sampling.top[variant], &self.top_bind_groups[variant]);
        let penalized: Vec<u32> = penalized
            .iter()
            .copied()
            .filter(|&t| (t as usize) < vocab)
            .collect();
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("next token candidates"),
                timestamp_writes: None,
            });
            if !penalized.is_empty() && penalty != 1.0 {
                ctx.queue
                    .write_buffer(&self.penalty_ids, 0, bytemuck::cast_slice(&penalized));
                let params = PenaltyParams {
                    count: penalized.len() as u32,
                    penalty,
                };
                ctx.queue
                    .write_buffer(&self.penalty_params, 0, bytemuck::bytes_of(&params));
                pass.set_pipeline(&sampling.penalty);
                pass.set_bind_group(0, &self.penalty_bind_group, &[]);
                pass.dispatch_workgroups(penalized.len().div_ceil(64) as u32, 1, 1);
            }
            pass.set_pipeline(&top.slices);
            pass.set_bind_group(0, slices_bind_group, &[]);
            pass.dispatch_workgroups(SamplingKernels::slice_groups(), 1, 1);
            pass.set_pipeline(&top.merge);
            pass.set_bind_group(0, merge_bind_group, &[]);
            pass.dispatch_workgroups(1, 1, 1);
        }
        self.submit_pending(vec![encoder.finish()]);
        let pairs = read_u32(ctx, &self.top, top.k * 2).await?;
        Ok(pairs
            .chunks_exact(2)
            .filter(|pair| pair[0] != u32::MAX)
            .take(needed)
            .map(|pair| TokenScore {
                token: pair[0],
                logit: f32::from_bits(pair[1]),
            })
            .collect())
    }
}

impl GeneratingSequence for Qwen2Sequence {
    fn max_positions(&self) -> usize {
        Qwen2Sequence::max_positions(self)
    }

    fn tokens(&self) -> &[u32] {
        Qwen2Sequence::tokens(self)
    }

    fn truncate(&mut self, len: usize) {
        Qwen2Sequence::truncate(self, len);
    }

    async fn reserve(&mut self, positions: usize) -> Result<(), EngineError> {
        Qwen2Sequence::reserve(self, positions).await
    }

    fn feed(&mut self, tokens: &[u32]) -> Result<(), EngineError> {
        Qwen2Sequence::feed(self, tokens)
    }

    fn vocab_size(&self) -> usize {
        self.weights.hyperparameters.vocab_size
    }

    async fn next_token_scores(
        &self,
        needed: usize,
        penalized: &[u32],
        penalty: f32,
    ) -> Result<Vec<TokenScore>, EngineError> {
        Qwen2Sequence::next_token_scores(self, needed, penalized, penalty).await
    }
}
