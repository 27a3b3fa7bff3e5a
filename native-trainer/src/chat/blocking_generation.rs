//! The browser's generation loop (`shared::generation::TokenStream`) driven to the end on
//! this thread (pollster), timed with an `Instant`: what `dpo chat`, `dpo bench` and the
//! parity tests call.

use std::time::Instant;

use anyhow::Result;
use shared::SamplingParams;
use shared::generation::{
    GeneratingSequence, GenerationStats, StatsRecorder, StopHandle, TokenStream,
};

/// Generates after `prompt`, handing each new token to `on_token` until an end-of-turn token,
/// `max_new_tokens`, or `on_token` returning `false` (the reply then ends as stopped).
pub fn generate<S: GeneratingSequence>(
    sequence: &mut S,
    prompt: &[u32],
    sampling: SamplingParams,
    seed: u64,
    stop_tokens: &[u32],
    on_token: &mut dyn FnMut(u32) -> Result<bool>,
) -> Result<GenerationStats> {
    let clock = Instant::now();
    let now_ms = || clock.elapsed().as_secs_f64() * 1000.0;
    let mut recorder = StatsRecorder::new(now_ms());
    let stats = pollster::block_on(async {
        let stop = StopHandle::new();
        let mut stream = TokenStream::start(
            sequence,
            prompt,
            sampling,
            seed,
            stop_tokens.to_vec(),
            stop.clone(),
        )
        .await?;
        while let Some(token) = stream.next_token().await? {
            recorder.token(now_ms());
            if !on_token(token)? {
                stop.stop();
            }
        }
        anyhow::Ok(recorder.finish(&stream, now_ms()))
    })?;
    tracing::info!(
        "prefill {} tokens in {:.2}s ({:.1} tok/s), generated {} tokens ({:.1} tok/s after the first), stop: {:?}",
        stats.prefilled_tokens,
        stats.first_token_ms / 1000.0,
        stats.prefill_tokens_per_second(),
        stats.generated_tokens,
        stats.decode_tokens_per_second(),
        stats.stop_reason
    );
    Ok(stats)
}
