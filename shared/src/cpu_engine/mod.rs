//! The CPU inference engine, for machines (and browsers) without a usable GPU: the same Qwen2
//! GGUFs and block types as the wgpu engine, weights kept in their blocks and multiplied in
//! 8-bit integers against activations quantized per block (as llama.cpp's CPU kernels do),
//! in SIMD chosen at run time (`simd_level`: AVX-512 VNNI or AVX2 on x86-64, SIMD128 in wasm32
//! builds with `+simd128`, else what the compiler vectorizes), natively over several threads
//! (`row_threads`). Every level and thread count gives the same bits. candle's
//! `quantized_qwen2` is the reference it is tested against.

pub mod block_dot;
mod block_fields;
pub mod cpu_qwen2;
pub mod q8_activations;
mod row_threads;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod simd128_dots;
pub mod simd_level;
pub mod unpacked_block;
#[cfg(target_arch = "x86_64")]
mod x86_dots;

pub use cpu_qwen2::{CpuQwen2Weights, CpuSequence, CpuSettings};
pub use simd_level::SimdLevel;
