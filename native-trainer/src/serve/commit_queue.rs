//! Group commit: request handlers hand their pairs to one writer thread, which stores whatever
//! has queued up in a single durable transaction and then answers each handler. Under load one
//! fsync acknowledges many pairs; alone, a pair is committed at once.

use std::sync::Arc;
use std::sync::mpsc;

use anyhow::{Result, anyhow};
use shared::PreferencePair;
use tokio::sync::oneshot;

use crate::store::{InsertOutcome, PairStore};

/// Most pairs one transaction takes.
const MAX_BATCH: usize = 512;

type Reply = oneshot::Sender<Result<InsertOutcome, String>>;

#[derive(Clone)]
pub struct CommitQueue {
    sender: mpsc::Sender<(PreferencePair, String, Reply)>,
}

impl CommitQueue {
    /// Starts the writer thread over `store`.
    pub fn start(store: Arc<dyn PairStore>) -> Self {
        let (sender, receiver) = mpsc::channel::<(PreferencePair, String, Reply)>();
        std::thread::Builder::new()
            .name("pair-writer".into())
            .spawn(move || {
                while let Ok(first) = receiver.recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match receiver.try_recv() {
                            Ok(next) => batch.push(next),
                            Err(_) => break,
                        }
                    }
                    let (pairs, replies): (Vec<_>, Vec<_>) = batch
                        .into_iter()
                        .map(|(pair, json, reply)| ((pair, json), reply))
                        .unzip();
                    match store.insert_batch(&pairs) {
                        Ok(outcomes) => {
                            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                                let _ = reply.send(Ok(outcome));
                            }
                        }
                        Err(error) => {
                            tracing::error!("storing {} pairs failed: {error:#}", pairs.len());
                            for reply in replies {
                                let _ = reply.send(Err(format!("{error:#}")));
                            }
                        }
                    }
                }
            })
            .expect("spawning the pair writer");
        Self { sender }
    }

    /// Stores `pair` (serialized as `json`); returns once it is durably committed.
    pub async fn submit(&self, pair: PreferencePair, json: String) -> Result<InsertOutcome> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send((pair, json, reply))
            .map_err(|_| anyhow!("the pair writer has stopped"))?;
        answer
            .await
            .map_err(|_| anyhow!("the pair writer has stopped"))?
            .map_err(|e| anyhow!(e))
    }
}
