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

use super::qwen2_graph::{Stage, StepBuffers, StepUniform, qwen2_stages, storage};
use super::qwen2_weights::Qwen2Weights;
use super::readback::{read_f32, read_u32};
use super::sampling_kernels::{GPU_TOP_K, MAX_PENALIZED_TOKENS, SamplingKernels};
use super::vector_kernels::{ATTENTION_SLICE_POSITIONS, StepShape};
use crate::generation::EngineError;
use crate::generation::GeneratingSequence;
use crate::token_sampler::{TokenScore, apply_repetition_penalty, top_scores};

/// Most tokens one step runs; longer prompts take several steps.
pub const MAX_STEP_TOKENS: usize = 64;

/// Positions a growing sequence holds before its first `reserve` grows it.
pub const INITIAL_POSITIONS: usize = 2048;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct PenaltyParams {
    count: u32,
    penalty: f32,
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
    buffers: StepBuffers,
    /// The model's step, in execution order (`qwen2_graph.rs`).
    stages: Vec<Stage>,
    sampling: SamplingBuffers,
    /// The last recorded step, not yet submitted: it goes with whatever reads its logits.
    pending_step: Mutex<Option<wgpu::CommandBuffer>>,
}

/// What the GPU's candidate selection reads and writes after a step: the penalized tokens and
/// the penalty, the top candidates per slice of the vocabulary and overall.
struct SamplingBuffers {
    penalty_ids: wgpu::Buffer,
    penalty_params: wgpu::Buffer,
    penalty_bind_group: wgpu::BindGroup,
    /// (slices, merge) bind groups for each of `SamplingKernels::top`.
    top_bind_groups: Vec<[wgpu::BindGroup; 2]>,
    top: wgpu::Buffer,
    // Buffers only the bind groups refer to.
    _slices: wgpu::Buffer,
    _vocab_params: wgpu::Buffer,
}

impl SamplingBuffers {
    fn new(weights: &Qwen2Weights, logits: &wgpu::Buffer) -> Self {
        let ctx = &weights.ctx;
        let none = wgpu::BufferUsages::empty();
        let penalty_ids = storage(ctx, "penalized tokens", MAX_PENALIZED_TOKENS, none);
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
            ctx,
            "top candidates",
            GPU_TOP_K * 2,
            wgpu::BufferUsages::COPY_SRC,
        );
        let vocab_size = weights.hyperparameters.vocab_size as u32;
        let vocab_params = ctx
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("vocab"),
                contents: bytemuck::bytes_of(&[vocab_size, 0, 0, 0]),
                usage: wgpu::BufferUsages::UNIFORM,
            });
        let bind = |pipeline: &wgpu::ComputePipeline, buffers: &[&wgpu::Buffer]| {
            ctx.bind_buffers("sampling", &pipeline.get_bind_group_layout(0), buffers)
        };
        let sampling = &weights.kernels.sampling;
        let penalty_bind_group = bind(&sampling.penalty, &[logits, &penalty_ids, &penalty_params]);
        let top_bind_groups = sampling
            .top
            .iter()
            .map(|variant| {
                [
                    bind(&variant.slices, &[logits, &slices, &vocab_params]),
                    bind(&variant.merge, &[&slices, &top]),
                ]
            })
            .collect();
        Self {
            penalty_ids,
            penalty_params,
            penalty_bind_group,
            top_bind_groups,
            top,
            _slices: slices,
            _vocab_params: vocab_params,
        }
    }
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
        let (d, head_dim) = (hp.embedding_length, hp.head_dim);
        if !head_dim.is_multiple_of(4) || !d.is_multiple_of(4) {
            return Err(EngineError::Unsupported(format!(
                "the wgpu engine needs a head dimension and width divisible by 4 (got {head_dim} and {d})"
            )));
        }
        let buffers = StepBuffers::new(weights, MAX_STEP_TOKENS, max_positions)?;
        // Each layer's key and value caches, copied out when the sequence grows; f16 caches
        // take half the floats' bytes (the key width is a multiple of 4).
        let kv = hp.head_count_kv * head_dim;
        let cache_floats = if weights.kernels.ops.kv_cache_f16 {
            max_positions * kv / 2
        } else {
            max_positions * kv
        };
        let copied = wgpu::BufferUsages::COPY_SRC;
        let caches: Vec<[wgpu::Buffer; 2]> = weights
            .layers
            .iter()
            .map(|_| {
                [
                    storage(ctx, "k cache", cache_floats, copied),
                    storage(ctx, "v cache", cache_floats, copied),
                ]
            })
            .collect();
        let stages = qwen2_stages(weights, &buffers, &caches, max_positions)?;
        let sampling = SamplingBuffers::new(weights, &buffers.logits);
        Ok(Self {
            weights: Arc::clone(weights),
            capacity: max_positions,
            limit,
            caches,
            cache_bytes_per_position: (cache_floats / max_positions * 4) as u64,
            tokens: Vec::new(),
            buffers,
            stages,
            sampling,
            pending_step: Mutex::new(None),
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
        encoder.copy_buffer_to_buffer(
            &self.buffers.logits,
            0,
            &grown.buffers.logits,
            0,
            logits_bytes,
        );
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
            .write_buffer(&self.buffers.hidden, 0, bytemuck::cast_slice(&embedding));
        let step = StepUniform {
            position: self.tokens.len() as u32,
            tokens: batch.len() as u32,
        };
        ctx.queue
            .write_buffer(&self.buffers.step, 0, bytemuck::bytes_of(&step));
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
            &self.buffers.logits,
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
        let (top, [slices_bind_group, merge_bind_group]) = (
            &sampling.top[variant],
            &self.sampling.top_bind_groups[variant],
        );
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
                ctx.queue.write_buffer(
                    &self.sampling.penalty_ids,
                    0,
                    bytemuck::cast_slice(&penalized),
                );
                let params = PenaltyParams {
                    count: penalized.len() as u32,
                    penalty,
                };
                ctx.queue.write_buffer(
                    &self.sampling.penalty_params,
                    0,
                    bytemuck::bytes_of(&params),
                );
                pass.set_pipeline(&sampling.penalty);
                pass.set_bind_group(0, &self.sampling.penalty_bind_group, &[]);
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
        let pairs = read_u32(ctx, &self.sampling.top, top.k * 2).await?;
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
