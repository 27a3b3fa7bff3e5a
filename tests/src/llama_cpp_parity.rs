//! Greedy generation against llama.cpp's recorded replies (fixtures written by
//! `tests/fixtures/make_fixtures.py` and `make_export_fixtures.py`), through the loop every
//! engine runs in the browser and in `dpo chat` (`shared::generation::TokenStream`): identical
//! prompt ids, and identical greedy replies on all fixture prompts but at most one. Where the
//! two quantized arithmetics part ways, it must be at a near-tie: llama.cpp's token is among
//! our top two and within a small logit margin of our pick — a divergence at a clear winner is
//! a bug.

use native_trainer::chat::blocking_generation::generate;
use serde_json::Value;
use shared::generation::GeneratingSequence;
use shared::{ChatMessage, ModelText, SamplingParams};

/// Largest logit gap between our pick and llama.cpp's that still counts as a near-tie.
const NEAR_TIE_LOGIT_GAP: f32 = 0.5;

/// Our greedy replies to `fixture`'s cases on `sequence` match llama.cpp's (see the module doc).
pub fn assert_greedy_parity<S: GeneratingSequence>(
    sequence: &mut S,
    text: &ModelText,
    fixture: &Value,
) {
    let max_new_tokens = fixture["max_new_tokens"].as_u64().unwrap() as u32;
    let sampling = SamplingParams {
        max_new_tokens,
        ..SamplingParams::default()
    };
    let cases = fixture["cases"].as_array().unwrap();
    assert!(!cases.is_empty(), "the fixture has no cases");
    let mut diverged = Vec::new();
    for case in cases {
        let question = case["question"].as_str().unwrap();
        let prompt = text
            .template
            .render(&[ChatMessage::user(question)], true)
            .unwrap();
        let prompt_ids = text.tokenizer.encode(&prompt).unwrap();
        let expected_prompt: Vec<u32> = serde_json::from_value(case["prompt_ids"].clone()).unwrap();
        assert_eq!(
            prompt_ids, expected_prompt,
            "prompt ids differ for {question:?}"
        );

        let mut reply = Vec::new();
        generate(
            sequence,
            &prompt_ids,
            sampling,
            0,
            &text.stop_tokens(),
            &mut |id| {
                reply.push(id);
                Ok(true)
            },
        )
        .unwrap();
        let expected: Vec<u32> = serde_json::from_value(case["reply_ids"].clone()).unwrap();
        if reply != expected {
            let agree = reply
                .iter()
                .zip(&expected)
                .take_while(|(a, b)| a == b)
                .count();
            eprintln!(
                "{question:?}: diverges after {agree} tokens\n  ours:      {:?}\n  llama.cpp: {:?}",
                text.tokenizer.decode(&reply).unwrap(),
                case["reply_text"].as_str().unwrap()
            );
            // Look at our scores at the first differing position.
            let mut context = prompt_ids.clone();
            context.extend_from_slice(&reply[..agree]);
            sequence.truncate(0);
            pollster::block_on(sequence.reserve(context.len() + 1)).unwrap();
            sequence.feed(&context).unwrap();
            let top = pollster::block_on(sequence.next_token_scores(8, &[], 1.0)).unwrap();
            let (ours, theirs) = (reply[agree], expected[agree]);
            eprintln!("  at token {agree}: our top scores {top:?}, llama.cpp picked {theirs}");
            let rank = |token: u32| top.iter().position(|s| s.token == token);
            let (Some(our_rank), Some(their_rank)) = (rank(ours), rank(theirs)) else {
                panic!(
                    "{question:?}: our token {ours} or llama.cpp's {theirs} is not even in our top 8"
                );
            };
            let gap = (top[our_rank].logit - top[their_rank].logit).abs();
            assert!(
                their_rank <= 1 && gap < NEAR_TIE_LOGIT_GAP,
                "{question:?}: llama.cpp's token {theirs} ranks {} behind ours by {gap} logits — not a near-tie",
                their_rank + 1
            );
            diverged.push(question.to_string());
        }
    }
    assert!(
        diverged.len() <= 1,
        "more than one reply differs from llama.cpp: {diverged:?}"
    );
}
