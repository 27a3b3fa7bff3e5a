//! `dpo train` and its pieces against TRL and transformers: data formats, the DPO losses, the Qwen2 model, LoRA, mixed precision, TRL's log-probs and metrics step by step, training from stored votes, and the CLI.

mod dpo_train_cli;
mod dpo_train_real_model;
mod train_data;
mod train_dpo_loss;
mod train_from_votes;
mod train_kto_parity;
mod train_lora;
mod train_mixed_precision;
mod train_qwen2_model;
mod train_trl_parity;
