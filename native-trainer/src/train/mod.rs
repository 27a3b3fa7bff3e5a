//! DPO training, as TRL's DPOTrainer does it: a differentiable Qwen2 (`qwen2.rs`) with LoRA
//! adapters (`lora.rs`), the starting model from a GGUF or an HF directory (`base_model.rs`,
//! `gguf_import.rs`), the policy/reference pair and its saved form (`training_model.rs`),
//! preference files and their tokenization (`preference_file.rs`, `pair_tokens.rs`,
//! `preference_data.rs`), batches, losses and metrics (`dpo_batch.rs`, `dpo_loss.rs`,
//! `metric_window.rs`), the optimiser (`optimization.rs`), mixed precision (`precision.rs`),
//! settings under TRL's names
//! (`training_config.rs`), checkpoints (`checkpoint.rs`), the loop (`trainer.rs`) and the
//! `dpo train` / `dpo eval` commands (`cli.rs`).

pub mod base_model;
pub mod causal_softmax;
pub mod checkpoint;
pub mod cli;
pub mod cpu_tensor;
pub mod custom_backward;
pub mod dpo_batch;
pub mod dpo_loss;
pub mod fused_attention;
pub mod fused_linear;
pub mod fused_mlp;
pub mod fused_ops;
pub mod gguf_import;
pub mod kto_batch;
pub mod kto_loss;
pub mod labelled_data;
pub mod linear_product;
pub mod lora;
pub mod memory_profile;
pub mod metric_window;
pub mod optimization;
pub mod pair_tokens;
pub mod precision;
pub mod preference_data;
pub mod preference_file;
pub mod qwen2;
pub mod qwen2_config;
pub mod reference_sync;
pub mod rms_norm;
pub mod rope;
pub mod safetensors_reader;
pub mod token_layout;
pub mod tokenized_rows;
pub mod trainer;
pub mod training_config;
pub mod training_data;
pub mod training_model;
pub mod vector_math;
pub mod vocabulary_kernels;
pub mod vocabulary_logps;
pub mod vote_source;

pub use fused_ops::FusedOps;
pub use lora::LoraConfig;
pub use qwen2::Qwen2;
pub use qwen2_config::Qwen2Config;
