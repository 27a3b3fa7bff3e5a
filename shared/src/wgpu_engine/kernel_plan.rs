//! Which kernel variants an adapter gets. CPU drivers (lavapipe natively, SwiftShader as the
//! browser's fallback) run a workgroup's invocations as SIMD lanes on a few cores and pay for
//! every barrier; GPUs have thousands of threads and want them all busy. The choices were
//! measured on both (see `MatmulPlan`'s constants); tests and benchmarks may pick any plan on
//! any adapter.

use super::gpu_context::GpuContext;
use super::matmul_plan::MatmulPlan;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelPlan {
    pub matmul: MatmulPlan,
    /// Invocations per attention workgroup (a power of two, at least 64). A decode step has
    /// one attention workgroup per head: 256 on GPUs (on an H200, Qwen2.5-1.5B shapes, 512
    /// tokens of context, decode went from 69 to 137 tok/s with the values' sum also split
    /// by position), 64 on CPU drivers.
    pub attention_workgroup: u32,
    /// Keys and values cached in f16 (half the memory and the attention's reads; the adapter
    /// must have shader-f16), else f32.
    pub kv_cache_f16: bool,
    /// A decode step's attention over more than `ATTENTION_SLICE_POSITIONS` positions runs
    /// in slices (heads × slices workgroups) and a merge, instead of one workgroup per head:
    /// GPUs, with many more cores than heads.
    pub split_attention: bool,
}

impl KernelPlan {
    pub const CPU_DRIVER: Self = Self {
        matmul: MatmulPlan::CPU_DRIVER,
        attention_workgroup: 64,
        kv_cache_f16: false,
        split_attention: false,
    };
    pub const BROWSER_CPU_FALLBACK: Self = Self {
        matmul: MatmulPlan::BROWSER_CPU_FALLBACK,
        attention_workgroup: 64,
        kv_cache_f16: false,
        split_attention: false,
    };
    pub const GPU: Self = Self {
        matmul: MatmulPlan::GPU,
        attention_workgroup: 256,
        kv_cache_f16: false,
        split_attention: true,
    };

    /// The plan for the context's adapter: a software adapter (wgpu reports the browser's
    /// fallback adapter, SwiftShader, as a CPU too) or a GPU, whose prompt tiles and KV
    /// cache are f16 where it has shader-f16 and whose row sums use subgroups where it has
    /// them.
    pub fn for_adapter(ctx: &GpuContext) -> Self {
        let info = &ctx.adapter_info;
        match (info.backend, info.device_type) {
            (wgpu::Backend::BrowserWebGpu, wgpu::DeviceType::Cpu) => Self::BROWSER_CPU_FALLBACK,
            (_, wgpu::DeviceType::Cpu) => Self::CPU_DRIVER,
            _ => Self {
                matmul: MatmulPlan::gpu_for(ctx),
                kv_cache_f16: ctx.has_shader_f16,
                ..Self::GPU
            },
        }
    }
}
