//! The inference engines against their references: candle's `quantized_qwen2` logits, llama.cpp's tokenizer ids and greedy replies, the matmul kernels against a CPU reference, GGUF errors, and `dpo chat`.

mod chat_template_parity;
mod cpu_engine;
mod cpu_simd_levels;
mod dpo_chat_cli;
mod gguf_errors;
mod greedy_parity;
mod matmul_kernels;
mod tokenizer_parity;
mod wgpu_qwen2_engine;
