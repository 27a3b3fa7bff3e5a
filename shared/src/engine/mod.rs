//! The wgpu inference engine (WGSL kernels), the same code on native (Vulkan / Metal / DX12)
//! and in the browser (WebGPU). Weights stay in their GGUF block formats on the GPU and are
//! dequantized inside the kernels.
//!
//! This first part holds the device setup and the quantized matrix-vector kernels; the forward
//! pass, KV cache and sampling build on them.

pub mod block_type;
pub mod gpu_context;
pub mod matvec;
pub mod quantized_matrix;
pub mod readback;

pub use block_type::BlockType;
pub use gpu_context::{EngineError, GpuContext};
pub use matvec::MatVecKernels;
pub use quantized_matrix::QuantizedMatrix;
