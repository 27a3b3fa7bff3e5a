//! `dpo train --memory-profile`: where the first optimizer step's memory goes, measured, not
//! estimated. Two instruments:
//!
//! - the heap's live bytes and their peak, from the counting allocator `dpo` runs on
//!   (`process_allocator.rs`), read at marks the trainer and the batch scorer set: after the
//!   model loads, around the reference pass, after the decoder layers and the vocabulary,
//!   around the backward pass and the optimizer step. Between two marks, what stayed (the
//!   live bytes' change) and the peak reached above the first;
//! - a census of the autograd graph when the loss is computed: every tensor autograd keeps
//!   for the backward pass, by its storage's bytes (each storage once), sorted by kind from
//!   its shape (vocabulary logits, MLP width, hidden width, keys and values, attention's
//!   per-head tensors, LoRA), plus the layer inputs gradient checkpointing keeps.
//!
//! Nothing is recorded unless `start` was called; marks cost one atomic load otherwise.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{CpuStorage, Storage, Tensor};
use serde::Serialize;

use super::qwen2_config::Qwen2Config;
use crate::process_allocator::{live_bytes, peak_bytes, reset_peak};

static RECORDING: AtomicBool = AtomicBool::new(false);
static PROFILE: Mutex<Option<MemoryProfile>> = Mutex::new(None);

/// What a profiled step recorded.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MemoryProfile {
    /// The marks in order.
    pub marks: Vec<Mark>,
    /// What autograd kept for the backward pass when the loss was computed, bytes by kind.
    pub saved_for_backward: BTreeMap<String, usize>,
    /// Bytes of the trainable parameters' gradients after the backward pass.
    pub gradients: usize,
    /// The highest live bytes of the whole run up to the last mark.
    pub peak: usize,
}

/// The heap at one point of the step.
#[derive(Debug, Clone, Serialize)]
pub struct Mark {
    pub label: &'static str,
    /// Bytes live at the mark.
    pub live: usize,
    /// The most bytes live at once since the previous mark.
    pub peak_since_previous: usize,
}

/// Starts recording (the first mark is `start`).
pub fn start() {
    *PROFILE.lock().unwrap_or_else(|e| e.into_inner()) = Some(MemoryProfile::default());
    RECORDING.store(true, Ordering::Relaxed);
    reset_peak();
    mark("start");
}

fn with_profile(record: impl FnOnce(&mut MemoryProfile)) {
    if !RECORDING.load(Ordering::Relaxed) {
        return;
    }
    if let Some(profile) = PROFILE.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        record(profile);
    }
}

/// Records the heap now, under `label`.
pub fn mark(label: &'static str) {
    with_profile(|profile| {
        let peak = peak_bytes();
        profile.peak = profile.peak.max(peak);
        profile.marks.push(Mark {
            label,
            live: live_bytes(),
            peak_since_previous: peak,
        });
        reset_peak();
    });
}

/// Sorts what the graph behind `loss` keeps into kinds, with `checkpointed_inputs` bytes of
/// layer inputs kept outside it.
pub fn census(loss: &Tensor, config: &Qwen2Config, checkpointed_inputs: usize) {
    with_profile(|profile| {
        let mut seen = HashSet::new();
        let mut kinds = BTreeMap::new();
        for node in loss.sorted_nodes() {
            if node.is_variable() {
                continue;
            }
            let (key, bytes) = storage_bytes(node);
            if seen.insert(key) {
                *kinds.entry(kind(node, config).to_string()).or_insert(0) += bytes;
            }
        }
        if checkpointed_inputs > 0 {
            kinds.insert(
                "decoder layer inputs (gradient checkpointing)".into(),
                checkpointed_inputs,
            );
        }
        profile.saved_for_backward = kinds;
    });
}

/// Records the gradients' bytes.
pub fn gradients(bytes: usize) {
    with_profile(|profile| profile.gradients = bytes);
}

/// Stops recording and returns what was recorded.
pub fn finish() -> Option<MemoryProfile> {
    mark("end of the step");
    RECORDING.store(false, Ordering::Relaxed);
    PROFILE.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// A tensor's storage (as an identity) and its bytes.
pub fn storage_bytes(tensor: &Tensor) -> (usize, usize) {
    let (storage, layout) = tensor.storage_and_layout();
    let key = &*storage as *const Storage as usize;
    let bytes = match &*storage {
        Storage::Cpu(cpu) => match cpu {
            CpuStorage::U8(v) => v.len(),
            CpuStorage::U32(v) => v.len() * 4,
            CpuStorage::BF16(v) => v.len() * 2,
            CpuStorage::F16(v) => v.len() * 2,
            CpuStorage::F32(v) => v.len() * 4,
            CpuStorage::F64(v) => v.len() * 8,
            CpuStorage::I64(v) => v.len() * 8,
            _ => layout.shape().elem_count() * tensor.dtype().size_in_bytes(),
        },
        _ => layout.shape().elem_count() * tensor.dtype().size_in_bytes(),
    };
    (key, bytes)
}

/// What a kept tensor is, from its shape.
fn kind(tensor: &Tensor, config: &Qwen2Config) -> &'static str {
    let dims = tensor.dims();
    let last = dims.last().copied().unwrap_or(0);
    let kv_width = config.num_key_value_heads * config.head_dim();
    if dims.len() >= 4 {
        "attention: per-head scores, probabilities, keys and values"
    } else if last == config.vocab_size {
        "vocabulary logits and log-softmax"
    } else if last == config.intermediate_size {
        "MLP width (gate, up, SwiGLU)"
    } else if dims.len() == 3 && last == config.head_dim() {
        "attention: per-head queries, keys, values (RoPE)"
    } else if last == config.hidden_size {
        "hidden width (residuals, norms, queries, attention output)"
    } else if last == kv_width {
        "keys and values"
    } else {
        "other (LoRA's low-rank products, per-position scalars)"
    }
}

/// The profile as a table: each phase's change in live bytes and the peak above it.
pub fn table(profile: &MemoryProfile) -> String {
    let mb = |bytes: usize| bytes as f64 / 1e6;
    let mut out = format!(
        "{:<44} {:>12} {:>14} {:>14}\n",
        "phase (heap, MB)", "live after", "kept by phase", "peak in phase"
    );
    let mut previous = 0usize;
    for mark in &profile.marks {
        out += &format!(
            "{:<44} {:>12.1} {:>+14.1} {:>14.1}\n",
            mark.label,
            mb(mark.live),
            mb(mark.live) - mb(previous),
            mb(mark.peak_since_previous)
        );
        previous = mark.live;
    }
    out += &format!("{:<44} {:>12.1}\n", "peak", mb(profile.peak));
    out += "\nkept for the backward pass (MB)\n";
    for (kind, bytes) in &profile.saved_for_backward {
        out += &format!("  {kind:<62} {:>10.1}\n", mb(*bytes));
    }
    out += &format!(
        "  {:<62} {:>10.1}\n",
        "trainable parameters' gradients",
        mb(profile.gradients)
    );
    out
}
