//! Picks the next token from logits: repetition penalty (llama.cpp style, over the last
//! `repeat_last_n` tokens), then greedy or seeded temperature / top-k / top-p sampling.

use anyhow::Result;
use candle_core::Tensor;
use candle_transformers::generation::{LogitsProcessor, Sampling};
use shared::SamplingParams;

pub struct TokenSampler {
    processor: LogitsProcessor,
    params: SamplingParams,
}

impl TokenSampler {
    pub fn new(params: SamplingParams, seed: u64) -> Self {
        let temperature = f64::from(params.temperature);
        let top_k = (params.top_k > 0).then_some(params.top_k as usize);
        let top_p = (params.top_p < 1.0).then_some(f64::from(params.top_p));
        let sampling = if params.is_greedy() {
            Sampling::ArgMax
        } else {
            match (top_k, top_p) {
                (None, None) => Sampling::All { temperature },
                (Some(k), None) => Sampling::TopK { k, temperature },
                (None, Some(p)) => Sampling::TopP { p, temperature },
                (Some(k), Some(p)) => Sampling::TopKThenTopP { k, p, temperature },
            }
        };
        Self {
            processor: LogitsProcessor::from_sampling(seed, sampling),
            params,
        }
    }

    /// `logits`: one row of vocabulary scores; `history`: every token so far (prompt included).
    pub fn next_token(&mut self, logits: &Tensor, history: &[u32]) -> Result<u32> {
        let logits = logits.to_dtype(candle_core::DType::F32)?;
        let logits = if self.params.repeat_penalty == 1.0 {
            logits
        } else {
            let start = history
                .len()
                .saturating_sub(self.params.repeat_last_n as usize);
            candle_transformers::utils::apply_repeat_penalty(
                &logits,
                self.params.repeat_penalty,
                &history[start..],
            )?
        };
        Ok(self.processor.sample(&logits)?)
    }
}
