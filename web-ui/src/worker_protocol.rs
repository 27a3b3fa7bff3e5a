//! The messages between the page and the engine's dedicated worker (`worker_link.rs` is the
//! page's end, `engine_worker.rs` the worker's): each message is JSON text under `json`, and a
//! load request carries the model's bytes under `bytes` as a transferred `ArrayBuffer` (moved
//! to the worker, not copied).

use js_sys::{Object, Reflect, Uint8Array};
use serde::{Deserialize, Serialize};
use shared::generation::GenerationStats;
use shared::{ChatMessage, SamplingParams};
use wasm_bindgen::{JsCast, JsValue};

use crate::engine_choice::Engine;

/// What the page asks of the worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ToWorker {
    /// Load the GGUF sent beside this message into `engine`; `source_name` names it in errors.
    Load { engine: Engine, source_name: String },
    /// Stream the reply to `conversation` (ending with a user turn).
    Generate {
        id: u64,
        conversation: Vec<ChatMessage>,
        sampling: SamplingParams,
        seed: u64,
    },
    /// Stop generation `id` before its next token.
    Stop { id: u64 },
}

/// What the worker tells the page.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FromWorker {
    /// The worker's wasm runs and it listens.
    Ready,
    /// The model is loaded; the worker's wasm memory is now `memory_bytes` (the high-water
    /// mark of the load: a wasm memory never shrinks).
    Loaded {
        memory_bytes: u64,
    },
    LoadFailed {
        error: String,
    },
    /// The next whole-UTF-8 piece of generation `id`'s reply.
    Text {
        id: u64,
        piece: String,
    },
    Finished {
        id: u64,
        reply: String,
        stats: GenerationStats,
    },
    Failed {
        id: u64,
        error: String,
    },
    /// The worker itself failed: its script or wasm did not start, or it crashed.
    Crashed {
        error: String,
    },
}

/// `message` as what `postMessage` sends, with `bytes` beside it when given.
pub fn encode<T: Serialize>(message: &T, bytes: Option<&Uint8Array>) -> Result<JsValue, String> {
    let json = serde_json::to_string(message).map_err(|e| e.to_string())?;
    let envelope = Object::new();
    Reflect::set(&envelope, &"json".into(), &json.into()).map_err(|e| format!("{e:?}"))?;
    if let Some(bytes) = bytes {
        Reflect::set(&envelope, &"bytes".into(), bytes).map_err(|e| format!("{e:?}"))?;
    }
    Ok(envelope.into())
}

/// The message in a received `data`, and the bytes beside it if any. The error names what
/// was wrong with it.
pub fn decode<T: for<'de> Deserialize<'de>>(
    data: &JsValue,
) -> Result<(T, Option<Uint8Array>), String> {
    let json = Reflect::get(data, &"json".into())
        .ok()
        .and_then(|json| json.as_string())
        .ok_or("a message without its `json` text")?;
    let message =
        serde_json::from_str(&json).map_err(|e| format!("an unreadable message ({e}): {json}"))?;
    let bytes = Reflect::get(data, &"bytes".into())
        .ok()
        .and_then(|bytes| bytes.dyn_into::<Uint8Array>().ok());
    Ok((message, bytes))
}
