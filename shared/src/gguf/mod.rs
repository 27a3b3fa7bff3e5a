//! GGUF, the model file both engines, the trainer and the exporter read: the header checked
//! byte by byte before anything trusts it (`header_check.rs`), the metadata and hyperparameters
//! (`metadata.rs`), the vocabulary (`vocabulary.rs`), the block types of quantized tensors
//! (`block_type.rs`), tensors read by name for an engine (`tensor_reader.rs`), embedding rows
//! dequantized from their blocks (`embedding_rows.rs`), and the one table of Qwen2 tensor names
//! (`qwen2_tensors.rs`).

pub mod block_type;
pub mod embedding_rows;
pub mod header_check;
pub mod metadata;
pub mod qwen2_tensors;
pub mod tensor_reader;
pub mod vocabulary;

pub use block_type::BlockType;
pub use embedding_rows::EmbeddingRows;
pub use qwen2_tensors::Qwen2Tensor;
pub use tensor_reader::GgufTensors;
