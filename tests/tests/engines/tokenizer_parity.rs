//! The GGUF-built tokenizer gives exactly llama.cpp's ids on the real model, for ASCII,
//! whitespace runs, accents, CJK, emoji, code, digits and special tokens — and decodes back.

use flywheel_tests::{fixture, real_model};
use shared::{GgufModel, TextTokenizer};

fn real_tokenizer() -> TextTokenizer {
    let gguf = GgufModel::open(&real_model()).expect("real model header");
    TextTokenizer::from_gguf_metadata(gguf.metadata(), &gguf.source_name).expect("tokenizer")
}

#[test]
fn ids_match_llama_cpp_on_every_fixture_text() {
    let tokenizer = real_tokenizer();
    let cases = fixture("tokenizer_ids.json");
    let cases = cases["cases"].as_array().unwrap();
    assert!(cases.len() >= 15);
    let mut mismatches = Vec::new();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let expected: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        let ids = tokenizer.encode(text).unwrap();
        if ids != expected {
            mismatches.push(format!(
                "{text:?}\n  ours:      {ids:?}\n  llama.cpp: {expected:?}"
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "tokenizer mismatches:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn tokenizer_json_form_gives_the_same_ids() {
    let from_gguf = real_tokenizer();
    let json = from_gguf.to_tokenizer_json().unwrap();
    let from_json =
        TextTokenizer::from_tokenizer_json(json.as_bytes(), "<|im_end|>", "tokenizer.json")
            .unwrap();
    assert_eq!(from_json.eos_token_id, 151645);
    let cases = fixture("tokenizer_ids.json");
    for case in cases["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let expected: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        assert_eq!(from_json.encode(text).unwrap(), expected, "{text:?}");
    }
    let error =
        TextTokenizer::from_tokenizer_json(b"{not json", "<|im_end|>", "broken/tokenizer.json")
            .err()
            .unwrap();
    assert!(
        error.to_string().contains("broken/tokenizer.json"),
        "{error}"
    );
}

#[test]
fn decoding_gives_back_the_text() {
    let tokenizer = real_tokenizer();
    let cases = fixture("tokenizer_ids.json");
    for case in cases["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let ids = tokenizer.encode(text).unwrap();
        assert_eq!(tokenizer.decode(&ids).unwrap(), text);
    }
}

#[test]
fn special_tokens_and_eos_have_qwen_ids() {
    let tokenizer = real_tokenizer();
    assert_eq!(tokenizer.eos_token_id, 151645, "EOS must be <|im_end|>");
    assert_eq!(tokenizer.token_to_id("<|im_start|>"), Some(151644));
    assert_eq!(tokenizer.token_to_id("<|endoftext|>"), Some(151643));
    assert!(!tokenizer.add_bos, "Qwen2 prompts start without BOS");
    assert_eq!(tokenizer.vocab_size(), 151936);
}

#[test]
fn stream_decoder_holds_back_split_characters() {
    let tokenizer = real_tokenizer();
    let text = "Emoji 👨‍👩‍👧‍👦 ok, 北京";
    let ids = tokenizer.encode(text).unwrap();
    let mut decoder = tokenizer.stream_decoder();
    let mut streamed = String::new();
    for id in ids {
        if let Some(piece) = decoder.push(id).unwrap() {
            assert!(
                !piece.contains('\u{FFFD}'),
                "piece {piece:?} has a broken character"
            );
            streamed.push_str(&piece);
        }
    }
    assert_eq!(decoder.finish().unwrap(), None);
    assert_eq!(streamed, text);
}
