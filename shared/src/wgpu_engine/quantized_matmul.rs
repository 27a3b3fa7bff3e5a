//! Quantized matrix × a batch of token vectors, the workhorse of every step: one compute
//! pipeline per (block type, token tile) of the adapter's plan (`matmul_plan.rs`), built from
//! WGSL put together in `matmul_source.rs`; a product prepared once over its buffers and
//! recorded into every step. Layouts: CPU
//! drivers get several whole rows per invocation (`kernels/matmul_rows.wgsl`), GPUs several
//! invocations per row (`kernels/matmul_lanes.wgsl`, or `kernels/matmul_lanes_subgroup.wgsl`
//! where the adapter's subgroups sum a row's lanes) for decode and workgroup tiles of 64 rows
//! × up to 32 tokens staged in workgroup memory (`kernels/matmul_tiled.wgsl`) for prompts.
//! Decode steps (one token) use the tile-1 variant, a plain matrix-vector product; batched
//! prefill uses a larger tile so each weight is dequantized once per tile.

use std::collections::HashMap;

use wgpu::util::DeviceExt;

use super::gpu_context::GpuContext;
use super::matmul_plan::{MatmulLayout, MatmulPlan, WORKGROUP_SIZE};
use super::matmul_source::{MAX_GROUPS_PER_DIMENSION, kernel_source};
use super::quantized_matrix::QuantizedMatrix;
use crate::generation::EngineError;
use crate::gguf::block_type::BlockType;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct MatmulParams {
    rows: u32,
    blocks_per_row: u32,
    row_offset: u32,
    y_stride: u32,
    x_offset: u32,
    x_stride: u32,
    flags: u32,
    tokens: u32,
    norm_eps: f32,
    _padding: [u32; 3],
}

/// How many tokens a prepared product multiplies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCount {
    /// As many as the step uniform says (every per-token product of a step).
    FromStep,
    /// A fixed number (the output head runs on the last token only).
    Fixed(u32),
}

/// Where a product reads and writes: `y[t][..] = W · x[t] (+ bias)`, or with `add_to_y`
/// `y[t][..] += W · x[t] (+ bias)` (a residual connection in the same dispatch), with `x[t]`
/// starting at float `x_offset + t * x_stride` and `y[t]` at float `t * W.rows`, or where
/// `y_columns` says.
pub struct MatmulOperands<'a> {
    pub x: &'a wgpu::Buffer,
    pub x_offset: usize,
    pub x_stride: usize,
    pub y: &'a wgpu::Buffer,
    pub bias: Option<&'a wgpu::Buffer>,
    pub add_to_y: bool,
    pub tokens: TokenCount,
    /// Outputs into columns `first ..` of y rows `per_token` floats long (several products
    /// filling one row, as Q, K and V of different block types fill the attention input);
    /// the bias is then indexed by that column too. `None`: a y row is the product's outputs.
    pub y_columns: Option<OutputColumns>,
    /// The product multiplies RMSNorm(x[t]) · weight instead of x[t] (the norm before the
    /// attention and the feed-forward block, in the same dispatch); plans whose
    /// `normalize_inputs` is set only.
    pub input_norm: Option<InputNorm<'a>>,
}

/// An RMSNorm applied to a product's input as it is loaded.
#[derive(Clone, Copy)]
pub struct InputNorm<'a> {
    /// One f32 per input column.
    pub weight: &'a wgpu::Buffer,
    pub eps: f32,
}

/// The columns of a y row a product writes (see `MatmulOperands::y_columns`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputColumns {
    pub first: usize,
    pub per_token: usize,
}

pub struct QuantizedMatmulKernels {
    plan: MatmulPlan,
    bind_layout: wgpu::BindGroupLayout,
    /// Keyed by block type, whether the step is batched (more than one token), whether
    /// the matrix holds gate/up row pairs and whether the product normalizes its input.
    pipelines: HashMap<(BlockType, bool, bool, bool), wgpu::ComputePipeline>,
    /// Bound where a product has no bias (WebGPU needs every binding).
    no_bias: wgpu::Buffer,
}

impl QuantizedMatmulKernels {
    /// Compiles the kernels of `block_types` (those a model uses) and the row-pair kernels of
    /// `row_pair_types` (SwiGLU's gate and up in one matrix), for decode and for batched
    /// steps, in the plan's layouts.
    pub fn with_plan(
        ctx: &GpuContext,
        block_types: &[BlockType],
        row_pair_types: &[BlockType],
        plan: MatmulPlan,
    ) -> Self {
        for layout in [plan.decode, plan.batched] {
            if let MatmulLayout::LanesPerRow(lanes) = layout {
                assert!(
                    lanes.is_power_of_two() && lanes <= WORKGROUP_SIZE,
                    "lanes per row must be a power of two up to {WORKGROUP_SIZE}, not {lanes}"
                );
            }
        }
        assert!(
            plan.batched_tile >= 1,
            "a token tile holds at least one token"
        );
        assert!(
            !matches!(plan.decode, MatmulLayout::Tiled { .. }),
            "one-token steps have no token tile to stage"
        );
        if plan.normalize_inputs {
            assert!(
                ![plan.decode, plan.batched]
                    .iter()
                    .any(|layout| matches!(layout, MatmulLayout::RowsPerInvocation(_))),
                "only lane and tile layouts normalize their inputs"
            );
            assert!(
                64_u32.is_multiple_of(plan.batched_tile),
                "a product that normalizes its input needs a token tile dividing 64, not {}",
                plan.batched_tile
            );
        }
        assert!(
            !plan.subgroup_sums || plan.subgroups_fit(ctx),
            "subgroup sums need an adapter whose subgroups hold a row's lanes"
        );
        if let MatmulLayout::Tiled { f16 } = plan.batched {
            assert!(
                plan.batched_tile.is_multiple_of(4) && plan.batched_tile <= 32,
                "a tiled product's token tile is a multiple of 4 up to 32, not {}",
                plan.batched_tile
            );
            assert!(
                !f16 || ctx.has_shader_f16,
                "f16 tiles need an adapter with shader-f16"
            );
        }
        let storage = |binding: u32, read_only: bool| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let uniform = |binding: u32| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let bind_layout = ctx
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some("matmul"),
                entries: &[
                    storage(0, true),
                    storage(1, true),
                    storage(2, true),
                    storage(3, false),
                    storage(4, true),
                    uniform(5),
                    uniform(6),
                    storage(7, true),
                ],
            });
        let pipeline_layout = ctx
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some("matmul"),
                bind_group_layouts: &[Some(&bind_layout)],
                immediate_size: 0,
            });
        let mut pipelines = HashMap::new();
        let kinds = block_types
            .iter()
            .map(|&t| (t, false))
            .chain(row_pair_types.iter().map(|&t| (t, true)));
        let normalized: &[bool] = if plan.normalize_inputs {
            &[false, true]
        } else {
            &[false]
        };
        for (block_type, row_pairs) in kinds {
            for (batched, &normalizes) in [false, true]
                .into_iter()
                .flat_map(|batched| normalized.iter().map(move |n| (batched, n)))
            {
                let key = (block_type, batched, row_pairs, normalizes);
                if pipelines.contains_key(&key) {
                    continue;
                }
                let (layout, tile) = plan.for_step(batched);
                let source = kernel_source(
                    block_type,
                    layout,
                    tile,
                    row_pairs,
                    normalizes,
                    plan.subgroup_sums,
                );
                let label = format!(
                    "matmul {block_type:?} {layout:?} tile {tile}{}{}{}",
                    if row_pairs { " gate/up pairs" } else { "" },
                    if normalizes { " normalized" } else { "" },
                    if plan.subgroup_sums {
                        " subgroup sums"
                    } else {
                        ""
                    }
                );
                let pipeline = ctx.compute_pipeline_with_layout(&label, &source, &pipeline_layout);
                pipelines.insert(key, pipeline);
            }
        }
        // Bound where a product has no bias or input norm: one vec4, the least a binding of
        // vec4s may hold.
        let no_bias = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("no bias"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        Self {
            plan,
            bind_layout,
            pipelines,
            no_bias,
        }
    }

    /// Whether this plan's products normalize their inputs (see `MatmulPlan`).
    pub fn normalizes_inputs(&self) -> bool {
        self.plan.normalize_inputs
    }

    /// Binds a product once, to be recorded every step; `step` is the step uniform.
    pub fn prepare(
        &self,
        ctx: &GpuContext,
        matrix: &QuantizedMatrix,
        operands: &MatmulOperands<'_>,
        step: &wgpu::Buffer,
    ) -> Result<PreparedMatmul, EngineError> {
        if operands.input_norm.is_some() && !self.plan.normalize_inputs {
            return Err(EngineError::Unsupported(
                "this kernel plan's products do not normalize their inputs".into(),
            ));
        }
        if !self
            .pipelines
            .contains_key(&(matrix.block_type, false, matrix.row_pairs, false))
        {
            return Err(EngineError::Unsupported(format!(
                "no kernel was compiled for {:?} matrices{}",
                matrix.block_type,
                if matrix.row_pairs {
                    " of row pairs"
                } else {
                    ""
                }
            )));
        }
        if matrix.row_pairs && (operands.bias.is_some() || operands.add_to_y) {
            return Err(EngineError::Unsupported(
                "a gate/up row-pair product takes no bias and does not add to y".into(),
            ));
        }
        if !operands.x_offset.is_multiple_of(4) || !operands.x_stride.is_multiple_of(4) {
            return Err(EngineError::Unsupported(
                "matrix inputs must start on a multiple of 4 floats".into(),
            ));
        }
        let columns = operands.y_columns.unwrap_or(OutputColumns {
            first: 0,
            per_token: matrix.outputs(),
        });
        if columns.first + matrix.outputs() > columns.per_token
            || (matrix.row_pairs && columns.first != 0)
        {
            return Err(EngineError::Unsupported(format!(
                "{} outputs from column {} do not fit a y row of {}{}",
                matrix.outputs(),
                columns.first,
                columns.per_token,
                if matrix.row_pairs {
                    " (row-pair products start at column 0)"
                } else {
                    ""
                }
            )));
        }
        let dispatches = matrix
            .chunks
            .iter()
            .map(|chunk| {
                let params = MatmulParams {
                    rows: chunk.rows as u32,
                    blocks_per_row: matrix.blocks_per_row() as u32,
                    row_offset: (columns.first + chunk.first_row) as u32,
                    y_stride: columns.per_token as u32,
                    x_offset: (operands.x_offset / 4) as u32,
                    x_stride: (operands.x_stride / 4) as u32,
                    flags: u32::from(operands.bias.is_some()) | (u32::from(operands.add_to_y) << 1),
                    tokens: match operands.tokens {
                        TokenCount::FromStep => 0,
                        TokenCount::Fixed(n) => n,
                    },
                    norm_eps: operands.input_norm.map_or(0.0, |norm| norm.eps),
                    _padding: [0; 3],
                };
                let uniform = ctx
                    .device
                    .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: Some("matmul params"),
                        contents: bytemuck::bytes_of(&params),
                        usage: wgpu::BufferUsages::UNIFORM,
                    });
                let buffers = [
                    &chunk.bulk,
                    &chunk.heads,
                    operands.x,
                    operands.y,
                    operands.bias.unwrap_or(&self.no_bias),
                    &uniform,
                    step,
                    operands
                        .input_norm
                        .map_or(&self.no_bias, |norm| norm.weight),
                ];
                let bind_group = ctx.bind_buffers("matmul", &self.bind_layout, &buffers);
                Ok((bind_group, chunk.rows))
            })
            .collect::<Result<_, _>>()?;
        Ok(PreparedMatmul {
            block_type: matrix.block_type,
            row_pairs: matrix.row_pairs,
            normalizes: operands.input_norm.is_some(),
            tokens: operands.tokens,
            dispatches,
        })
    }

    /// Records a prepared product into an open compute pass for a step of `step_tokens`.
    pub fn record(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        prepared: &PreparedMatmul,
        step_tokens: u32,
    ) {
        let tokens = match prepared.tokens {
            TokenCount::FromStep => step_tokens,
            TokenCount::Fixed(n) => n,
        };
        let batched = tokens > 1;
        let (layout, tile) = self.plan.for_step(batched);
        let key = (
            prepared.block_type,
            batched,
            prepared.row_pairs,
            prepared.normalizes,
        );
        pass.set_pipeline(&self.pipelines[&key]);
        for (bind_group, rows) in &prepared.dispatches {
            let row_groups = rows.div_ceil(layout.rows_per_workgroup(prepared.row_pairs)) as u32;
            pass.set_bind_group(0, bind_group, &[]);
            pass.dispatch_workgroups(
                row_groups.min(MAX_GROUPS_PER_DIMENSION),
                tokens.div_ceil(tile).max(1),
                row_groups.div_ceil(MAX_GROUPS_PER_DIMENSION),
            );
        }
    }
}

/// A product with its buffers bound: one dispatch per weight chunk (and its rows).
pub struct PreparedMatmul {
    block_type: BlockType,
    row_pairs: bool,
    normalizes: bool,
    tokens: TokenCount,
    dispatches: Vec<(wgpu::BindGroup, usize)>,
}
