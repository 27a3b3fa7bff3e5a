//! Which matmul kernels an adapter gets: how a product's rows are spread over invocations
//! (`MatmulLayout`: whole rows per invocation on CPU drivers, lanes per row or workgroup tiles
//! on GPUs) and the plan that picks a layout and token tile for decode and for batched steps
//! (`MatmulPlan`), with what the adapter must offer for it.

use super::gpu_context::GpuContext;
use crate::generation::EngineError;

/// Invocations per workgroup (`@workgroup_size` in the kernels).
pub(super) const WORKGROUP_SIZE: usize = 64;

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
    pub(super) fn rows_per_group(self, row_pairs: bool) -> usize {
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
    pub(super) fn rows_per_workgroup(self, row_pairs: bool) -> usize {
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
    pub(super) fn for_step(self, batched: bool) -> (MatmulLayout, u32) {
        if batched {
            (self.batched, self.batched_tile)
        } else {
            (self.decode, 1)
        }
    }
}
