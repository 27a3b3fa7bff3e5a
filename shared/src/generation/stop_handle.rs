//! Stopping a generation: the handle a "Stop" button (or `dpo chat`'s caller) triggers between
//! tokens, and why a generation ended.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

/// Asks a running generation to stop before its next token. Cloning shares the flag.
#[derive(Debug, Clone, Default)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn stop(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model emitted an end-of-turn token (not part of the output).
    EndOfTurn,
    /// `max_new_tokens` were generated.
    MaxTokens,
    /// The stop handle was triggered.
    Stopped,
}
