//! The contract both halves of the flywheel speak.
//!
//! Everything here builds for the host and for `wasm32-unknown-unknown`, so the trainer,
//! the server and the browser app read models, tokenize, render chat prompts and exchange
//! preference pairs with one and the same code.

pub mod api;
pub mod battle_pairing;
pub mod chat_message;
pub mod chat_template;
pub mod cpu_engine;
pub mod generation;
pub mod gguf;
pub mod json_integer;
pub mod model_manifest;
pub mod model_text;
pub mod pair_limits;
pub mod preference_pair;
pub mod sampling;
pub mod seeded_rng;
#[cfg(test)]
mod test_pairs;
pub mod token_sampler;
pub mod tokenizer;
pub mod trl_rows;
pub mod unpaired_rows;
pub mod wgpu_engine;

pub use chat_message::{ChatMessage, Role};
pub use chat_template::{ChatTemplate, ChatTemplateError};
pub use gguf::metadata::{Architecture, GgufError, GgufModel, ModelHyperparameters};
pub use gguf::vocabulary::GgufVocabulary;
pub use model_manifest::{ManifestFile, ModelManifest, TrainingRunSummary};
pub use model_text::ModelText;
pub use pair_limits::{PairLimits, PairRejection, ValidationError};
pub use preference_pair::{Candidate, ModelRef, PreferencePair, Vote};
pub use sampling::SamplingParams;
pub use seeded_rng::SplitMix64;
pub use token_sampler::{TokenSampler, TokenScore};
pub use tokenizer::{TextTokenizer, TokenizerError};
pub use trl_rows::{TrlRow, TrlStyle};
pub use unpaired_rows::UnpairedRow;
