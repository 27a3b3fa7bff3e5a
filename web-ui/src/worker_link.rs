//! The page's end of an engine worker (`static/engine_worker.js`, running `engine_worker.rs`):
//! starts it, sends it messages (a model's bytes transferred, not copied) and queues what it
//! answers for whoever awaits the next message. A worker that fails to start or crashes
//! becomes an error message, never a wait that does not end. Dropping the link ends the
//! worker and frees all it held (its wasm memory, its GPU buffers).

use futures::StreamExt;
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use js_sys::{Array, Uint8Array};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::Closure;
use web_sys::{ErrorEvent, MessageEvent, Worker, WorkerOptions, WorkerType};

use crate::server_api::js_error_text;
use crate::worker_protocol::{self, FromWorker, ToWorker};

const WORKER_SCRIPT: &str = "/engine_worker.js";

/// Sends to the worker; cheap to clone (a stop watcher holds one).
#[derive(Clone)]
pub struct WorkerPort(Worker);

impl WorkerPort {
    pub fn send(&self, message: &ToWorker) -> Result<(), String> {
        let data = worker_protocol::encode(message, None)?;
        self.0.post_message(&data).map_err(|e| js_error_text(&e))
    }

    /// Sends `message` with `bytes`, whose buffer moves to the worker (empty here after).
    pub fn send_with_bytes(&self, message: &ToWorker, bytes: &Uint8Array) -> Result<(), String> {
        let data = worker_protocol::encode(message, Some(bytes))?;
        let transfer = Array::of1(&bytes.buffer());
        self.0
            .post_message_with_transfer(&data, &transfer)
            .map_err(|e| {
                format!(
                    "handing the model to the engine's worker: {}",
                    js_error_text(&e)
                )
            })
    }
}

pub struct WorkerLink {
    pub port: WorkerPort,
    inbox: UnboundedReceiver<FromWorker>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_error: Closure<dyn FnMut(ErrorEvent)>,
}

impl WorkerLink {
    /// Starts a worker and waits until its wasm runs.
    pub async fn start() -> Result<Self, String> {
        let options = WorkerOptions::new();
        options.set_type(WorkerType::Module);
        options.set_name("dpo-engine");
        let worker = Worker::new_with_options(WORKER_SCRIPT, &options).map_err(|e| {
            format!(
                "this browser cannot start the engine's worker: {}",
                js_error_text(&e)
            )
        })?;
        let (sender, inbox) = unbounded();
        let on_message = {
            let sender = sender.clone();
            Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
                let message = worker_protocol::decode::<FromWorker>(&event.data())
                    .map(|(message, _)| message)
                    .unwrap_or_else(|error| FromWorker::Crashed {
                        error: format!("the engine's worker sent {error}"),
                    });
                deliver(&sender, message);
            })
        };
        let on_error = Closure::<dyn FnMut(ErrorEvent)>::new(move |event: ErrorEvent| {
            let error = format!("the engine's worker stopped: {}", event.message());
            web_sys::console::error_1(&error.clone().into());
            deliver(&sender, FromWorker::Crashed { error });
        });
        worker.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        worker.set_onerror(Some(on_error.as_ref().unchecked_ref()));
        let mut link = Self {
            port: WorkerPort(worker),
            inbox,
            _on_message: on_message,
            _on_error: on_error,
        };
        match link.next().await? {
            FromWorker::Ready => Ok(link),
            other => Err(format!(
                "the engine's worker began with {other:?} instead of saying it was ready"
            )),
        }
    }

    /// The worker's next message; a crash is an error.
    pub async fn next(&mut self) -> Result<FromWorker, String> {
        match self.inbox.next().await {
            Some(FromWorker::Crashed { error }) => Err(error),
            Some(message) => Ok(message),
            None => Err("the engine's worker is gone".into()),
        }
    }
}

fn deliver(sender: &UnboundedSender<FromWorker>, message: FromWorker) {
    // Nobody listens once the link is dropped; the message is moot then.
    let _ = sender.unbounded_send(message);
}

impl Drop for WorkerLink {
    fn drop(&mut self) {
        self.port.0.terminate();
    }
}
