//! The model the page runs, as the views see it: a verified GGUF loaded into an engine that
//! lives in a dedicated worker of its own (`worker_link.rs`), so the engine never computes on
//! the page's thread. One generation runs at a time: a view takes the model out of its slot,
//! generates, and puts it back, so a second request while one runs is refused, never
//! interleaved. A blind battle needs a second served version: it waits in a slot of its own
//! between battles, in its own worker (its own wasm memory).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::Uint8Array;
use leptos::task::spawn_local;
use shared::generation::{GenerationStats, StopHandle};
use shared::{ChatMessage, ModelManifest, SamplingParams};

use crate::browser_storage::pause_ms;
use crate::engine_choice::Engine;
use crate::worker_link::{WorkerLink, WorkerPort};
use crate::worker_protocol::{FromWorker, ToWorker};

/// How often a running generation checks whether the labeller pressed Stop.
const STOP_CHECK_MS: i32 = 30;

pub struct LoadedModel {
    pub manifest: ModelManifest,
    /// What the engine's worker holds in wasm memory once the model is loaded.
    pub engine_memory_bytes: u64,
    worker: WorkerLink,
    /// Generations asked for so far (their ids).
    generations: u64,
    /// Why the worker no longer answers, once it crashed.
    crashed: Option<String>,
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

/// Drops the battle opponent (ending its worker before another one loads).
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
    /// Starts a worker and loads `bytes` (a whole GGUF) into `engine` there: its weights
    /// uploaded to the GPU, or kept in their blocks for the CPU engine. The array's buffer
    /// moves to the worker, so the page keeps no copy.
    pub async fn load(
        engine: Engine,
        manifest: ModelManifest,
        bytes: Uint8Array,
    ) -> Result<Self, String> {
        let mut worker = WorkerLink::start().await?;
        let source_name = format!("{} ({})", manifest.version, manifest.gguf.path);
        worker.port.send_with_bytes(
            &ToWorker::Load {
                engine,
                source_name,
            },
            &bytes,
        )?;
        match worker.next().await? {
            FromWorker::Loaded { memory_bytes } => Ok(Self {
                manifest,
                engine_memory_bytes: memory_bytes,
                worker,
                generations: 0,
                crashed: None,
            }),
            FromWorker::LoadFailed { error } => Err(error),
            other => Err(format!(
                "the engine's worker answered a load with {other:?}"
            )),
        }
    }

    /// Streams the assistant's reply to `conversation` (ending with a user turn): each
    /// piece of text goes to `on_text` as soon as it is whole UTF-8. Returns the full reply.
    /// The budget shrinks to what the context has left; a conversation that leaves no room
    /// is an error that says so. `stop` ends the reply before its next token.
    pub async fn generate(
        &mut self,
        conversation: &[ChatMessage],
        sampling: SamplingParams,
        seed: u64,
        stop: StopHandle,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<(String, GenerationStats), String> {
        if let Some(error) = &self.crashed {
            return Err(format!("{error}; load the model again"));
        }
        self.generations += 1;
        let id = self.generations;
        self.worker.port.send(&ToWorker::Generate {
            id,
            conversation: conversation.to_vec(),
            sampling,
            seed,
        })?;
        let finished = Rc::new(Cell::new(false));
        spawn_local(forward_stop(
            stop,
            id,
            self.worker.port.clone(),
            finished.clone(),
        ));
        let outcome = loop {
            match self.worker.next().await {
                Ok(FromWorker::Text { id: of, piece }) if of == id => on_text(&piece),
                Ok(FromWorker::Finished {
                    id: of,
                    reply,
                    stats,
                }) if of == id => break Ok((reply, stats)),
                Ok(FromWorker::Failed { id: of, error }) if of == id => break Err(error),
                // What an earlier, abandoned generation still sent.
                Ok(_) => {}
                Err(error) => {
                    self.crashed = Some(error.clone());
                    break Err(error);
                }
            }
        };
        finished.set(true);
        outcome
    }
}

/// Tells the worker to stop generation `id` once `stop` is triggered (the worker reads it
/// between tokens), until `finished`.
async fn forward_stop(stop: StopHandle, id: u64, port: WorkerPort, finished: Rc<Cell<bool>>) {
    while !finished.get() {
        if stop.is_stopped() {
            let _ = port.send(&ToWorker::Stop { id });
            return;
        }
        pause_ms(STOP_CHECK_MS).await;
    }
}
