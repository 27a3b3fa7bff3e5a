//! The model the page runs: a verified GGUF loaded onto the browser's GPU (WebGPU) or into the
//! CPU engine (WebAssembly) with its tokenizer and chat template, and one KV-cached sequence
//! that chat and compare share. One
//! generation runs at a time: a view takes the model out of its slot, generates, and puts
//! it back, so a second request while one runs is refused, never interleaved. A blind
//! battle needs a second served version: it waits in a slot of its own between battles.

use std::cell::RefCell;
use std::io::Cursor;
use std::sync::Arc;

use shared::cpu_engine::{CpuQwen2Weights, CpuSequence};
use shared::engine::{
    GeneratingSequence, Qwen2Sequence, Qwen2Weights, StopHandle, StopReason, TokenStream,
};
use shared::{ChatMessage, GgufModel, ModelManifest, ModelText, SamplingParams};

use crate::browser_storage::{next_frame, now_ms};
use crate::engine_choice::Engine;

/// Positions (prompt plus reply) the sequence's KV cache holds.
const MAX_POSITIONS: usize = 4096;

pub struct LoadedModel {
    pub manifest: ModelManifest,
    text: ModelText,
    stop_tokens: Vec<u32>,
    sequence: EngineSequence,
}

/// The sequence of the engine the model loaded into.
enum EngineSequence {
    Gpu(Box<Qwen2Sequence>),
    Cpu(CpuSequence),
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
    /// Reads `bytes` (a whole GGUF) into `engine`: its weights uploaded to the GPU, or kept
    /// in their blocks for the CPU engine.
    pub fn load(engine: &Engine, manifest: ModelManifest, bytes: Vec<u8>) -> Result<Self, String> {
        let source_name = format!("{} ({})", manifest.version, manifest.gguf.path);
        let mut reader = Cursor::new(bytes);
        let gguf = GgufModel::read(&mut reader, &source_name).map_err(|e| e.to_string())?;
        let text = ModelText::from_gguf(&gguf).map_err(|e| e.to_string())?;
        let stop_tokens = text.stop_tokens();
        let sequence = match engine {
            Engine::Gpu(ctx) => {
                let weights: Arc<Qwen2Weights> = Qwen2Weights::load(ctx, &gguf, &mut reader)
                    .map_err(|e| {
                        format!(
                            "{e}. If the GPU ran out of memory, a smaller version (q4_k_m) may fit"
                        )
                    })?;
                EngineSequence::Gpu(Box::new(
                    Qwen2Sequence::new(&weights, MAX_POSITIONS).map_err(|e| e.to_string())?,
                ))
            }
            Engine::Cpu => {
                let weights =
                    CpuQwen2Weights::load(&gguf, &mut reader).map_err(|e| e.to_string())?;
                EngineSequence::Cpu(CpuSequence::new(&weights, MAX_POSITIONS))
            }
        };
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
        let max_positions = match &self.sequence {
            EngineSequence::Gpu(sequence) => sequence.max_positions(),
            EngineSequence::Cpu(sequence) => sequence.max_positions(),
        };
        let room = max_positions.saturating_sub(prompt.len());
        if room == 0 {
            return Err(format!(
                "the conversation is {} tokens, the model's context here is {max_positions}: start a new chat",
                prompt.len(),
            ));
        }
        sampling.max_new_tokens = sampling.max_new_tokens.min(room as u32);
        let mut decoder = self.text.tokenizer.stream_decoder();
        let stop_tokens = self.stop_tokens.clone();
        let mut emit = |token: u32| -> Result<(), String> {
            if let Some(piece) = decoder.push(token).map_err(|e| e.to_string())? {
                on_text(&piece);
            }
            Ok(())
        };
        let streamed = match &mut self.sequence {
            EngineSequence::Gpu(sequence) => {
                let stream = sequence
                    .as_mut()
                    .generate(&prompt, sampling, seed, stop_tokens, stop);
                stream_tokens(stream, false, &mut emit).await?
            }
            EngineSequence::Cpu(sequence) => {
                let stream = sequence.generate(&prompt, sampling, seed, stop_tokens, stop);
                stream_tokens(stream, true, &mut emit).await?
            }
        };
        let Streamed {
            generated,
            first_token_at,
            stopped_by_user,
        } = streamed;
        if let Some(rest) = decoder.finish().map_err(|e| e.to_string())? {
            on_text(&rest);
        }
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

/// What streaming a reply gave.
struct Streamed {
    generated: usize,
    first_token_at: Option<f64>,
    stopped_by_user: bool,
}

/// Hands each token of `stream` to `emit`. With `yield_between_tokens` (the CPU engine, which
/// computes on the page's thread) the page gets a turn between tokens to handle input and
/// paint.
async fn stream_tokens<S: GeneratingSequence>(
    stream: Result<TokenStream<'_, S>, shared::engine::EngineError>,
    yield_between_tokens: bool,
    emit: &mut dyn FnMut(u32) -> Result<(), String>,
) -> Result<Streamed, String> {
    let mut stream = stream.map_err(|e| e.to_string())?;
    let mut streamed = Streamed {
        generated: 0,
        first_token_at: None,
        stopped_by_user: false,
    };
    while let Some(token) = stream.next_token().await.map_err(|e| e.to_string())? {
        streamed.generated += 1;
        streamed.first_token_at.get_or_insert_with(now_ms);
        emit(token)?;
        if yield_between_tokens {
            next_frame().await;
        }
    }
    streamed.stopped_by_user = stream.stop_reason() == Some(StopReason::Stopped);
    Ok(streamed)
}
