//! The small kernels of a transformer step besides the matrix products (which also add the
//! residual connections): RMSNorm, SwiGLU, NeoX RoPE with the KV-cache append, and causal
//! attention (`kernels/*.wgsl`). Each works on every token of a step; how many workgroups it
//! needs follows from the step's token count, which is known when the step is recorded.

use std::collections::HashMap;

use wgpu::util::DeviceExt;

use super::gpu_context::GpuContext;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VectorKernel {
    RmsNorm,
    SiluMul,
    RopeKvStore,
    Attention,
}

impl VectorKernel {
    const ALL: [VectorKernel; 4] = [
        VectorKernel::RmsNorm,
        VectorKernel::SiluMul,
        VectorKernel::RopeKvStore,
        VectorKernel::Attention,
    ];

    /// The kernel's WGSL; attention is compiled for the model's head dimension and a
    /// workgroup size.
    fn source(self, head_dim: usize, attention_workgroup: usize) -> String {
        let source = match self {
            VectorKernel::RmsNorm => include_str!("kernels/rms_norm.wgsl"),
            VectorKernel::SiluMul => include_str!("kernels/silu_mul.wgsl"),
            VectorKernel::RopeKvStore => include_str!("kernels/rope_kv_store.wgsl"),
            VectorKernel::Attention => include_str!("kernels/attention.wgsl"),
        };
        match self {
            VectorKernel::Attention => {
                format!(
                    "const HEAD_DIM4: u32 = {}u;\nconst WORKGROUP: u32 = {attention_workgroup}u;\n{source}",
                    head_dim / 4
                )
            }
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
}

impl Grid {
    fn size(self, tokens: u32) -> [u32; 2] {
        match self {
            Grid::Fixed(n) => [n, 1],
            Grid::PerToken => [tokens, 1],
            Grid::Elements { per_token, size } => [(per_token * tokens).div_ceil(size), 1],
            Grid::EachToken { x } => [x, tokens],
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
}

impl VectorKernels {
    /// The kernels for a model whose attention heads have `head_dim` (a multiple of 4) values,
    /// with attention in workgroups of `attention_workgroup` invocations (raised to one per
    /// four values of a head where heads are larger).
    pub fn new(ctx: &GpuContext, head_dim: usize, attention_workgroup: u32) -> Self {
        let attention_workgroup =
            (attention_workgroup as usize).max((head_dim / 4).next_power_of_two());
        let pipelines = VectorKernel::ALL
            .iter()
            .map(|&kernel| {
                let label = format!("{kernel:?}");
                let pipeline =
                    ctx.compute_pipeline(&label, &kernel.source(head_dim, attention_workgroup));
                (kernel, pipeline)
            })
            .collect();
        Self { pipelines }
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

    /// Records a prepared kernel for a step of `step_tokens` tokens.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>, op: &PreparedOp, step_tokens: u32) {
        let [x, y] = op.grid.size(step_tokens);
        pass.set_pipeline(&self.pipelines[&op.kernel]);
        pass.set_bind_group(0, &op.bind_group, &[]);
        pass.dispatch_workgroups(x.max(1), y.max(1), 1);
    }
}
