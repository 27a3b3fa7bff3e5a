//! DPO training (in progress): a differentiable Qwen2 (`qwen2.rs`) and its weights from a GGUF
//! (`gguf_import.rs`). The trainer loop, losses, data and `dpo train` build on these.

pub mod gguf_import;
pub mod qwen2;

pub use qwen2::{Qwen2, Qwen2Config};
