//! Quantized matrix × a batch of token vectors, the workhorse of every step: one compute
//! pipeline per (block type, token tile), built from `kernels/matmul_main.wgsl` plus that
//! type's `block_dot`. Decode steps (one token) use the tile-1 variant, a plain matrix-vector
//! product; batched prefill uses a larger tile so each weight is dequantized once per tile.

use std::collections::HashMap;

use wgpu::util::DeviceExt;

use super::block_type::BlockType;
use super::gpu_context::{EngineError, GpuContext};
use super::quantized_matrix::QuantizedMatrix;

/// Tokens one invocation multiplies at once in batched steps.
pub const PREFILL_TOKEN_TILE: u32 = 8;
/// Rows one workgroup computes (one per invocation).
const ROWS_PER_WORKGROUP: usize = 64;
/// The most workgroups one dispatch dimension may have.
const MAX_GROUPS_PER_DIMENSION: usize = 65_535;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct MatmulParams {
    rows: u32,
    blocks_per_row: u32,
    row_offset: u32,
    y_stride: u32,
    x_offset: u32,
    x_stride: u32,
    has_bias: u32,
    tokens: u32,
}

/// How many tokens a prepared product multiplies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenCount {
    /// As many as the step uniform says (every per-token product of a step).
    FromStep,
    /// A fixed number (the output head runs on the last token only).
    Fixed(u32),
}

/// Where a product reads and writes: `y[t][..] = W · x[t] (+ bias)` with `x[t]` starting at
/// float `x_offset + t * x_stride` and `y[t]` at float `t * W.rows`.
pub struct MatmulOperands<'a> {
    pub x: &'a wgpu::Buffer,
    pub x_offset: usize,
    pub x_stride: usize,
    pub y: &'a wgpu::Buffer,
    pub bias: Option<&'a wgpu::Buffer>,
    pub tokens: TokenCount,
}

pub struct QuantizedMatmulKernels {
    layout: wgpu::BindGroupLayout,
    /// Keyed by block type and token tile.
    pipelines: HashMap<(BlockType, u32), wgpu::ComputePipeline>,
    /// Bound where a product has no bias (WebGPU needs every binding).
    no_bias: wgpu::Buffer,
}

impl QuantizedMatmulKernels {
    /// Compiles the kernel of every block type, for decode and for batched steps.
    pub fn new(ctx: &GpuContext) -> Self {
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
        let layout = ctx
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some("matmul"),
                entries: &[
                    storage(0, true),
                    storage(1, true),
                    storage(2, false),
                    storage(3, true),
                    uniform(4),
                    uniform(5),
                ],
            });
        let pipeline_layout = ctx
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some("matmul"),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        let mut pipelines = HashMap::new();
        for block_type in BlockType::ALL {
            for tile in [1, PREFILL_TOKEN_TILE] {
                let source = format!(
                    "const TOKEN_TILE: u32 = {tile}u;\n{}\n{}",
                    include_str!("kernels/matmul_main.wgsl"),
                    block_type.block_kernel_source()
                );
                let label = format!("matmul {block_type:?} tile {tile}");
                let pipeline = ctx.compute_pipeline_with_layout(&label, &source, &pipeline_layout);
                pipelines.insert((block_type, tile), pipeline);
            }
        }
        let no_bias = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("no bias"),
            size: 4,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        Self {
            layout,
            pipelines,
            no_bias,
        }
    }

    /// Binds a product once, to be recorded every step; `step` is the step uniform.
    pub fn prepare(
        &self,
        ctx: &GpuContext,
        matrix: &QuantizedMatrix,
        operands: &MatmulOperands<'_>,
        step: &wgpu::Buffer,
    ) -> Result<PreparedMatmul, EngineError> {
        if !operands.x_offset.is_multiple_of(4) || !operands.x_stride.is_multiple_of(4) {
            return Err(EngineError::Unsupported(
                "matrix inputs must start on a multiple of 4 floats".into(),
            ));
        }
        let dispatches = matrix
            .chunks
            .iter()
            .map(|chunk| {
                let row_groups = chunk.rows.div_ceil(ROWS_PER_WORKGROUP);
                if row_groups > MAX_GROUPS_PER_DIMENSION {
                    return Err(EngineError::Unsupported(format!(
                        "a weight chunk of {} rows exceeds one dispatch",
                        chunk.rows
                    )));
                }
                let params = MatmulParams {
                    rows: chunk.rows as u32,
                    blocks_per_row: matrix.blocks_per_row() as u32,
                    row_offset: chunk.first_row as u32,
                    y_stride: matrix.rows as u32,
                    x_offset: (operands.x_offset / 4) as u32,
                    x_stride: (operands.x_stride / 4) as u32,
                    has_bias: u32::from(operands.bias.is_some()),
                    tokens: match operands.tokens {
                        TokenCount::FromStep => 0,
                        TokenCount::Fixed(n) => n,
                    },
                };
                let uniform = ctx
                    .device
                    .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: Some("matmul params"),
                        contents: bytemuck::bytes_of(&params),
                        usage: wgpu::BufferUsages::UNIFORM,
                    });
                let buffers = [
                    &chunk.buffer,
                    operands.x,
                    operands.y,
                    operands.bias.unwrap_or(&self.no_bias),
                    &uniform,
                    step,
                ];
                let entries: Vec<_> = buffers
                    .iter()
                    .enumerate()
                    .map(|(i, buffer)| wgpu::BindGroupEntry {
                        binding: i as u32,
                        resource: buffer.as_entire_binding(),
                    })
                    .collect();
                let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some("matmul"),
                    layout: &self.layout,
                    entries: &entries,
                });
                Ok((bind_group, row_groups as u32))
            })
            .collect::<Result<_, _>>()?;
        Ok(PreparedMatmul {
            block_type: matrix.block_type,
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
        let tile = if tokens <= 1 { 1 } else { PREFILL_TOKEN_TILE };
        pass.set_pipeline(&self.pipelines[&(prepared.block_type, tile)]);
        for (bind_group, row_groups) in &prepared.dispatches {
            pass.set_bind_group(0, bind_group, &[]);
            pass.dispatch_workgroups(*row_groups, tokens.div_ceil(tile).max(1), 1);
        }
    }
}

/// A product with its buffers bound: one dispatch per weight chunk.
pub struct PreparedMatmul {
    block_type: BlockType,
    tokens: TokenCount,
    dispatches: Vec<(wgpu::BindGroup, u32)>,
}
