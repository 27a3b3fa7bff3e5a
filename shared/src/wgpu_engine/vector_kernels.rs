//! The small kernels of a transformer step besides the matrix products (which also add the
//! residual connections): RMSNorm, SwiGLU, NeoX RoPE with the KV-cache append, and causal
//! attention, whole or split by position and merged (`kernels/*.wgsl`). Each works on every
//! token of a step; how many workgroups it needs follows from the step's position and token
//! count, which are known when the step is recorded.

use std::collections::HashMap;

use wgpu::util::DeviceExt;

use super::gpu_context::GpuContext;
use super::kernel_plan::KernelPlan;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VectorKernel {
    RmsNorm,
    SiluMul,
    RopeKvStore,
    Attention,
    /// A decode step's attention in slices of `ATTENTION_SLICE_POSITIONS` positions.
    AttentionSplit,
    /// Merges `AttentionSplit`'s slices.
    AttentionMerge,
}

/// Positions per slice of a split attention (`SPLIT_POSITIONS` in the kernels).
pub const ATTENTION_SLICE_POSITIONS: u32 = 64;

/// A step's first position and token count, which size its kernels' grids.
#[derive(Debug, Clone, Copy)]
pub struct StepShape {
    pub position: u32,
    pub tokens: u32,
}

impl VectorKernel {
    const ALL: [VectorKernel; 6] = [
        VectorKernel::RmsNorm,
        VectorKernel::SiluMul,
        VectorKernel::RopeKvStore,
        VectorKernel::Attention,
        VectorKernel::AttentionSplit,
        VectorKernel::AttentionMerge,
    ];

    /// The kernel's WGSL; attention is compiled for the model's head dimension and a
    /// workgroup size, and the kernels that touch the KV cache for its element type.
    fn source(self, head_dim: usize, attention_workgroup: usize, kv_cache_f16: bool) -> String {
        let source = match self {
            VectorKernel::RmsNorm => include_str!("kernels/rms_norm.wgsl"),
            VectorKernel::SiluMul => include_str!("kernels/silu_mul.wgsl"),
            VectorKernel::RopeKvStore => include_str!("kernels/rope_kv_store.wgsl"),
            VectorKernel::Attention => include_str!("kernels/attention.wgsl"),
            VectorKernel::AttentionSplit => include_str!("kernels/attention_split.wgsl"),
            VectorKernel::AttentionMerge => include_str!("kernels/attention_merge.wgsl"),
        };
        let kv_element = if kv_cache_f16 {
            "enable f16;\nalias kv_t = f16;\n"
        } else {
            "alias kv_t = f32;\n"
        };
        let shapes = format!(
            "const HEAD_DIM4: u32 = {}u;\nconst WORKGROUP: u32 = {attention_workgroup}u;\n\
             const SPLIT_POSITIONS: u32 = {ATTENTION_SLICE_POSITIONS}u;\n",
            head_dim / 4
        );
        match self {
            VectorKernel::Attention | VectorKernel::AttentionSplit => format!(
                "{kv_element}{shapes}{}\n{source}",
                include_str!("kernels/attention_common.wgsl")
            ),
            VectorKernel::AttentionMerge => format!("{shapes}{source}"),
            VectorKernel::RopeKvStore => format!("{kv_element}{source}"),
            _ => source.to_string(),
        }
    }
}

/// One binding of a kernel, in binding order.
pub enum Binding<'a> {
    Buffer(&'a wgpu::Buffer),
    /// A uniform created from these bytes (the kernel's `Params`).
    Params(Vec<u8>),
}

/// A kernel's grid as a function of the step's token count.
#[derive(Debug, Clone, Copy)]
pub enum Grid {
    /// Always this many workgroups.
    Fixed(u32),
    /// One workgroup per token.
    PerToken,
    /// One invocation per element, `per_token` elements per token, in workgroups of `size`.
    Elements { per_token: u32, size: u32 },
    /// `x` workgroups for each token (grid y).
    EachToken { x: u32 },
    /// `x` workgroups for each slice of `ATTENTION_SLICE_POSITIONS` positions of the context
    /// up to the step's last token (grid y).
    EachContextSlice { x: u32 },
}

impl Grid {
    fn size(self, step: StepShape) -> [u32; 2] {
        let tokens = step.tokens;
        match self {
            Grid::Fixed(n) => [n, 1],
            Grid::PerToken => [tokens, 1],
            Grid::Elements { per_token, size } => [(per_token * tokens).div_ceil(size), 1],
            Grid::EachToken { x } => [x, tokens],
            Grid::EachContextSlice { x } => [
                x,
                (step.position + tokens).div_ceil(ATTENTION_SLICE_POSITIONS),
            ],
        }
    }
}

/// A kernel with its buffers bound and its grid.
pub struct PreparedOp {
    kernel: VectorKernel,
    bind_group: wgpu::BindGroup,
    grid: Grid,
}

pub struct VectorKernels {
    pipelines: HashMap<VectorKernel, wgpu::ComputePipeline>,
    /// Whether the cache these kernels read and write holds f16 (else f32).
    pub kv_cache_f16: bool,
    /// Whether long decode steps split their attention (`KernelPlan::split_attention`).
    pub split_attention: bool,
}

impl VectorKernels {
    /// The kernels for a model whose attention heads have `head_dim` (a multiple of 4) values,
    /// as `plan` says: attention in workgroups of `attention_workgroup` invocations (raised
    /// to one per four values of a head where heads are larger), the KV cache in f16 if
    /// `kv_cache_f16` (the adapter must have shader-f16).
    pub fn new(ctx: &GpuContext, head_dim: usize, plan: &KernelPlan) -> Self {
        let kv_cache_f16 = plan.kv_cache_f16;
        assert!(
            !kv_cache_f16 || ctx.has_shader_f16,
            "an f16 KV cache needs an adapter with shader-f16"
        );
        let attention_workgroup =
            (plan.attention_workgroup as usize).max((head_dim / 4).next_power_of_two());
        // The split attention only where the plan uses it (software adapters compile slowly).
        let split = [VectorKernel::AttentionSplit, VectorKernel::AttentionMerge];
        let pipelines = VectorKernel::ALL
            .iter()
            .filter(|kernel| plan.split_attention || !split.contains(kernel))
            .map(|&kernel| {
                let label = format!("{kernel:?}");
                let pipeline = ctx.compute_pipeline(
                    &label,
                    &kernel.source(head_dim, attention_workgroup, kv_cache_f16),
                );
                (kernel, pipeline)
            })
            .collect();
        Self {
            pipelines,
            kv_cache_f16,
            split_attention: plan.split_attention,
        }
    }

    /// Binds `kernel` to `bindings` (binding 0, 1, …), dispatched over `grid`.
    pub fn prepare(
        &self,
        ctx: &GpuContext,
        kernel: VectorKernel,
        bindings: &[Binding<'_>],
        grid: Grid,
    ) -> PreparedOp {
        // A uniform for every `Params`; the bind group then refers to it like to any buffer.
        let uniforms: Vec<Option<wgpu::Buffer>> = bindings
            .iter()
            .map(|binding| match binding {
                Binding::Params(bytes) => Some(ctx.device.create_buffer_init(
                    &wgpu::util::BufferInitDescriptor {
                        label: Some("params"),
                        contents: bytes,
                        usage: wgpu::BufferUsages::UNIFORM,
                    },
                )),
                Binding::Buffer(_) => None,
            })
            .collect();
        let buffers: Vec<&wgpu::Buffer> = bindings
            .iter()
            .zip(&uniforms)
            .map(|(binding, uniform)| match binding {
                Binding::Buffer(buffer) => *buffer,
                Binding::Params(_) => uniform
                    .as_ref()
                    .expect("a uniform was made for every Params"),
            })
            .collect();
        let layout = self.pipelines[&kernel].get_bind_group_layout(0);
        let bind_group = ctx.bind_buffers("vector op", &layout, &buffers);
        PreparedOp {
            kernel,
            bind_group,
            grid,
        }
    }

    /// Records a prepared kernel for a step of this shape.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, op: &PreparedOp, step: StepShape) {
        let [x, y] = op.grid.size(step);
        pass.set_pipeline(&self.pipelines[&op.kernel]);
        pass.set_bind_group(0, &op.bind_group, &[]);
        pass.dispatch_workgroups(x.max(1), y.max(1), 1);
    }
}
