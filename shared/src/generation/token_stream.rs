//! The one generation loop, for every engine, in the browser and natively: one token per
//! `next_token().await` on a `GeneratingSequence` — reuse of the cached prompt prefix, the
//! prompt's batched prefill, the engine's candidate selection, seeded sampling, end-of-turn
//! tokens, the token budget, and a stop handle another task can trigger between tokens.

use super::engine_error::EngineError;
use super::generating_sequence::GeneratingSequence;
use super::stop_handle::{StopHandle, StopReason};
use crate::SamplingParams;
use crate::token_sampler::{TokenSampler, penalized_tokens};
use crate::tokenizer::common_prefix_len;

pub struct TokenStream<'a, S: GeneratingSequence> {
    sequence: &'a mut S,
    sampler: TokenSampler,
    stop_tokens: Vec<u32>,
    stop: StopHandle,
    /// Prompt and generated tokens (the repetition penalty's window).
    history: Vec<u32>,
    generated: usize,
    /// Prompt tokens actually run (the rest came from the cache).
    prefilled: usize,
    finished: Option<StopReason>,
}

impl<'a, S: GeneratingSequence> TokenStream<'a, S> {
    /// Starts generating after `prompt` on `sequence`: makes room for the prompt and
    /// `max_new_tokens`, reuses cached tokens that begin the prompt, and runs the rest (queued
    /// for the GPU, or computed on the CPU).
    pub async fn start(
        sequence: &'a mut S,
        prompt: &[u32],
        params: SamplingParams,
        seed: u64,
        stop_tokens: Vec<u32>,
        stop: StopHandle,
    ) -> Result<Self, EngineError> {
        params
            .validate()
            .map_err(|e| EngineError::Unsupported(format!("sampling: {e}")))?;
        if prompt.is_empty() {
            return Err(EngineError::Unsupported(
                "cannot generate from an empty prompt".into(),
            ));
        }
        let needed = prompt.len() + params.max_new_tokens as usize;
        if needed > sequence.max_positions() {
            return Err(EngineError::Unsupported(format!(
                "prompt of {} tokens plus {} new tokens exceeds the sequence's {} positions",
                prompt.len(),
                params.max_new_tokens,
                sequence.max_positions()
            )));
        }
        sequence.reserve(needed).await?;
        // At least the prompt's last token must run to produce fresh logits.
        let reusable = common_prefix_len(sequence.tokens(), prompt).min(prompt.len() - 1);
        sequence.truncate(reusable);
        sequence.feed(&prompt[reusable..])?;
        Ok(TokenStream {
            sequence,
            sampler: TokenSampler::new(params, seed),
            stop_tokens,
            stop,
            history: prompt.to_vec(),
            generated: 0,
            prefilled: prompt.len() - reusable,
            finished: None,
        })
    }

    /// The next token, or `None` once generation has ended (see `stop_reason`).
    pub async fn next_token(&mut self) -> Result<Option<u32>, EngineError> {
        if self.finished.is_some() {
            return Ok(None);
        }
        if self.stop.is_stopped() {
            self.finished = Some(StopReason::Stopped);
            return Ok(None);
        }
        let params = *self.sampler.params();
        let vocab = self.sequence.vocab_size();
        let penalized = penalized_tokens(&self.history, &params);
        let scores = self
            .sequence
            .next_token_scores(
                params.candidates_needed(vocab),
                &penalized,
                params.repeat_penalty,
            )
            .await?;
        let token = self
            .sampler
            .sample(&scores)
            .ok_or_else(|| EngineError::Unsupported("the model produced no finite logit".into()))?;
        if self.stop_tokens.contains(&token) {
            self.finished = Some(StopReason::EndOfTurn);
            return Ok(None);
        }
        self.history.push(token);
        self.generated += 1;
        if self.generated == params.max_new_tokens as usize {
            self.finished = Some(StopReason::MaxTokens);
        } else {
            self.sequence.feed(&[token])?;
        }
        Ok(Some(token))
    }

    pub fn stop_reason(&self) -> Option<StopReason> {
        self.finished
    }

    /// Tokens of the prompt this stream started from.
    pub fn prompt_tokens(&self) -> usize {
        self.history.len() - self.generated
    }

    pub fn generated_tokens(&self) -> usize {
        self.generated
    }

    /// Prompt tokens that ran through the model (cached ones excluded).
    pub fn prefilled_tokens(&self) -> usize {
        self.prefilled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token_sampler::TokenScore;

    /// A model that always prefers the token after the last one (mod 8), and counts the
    /// tokens it runs.
    struct CountingSequence {
        tokens: Vec<u32>,
        fed: usize,
    }

    impl GeneratingSequence for CountingSequence {
        fn max_positions(&self) -> usize {
            16
        }
        fn tokens(&self) -> &[u32] {
            &self.tokens
        }
        fn truncate(&mut self, len: usize) {
            self.tokens.truncate(len);
        }
        async fn reserve(&mut self, _positions: usize) -> Result<(), EngineError> {
            Ok(())
        }
        fn feed(&mut self, tokens: &[u32]) -> Result<(), EngineError> {
            self.fed += tokens.len();
            self.tokens.extend_from_slice(tokens);
            Ok(())
        }
        fn vocab_size(&self) -> usize {
            8
        }
        async fn next_token_scores(
            &self,
            needed: usize,
            _penalized: &[u32],
            _penalty: f32,
        ) -> Result<Vec<TokenScore>, EngineError> {
            let best = (self.tokens.last().unwrap() + 1) % 8;
            Ok((0..needed as u32)
                .map(|rank| TokenScore {
                    token: (best + rank) % 8,
                    logit: -(rank as f32),
                })
                .collect())
        }
    }

    fn greedy(max_new_tokens: u32) -> SamplingParams {
        SamplingParams {
            max_new_tokens,
            ..SamplingParams::default()
        }
    }

    fn run(
        sequence: &mut CountingSequence,
        prompt: &[u32],
        max_new_tokens: u32,
        stop_tokens: Vec<u32>,
        stop_after: Option<usize>,
    ) -> (Vec<u32>, Option<StopReason>, usize) {
        pollster::block_on(async {
            let stop = StopHandle::new();
            let mut stream = TokenStream::start(
                sequence,
                prompt,
                greedy(max_new_tokens),
                0,
                stop_tokens,
                stop.clone(),
            )
            .await
            .unwrap();
            let mut out = Vec::new();
            while let Some(token) = stream.next_token().await.unwrap() {
                out.push(token);
                if Some(out.len()) == stop_after {
                    stop.stop();
                }
            }
            (out, stream.stop_reason(), stream.prefilled_tokens())
        })
    }

    #[test]
    fn budget_end_of_turn_and_stop_each_end_a_reply_for_their_reason() {
        let mut sequence = CountingSequence {
            tokens: vec![],
            fed: 0,
        };
        let (out, reason, prefilled) = run(&mut sequence, &[1, 2], 3, vec![], None);
        assert_eq!(out, [3, 4, 5]);
        assert_eq!((reason, prefilled), (Some(StopReason::MaxTokens), 2));
        // The last token is returned but not run: nothing will read its scores.
        assert_eq!(sequence.tokens, [1, 2, 3, 4]);

        let (out, reason, _) = run(&mut sequence, &[6], 5, vec![0], None);
        assert_eq!(out, [7], "the end-of-turn token 0 is not part of the reply");
        assert_eq!(reason, Some(StopReason::EndOfTurn));

        let (out, reason, _) = run(&mut sequence, &[1], 5, vec![], Some(2));
        assert_eq!(out, [2, 3]);
        assert_eq!(reason, Some(StopReason::Stopped));
    }

    #[test]
    fn a_prompt_extending_the_cache_runs_only_its_new_tokens() {
        let mut sequence = CountingSequence {
            tokens: vec![],
            fed: 0,
        };
        run(&mut sequence, &[1, 2, 3], 1, vec![], None);
        assert_eq!(sequence.fed, 3);
        // The next turn: the cached [1, 2, 3] begin the prompt.
        let (_, _, prefilled) = run(&mut sequence, &[1, 2, 3, 4, 5], 1, vec![], None);
        assert_eq!(prefilled, 2);
        // The same prompt again still runs its last token, for fresh scores.
        let (out, _, prefilled) = run(&mut sequence, &[1, 2, 3, 4, 5], 1, vec![], None);
        assert_eq!((out, prefilled), (vec![6], 1));
        // A different prompt keeps only the common prefix.
        let (_, _, prefilled) = run(&mut sequence, &[1, 7, 7], 1, vec![], None);
        assert_eq!(prefilled, 2);
        assert_eq!(sequence.tokens, [1, 7, 7]);
    }

    #[test]
    fn impossible_requests_are_refused_before_anything_runs() {
        let mut sequence = CountingSequence {
            tokens: vec![],
            fed: 0,
        };
        let start = |sequence: &mut CountingSequence, prompt: &[u32], max_new: u32| {
            pollster::block_on(async {
                TokenStream::start(
                    sequence,
                    prompt,
                    greedy(max_new),
                    0,
                    vec![],
                    StopHandle::new(),
                )
                .await
                .err()
                .map(|e| e.to_string())
            })
        };
        assert!(
            start(&mut sequence, &[], 4)
                .unwrap()
                .contains("empty prompt")
        );
        assert!(
            start(&mut sequence, &[1; 10], 7)
                .unwrap()
                .contains("16 positions")
        );
        assert_eq!(sequence.fed, 0);
        assert_eq!(start(&mut sequence, &[1; 10], 6), None);
    }
}
