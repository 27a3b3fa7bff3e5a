//! Votes on their way to the server. A submitted pair is written to localStorage first, then
//! POSTed to `/api/pairs`, and leaves the queue only when the server acknowledges it (201,
//! or 200 for a key it already stored). Network errors, 429 and 5xx keep it queued and it is
//! retried every few seconds and on the next page load; a pair the server rejects for its
//! content (another 4xx) moves to a rejected list with the server's reason — nothing is
//! dropped silently.

use std::time::Duration;

use leptos::prelude::*;
use leptos::task::spawn_local;
use shared::PreferencePair;

use crate::browser_storage;
use crate::server_api::{self, error_reason};

const PENDING_KEY: &str = "dpo.votes.pending";
const REJECTED_KEY: &str = "dpo.votes.rejected";

/// A vote the server refused, kept under `REJECTED_KEY` with the server's answer.
#[derive(serde::Serialize)]
struct RejectedVote<'a> {
    /// The pair as it was submitted (JSON text).
    pair: &'a str,
    status: u16,
    reason: &'a str,
}
const ACKNOWLEDGED_KEY: &str = "dpo.votes.acknowledged";
const RETRY_EVERY: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy)]
pub struct VoteQueue {
    /// Pairs waiting for the server's acknowledgement.
    pub pending: RwSignal<usize>,
    /// Pairs the server acknowledged from this browser, ever.
    pub acknowledged: RwSignal<u64>,
    /// The last problem (a rejection, or why retries continue).
    pub last_error: RwSignal<Option<String>>,
    flushing: StoredValue<bool>,
}

fn read_list(key: &str) -> Vec<String> {
    browser_storage::get(key)
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

fn write_list(key: &str, list: &[String]) -> Result<(), String> {
    browser_storage::set(
        key,
        &serde_json::to_string(list).expect("strings serialize"),
    )
}

impl VoteQueue {
    /// Reads the queue left by earlier visits and starts retrying it.
    pub fn start() -> Self {
        let queue = Self {
            pending: RwSignal::new(read_list(PENDING_KEY).len()),
            acknowledged: RwSignal::new(
                browser_storage::get(ACKNOWLEDGED_KEY)
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0),
            ),
            last_error: RwSignal::new(None),
            flushing: StoredValue::new(false),
        };
        set_interval(
            move || {
                if queue.pending.get_untracked() > 0 {
                    queue.flush();
                }
            },
            RETRY_EVERY,
        );
        queue.flush();
        queue
    }

    /// Queues `pair` (validated here against the same limits the server applies) and sends
    /// it. The error says why it was not queued.
    pub fn submit(self, pair: &PreferencePair) -> Result<(), String> {
        shared::PairLimits::default()
            .validate(pair)
            .map_err(|e| e.to_string())?;
        let json = serde_json::to_string(pair).map_err(|e| e.to_string())?;
        let mut pending = read_list(PENDING_KEY);
        pending.push(json);
        write_list(PENDING_KEY, &pending)?;
        self.pending.set(pending.len());
        self.flush();
        Ok(())
    }

    /// Sends queued pairs in order until one cannot be delivered now.
    pub fn flush(self) {
        if self.flushing.get_value() {
            return;
        }
        self.flushing.set_value(true);
        spawn_local(async move {
            self.send_pending().await;
            self.flushing.set_value(false);
        });
    }

    async fn send_pending(self) {
        loop {
            let pending = read_list(PENDING_KEY);
            let Some(first) = pending.first().cloned() else {
                return;
            };
            let token = crate::campaign::annotator_token();
            let outcome = server_api::post_pair(&first, token.as_deref()).await;
            let delivered = match outcome {
                Ok(answer) if answer.status == 200 || answer.status == 201 => {
                    let count = self.acknowledged.get_untracked() + 1;
                    let _ = browser_storage::set(ACKNOWLEDGED_KEY, &count.to_string());
                    self.acknowledged.set(count);
                    self.last_error.set(None);
                    true
                }
                Ok(answer)
                    if answer.status == 408 || answer.status == 429 || answer.status >= 500 =>
                {
                    self.last_error.set(Some(format!(
                        "the server answered {} ({}); retrying",
                        answer.status,
                        error_reason(&answer.body)
                    )));
                    return;
                }
                Ok(answer) => {
                    let reason = error_reason(&answer.body);
                    let mut rejected = read_list(REJECTED_KEY);
                    let record = RejectedVote {
                        pair: &first,
                        status: answer.status,
                        reason: &reason,
                    };
                    rejected.push(serde_json::to_string(&record).expect("strings serialize"));
                    let _ = write_list(REJECTED_KEY, &rejected);
                    self.last_error.set(Some(format!(
                        "the server rejected a vote ({}: {reason}); it is kept under \
                         localStorage[\"{REJECTED_KEY}\"]",
                        answer.status
                    )));
                    true
                }
                Err(error) => {
                    self.last_error
                        .set(Some(format!("cannot reach the server ({error}); retrying")));
                    return;
                }
            };
            if delivered {
                // Re-read: a vote may have been queued while this one was in flight.
                let mut pending = read_list(PENDING_KEY);
                if pending.first() == Some(&first) {
                    pending.remove(0);
                }
                let _ = write_list(PENDING_KEY, &pending);
                self.pending.set(pending.len());
            }
        }
    }
}
