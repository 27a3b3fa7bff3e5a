//! A tokenizer's vocabulary as a GGUF's `tokenizer.ggml.*` arrays — the inverse of
//! `TextTokenizer::from_gguf_metadata`, laid out as llama.cpp's `convert_hf_to_gguf.py` lays
//! it out: one entry per embedding row (ids the tokenizer lacks become `[PAD<id>]`, type
//! UNUSED), added tokens CONTROL when special or special-looking (`<|…|>`) and USER_DEFINED
//! otherwise, merges as `"left right"`, and the pre-tokenizer named by its split regex.

use serde_json::Value;

use crate::tokenizer::{
    LLAMA3_PATTERN, QWEN2_PATTERN, TOKEN_TYPE_CONTROL, TOKEN_TYPE_NORMAL, TOKEN_TYPE_UNUSED,
    TOKEN_TYPE_USER_DEFINED, TextTokenizer, TokenizerError,
};

#[derive(Debug, Clone, PartialEq)]
pub struct GgufVocabulary {
    /// `tokenizer.ggml.tokens`, indexed by id.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type`.
    pub token_types: Vec<i32>,
    /// `tokenizer.ggml.merges`.
    pub merges: Vec<String>,
    /// `tokenizer.ggml.pre`.
    pub pre: String,
}

impl TextTokenizer {
    /// The vocabulary padded to `vocab_size` entries (the model's embedding rows).
    pub fn gguf_vocabulary(&self, vocab_size: usize) -> Result<GgufVocabulary, TokenizerError> {
        let json: Value = serde_json::from_str(&self.to_tokenizer_json()?)
            .map_err(|e| TokenizerError::Runtime(format!("tokenizer.json: {e}")))?;
        let invalid = |reason: String| TokenizerError::Build {
            source_name: "tokenizer.json".into(),
            reason,
        };
        let model = &json["model"];
        if model["type"] != "BPE" {
            return Err(invalid(format!(
                "model type {} is not BPE; GGUF export writes gpt2-style BPE vocabularies",
                model["type"]
            )));
        }
        let mut by_id: Vec<Option<(String, i32)>> = vec![None; vocab_size];
        let mut place = |id: u64, token: &str, token_type: i32| -> Result<(), TokenizerError> {
            let slot = by_id.get_mut(id as usize).ok_or_else(|| {
                invalid(format!(
                    "token `{token}` has id {id}, beyond the model's {vocab_size} embedding rows"
                ))
            })?;
            *slot = Some((token.to_string(), token_type));
            Ok(())
        };
        let vocab = model["vocab"]
            .as_object()
            .ok_or_else(|| invalid("model.vocab is not an object".into()))?;
        for (token, id) in vocab {
            let id = id
                .as_u64()
                .ok_or_else(|| invalid(format!("model.vocab: `{token}` has no integer id")))?;
            let token_type = if *token == format!("[PAD{id}]") {
                TOKEN_TYPE_UNUSED
            } else {
                TOKEN_TYPE_NORMAL
            };
            place(id, token, token_type)?;
        }
        for added in json["added_tokens"].as_array().into_iter().flatten() {
            let (Some(id), Some(token)) = (added["id"].as_u64(), added["content"].as_str()) else {
                return Err(invalid(format!(
                    "added_tokens: entry {added} lacks id or content"
                )));
            };
            let token_type = if added["special"] == true || looks_special(token) {
                TOKEN_TYPE_CONTROL
            } else {
                TOKEN_TYPE_USER_DEFINED
            };
            place(id, token, token_type)?;
        }
        let (tokens, token_types) = by_id
            .into_iter()
            .enumerate()
            .map(|(id, entry)| entry.unwrap_or((format!("[PAD{id}]"), TOKEN_TYPE_UNUSED)))
            .unzip();

        let merges = model["merges"]
            .as_array()
            .ok_or_else(|| invalid("model.merges is not an array".into()))?
            .iter()
            .enumerate()
            .map(|(i, merge)| match merge {
                Value::String(pair) => Ok(pair.clone()),
                Value::Array(pair) => match (pair.first(), pair.get(1), pair.len()) {
                    (Some(Value::String(a)), Some(Value::String(b)), 2) => Ok(format!("{a} {b}")),
                    _ => Err(invalid(format!(
                        "model.merges[{i}] is not a pair of tokens"
                    ))),
                },
                _ => Err(invalid(format!("model.merges[{i}] is not a merge"))),
            })
            .collect::<Result<Vec<_>, _>>()?;

        Ok(GgufVocabulary {
            tokens,
            token_types,
            merges,
            pre: pre_tokenizer_name(&json["pre_tokenizer"])?,
        })
    }
}

/// convert_hf_to_gguf's `does_token_look_special`.
fn looks_special(token: &str) -> bool {
    matches!(token, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (token.starts_with("<|") && token.ends_with("|>"))
        || (token.starts_with("<｜") && token.ends_with("｜>"))
        || (token.starts_with("<start_of_") && token.ends_with('>'))
}

/// llama.cpp's name for a tokenizer.json pre-tokenizer: by its split regex.
fn pre_tokenizer_name(pre_tokenizer: &Value) -> Result<String, TokenizerError> {
    let mut regexes = Vec::new();
    collect_split_regexes(pre_tokenizer, &mut regexes);
    match regexes.as_slice() {
        [] => Ok("gpt2".into()),
        [pattern] if *pattern == QWEN2_PATTERN => Ok("qwen2".into()),
        [pattern] if *pattern == LLAMA3_PATTERN => Ok("llama-bpe".into()),
        _ => Err(TokenizerError::UnsupportedPreTokenizer {
            source_name: "tokenizer.json".into(),
            pre: format!("split regex {regexes:?}"),
        }),
    }
}

fn collect_split_regexes<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
    match value {
        Value::Object(fields) => {
            if fields.get("type").and_then(Value::as_str) == Some("Split")
                && let Some(regex) = fields["pattern"]["Regex"].as_str()
            {
                found.push(regex);
            }
            fields
                .values()
                .for_each(|v| collect_split_regexes(v, found));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_split_regexes(v, found)),
        _ => {}
    }
}
