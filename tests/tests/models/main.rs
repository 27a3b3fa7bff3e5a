//! Model files: `dpo fetch` from a local hub, `dpo export` to GGUF and HF directories, checked by llama.cpp's reader and by greedy replies.

mod dpo_export;
mod dpo_fetch;
mod export_real_model;
