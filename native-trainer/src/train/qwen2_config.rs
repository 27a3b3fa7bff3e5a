//! The training model's hyperparameters under transformers' `config.json` names, read from an
//! HF directory or a GGUF header.

use serde::{Deserialize, Serialize};
use shared::ModelHyperparameters;

/// The hyperparameters, with transformers' `config.json` names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Qwen2Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub rope_theta: f64,
    pub rms_norm_eps: f64,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
}

fn default_max_positions() -> usize {
    32_768
}

impl Qwen2Config {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// The same model as a GGUF header describes it.
    pub fn from_hyperparameters(hp: &ModelHyperparameters) -> Self {
        Self {
            vocab_size: hp.vocab_size,
            hidden_size: hp.embedding_length,
            intermediate_size: hp.feed_forward_length,
            num_hidden_layers: hp.block_count,
            num_attention_heads: hp.head_count,
            num_key_value_heads: hp.head_count_kv,
            rope_theta: f64::from(hp.rope_freq_base),
            rms_norm_eps: f64::from(hp.rms_norm_eps),
            tie_word_embeddings: hp.tied_embeddings,
            max_position_embeddings: hp.context_length,
        }
    }
}
