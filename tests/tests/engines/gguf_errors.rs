//! Reading GGUF headers: a valid file yields validated hyperparameters; a truncated, corrupt
//! or incomplete file is an error naming the byte offset, key or tensor — never a panic.

use std::io::Cursor;

use candle_core::quantized::gguf_file::Value;
use flywheel_tests::real_model;
use flywheel_tests::tiny_gguf::{self, TinyQwen2};
use shared::{Architecture, GgufError, GgufModel, ModelText, TextTokenizer};

fn read(bytes: &[u8]) -> Result<GgufModel, GgufError> {
    GgufModel::read(&mut Cursor::new(bytes), "test.gguf")
}

#[test]
fn real_model_hyperparameters() {
    let gguf = GgufModel::open(&real_model()).unwrap();
    let hp = &gguf.hyperparameters;
    assert_eq!(hp.architecture, Architecture::Qwen2);
    assert_eq!(
        (hp.block_count, hp.embedding_length, hp.feed_forward_length),
        (24, 896, 4864)
    );
    assert_eq!((hp.head_count, hp.head_count_kv, hp.head_dim), (14, 2, 64));
    assert_eq!(hp.context_length, 32768);
    assert_eq!(hp.rope_freq_base, 1_000_000.0);
    assert_eq!(hp.rms_norm_eps, 1e-6);
    assert_eq!(hp.vocab_size, 151936);
    assert!(!hp.tied_embeddings, "the 0.5B GGUF ships output.weight");
    assert!(gguf.chat_template().unwrap().contains("<|im_start|>"));
}

#[test]
fn tiny_model_reads_and_tokenizes() {
    let gguf = read(&TinyQwen2::default().to_bytes()).unwrap();
    assert_eq!(gguf.hyperparameters.block_count, tiny_gguf::BLOCKS);
    assert_eq!(
        gguf.hyperparameters.vocab_size,
        tiny_gguf::vocabulary().len()
    );
    assert!(gguf.hyperparameters.tied_embeddings);
    let tokenizer = TextTokenizer::from_gguf_metadata(gguf.metadata(), "tiny").unwrap();
    let ids = tokenizer.encode("hello<|im_end|>").unwrap();
    // "he" and "ll" are merges, byte tokens are ordered by byte value, the special token is one id.
    assert_eq!(ids, vec![256, 257, u32::from(b'o'), 260]);
    assert_eq!(tokenizer.decode(&ids).unwrap(), "hello<|im_end|>");
    // No chat template in the file: ChatML.
    let text = ModelText::from_gguf(&gguf).unwrap();
    assert!(text.template.is_chatml_fallback);
}

#[test]
fn llama_architecture_reads_too() {
    let gguf = read(&TinyQwen2::default().as_llama().to_bytes()).unwrap();
    let hp = &gguf.hyperparameters;
    assert_eq!(hp.architecture, Architecture::Llama);
    assert_eq!(
        (hp.head_count, hp.head_count_kv),
        (tiny_gguf::HEADS, tiny_gguf::KV_HEADS)
    );
    // Llama files may omit head_count_kv: it then equals head_count.
    let gguf = read(
        &TinyQwen2::default()
            .as_llama()
            .without_key("llama.attention.head_count_kv")
            .to_bytes(),
    );
    let error = gguf.unwrap_err();
    assert!(error.to_string().contains("blk.0.attn_k.weight"), "{error}");
}

#[test]
fn wrong_magic_is_reported_at_the_start() {
    let error = read(b"NOTAGGUFFILE at all").unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error, GgufError::Corrupt { offset, .. } if offset <= 4),
        "{message}"
    );
    assert!(message.contains("test.gguf"), "{message}");
}

#[test]
fn truncated_header_names_a_byte_offset() {
    let bytes = TinyQwen2::default().to_bytes();
    for cut in [10, 100, 1000, 2500] {
        let error = read(&bytes[..cut]).unwrap_err();
        match &error {
            GgufError::Corrupt { offset, .. } => assert!(*offset <= cut as u64, "{error}"),
            other => panic!("cut at {cut}: expected a corrupt-file error, got {other}"),
        }
        assert!(error.to_string().contains("byte offset"));
    }
}

#[test]
fn truncated_tensor_data_names_the_tensor() {
    let bytes = TinyQwen2::default().to_bytes();
    let error = read(&bytes[..bytes.len() - 100]).unwrap_err();
    assert!(
        matches!(error, GgufError::TensorOutOfBounds { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("truncated"), "{error}");
}

#[test]
fn missing_key_is_named() {
    let bytes = TinyQwen2::default()
        .without_key("qwen2.attention.head_count")
        .to_bytes();
    let error = read(&bytes).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("`qwen2.attention.head_count` is missing"),
        "{error}"
    );
}

#[test]
fn inconsistent_values_are_named() {
    let bytes = TinyQwen2::default()
        .with_key("qwen2.attention.head_count_kv", Value::U32(3))
        .to_bytes();
    let error = read(&bytes).unwrap_err();
    assert!(
        error.to_string().contains("qwen2.attention.head_count_kv"),
        "{error}"
    );

    let bytes = TinyQwen2::default()
        .with_key("qwen2.block_count", Value::String("two".into()))
        .to_bytes();
    let error = read(&bytes).unwrap_err();
    assert!(error.to_string().contains("qwen2.block_count"), "{error}");
}

#[test]
fn unknown_architecture_is_named() {
    let bytes = TinyQwen2::default()
        .with_key("general.architecture", Value::String("mamba".into()))
        .to_bytes();
    let error = read(&bytes).unwrap_err();
    assert!(
        error.to_string().contains("`mamba` is not supported"),
        "{error}"
    );
}

#[test]
fn missing_tensor_is_named() {
    let bytes = TinyQwen2::default()
        .without_tensor("blk.1.ffn_up.weight")
        .to_bytes();
    let error = read(&bytes).unwrap_err();
    assert!(error.to_string().contains("blk.1.ffn_up.weight"), "{error}");
}

#[test]
fn tokenizer_metadata_errors_are_named() {
    let bytes = TinyQwen2::default()
        .with_key("tokenizer.ggml.pre", Value::String("mystery".into()))
        .to_bytes();
    let gguf = read(&bytes).unwrap();
    let error = TextTokenizer::from_gguf_metadata(gguf.metadata(), "tiny")
        .err()
        .unwrap();
    assert!(error.to_string().contains("`mystery`"), "{error}");

    let bytes = TinyQwen2::default()
        .without_key("tokenizer.ggml.merges")
        .to_bytes();
    let gguf = read(&bytes).unwrap();
    let error = TextTokenizer::from_gguf_metadata(gguf.metadata(), "tiny")
        .err()
        .unwrap();
    assert!(
        error.to_string().contains("tokenizer.ggml.merges"),
        "{error}"
    );
}
