//! DPO training (in progress): a differentiable Qwen2 (`qwen2.rs`), LoRA adapters (`lora.rs`)
//! and weights from a GGUF (`gguf_import.rs`). The trainer loop, losses, data and `dpo train`
//! build on these.

pub mod gguf_import;
pub mod lora;
pub mod qwen2;

pub use lora::LoraConfig;
pub use qwen2::{Qwen2, Qwen2Config};
