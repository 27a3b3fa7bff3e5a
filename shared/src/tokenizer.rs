//! The text tokenizer, built from a GGUF's `tokenizer.ggml.*` metadata (gpt2 byte-level BPE
//! with the file's pre-tokenizer and special tokens) or from a `tokenizer.json`, with the same
//! code and the same regex engine on native and wasm32.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use crate::gguf::metadata::{GgufError, MetadataReader};

/// llama.cpp's `llama_token_type` values.
pub const TOKEN_TYPE_NORMAL: i32 = 1;
pub const TOKEN_TYPE_CONTROL: i32 = 3;
pub const TOKEN_TYPE_USER_DEFINED: i32 = 4;
pub const TOKEN_TYPE_UNUSED: i32 = 5;

/// The pre-tokenizer regex of Qwen2 (`tokenizer.ggml.pre = "qwen2"`), as in its tokenizer.json.
pub(crate) const QWEN2_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// The pre-tokenizer regex of Llama 3 (`llama-bpe`): like Qwen2 but digits in groups of 1–3.
pub(crate) const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error(transparent)]
    Gguf(#[from] GgufError),
    #[error("{source_name}: tokenizer model `{model}` is not supported (supported: gpt2)")]
    UnsupportedModel { source_name: String, model: String },
    #[error(
        "{source_name}: pre-tokenizer `{pre}` is not supported (supported: qwen2, llama-bpe, gpt2/default)"
    )]
    UnsupportedPreTokenizer { source_name: String, pre: String },
    #[error("{source_name}: {reason}")]
    Build { source_name: String, reason: String },
    #[error("tokenizer: {0}")]
    Runtime(String),
}

/// A tokenizer plus the ids a chat loop needs.
pub struct TextTokenizer {
    inner: Tokenizer,
    /// End of a turn / of generation (`<|im_end|>` for Qwen2.5-Instruct).
    pub eos_token_id: u32,
    pub bos_token_id: Option<u32>,
    /// Prepend BOS when encoding a whole prompt (`tokenizer.ggml.add_bos_token`).
    pub add_bos: bool,
}

impl TextTokenizer {
    /// Builds the tokenizer from GGUF metadata (`tokenizer.ggml.model = "gpt2"`).
    pub fn from_gguf_metadata(
        metadata: &HashMap<String, Value>,
        source_name: &str,
    ) -> Result<Self, TokenizerError> {
        let md = MetadataReader {
            source_name,
            metadata,
        };
        let build_error = |reason: String| TokenizerError::Build {
            source_name: source_name.to_string(),
            reason,
        };

        let model = md.string("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(TokenizerError::UnsupportedModel {
                source_name: source_name.into(),
                model: model.into(),
            });
        }
        let tokens = string_array(&md, "tokenizer.ggml.tokens")?;
        let merges = string_array(&md, "tokenizer.ggml.merges")?;
        let token_types: Vec<i32> = match metadata.get("tokenizer.ggml.token_type") {
            None => vec![1; tokens.len()],
            Some(_) => md
                .array("tokenizer.ggml.token_type")?
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.to_i32().map_err(|_| {
                        md.invalid(
                            "tokenizer.ggml.token_type",
                            format!("element {i} is not an i32"),
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        if token_types.len() != tokens.len() {
            return Err(md
                .invalid(
                    "tokenizer.ggml.token_type",
                    format!("{} entries for {} tokens", token_types.len(), tokens.len()),
                )
                .into());
        }

        let vocab: Vocab = tokens
            .iter()
            .enumerate()
            .map(|(id, token)| (token.to_string(), id as u32))
            .collect();
        let merges = merges
            .iter()
            .enumerate()
            .map(|(i, merge)| {
                merge
                    .split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| {
                        md.invalid(
                            "tokenizer.ggml.merges",
                            format!("entry {i} `{merge}` is not two space-separated tokens"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| build_error(format!("building BPE: {e}")))?;

        let pre = md
            .optional_string("tokenizer.ggml.pre")?
            .unwrap_or("default");
        let byte_level = ByteLevel::new(false, false, false);
        let (pattern, normalize_nfc) = match pre {
            "qwen2" => (Some(QWEN2_PATTERN), true),
            "llama-bpe" | "llama3" | "smaug-bpe" => (Some(LLAMA3_PATTERN), false),
            "gpt2" | "gpt-2" | "default" => (None, false),
            other => {
                return Err(TokenizerError::UnsupportedPreTokenizer {
                    source_name: source_name.into(),
                    pre: other.into(),
                });
            }
        };

        let mut tokenizer = Tokenizer::new(bpe);
        match pattern {
            Some(pattern) => {
                let split = Split::new(
                    SplitPattern::Regex(pattern.to_string()),
                    SplitDelimiterBehavior::Isolated,
                    false,
                )
                .map_err(|e| build_error(format!("pre-tokenizer regex: {e}")))?;
                tokenizer
                    .with_pre_tokenizer(Some(Sequence::new(vec![split.into(), byte_level.into()])));
            }
            None => {
                tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, false, true)));
            }
        }
        if normalize_nfc {
            // Qwen2's tokenizer.json normalizes to NFC before splitting.
            tokenizer
                .with_normalizer(Some(NFC))
                .map_err(|e| build_error(format!("normalizer: {e}")))?;
        }
        tokenizer.with_decoder(Some(ByteLevelDecoder::default()));

        let added: Vec<AddedToken> = tokens
            .iter()
            .zip(&token_types)
            .filter(|(_, ty)| matches!(**ty, TOKEN_TYPE_CONTROL | TOKEN_TYPE_USER_DEFINED))
            .map(|(token, ty)| {
                AddedToken::from(token.to_string(), *ty == TOKEN_TYPE_CONTROL).normalized(false)
            })
            .collect();
        tokenizer
            .add_special_tokens(added)
            .map_err(|e| build_error(format!("special tokens: {e}")))?;

        let token_id = |key: &str| -> Result<Option<u32>, GgufError> {
            match md.optional_count(key)? {
                Some(id) if id < tokens.len() => Ok(Some(id as u32)),
                Some(id) => Err(md.invalid(key, format!("id {id} is outside the vocabulary"))),
                None => Ok(None),
            }
        };
        let eos_token_id = token_id("tokenizer.ggml.eos_token_id")?.ok_or_else(|| {
            TokenizerError::Gguf(GgufError::MissingKey {
                source_name: source_name.into(),
                key: "tokenizer.ggml.eos_token_id".into(),
            })
        })?;
        let bos_token_id = token_id("tokenizer.ggml.bos_token_id")?;
        let add_bos = md
            .optional_bool("tokenizer.ggml.add_bos_token")?
            .unwrap_or(false);

        Ok(Self {
            inner: tokenizer,
            eos_token_id,
            bos_token_id,
            add_bos: add_bos && bos_token_id.is_some(),
        })
    }

    /// Loads a Hugging Face `tokenizer.json`. `eos_token` names the end-of-turn token
    /// (from tokenizer_config.json; `<|im_end|>` for Qwen2.5-Instruct).
    pub fn from_tokenizer_json(
        bytes: &[u8],
        eos_token: &str,
        source_name: &str,
    ) -> Result<Self, TokenizerError> {
        let inner = Tokenizer::from_bytes(bytes).map_err(|e| TokenizerError::Build {
            source_name: source_name.into(),
            reason: e.to_string(),
        })?;
        let eos_token_id = inner
            .token_to_id(eos_token)
            .ok_or_else(|| TokenizerError::Build {
                source_name: source_name.into(),
                reason: format!("eos token `{eos_token}` is not in the vocabulary"),
            })?;
        Ok(Self {
            inner,
            eos_token_id,
            bos_token_id: None,
            add_bos: false,
        })
    }

    /// The tokenizer in Hugging Face `tokenizer.json` form (what an exported HF directory ships).
    pub fn to_tokenizer_json(&self) -> Result<String, TokenizerError> {
        self.inner
            .to_string(false)
            .map_err(|e| TokenizerError::Runtime(e.to_string()))
    }

    /// Token ids of `text`. Special tokens written in the text (`<|im_start|>`) become their
    /// ids, as llama.cpp does with `parse_special`. BOS is prepended when the model asks for it.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let encoding = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| TokenizerError::Runtime(e.to_string()))?;
        let ids = encoding.get_ids();
        let mut out = Vec::with_capacity(ids.len() + 1);
        if self.add_bos
            && let Some(bos) = self.bos_token_id
        {
            out.push(bos);
        }
        out.extend_from_slice(ids);
        Ok(out)
    }

    /// Text of `ids`, special tokens included.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        self.inner
            .decode(ids, false)
            .map_err(|e| TokenizerError::Runtime(e.to_string()))
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The vocabulary entry of `id` (byte-level form for ordinary tokens).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Decoder for generated tokens that only emits text once it is valid UTF-8.
    pub fn stream_decoder(&self) -> StreamDecoder<'_> {
        StreamDecoder {
            tokenizer: self,
            ids: Vec::new(),
            emitted_len: 0,
        }
    }
}

/// Turns generated ids into text pieces as they arrive, holding back incomplete UTF-8
/// (an emoji split over several byte tokens) until it is complete.
/// How many leading token ids `a` and `b` share (cached-prefix reuse, prompt/completion
/// splits).
pub fn common_prefix_len(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

pub struct StreamDecoder<'a> {
    tokenizer: &'a TextTokenizer,
    ids: Vec<u32>,
    emitted_len: usize,
}

impl StreamDecoder<'_> {
    /// Adds one token; returns the new text it completes, if any.
    pub fn push(&mut self, id: u32) -> Result<Option<String>, TokenizerError> {
        self.ids.push(id);
        let text = self.tokenizer.decode(&self.ids)?;
        if text.ends_with('\u{FFFD}') {
            return Ok(None);
        }
        let new_text = text.get(self.emitted_len..).unwrap_or_default().to_string();
        self.emitted_len = text.len();
        Ok((!new_text.is_empty()).then_some(new_text))
    }

    /// Text still held back at the end of generation (an incomplete character shows as
    /// U+FFFD, as in llama.cpp).
    pub fn finish(&mut self) -> Result<Option<String>, TokenizerError> {
        let text = self.tokenizer.decode(&self.ids)?;
        let rest = text.get(self.emitted_len..).unwrap_or_default().to_string();
        self.emitted_len = text.len();
        Ok((!rest.is_empty()).then_some(rest))
    }

    /// Everything decoded so far.
    pub fn text(&self) -> Result<String, TokenizerError> {
        self.tokenizer.decode(&self.ids)
    }
}

fn string_array<'a>(md: &MetadataReader<'a>, key: &str) -> Result<Vec<&'a str>, GgufError> {
    let values: &'a [Value] = match md.metadata.get(key) {
        Some(Value::Array(values)) => values,
        Some(other) => return Err(md.invalid(key, format!("expected an array, found {other:?}"))),
        None => {
            return Err(GgufError::MissingKey {
                source_name: md.source_name.to_string(),
                key: key.to_string(),
            });
        }
    };
    values
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::String(s) => Ok(s.as_str()),
            _ => Err(md.invalid(key, format!("element {i} is not a string"))),
        })
        .collect()
}
