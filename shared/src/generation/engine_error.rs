//! What can go wrong in an engine — no GPU, a device error, an unsupported model or request, a
//! failed readback, a failed computation — said so that the user knows what to do.

use std::fmt;

/// Errors from an inference engine, with what the user can do about them.
#[derive(Debug)]
pub enum EngineError {
    NoAdapter(String),
    Device(String),
    Unsupported(String),
    Readback(String),
    /// A computation of a native engine (candle) failed.
    Compute(String),
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::NoAdapter(reason) => write!(
                f,
                "no GPU adapter ({reason}); in a browser, WebGPU must be available and enabled"
            ),
            EngineError::Device(reason) => write!(f, "GPU device error: {reason}"),
            EngineError::Unsupported(reason) => write!(f, "unsupported: {reason}"),
            EngineError::Readback(reason) => write!(f, "reading GPU results failed: {reason}"),
            EngineError::Compute(reason) => write!(f, "the model's computation failed: {reason}"),
        }
    }
}

impl std::error::Error for EngineError {}
