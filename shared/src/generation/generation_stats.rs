//! What one generation measured — the same figures for `dpo chat`, `dpo bench` and the
//! browser's chat — timed with the caller's clock in milliseconds (`performance.now()` in the
//! browser, an `Instant` natively).

use serde::{Deserialize, Serialize};

use super::generating_sequence::GeneratingSequence;
use super::stop_handle::StopReason;
use super::token_stream::TokenStream;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GenerationStats {
    /// Tokens of the prompt.
    pub prompt_tokens: usize,
    /// Prompt tokens run through the model (the rest came from the cache).
    pub prefilled_tokens: usize,
    pub generated_tokens: usize,
    /// From the request to the first token: the prefill and the first token's scores.
    pub first_token_ms: f64,
    /// From the first token to the last.
    pub decode_ms: f64,
    pub stop_reason: StopReason,
}

impl GenerationStats {
    /// Prompt tokens run per second, up to the first token.
    pub fn prefill_tokens_per_second(&self) -> f64 {
        per_second(self.prefilled_tokens, self.first_token_ms)
    }

    /// Tokens per second after the first (0 with fewer than two tokens).
    pub fn decode_tokens_per_second(&self) -> f64 {
        per_second(self.generated_tokens.saturating_sub(1), self.decode_ms)
    }
}

fn per_second(tokens: usize, ms: f64) -> f64 {
    if tokens == 0 || ms <= 0.0 {
        return 0.0;
    }
    tokens as f64 * 1000.0 / ms
}

/// Notes when a generation was asked for and when each token came.
#[derive(Debug, Clone, Copy)]
pub struct StatsRecorder {
    requested_ms: f64,
    first_token_ms: Option<f64>,
    last_token_ms: f64,
}

impl StatsRecorder {
    /// Starts timing at `now_ms`, before the prompt is fed.
    pub fn new(now_ms: f64) -> Self {
        Self {
            requested_ms: now_ms,
            first_token_ms: None,
            last_token_ms: now_ms,
        }
    }

    /// A token arrived at `now_ms`.
    pub fn token(&mut self, now_ms: f64) {
        self.first_token_ms.get_or_insert(now_ms);
        self.last_token_ms = now_ms;
    }

    /// The figures of `stream`, which has ended, at `now_ms`.
    pub fn finish<S: GeneratingSequence>(
        self,
        stream: &TokenStream<'_, S>,
        now_ms: f64,
    ) -> GenerationStats {
        let first = self.first_token_ms.unwrap_or(now_ms);
        GenerationStats {
            prompt_tokens: stream.prompt_tokens(),
            prefilled_tokens: stream.prefilled_tokens(),
            generated_tokens: stream.generated_tokens(),
            first_token_ms: first - self.requested_ms,
            decode_ms: self.last_token_ms.max(first) - first,
            stop_reason: stream.stop_reason().unwrap_or(StopReason::Stopped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(generated_tokens: usize, first_token_ms: f64, decode_ms: f64) -> GenerationStats {
        GenerationStats {
            prompt_tokens: 10,
            prefilled_tokens: 8,
            generated_tokens,
            first_token_ms,
            decode_ms,
            stop_reason: StopReason::MaxTokens,
        }
    }

    #[test]
    fn rates_count_the_tokens_after_the_first_and_never_divide_by_zero() {
        let s = stats(5, 400.0, 2000.0);
        assert_eq!(s.prefill_tokens_per_second(), 20.0);
        assert_eq!(s.decode_tokens_per_second(), 2.0);
        assert_eq!(stats(1, 400.0, 0.0).decode_tokens_per_second(), 0.0);
        assert_eq!(stats(0, 0.0, 0.0).prefill_tokens_per_second(), 0.0);
    }

    #[test]
    fn the_wire_names_the_stop_reason_in_snake_case() {
        let wire = serde_json::to_value(stats(2, 1.0, 1.0)).unwrap();
        assert_eq!(wire["stop_reason"], "max_tokens");
    }
}
