//! Generation, whichever engine runs it: the `GeneratingSequence` an engine implements, the one
//! loop over it (`TokenStream`), how to stop it, what it measured (`GenerationStats`) and the
//! engines' shared error type.

mod engine_error;
mod generating_sequence;
mod generation_stats;
mod stop_handle;
mod token_stream;

pub use engine_error::EngineError;
pub use generating_sequence::GeneratingSequence;
pub use generation_stats::{GenerationStats, StatsRecorder};
pub use stop_handle::{StopHandle, StopReason};
pub use token_stream::TokenStream;
