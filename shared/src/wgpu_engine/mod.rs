//! The wgpu inference engine (WGSL kernels), the same code on native (Vulkan / Metal / DX12)
//! and in the browser (WebGPU). Weights stay in their GGUF block formats on the GPU and are
//! dequantized inside the kernels.
//!
//! `Qwen2Weights` is loaded once; any number of `Qwen2Sequence`s run on it, each with its own
//! KV cache. A sequence runs a prompt in batched steps and a reply one token per step, picks
//! the sampler's candidates on the GPU, and streams tokens through `crate::generation`'s
//! `TokenStream`.

pub mod gpu_block_layout;
pub mod gpu_context;
pub mod kernel_plan;
pub mod matmul_plan;
pub mod matmul_plan_name;
pub mod matmul_source;
pub mod quantized_matmul;
pub mod quantized_matrix;
pub mod qwen2_graph;
pub mod qwen2_sequence;
pub mod qwen2_weights;
pub mod readback;
pub mod sampling_kernels;
pub mod single_product;
pub mod vector_kernels;

pub use gpu_block_layout::GpuBlockLayout;
pub use gpu_context::GpuContext;
pub use kernel_plan::KernelPlan;
pub use matmul_plan::{MatmulLayout, MatmulPlan};
pub use matmul_plan_name::PlanNameError;
pub use quantized_matmul::{
    InputNorm, MatmulOperands, OutputColumns, QuantizedMatmulKernels, TokenCount,
};
pub use quantized_matrix::QuantizedMatrix;
pub use qwen2_sequence::{INITIAL_POSITIONS, MAX_STEP_TOKENS, Qwen2Sequence};
pub use qwen2_weights::{FeedForwardIn, QkvProjection, Qwen2Weights};
pub use single_product::{ProductInputs, run_single_product};
