//! DPO training (in progress): a differentiable Qwen2 (`qwen2.rs`), LoRA adapters (`lora.rs`),
//! weights from a GGUF (`gguf_import.rs`), TRL's DPO losses (`dpo_loss.rs`) and its
//! tokenization of preference rows (`pair_tokens.rs`), batches and step metrics
//! (`dpo_batch.rs`), and the optimiser as transformers' Trainer runs it (`optimization.rs`).
//! The trainer loop, data files and `dpo train` build on these.

pub mod dpo_batch;
pub mod dpo_loss;
pub mod gguf_import;
pub mod lora;
pub mod optimization;
pub mod pair_tokens;
pub mod qwen2;

pub use lora::LoraConfig;
pub use qwen2::{Qwen2, Qwen2Config};
