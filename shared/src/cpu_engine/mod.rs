//! The CPU inference engine, for machines (and browsers) without a usable GPU: the same Qwen2
//! GGUFs and block types as the wgpu engine, weights kept in their blocks and multiplied in
//! 8-bit integers against activations quantized per block (as llama.cpp's CPU kernels do),
//! vectorized by the compiler (SIMD128 in wasm32 builds with `+simd128`, SSE/AVX or NEON
//! natively). candle's `quantized_qwen2` is the reference it is tested against.

pub mod block_dot;
mod block_fields;
pub mod cpu_qwen2;
pub mod q8_activations;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128_dots;

pub use cpu_qwen2::{CpuQwen2Weights, CpuSequence};
