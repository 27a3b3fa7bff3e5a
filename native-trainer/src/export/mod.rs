//! `dpo export`: a trained (or any Qwen2) model as the files the rest of the flywheel and the
//! GGUF tools load — read the source (`export_source.rs`), choose each tensor's type
//! (`quant_preset.rs`), quantize (`tensor_quantizer.rs`) and write the GGUF
//! (`gguf_export.rs` over `gguf_writer.rs`), the HF directory (`hf_export.rs`) and its model
//! card (`model_card.rs`), then the serving manifest (`cli.rs`); what a version directory holds is
//! `version_files.rs`. `dpo publish` (`publish.rs`) serves an existing GGUF unchanged under a
//! manifest of its own.

pub mod cli;
pub mod export_source;
pub mod gguf_export;
pub mod gguf_writer;
pub mod hf_export;
pub mod model_card;
pub mod publish;
pub mod quant_preset;
pub mod tensor_quantizer;
pub mod version_files;

pub use quant_preset::QuantPreset;
