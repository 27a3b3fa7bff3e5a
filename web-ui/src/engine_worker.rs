//! The engine's side of its dedicated worker (`static/engine_worker.js` starts it): owns the
//! loaded model (`ModelSession`) and answers the page's messages — load, generate (the reply
//! streamed back piece by piece), stop — so no engine work ever runs on the page's thread and
//! typing, scrolling, Stop and voting stay responsive while a reply is generated.

use std::cell::RefCell;

use js_sys::Uint8Array;
use shared::generation::StopHandle;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::{Closure, wasm_bindgen};
use wasm_bindgen_futures::spawn_local;
use web_sys::{DedicatedWorkerGlobalScope, MessageEvent};

use crate::js_bytes_reader::JsBytesReader;
use crate::model_session::ModelSession;
use crate::worker_protocol::{self, FromWorker, ToWorker};

thread_local! {
    /// The loaded model; taken out while a reply is generated.
    static SESSION: RefCell<Option<ModelSession>> = const { RefCell::new(None) };
    /// The generation running now and its stop handle.
    static RUNNING: RefCell<Option<(u64, StopHandle)>> = const { RefCell::new(None) };
}

/// Listens for the page's messages and says it is ready (called once the worker's wasm runs).
/// A panic is told to the page with its message before the worker stops.
#[wasm_bindgen]
pub fn engine_worker_main() {
    std::panic::set_hook(Box::new(|info| {
        post(&FromWorker::Crashed {
            error: format!("the engine failed: {info}"),
        })
    }));
    let on_message =
        Closure::<dyn FnMut(MessageEvent)>::new(
            |event: MessageEvent| match worker_protocol::decode::<ToWorker>(&event.data()) {
                Ok((message, bytes)) => handle(message, bytes),
                Err(error) => post(&FromWorker::Crashed {
                    error: format!("the engine's worker got {error}"),
                }),
            },
        );
    scope().set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    // The worker lives as long as the page keeps it; so does its handler.
    on_message.forget();
    post(&FromWorker::Ready);
}

fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

fn post(message: &FromWorker) {
    let sent = worker_protocol::encode(message, None)
        .and_then(|data| scope().post_message(&data).map_err(|e| format!("{e:?}")));
    if let Err(error) = sent {
        web_sys::console::error_1(&format!("the engine's worker could not answer: {error}").into());
    }
}

fn handle(message: ToWorker, bytes: Option<Uint8Array>) {
    match message {
        ToWorker::Load {
            engine,
            source_name,
        } => {
            // A new model replaces the old one: free it first.
            SESSION.with(|slot| slot.borrow_mut().take());
            let Some(bytes) = bytes else {
                post(&FromWorker::LoadFailed {
                    error: format!("the load request for {source_name} came without its bytes"),
                });
                return;
            };
            spawn_local(async move {
                let answer =
                    match ModelSession::load(engine, &source_name, gguf_reader(bytes)).await {
                        Ok(session) => {
                            SESSION.with(|slot| *slot.borrow_mut() = Some(session));
                            FromWorker::Loaded {
                                memory_bytes: wasm_memory_bytes(),
                            }
                        }
                        Err(error) => FromWorker::LoadFailed { error },
                    };
                post(&answer);
            });
        }
        ToWorker::Generate {
            id,
            conversation,
            sampling,
            seed,
        } => {
            let Some(mut session) = SESSION.with(|slot| slot.borrow_mut().take()) else {
                post(&FromWorker::Failed {
                    id,
                    error: "the engine has no model loaded, or is busy with another reply".into(),
                });
                return;
            };
            let stop = StopHandle::new();
            RUNNING.with(|running| *running.borrow_mut() = Some((id, stop.clone())));
            spawn_local(async move {
                let result = session
                    .generate(&conversation, sampling, seed, stop, &mut |piece| {
                        post(&FromWorker::Text {
                            id,
                            piece: piece.to_string(),
                        })
                    })
                    .await;
                SESSION.with(|slot| *slot.borrow_mut() = Some(session));
                RUNNING.with(|running| running.borrow_mut().take());
                post(&match result {
                    Ok((reply, stats)) => FromWorker::Finished { id, reply, stats },
                    Err(error) => FromWorker::Failed { id, error },
                });
            });
        }
        ToWorker::Stop { id } => RUNNING.with(|running| {
            if let Some((running_id, stop)) = running.borrow().as_ref()
                && *running_id == id
            {
                stop.stop();
            }
        }),
    }
}

/// The size of this worker's wasm memory.
fn wasm_memory_bytes() -> u64 {
    let memory: js_sys::WebAssembly::Memory = wasm_bindgen::memory().unchecked_into();
    let buffer: js_sys::ArrayBuffer = memory.buffer().unchecked_into();
    buffer.byte_length() as u64
}

/// Reads the model's GGUF out of the transferred array, a tensor at a time (the header
/// through a buffer: its many small reads would each cross into JavaScript).
fn gguf_reader(bytes: Uint8Array) -> std::io::BufReader<JsBytesReader> {
    std::io::BufReader::with_capacity(1 << 16, JsBytesReader::new(bytes))
}
