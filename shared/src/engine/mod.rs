//! The wgpu inference engine (WGSL kernels), the same code on native (Vulkan / Metal / DX12)
//! and in the browser (WebGPU). Weights stay in their GGUF block formats on the GPU and are
//! dequantized inside the kernels.
//!
//! So far: device setup, quantized matrix-vector kernels for every GGUF block type, the small
//! vector kernels, and a one-token-per-step Qwen2 decoder with a GPU KV cache. Batched prefill,
//! GPU-side sampling and streaming generation build on these.

pub mod block_type;
pub mod gpu_context;
pub mod matvec;
pub mod quantized_matrix;
pub mod qwen2_decoder;
pub mod readback;
pub mod vector_kernels;

pub use block_type::BlockType;
pub use gpu_context::{EngineError, GpuContext};
pub use matvec::MatVecKernels;
pub use quantized_matrix::QuantizedMatrix;
pub use qwen2_decoder::Qwen2Decoder;
