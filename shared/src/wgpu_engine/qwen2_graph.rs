//! The Qwen2 forward pass as the wgpu engine records it, read top to bottom like candle's
//! `forward`: for each layer the attention block and the SwiGLU feed-forward block, each
//! adding into the residual stream, then the final norm and the output head on the last token
//! alone. Every stage is a dispatch prepared once over a sequence's buffers (`StepBuffers`,
//! the KV caches); `Qwen2Sequence` records the stages for every step.

use wgpu::util::DeviceExt;

use super::gpu_context::GpuContext;
use super::quantized_matmul::{
    InputNorm, MatmulOperands, OutputColumns, PreparedMatmul, TokenCount,
};
use super::quantized_matrix::QuantizedMatrix;
use super::qwen2_weights::{FeedForwardIn, LayerWeights, Qwen2Weights};
use super::vector_kernels::{ATTENTION_SLICE_POSITIONS, Binding, Grid, PreparedOp, VectorKernel};
use crate::generation::EngineError;

/// One entry of the recorded step, in execution order.
pub enum Stage {
    Matmul(PreparedMatmul),
    Op(PreparedOp),
    /// Attention: `whole`, or for decode steps past one slice of positions the split
    /// attention and its merge, where the plan splits.
    Attention {
        whole: PreparedOp,
        split: Option<[PreparedOp; 2]>,
    },
}

/// Where a step starts and how many tokens it runs: the kernels' `step` uniform.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StepUniform {
    pub position: u32,
    pub tokens: u32,
}

/// The step's inputs and scratch: room for `batch` tokens of activations, the attention
/// scores over `max_positions`, the last token's logits.
pub struct StepBuffers {
    /// The residual stream (the embeddings on input).
    pub hidden: wgpu::Buffer,
    normed: wgpu::Buffer,
    /// Q, K and V side by side per token, as the projections write them.
    qkv: wgpu::Buffer,
    /// The positioned queries the attention reads.
    q: wgpu::Buffer,
    attn: wgpu::Buffer,
    gate: wgpu::Buffer,
    up: wgpu::Buffer,
    scores: wgpu::Buffer,
    /// Split attention's partials: per head and slice of the context, a summary vec4 and the
    /// value sum.
    partials: wgpu::Buffer,
    final_normed: wgpu::Buffer,
    pub logits: wgpu::Buffer,
    /// The step's position and token count (`StepUniform`).
    pub step: wgpu::Buffer,
}

/// A storage buffer of `floats` f32s (at least one).
pub fn storage(
    ctx: &GpuContext,
    label: &str,
    floats: usize,
    extra: wgpu::BufferUsages,
) -> wgpu::Buffer {
    ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: (floats.max(1) * 4) as u64,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | extra,
        mapped_at_creation: false,
    })
}

impl StepBuffers {
    pub fn new(
        weights: &Qwen2Weights,
        batch: usize,
        max_positions: usize,
    ) -> Result<Self, EngineError> {
        let ctx = &weights.ctx;
        let hp = &weights.hyperparameters;
        let (d, ff, heads, head_dim) = (
            hp.embedding_length,
            hp.feed_forward_length,
            hp.head_count,
            hp.head_dim,
        );
        let kv = hp.head_count_kv * head_dim;
        let scores_floats = heads * batch * max_positions;
        if (scores_floats * 4) as u64 > ctx.max_binding_bytes {
            return Err(EngineError::Unsupported(format!(
                "a context of {max_positions} tokens needs more attention scratch than one GPU buffer holds"
            )));
        }
        let none = wgpu::BufferUsages::empty();
        let slots = max_positions.div_ceil(ATTENTION_SLICE_POSITIONS as usize);
        Ok(Self {
            hidden: storage(ctx, "hidden", batch * d, none),
            normed: storage(ctx, "normed", batch * d, none),
            qkv: storage(ctx, "qkv", batch * (d + 2 * kv), none),
            q: storage(ctx, "q", batch * d, none),
            attn: storage(ctx, "attention", batch * d, none),
            gate: storage(ctx, "gate", batch * ff, none),
            up: storage(ctx, "up", batch * ff, none),
            scores: storage(ctx, "scores", scores_floats, none),
            partials: storage(
                ctx,
                "attention partials",
                heads * slots * (4 + head_dim),
                none,
            ),
            final_normed: storage(ctx, "final normed", d, none),
            logits: storage(ctx, "logits", hp.vocab_size, wgpu::BufferUsages::COPY_SRC),
            step: ctx
                .device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("step"),
                    contents: bytemuck::bytes_of(&StepUniform {
                        position: 0,
                        tokens: 1,
                    }),
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                }),
        })
    }
}

/// The stages of one step of the model in `weights` over `buffers`, with each layer's
/// `[key, value]` cache from `caches`.
pub fn qwen2_stages(
    weights: &Qwen2Weights,
    buffers: &StepBuffers,
    caches: &[[wgpu::Buffer; 2]],
    max_positions: usize,
) -> Result<Vec<Stage>, EngineError> {
    let graph = Graph {
        weights,
        buffers,
        max_positions,
        folds_norms: weights.kernels.matmul.normalizes_inputs(),
    };
    let b = buffers;
    let mut stages = Vec::new();
    for (layer, [k_cache, v_cache]) in weights.layers.iter().zip(caches) {
        // x += o(attention(rope(q, k, v of norm(x)))), caching k and v.
        stages.extend(graph.attention_block(layer, k_cache, v_cache)?);
        // x += down(silu(gate · norm(x)) · (up · norm(x))).
        stages.extend(graph.feed_forward_block(layer)?);
    }
    // Only the last token's logits are needed.
    stages.push(graph.rms_norm(&b.hidden, &weights.output_norm, &b.final_normed, true));
    stages.push(graph.output_head()?);
    Ok(stages)
}

/// What every stage is prepared against.
struct Graph<'a> {
    weights: &'a Qwen2Weights,
    buffers: &'a StepBuffers,
    max_positions: usize,
    /// Whether the plan's products normalize their inputs themselves: the norms before the
    /// attention and the feed-forward block then run inside the products that read them
    /// (which read `hidden`), else as a dispatch of their own writing `normed`.
    folds_norms: bool,
}

impl Graph<'_> {
    fn attention_block(
        &self,
        layer: &LayerWeights,
        k_cache: &wgpu::Buffer,
        v_cache: &wgpu::Buffer,
    ) -> Result<Vec<Stage>, EngineError> {
        let b = self.buffers;
        let mut stages = Vec::new();
        let (input, norm) = self.normed_input(&layer.attn_norm, &mut stages);
        // One product for Q, K and V of one block type, or one each into its columns of the
        // qkv rows.
        let qkv_width = self.weights.hyperparameters.embedding_length + 2 * self.kv_width();
        let mut first = 0;
        for m in layer.qkv.matrices() {
            let columns = OutputColumns {
                first,
                per_token: qkv_width,
            };
            let bias = Some(&layer.qkv_bias);
            stages.push(self.matmul(m, input, &b.qkv, bias, false, Some(columns), norm)?);
            first += m.outputs();
        }
        stages.push(self.rope_kv_store(k_cache, v_cache));
        stages.push(self.attention(k_cache, v_cache));
        stages.push(self.matmul(&layer.wo, &b.attn, &b.hidden, None, true, None, None)?);
        Ok(stages)
    }

    fn feed_forward_block(&self, layer: &LayerWeights) -> Result<Vec<Stage>, EngineError> {
        let b = self.buffers;
        let mut stages = Vec::new();
        let (input, norm) = self.normed_input(&layer.ffn_norm, &mut stages);
        // `gate` = silu(gate · x) · (up · x).
        match &layer.ffn_in {
            FeedForwardIn::GateUpPairs(pairs) => {
                stages.push(self.matmul(pairs, input, &b.gate, None, false, None, norm)?);
            }
            FeedForwardIn::Separate { gate, up } => {
                let ff = self.weights.hyperparameters.feed_forward_length;
                stages.extend([
                    self.matmul(gate, input, &b.gate, None, false, None, norm)?,
                    self.matmul(up, input, &b.up, None, false, None, norm)?,
                    self.elementwise(VectorKernel::SiluMul, &b.gate, &b.up, ff),
                ]);
            }
        }
        stages.push(self.matmul(&layer.w_down, &b.gate, &b.hidden, None, true, None, None)?);
        Ok(stages)
    }

    /// Where a block reads its normed input from, and the norm its products apply: `hidden`
    /// normed inside the products, or `normed` written by a norm pushed onto `stages`.
    fn normed_input<'w>(
        &'w self,
        weight: &'w wgpu::Buffer,
        stages: &mut Vec<Stage>,
    ) -> (&'w wgpu::Buffer, Option<InputNorm<'w>>) {
        let b = self.buffers;
        if self.folds_norms {
            let eps = self.weights.hyperparameters.rms_norm_eps;
            return (&b.hidden, Some(InputNorm { weight, eps }));
        }
        stages.push(self.rms_norm(&b.hidden, weight, &b.normed, false));
        (&b.normed, None)
    }

    fn kv_width(&self) -> usize {
        let hp = &self.weights.hyperparameters;
        hp.head_count_kv * hp.head_dim
    }

    fn params(values: &[u32]) -> Binding<'static> {
        Binding::Params(values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    fn op(&self, kernel: VectorKernel, bindings: &[Binding<'_>], grid: Grid) -> PreparedOp {
        let kernels = &self.weights.kernels;
        kernels
            .ops
            .prepare(&self.weights.ctx, kernel, bindings, grid)
    }

    fn rms_norm(
        &self,
        input: &wgpu::Buffer,
        weight: &wgpu::Buffer,
        output: &wgpu::Buffer,
        last_only: bool,
    ) -> Stage {
        let hp = &self.weights.hyperparameters;
        let bindings = [
            Binding::Buffer(input),
            Binding::Buffer(weight),
            Binding::Buffer(output),
            Self::params(&[
                hp.embedding_length as u32,
                hp.rms_norm_eps.to_bits(),
                u32::from(last_only),
                0,
            ]),
            Binding::Buffer(&self.buffers.step),
        ];
        let grid = if last_only {
            Grid::Fixed(1)
        } else {
            Grid::PerToken
        };
        Stage::Op(self.op(VectorKernel::RmsNorm, &bindings, grid))
    }

    fn elementwise(
        &self,
        kernel: VectorKernel,
        a: &wgpu::Buffer,
        b: &wgpu::Buffer,
        n: usize,
    ) -> Stage {
        let bindings = [
            Binding::Buffer(a),
            Binding::Buffer(b),
            Self::params(&[n as u32]),
            Binding::Buffer(&self.buffers.step),
        ];
        let grid = Grid::Elements {
            per_token: n as u32,
            size: 256,
        };
        Stage::Op(self.op(kernel, &bindings, grid))
    }

    /// RoPE on the queries and keys, the keys and values appended to the caches.
    fn rope_kv_store(&self, k_cache: &wgpu::Buffer, v_cache: &wgpu::Buffer) -> Stage {
        let hp = &self.weights.hyperparameters;
        let b = self.buffers;
        let bindings = [
            Binding::Buffer(&b.qkv),
            Binding::Buffer(&b.q),
            Binding::Buffer(k_cache),
            Binding::Buffer(v_cache),
            Self::params(&[
                hp.head_count as u32,
                hp.head_count_kv as u32,
                hp.head_dim as u32,
                hp.rope_freq_base.to_bits(),
            ]),
            Binding::Buffer(&b.step),
        ];
        let grid = Grid::Elements {
            per_token: ((hp.head_count + hp.head_count_kv) * hp.head_dim / 2) as u32,
            size: 64,
        };
        Stage::Op(self.op(VectorKernel::RopeKvStore, &bindings, grid))
    }

    /// Causal attention of the step's queries over the cache, whole or split by context
    /// slices where the plan splits.
    fn attention(&self, k_cache: &wgpu::Buffer, v_cache: &wgpu::Buffer) -> Stage {
        let hp = &self.weights.hyperparameters;
        let b = self.buffers;
        let heads = hp.head_count as u32;
        let scale = 1.0 / (hp.head_dim as f32).sqrt();
        let attention_params = || {
            Self::params(&[
                heads,
                hp.head_count_kv as u32,
                self.max_positions as u32,
                scale.to_bits(),
            ])
        };
        let over_cache = |kernel, output, grid| {
            let bindings = [
                Binding::Buffer(&b.q),
                Binding::Buffer(k_cache),
                Binding::Buffer(v_cache),
                Binding::Buffer(&b.scores),
                Binding::Buffer(output),
                attention_params(),
                Binding::Buffer(&b.step),
            ];
            self.op(kernel, &bindings, grid)
        };
        let whole = over_cache(
            VectorKernel::Attention,
            &b.attn,
            Grid::EachToken { x: heads },
        );
        let split = self.weights.kernels.ops.split_attention.then(|| {
            let merge_bindings = [
                Binding::Buffer(&b.partials),
                Binding::Buffer(&b.attn),
                attention_params(),
                Binding::Buffer(&b.step),
            ];
            [
                over_cache(
                    VectorKernel::AttentionSplit,
                    &b.partials,
                    Grid::EachContextSlice { x: heads },
                ),
                self.op(
                    VectorKernel::AttentionMerge,
                    &merge_bindings,
                    Grid::Fixed(heads),
                ),
            ]
        });
        Stage::Attention { whole, split }
    }

    /// `y = m · x (+ bias)`, into `y_columns` of y's rows if given; with `add_to_y`,
    /// `y += m · x` (the residual connections); `input_norm` normalizes x on the way in.
    #[expect(
        clippy::too_many_arguments,
        reason = "one product's operands, named at each call as the model reads"
    )]
    fn matmul(
        &self,
        m: &QuantizedMatrix,
        x: &wgpu::Buffer,
        y: &wgpu::Buffer,
        bias: Option<&wgpu::Buffer>,
        add_to_y: bool,
        y_columns: Option<OutputColumns>,
        input_norm: Option<InputNorm<'_>>,
    ) -> Result<Stage, EngineError> {
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
        let kernels = &self.weights.kernels;
        let prepared =
            kernels
                .matmul
                .prepare(&self.weights.ctx, m, &operands, &self.buffers.step)?;
        Ok(Stage::Matmul(prepared))
    }

    /// The output head on the last token's final norm.
    fn output_head(&self) -> Result<Stage, EngineError> {
        let b = self.buffers;
        let head = MatmulOperands {
            x: &b.final_normed,
            x_offset: 0,
            x_stride: self.weights.hyperparameters.embedding_length,
            y: &b.logits,
            bias: None,
            add_to_y: false,
            tokens: TokenCount::Fixed(1),
            y_columns: None,
            input_norm: None,
        };
        let kernels = &self.weights.kernels;
        let prepared =
            kernels
                .matmul
                .prepare(&self.weights.ctx, &self.weights.output, &head, &b.step)?;
        Ok(Stage::Matmul(prepared))
    }
}
