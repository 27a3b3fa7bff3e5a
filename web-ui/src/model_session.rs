//! The model as the engine's worker holds it (`engine_worker.rs`): a verified GGUF loaded onto
//! the GPU (WebGPU) or into the CPU engine (WebAssembly) with its tokenizer and chat template,
//! and one KV-cached sequence that every reply reuses, so a follow-up turn only runs its new
//! tokens.

use std::io::{Read, Seek};
use std::sync::Arc;

use shared::cpu_engine::{CpuQwen2Weights, CpuSequence};
use shared::generation::{
    EngineError, GeneratingSequence, GenerationStats, StatsRecorder, StopHandle, TokenStream,
};
use shared::wgpu_engine::{GpuContext, Qwen2Sequence, Qwen2Weights};
use shared::{ChatMessage, GgufModel, ModelText, SamplingParams};

use crate::browser_storage::{next_frame, now_ms};
use crate::engine_choice::Engine;

/// Positions (prompt plus reply) a conversation may reach: the model's whole context (as far
/// as one GPU buffer holds its attention scratch). Neither engine allocates it ahead: the
/// wgpu sequence grows its caches as a conversation does, while the GPU has the memory; the
/// CPU engine's caches grow as positions are fed.
const MAX_POSITIONS: usize = usize::MAX;

pub struct ModelSession {
    text: ModelText,
    stop_tokens: Vec<u32>,
    sequence: EngineSequence,
}

/// The sequence of the engine the model loaded into.
enum EngineSequence {
    Gpu(Box<Qwen2Sequence>),
    Cpu(CpuSequence),
}

impl ModelSession {
    /// Reads a whole GGUF from `reader` (named `source_name` in errors) into `engine`: its weights
    /// uploaded to this worker's GPU device, or kept in their blocks for the CPU engine.
    pub async fn load<R: Read + Seek>(
        engine: Engine,
        source_name: &str,
        mut reader: R,
    ) -> Result<Self, String> {
        let gguf = GgufModel::read(&mut reader, source_name).map_err(|e| e.to_string())?;
        let text = ModelText::from_gguf(&gguf).map_err(|e| e.to_string())?;
        let stop_tokens = text.stop_tokens();
        let sequence = match engine {
            Engine::WebGpu => {
                let ctx = GpuContext::new().await.map_err(|e| {
                    format!(
                        "WebGPU is not available to the engine's worker: {e}. Choose the CPU \
                         engine in the settings"
                    )
                })?;
                let weights: Arc<Qwen2Weights> = Qwen2Weights::load(&ctx, &gguf, &mut reader)
                    .map_err(|e| {
                        format!(
                            "{e}. If the GPU ran out of memory, a smaller version (q4_k_m) may fit"
                        )
                    })?;
                EngineSequence::Gpu(Box::new(
                    Qwen2Sequence::growing(&weights, MAX_POSITIONS).map_err(|e| e.to_string())?,
                ))
            }
            Engine::Cpu => {
                let weights =
                    CpuQwen2Weights::load(&gguf, &mut reader).map_err(|e| e.to_string())?;
                EngineSequence::Cpu(CpuSequence::new(&weights, MAX_POSITIONS))
            }
        };
        Ok(Self {
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
        let stats = match &mut self.sequence {
            EngineSequence::Gpu(sequence) => {
                let stream = TokenStream::start(
                    sequence.as_mut(),
                    &prompt,
                    sampling,
                    seed,
                    stop_tokens,
                    stop,
                )
                .await;
                stream_tokens(requested, stream, false, &mut emit).await?
            }
            EngineSequence::Cpu(sequence) => {
                let stream =
                    TokenStream::start(sequence, &prompt, sampling, seed, stop_tokens, stop).await;
                stream_tokens(requested, stream, true, &mut emit).await?
            }
        };
        if let Some(rest) = decoder.finish().map_err(|e| e.to_string())? {
            on_text(&rest);
        }
        let reply = decoder.text().map_err(|e| e.to_string())?;
        Ok((reply, stats))
    }
}

/// Hands each token of `stream` to `emit`, timing them from `requested_ms`. With `yield_between_tokens` (the CPU
/// engine, which never waits on anything) the worker gets a turn between tokens to read the
/// page's messages, such as a stop.
async fn stream_tokens<S: GeneratingSequence>(
    requested_ms: f64,
    stream: Result<TokenStream<'_, S>, EngineError>,
    yield_between_tokens: bool,
    emit: &mut dyn FnMut(u32) -> Result<(), String>,
) -> Result<GenerationStats, String> {
    let mut recorder = StatsRecorder::new(requested_ms);
    let mut stream = stream.map_err(|e| e.to_string())?;
    while let Some(token) = stream.next_token().await.map_err(|e| e.to_string())? {
        recorder.token(now_ms());
        emit(token)?;
        if yield_between_tokens {
            next_frame().await;
        }
    }
    Ok(recorder.finish(&stream, now_ms()))
}
