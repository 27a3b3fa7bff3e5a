//! The model the page runs: a verified GGUF loaded onto the browser's GPU with its tokenizer
//! and chat template, and one KV-cached sequence that chat and compare share. One
//! generation runs at a time: a view takes the model out of its slot, generates, and puts
//! it back, so a second request while one runs is refused, never interleaved. A blind
//! battle needs a second served version: it waits in a slot of its own between battles.

use std::cell::RefCell;
use std::io::Cursor;
use std::sync::Arc;

use shared::engine::{GpuContext, Qwen2Sequence, Qwen2Weights, StopHandle, StopReason};
use shared::{ChatMessage, GgufModel, ModelManifest, ModelText, SamplingParams};

use crate::browser_storage::now_ms;

/// Positions (prompt plus reply) the sequence's KV cache holds.
const MAX_POSITIONS: usize = 4096;

pub struct LoadedModel {
    pub manifest: ModelManifest,
    text: ModelText,
    stop_tokens: Vec<u32>,
    sequence: Qwen2Sequence,
}

/// What one generation took.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    /// From the request to the first token (prefill included).
    pub first_token_ms: f64,
    /// Tokens per second after the first.
    pub decode_tokens_per_second: f64,
    pub stopped_by_user: bool,
}

thread_local! {
    static SLOT: RefCell<Option<LoadedModel>> = const { RefCell::new(None) };
    static OPPONENT: RefCell<Option<LoadedModel>> = const { RefCell::new(None) };
}

/// Takes the battle opponent out if it is `version` (another version stays, and is dropped
/// when the caller installs the one it loads instead).
pub fn take_opponent(version: &str) -> Option<LoadedModel> {
    OPPONENT.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.as_ref().is_some_and(|m| m.manifest.version == version) {
            slot.take()
        } else {
            None
        }
    })
}

/// Keeps `model` as the battle opponent until the next battle (replacing any other).
pub fn keep_opponent(model: LoadedModel) {
    OPPONENT.with(|slot| *slot.borrow_mut() = Some(model));
}

/// Drops the battle opponent (freeing its GPU memory before another one loads).
pub fn drop_opponent() {
    OPPONENT.with(|slot| slot.borrow_mut().take());
}

/// Puts `model` in the page's slot (replacing any earlier one).
pub fn install(model: LoadedModel) {
    SLOT.with(|slot| *slot.borrow_mut() = Some(model));
}

/// Takes the model out for a generation; `None` while another generation has it.
pub fn take() -> Option<LoadedModel> {
    SLOT.with(|slot| slot.borrow_mut().take())
}

/// Returns the model after a generation.
pub fn put_back(model: LoadedModel) {
    install(model)
}

/// Drops the loaded model (before another version loads).
pub fn unload() {
    SLOT.with(|slot| slot.borrow_mut().take());
}

impl LoadedModel {
    /// Reads `bytes` (a whole GGUF) and uploads its weights to the GPU.
    pub fn load(ctx: &GpuContext, manifest: ModelManifest, bytes: Vec<u8>) -> Result<Self, String> {
        let source_name = format!("{} ({})", manifest.version, manifest.gguf.path);
        let mut reader = Cursor::new(bytes);
        let gguf = GgufModel::read(&mut reader, &source_name).map_err(|e| e.to_string())?;
        let text = ModelText::from_gguf(&gguf).map_err(|e| e.to_string())?;
        let stop_tokens = text.stop_tokens();
        let weights: Arc<Qwen2Weights> =
            Qwen2Weights::load(ctx, &gguf, &mut reader).map_err(|e| {
                format!("{e}. If the GPU ran out of memory, a smaller version (q4_k_m) may fit")
            })?;
        let sequence = Qwen2Sequence::new(&weights, MAX_POSITIONS).map_err(|e| e.to_string())?;
        Ok(Self {
            manifest,
            text,
            stop_tokens,
            sequence,
        })
    }

    /// Streams the assistant's reply to `conversation` (ending with a user turn): each
    /// piece of text goes to `on_text` as soon as it is whole UTF-8. Returns the full reply.
    /// The budget shrinks to what the context has left; a conversation that leaves no room
    /// is an error that says so.
    pub async fn generate(
        &mut self,
        conversation: &[ChatMessage],
        mut sampling: SamplingParams,
        seed: u64,
        stop: StopHandle,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<(String, GenerationStats), String> {
        let requested = now_ms();
        let prompt_text = self
            .text
            .template
            .render(conversation, true)
            .map_err(|e| e.to_string())?;
        let prompt = self
            .text
            .tokenizer
            .encode(&prompt_text)
            .map_err(|e| e.to_string())?;
        let room = self.sequence.max_positions().saturating_sub(prompt.len());
        if room == 0 {
            return Err(format!(
                "the conversation is {} tokens, the model's context here is {}: start a new chat",
                prompt.len(),
                self.sequence.max_positions()
            ));
        }
        sampling.max_new_tokens = sampling.max_new_tokens.min(room as u32);
        let mut decoder = self.text.tokenizer.stream_decoder();
        let mut stream = self
            .sequence
            .generate(&prompt, sampling, seed, self.stop_tokens.clone(), stop)
            .map_err(|e| e.to_string())?;
        let mut first_token_at = None;
        let mut generated = 0;
        while let Some(token) = stream.next_token().await.map_err(|e| e.to_string())? {
            generated += 1;
            first_token_at.get_or_insert_with(now_ms);
            if let Some(piece) = decoder.push(token).map_err(|e| e.to_string())? {
                on_text(&piece);
            }
        }
        if let Some(rest) = decoder.finish().map_err(|e| e.to_string())? {
            on_text(&rest);
        }
        let stopped_by_user = stream.stop_reason() == Some(StopReason::Stopped);
        drop(stream);
        let finished = now_ms();
        let first = first_token_at.unwrap_or(finished);
        let decode_seconds = (finished - first) / 1000.0;
        let stats = GenerationStats {
            prompt_tokens: prompt.len(),
            generated_tokens: generated,
            first_token_ms: first - requested,
            decode_tokens_per_second: if generated > 1 && decode_seconds > 0.0 {
                (generated - 1) as f64 / decode_seconds
            } else {
                0.0
            },
            stopped_by_user,
        };
        let reply = decoder.text().map_err(|e| e.to_string())?;
        Ok((reply, stats))
    }
}
