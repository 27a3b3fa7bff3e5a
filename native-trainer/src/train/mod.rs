//! DPO training (in progress): a differentiable Qwen2 (`qwen2.rs`), LoRA adapters (`lora.rs`),
//! weights from a GGUF (`gguf_import.rs`) and TRL's DPO losses (`dpo_loss.rs`). The trainer
//! loop, data and `dpo train` build on these.

pub mod dpo_loss;
pub mod gguf_import;
pub mod lora;
pub mod qwen2;

pub use lora::LoraConfig;
pub use qwen2::{Qwen2, Qwen2Config};
