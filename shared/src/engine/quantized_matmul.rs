//! Quantized matrix × a batch of token vectors, the workhorse of every step: one compute
//! pipeline per (block type, token tile), built from `kernels/matmul_main.wgsl`, that type's
//! block file, and a `block_dot` generated here that unrolls a block's groups for every row
//! and token an invocation handles. Decode steps (one token) use the tile-1 variant, a plain
//! matrix-vector product; batched prefill uses a larger tile so each weight is dequantized
//! once per tile.

use std::collections::HashMap;

use wgpu::util::DeviceExt;

use super::block_type::BlockType;
use super::gpu_context::{EngineError, GpuContext};
use super::quantized_matrix::QuantizedMatrix;

/// Tokens one invocation multiplies at once in batched steps.
pub const PREFILL_TOKEN_TILE: u32 = 4;
/// Invocations per workgroup (`@workgroup_size` in the kernel).
const WORKGROUP_SIZE: usize = 64;
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
    /// Output rows one invocation computes.
    rows_per_invocation: usize,
    layout: wgpu::BindGroupLayout,
    /// Keyed by block type and token tile.
    pipelines: HashMap<(BlockType, u32), wgpu::ComputePipeline>,
    /// Bound where a product has no bias (WebGPU needs every binding).
    no_bias: wgpu::Buffer,
}

impl QuantizedMatmulKernels {
    /// Compiles the kernels of `block_types` (those a model uses), for decode and for batched
    /// steps, with the rows per invocation that suit the adapter: CPU drivers run an
    /// invocation's lanes as SIMD over rows, so several rows per invocation share every x
    /// load (on lavapipe 8 rows decode 12% and prefill 17% faster than 4); GPUs want many
    /// threads instead.
    pub fn new(ctx: &GpuContext, block_types: &[BlockType]) -> Self {
        let rows_per_invocation = match (ctx.adapter_info.backend, ctx.adapter_info.device_type) {
            (wgpu::Backend::BrowserWebGpu, _) => 1,
            (_, wgpu::DeviceType::DiscreteGpu | wgpu::DeviceType::IntegratedGpu) => 1,
            _ => 8,
        };
        Self::with_rows_per_invocation(ctx, block_types, rows_per_invocation)
    }

    /// As `new`, with an explicit number of output rows per invocation (tests run the GPU
    /// variant on a CPU driver too).
    pub fn with_rows_per_invocation(
        ctx: &GpuContext,
        block_types: &[BlockType],
        rows_per_invocation: usize,
    ) -> Self {
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
                    storage(2, true),
                    storage(3, false),
                    storage(4, true),
                    uniform(5),
                    uniform(6),
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
        for &block_type in block_types {
            if pipelines.contains_key(&(block_type, 1)) {
                continue;
            }
            for tile in [1, PREFILL_TOKEN_TILE] {
                let source = kernel_source(block_type, rows_per_invocation as u32, tile);
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
            rows_per_invocation,
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
        if !self.pipelines.contains_key(&(matrix.block_type, 1)) {
            return Err(EngineError::Unsupported(format!(
                "no kernel was compiled for {:?} matrices",
                matrix.block_type
            )));
        }
        if !operands.x_offset.is_multiple_of(4) || !operands.x_stride.is_multiple_of(4) {
            return Err(EngineError::Unsupported(
                "matrix inputs must start on a multiple of 4 floats".into(),
            ));
        }
        let dispatches = matrix
            .chunks
            .iter()
            .map(|chunk| {
                let row_groups = chunk
                    .rows
                    .div_ceil(WORKGROUP_SIZE * self.rows_per_invocation);
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
                    &chunk.bulk,
                    &chunk.heads,
                    operands.x,
                    operands.y,
                    operands.bias.unwrap_or(&self.no_bias),
                    &uniform,
                    step,
                ];
                let bind_group = ctx.bind_buffers("matmul", &self.layout, &buffers);
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

/// The WGSL of one pipeline: ROWS and TOKEN_TILE, the main kernel, the block type's file and
/// the unrolled `block_dot`.
fn kernel_source(block_type: BlockType, rows: u32, tile: u32) -> String {
    format!(
        "const ROWS: u32 = {rows}u;\nconst TOKEN_TILE: u32 = {tile}u;\n{}\n{}\n{}",
        include_str!("kernels/matmul_main.wgsl"),
        block_type.block_kernel_source(),
        block_dot_source(block_type, rows, tile)
    )
}

/// `block_dot(block, x4, acc)`: adds block `block` of each of the invocation's rows times
/// the tile's x to `acc[row * TOKEN_TILE + token]`: a loop over the block's runs (K-quant
/// sub-blocks), each run's groups of four weights spelled out for every row and token.
fn block_dot_source(block_type: BlockType, rows: u32, tile: u32) -> String {
    use std::fmt::Write;
    let groups = block_type.block_elements() / 4 / block_type.sub_blocks();
    let mut s = format!(
        "fn block_dot(block: u32, x4: u32, acc: ptr<function, array<vec4<f32>, {}>>) {{\n",
        rows * tile
    );
    for r in 0..rows {
        for t in 0..tile {
            let _ = writeln!(s, "    var s{r}_{t} = vec4<f32>(0.0);");
        }
    }
    // Decode kernels spell out the runs too (fastest); batched kernels loop over them to keep
    // the shader small (compile time grows with the unrolled rows × tokens).
    let runs: Vec<String> = if tile == 1 {
        (0..block_type.sub_blocks())
            .map(|run| format!("{run}u"))
            .collect()
    } else {
        let _ = writeln!(s, "    for (var sub = 0u; sub < SUB_BLOCKS; sub++) {{");
        vec!["sub".to_string()]
    };
    for run in &runs {
        s.push_str("    {\n");
        for r in 0..rows {
            let _ = writeln!(
                s,
                "        let b{r} = load_sub(row_base[{r}] + block, {run});"
            );
        }
        let _ = writeln!(s, "        let xs = x4 + {run} * {groups}u;");
        for g in 0..groups {
            s.push_str("        {\n");
            for r in 0..rows {
                let _ = writeln!(s, "            let w{r} = group_weights(b{r}, {g}u);");
            }
            for t in 0..tile {
                let _ = writeln!(s, "            let x{t} = token_x({t}u, xs + {g}u);");
                for r in 0..rows {
                    let _ = writeln!(s, "            s{r}_{t} += w{r} * x{t};");
                }
            }
            s.push_str("        }\n");
        }
        s.push_str("    }\n");
    }
    if tile != 1 {
        s.push_str("    }\n");
    }
    for r in 0..rows {
        for t in 0..tile {
            let _ = writeln!(s, "    (*acc)[{}] += s{r}_{t};", r * tile + t);
        }
    }
    s.push_str("}\n");
    s
}
