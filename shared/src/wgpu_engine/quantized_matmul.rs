//! Quantized matrix × a batch of token vectors, the workhorse of every step: one compute
//! pipeline per (block type, token tile), built from `kernels/matmul_bindings.wgsl`, the
//! layout's kernel, that type's block file, and dot-product code generated here that spells
//! out a block's groups for every row and token an invocation handles. Two layouts: CPU
//! drivers get several whole rows per invocation (`kernels/matmul_rows.wgsl`), GPUs several
//! invocations per row (`kernels/matmul_lanes.wgsl`, or `kernels/matmul_lanes_subgroup.wgsl`
//! where the adapter's subgroups sum a row's lanes) for decode and workgroup tiles of 64 rows
//! × up to 32 tokens staged in workgroup memory (`kernels/matmul_tiled.wgsl`) for prompts.
//! Decode steps (one token) use the tile-1 variant, a plain matrix-vector product; batched
//! prefill uses a larger tile so each weight is dequantized once per tile.

use std::collections::HashMap;

use wgpu::util::DeviceExt;

use super::gpu_block_layout::GpuBlockLayout;
use super::gpu_context::GpuContext;
use super::quantized_matrix::QuantizedMatrix;
use crate::generation::EngineError;
use crate::gguf::block_type::BlockType;

/// Invocations per workgroup (`@workgroup_size` in the kernels).
const WORKGROUP_SIZE: usize = 64;
/// The most workgroups one dispatch dimension may have; more row groups continue in grid z
/// (the kernels' `ROW_GROUPS_PER_Z`).
const MAX_GROUPS_PER_DIMENSION: u32 = 65_535;

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

/// How a product's rows are spread over invocations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatmulLayout {
    /// Each invocation computes this many whole rows alone: CPU drivers run an invocation's
    /// lanes as SIMD over rows, so the rows share every x load and need no barriers.
    RowsPerInvocation(usize),
    /// This many invocations (a power of two, 1 to 64) share each row and add their partial
    /// sums in workgroup memory: GPUs want many threads and neighbouring loads.
    LanesPerRow(usize),
    /// A workgroup computes 64 rows × the token tile (a multiple of 4, at most 32) out of
    /// weight and activation tiles staged in workgroup memory, in f16 where `f16` is set
    /// (the adapter must have `shader-f16`): batched steps on GPUs.
    Tiled { f16: bool },
}

/// Rows of one tiled workgroup (`TILE_ROWS` in `kernels/matmul_tiled.wgsl`).
const TILED_ROWS: usize = 64;

impl MatmulLayout {
    /// Matrix rows one invocation (or one group of lanes) computes: whole gate/up pairs on
    /// row-pair matrices.
    fn rows_per_group(self, row_pairs: bool) -> usize {
        let rows = match self {
            Self::RowsPerInvocation(rows) => rows,
            Self::LanesPerRow(_) => 1,
            Self::Tiled { .. } => 4,
        };
        if row_pairs {
            rows.next_multiple_of(2)
        } else {
            rows
        }
    }

    /// Matrix rows one workgroup of `WORKGROUP_SIZE` invocations computes.
    fn rows_per_workgroup(self, row_pairs: bool) -> usize {
        let groups = match self {
            Self::RowsPerInvocation(_) => WORKGROUP_SIZE,
            Self::LanesPerRow(lanes) => WORKGROUP_SIZE / lanes,
            Self::Tiled { .. } => return TILED_ROWS,
        };
        groups * self.rows_per_group(row_pairs)
    }
}

/// The layouts of a model's products: one for one-token (decode) steps, one for batched
/// (prompt) steps, which multiply `batched_tile` tokens per invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatmulPlan {
    pub decode: MatmulLayout,
    pub batched: MatmulLayout,
    pub batched_tile: u32,
    /// Products normalize their input themselves (RMSNorm folded into the product that
    /// follows it: two dispatches fewer per layer). Layouts with lanes or tiles only, whose
    /// workgroups share the norm of their tokens; the token tile must divide 64.
    pub normalize_inputs: bool,
    /// Lanes of a row add their partial sums by subgroup shuffles in registers
    /// (`kernels/matmul_lanes_subgroup.wgsl`) instead of through workgroup memory and a
    /// barrier. The adapter must offer subgroups no smaller than the plan's lanes per row.
    pub subgroup_sums: bool,
}

impl MatmulPlan {
    /// CPU drivers (lavapipe): 8 rows per invocation (on lavapipe 8 rows decode 12% and
    /// prefill 17% faster than 4) and 4-token tiles (8 was slower).
    pub const CPU_DRIVER: Self = Self::same(MatmulLayout::RowsPerInvocation(8));
    /// The browser's CPU fallback (SwiftShader): one row per invocation, as measured there.
    pub const BROWSER_CPU_FALLBACK: Self = Self::same(MatmulLayout::RowsPerInvocation(1));
    /// GPUs: 16 lanes per row for decode, 64 × 32 workgroup tiles for batched steps (f32;
    /// `gpu_with_f16` for adapters with shader-f16). On an H200 (Vulkan, Qwen2.5-1.5B
    /// shapes, Q4_K_M types) decode ran at 137 tok/s with 16 lanes against 116 (8 lanes),
    /// 129 (32) and 61 (one row per invocation); prefill, before the tiled kernel, at 1,630
    /// tok/s with one row per invocation in 4-token tiles against 1,360 (8) and 1,230 (16),
    /// and 1,190 with 4 lanes per row. The tiled kernel has not been measured on a GPU yet.
    pub const GPU: Self = Self {
        decode: MatmulLayout::LanesPerRow(16),
        batched: MatmulLayout::Tiled { f16: false },
        batched_tile: 32,
        normalize_inputs: true,
        subgroup_sums: false,
    };

    /// The GPU plan, its prompt tiles in f16 when `f16` (the adapter has shader-f16).
    pub const fn gpu_with_f16(f16: bool) -> Self {
        Self {
            batched: MatmulLayout::Tiled { f16 },
            ..Self::GPU
        }
    }

    /// `layout` for decode and batched steps, with 4-token tiles and separate norms.
    pub const fn same(layout: MatmulLayout) -> Self {
        Self {
            decode: layout,
            batched: layout,
            batched_tile: 4,
            normalize_inputs: false,
            subgroup_sums: false,
        }
    }

    /// The GPU plan for `ctx`'s adapter: f16 prompt tiles where it has shader-f16, subgroup
    /// sums where its subgroups hold a row's lanes.
    pub fn gpu_for(ctx: &GpuContext) -> Self {
        let plan = Self::gpu_with_f16(ctx.has_shader_f16);
        Self {
            subgroup_sums: plan.subgroups_fit(ctx),
            ..plan
        }
    }

    /// Whether `ctx`'s subgroups can sum this plan's lanes: it offers subgroups, and its
    /// smallest one holds every lane layout's lanes.
    pub fn subgroups_fit(self, ctx: &GpuContext) -> bool {
        ctx.subgroup_min_size.is_some_and(|size| {
            [self.decode, self.batched]
                .iter()
                .all(|layout| match layout {
                    MatmulLayout::LanesPerRow(lanes) => *lanes <= size as usize,
                    _ => true,
                })
        })
    }

    /// Whether `ctx`'s adapter can run this plan: f16 tiles need shader-f16, subgroup sums
    /// need subgroups that hold a row's lanes.
    pub fn check_adapter(self, ctx: &GpuContext) -> Result<(), EngineError> {
        if self.batched == (MatmulLayout::Tiled { f16: true }) && !ctx.has_shader_f16 {
            return Err(EngineError::Unsupported(
                "f16 tiles need shader-f16, which this adapter lacks".into(),
            ));
        }
        if self.subgroup_sums && !self.subgroups_fit(ctx) {
            return Err(EngineError::Unsupported(match ctx.subgroup_min_size {
                Some(size) => format!(
                    "subgroup sums need subgroups that hold a row's lanes; this adapter's \
                     smallest has {size}"
                ),
                None => "subgroup sums need subgroups, which this adapter does not offer \
                         to wgpu"
                    .into(),
            }));
        }
        Ok(())
    }

    /// The layout and tile of a one-token step, or of a batched one.
    fn for_step(self, batched: bool) -> (MatmulLayout, u32) {
        if batched {
            (self.batched, self.batched_tile)
        } else {
            (self.decode, 1)
        }
    }
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

/// The WGSL of one pipeline: ROWS, TOKEN_TILE, ROW_GROUPS_PER_Z, PAIRED, NORMALIZED_INPUT
/// (and LANES, or the tiled kernel's TILE_TOKENS and `tile_t`), the shared declarations, the
/// layout's kernel, the block type's file and the generated dot product (the tiled kernel
/// has its own).
fn kernel_source(
    block_type: BlockType,
    layout: MatmulLayout,
    tile: u32,
    row_pairs: bool,
    normalizes: bool,
    subgroup_sums: bool,
) -> String {
    let rows = layout.rows_per_group(row_pairs) as u32;
    let mut constants = format!(
        "const ROWS: u32 = {rows}u;\nconst TOKEN_TILE: u32 = {tile}u;\nconst TILE_TOKENS: u32 = {tile}u;\n\
         const ROW_GROUPS_PER_Z: u32 = {MAX_GROUPS_PER_DIMENSION}u;\nconst PAIRED: bool = {row_pairs};\n\
         const NORMALIZED_INPUT: bool = {normalizes};\n"
    );
    let (kernel, dot) = match layout {
        MatmulLayout::Tiled { f16 } => {
            let tile_type = if f16 { "vec4<f16>" } else { "vec4<f32>" };
            let enable = if f16 { "enable f16;\n" } else { "" };
            constants = format!("{enable}{constants}alias tile_t = {tile_type};\n");
            (include_str!("kernels/matmul_tiled.wgsl"), String::new())
        }
        MatmulLayout::RowsPerInvocation(_) => (
            include_str!("kernels/matmul_rows.wgsl"),
            block_dot_source(block_type, rows, tile),
        ),
        MatmulLayout::LanesPerRow(lanes) => {
            constants.push_str(&format!("const LANES: u32 = {lanes}u;\n"));
            // Naga takes subgroup built-ins without WGSL's `enable subgroups;` (which it
            // does not parse yet) once the device has the feature.
            let kernel = if subgroup_sums {
                include_str!("kernels/matmul_lanes_subgroup.wgsl")
            } else {
                include_str!("kernels/matmul_lanes.wgsl")
            };
            (kernel, run_dot_source(block_type, rows, tile))
        }
    };
    format!(
        "{constants}{}\n{kernel}\n{}\n{dot}",
        include_str!("kernels/matmul_bindings.wgsl"),
        block_type.block_kernel_source(),
    )
}

/// `block_dot(block, x4, acc)`: adds block `block` of each of the invocation's rows times
/// the tile's x to `acc[row * TOKEN_TILE + token]`: a loop over the block's runs (K-quant
/// sub-blocks), each run's groups of four weights spelled out for every row and token.
fn block_dot_source(block_type: BlockType, rows: u32, tile: u32) -> String {
    let mut s = format!(
        "fn block_dot(block: u32, x4: u32, acc: ptr<function, array<vec4<f32>, {}>>) {{\n",
        rows * tile
    );
    push_sums(&mut s, rows, tile);
    // Decode kernels spell out the runs too (fastest); batched kernels loop over them to keep
    // the shader small (compile time grows with the unrolled rows × tokens).
    if tile == 1 {
        for run in 0..block_type.sub_blocks() {
            push_run(&mut s, block_type, rows, tile, &format!("{run}u"));
        }
    } else {
        s.push_str("    for (var sub = 0u; sub < SUB_BLOCKS; sub++) {\n");
        push_run(&mut s, block_type, rows, tile, "sub");
        s.push_str("    }\n");
    }
    push_sums_into_acc(&mut s, rows, tile);
    s.push_str("}\n");
    s
}

/// `run_dot(block, run, x4, acc)`: adds run `run` of block `block` of each of the group's
/// rows times the tile's x to `acc[row * TOKEN_TILE + token]`.
fn run_dot_source(block_type: BlockType, rows: u32, tile: u32) -> String {
    let mut s = format!(
        "fn run_dot(block: u32, run: u32, x4: u32, acc: ptr<function, array<vec4<f32>, {}>>) {{\n",
        rows * tile
    );
    push_sums(&mut s, rows, tile);
    push_run(&mut s, block_type, rows, tile, "run");
    push_sums_into_acc(&mut s, rows, tile);
    s.push_str("}\n");
    s
}

/// `var s{row}_{token}`: the sums of one block or run, kept in registers.
fn push_sums(s: &mut String, rows: u32, tile: u32) {
    use std::fmt::Write;
    for r in 0..rows {
        for t in 0..tile {
            let _ = writeln!(s, "    var s{r}_{t} = vec4<f32>(0.0);");
        }
    }
}

/// Adds the sums to `acc[row * TOKEN_TILE + token]`.
fn push_sums_into_acc(s: &mut String, rows: u32, tile: u32) {
    use std::fmt::Write;
    for r in 0..rows {
        for t in 0..tile {
            let _ = writeln!(s, "    (*acc)[{}] += s{r}_{t};", r * tile + t);
        }
    }
}

/// One run (`run`: a WGSL expression) of a block for every row and token: its groups of four
/// weights spelled out, each weight dequantized once and each x loaded once, added to the
/// sums.
fn push_run(s: &mut String, block_type: BlockType, rows: u32, tile: u32, run: &str) {
    use std::fmt::Write;
    let groups = block_type.block_elements() / 4 / block_type.sub_blocks();
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
