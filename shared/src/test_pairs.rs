//! A preference pair written by hand, for the unit tests of the pair schema, its limits and
//! TRL's rows.

use time::macros::datetime;

use crate::{Candidate, ChatMessage, ModelRef, PreferencePair, SamplingParams, Vote};

pub fn candidate(text: &str, seed: u64) -> Candidate {
    Candidate {
        text: text.into(),
        model: ModelRef {
            version: "qwen2.5-0.5b-r0".into(),
            sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32".into(),
        },
        sampling: SamplingParams {
            temperature: 0.7,
            top_p: 0.9,
            top_k: 40,
            ..SamplingParams::default()
        },
        seed,
    }
}

pub fn pair(vote: Vote) -> PreferencePair {
    PreferencePair {
        schema_version: 1,
        idempotency_key: "0f8e2c1a-4b7d-4e2a-9c3f-1a2b3c4d5e6f".into(),
        annotator_id: "anon-7f3a".into(),
        prompt_id: None,
        conversation: vec![
            ChatMessage::system("Be brief."),
            ChatMessage::user("What is 2+2?"),
        ],
        candidate_a: candidate("4", 1),
        candidate_b: candidate("5", 2),
        vote,
        edited_answer: None,
        shown_at: datetime!(2026-11-26 10:00:00 UTC),
        voted_at: datetime!(2026-11-26 10:00:07 UTC),
    }
}
