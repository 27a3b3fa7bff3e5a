//! Choosing the next token, the same on every engine and on wasm32: repetition penalty
//! (llama.cpp style), then greedy, or seeded top-k → temperature → top-p sampling.
//!
//! Engines hand the sampler the best-scoring tokens, sorted best first (ties: lower token id
//! first). Sampling only ever looks at the first `SamplingParams::candidates_needed` of them, so
//! a GPU engine reads back those few scores instead of the whole vocabulary, and every engine
//! draws the same token for the same scores and seed.

use crate::SamplingParams;
use crate::seeded_rng::SplitMix64;

/// A token and its (penalized) logit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TokenScore {
    pub token: u32,
    pub logit: f32,
}

/// Tokens the repetition penalty applies to: the last `repeat_last_n` of `history`, each once,
/// ascending. Empty when the penalty is off.
pub fn penalized_tokens(history: &[u32], params: &SamplingParams) -> Vec<u32> {
    if params.repeat_penalty == 1.0 {
        return Vec::new();
    }
    let start = history.len().saturating_sub(params.repeat_last_n as usize);
    let mut tokens = history[start..].to_vec();
    tokens.sort_unstable();
    tokens.dedup();
    tokens
}

/// llama.cpp's repetition penalty, in place: positive logits are divided by `penalty`, others
/// multiplied. `tokens` must be distinct (see [`penalized_tokens`]); ids outside are ignored.
pub fn apply_repetition_penalty(logits: &mut [f32], tokens: &[u32], penalty: f32) {
    for &token in tokens {
        if let Some(logit) = logits.get_mut(token as usize) {
            *logit = if *logit >= 0.0 {
                *logit / penalty
            } else {
                *logit * penalty
            };
        }
    }
}

/// The `k` best tokens of `logits`, best first, ties to the lower id (NaN never wins).
pub fn top_scores(logits: &[f32], k: usize) -> Vec<TokenScore> {
    let mut scores: Vec<TokenScore> = logits
        .iter()
        .enumerate()
        .filter(|(_, logit)| !logit.is_nan())
        .map(|(token, &logit)| TokenScore {
            token: token as u32,
            logit,
        })
        .collect();
    let order =
        |a: &TokenScore, b: &TokenScore| b.logit.total_cmp(&a.logit).then(a.token.cmp(&b.token));
    let k = k.min(scores.len());
    if k < scores.len() && k > 0 {
        scores.select_nth_unstable_by(k - 1, order);
        scores.truncate(k);
    }
    scores.sort_unstable_by(order);
    scores
}

impl SamplingParams {
    /// How many of the best tokens sampling looks at: 1 when greedy, `top_k` when set,
    /// otherwise the whole vocabulary.
    pub fn candidates_needed(&self, vocab_size: usize) -> usize {
        if self.is_greedy() {
            1
        } else if self.top_k > 0 {
            (self.top_k as usize).min(vocab_size)
        } else {
            vocab_size
        }
    }
}

/// A seeded sampler: the same seed and scores give the same tokens, natively and in the
/// browser.
pub struct TokenSampler {
    params: SamplingParams,
    rng: SplitMix64,
}

impl TokenSampler {
    pub fn new(params: SamplingParams, seed: u64) -> Self {
        Self {
            params,
            rng: SplitMix64(seed),
        }
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Picks a token from `scores` (penalized, sorted best first, at least
    /// `candidates_needed` long unless the vocabulary is smaller). `None` when `scores` is empty.
    pub fn sample(&mut self, scores: &[TokenScore]) -> Option<u32> {
        let best = scores.first()?;
        if self.params.is_greedy() {
            return Some(best.token);
        }
        let kept = match self.params.top_k {
            0 => scores,
            k => &scores[..scores.len().min(k as usize)],
        };
        let temperature = f64::from(self.params.temperature);
        let weights: Vec<f64> = kept
            .iter()
            .map(|s| (f64::from(s.logit - best.logit) / temperature).exp())
            .collect();
        let total: f64 = weights.iter().sum();
        // Nucleus: the shortest prefix whose probability reaches top_p.
        let mut nucleus = weights.len();
        if self.params.top_p < 1.0 {
            let threshold = f64::from(self.params.top_p) * total;
            let mut cumulative = 0.0;
            for (i, w) in weights.iter().enumerate() {
                cumulative += w;
                if cumulative >= threshold {
                    nucleus = i + 1;
                    break;
                }
            }
        }
        let nucleus_total: f64 = weights[..nucleus].iter().sum();
        let mut draw = self.rng.next_f64() * nucleus_total;
        for (score, w) in kept[..nucleus].iter().zip(&weights) {
            if draw < *w {
                return Some(score.token);
            }
            draw -= w;
        }
        Some(kept[nucleus - 1].token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32, top_k: u32, top_p: f32) -> SamplingParams {
        SamplingParams {
            temperature,
            top_k,
            top_p,
            ..SamplingParams::default()
        }
    }

    #[test]
    fn top_scores_are_sorted_with_ties_to_the_lower_id() {
        let logits = [1.0, 3.0, f32::NAN, 3.0, -2.0, 2.5];
        let top = top_scores(&logits, 3);
        let tokens: Vec<u32> = top.iter().map(|s| s.token).collect();
        assert_eq!(tokens, [1, 3, 5]);
        assert_eq!(top_scores(&logits, 100).len(), 5);
    }

    #[test]
    fn penalty_lowers_positive_and_negative_logits() {
        let mut logits = [2.0, -2.0, 1.0];
        let penalized = penalized_tokens(
            &[0, 1, 0, 1],
            &SamplingParams {
                repeat_penalty: 2.0,
                ..SamplingParams::default()
            },
        );
        assert_eq!(penalized, [0, 1]);
        apply_repetition_penalty(&mut logits, &penalized, 2.0);
        assert_eq!(logits, [1.0, -4.0, 1.0]);
    }

    #[test]
    fn greedy_takes_the_best_and_sampling_is_seeded() {
        let scores = top_scores(&[0.1, 0.5, 0.3, 0.45], 4);
        assert_eq!(
            TokenSampler::new(params(0.0, 0, 1.0), 1).sample(&scores),
            Some(1)
        );
        let draw = |seed| {
            let mut sampler = TokenSampler::new(params(1.0, 0, 1.0), seed);
            (0..64)
                .map(|_| sampler.sample(&scores).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        let mut seen = draw(7);
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, [0, 1, 2, 3], "temperature 1 reaches every token");
    }

    #[test]
    fn top_k_and_top_p_restrict_the_draw() {
        let scores = top_scores(&[5.0, 4.9, 0.0, -1.0], 4);
        let mut top_k = TokenSampler::new(params(1.0, 2, 1.0), 3);
        let mut top_p = TokenSampler::new(params(1.0, 0, 0.5), 3);
        for _ in 0..200 {
            assert!(top_k.sample(&scores).unwrap() <= 1);
            assert_eq!(top_p.sample(&scores), Some(0));
        }
    }
}
