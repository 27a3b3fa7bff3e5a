//! Votes written by hand for the unit tests of `label_analytics`: one pair per call, with the
//! two texts, their versions, the annotator and the vote.

use shared::{Candidate, ChatMessage, ModelRef, PreferencePair, SamplingParams, Vote};

/// A version that only a test serves.
pub fn model(version: &str) -> ModelRef {
    ModelRef {
        version: version.into(),
        sha256: "0".repeat(64),
    }
}

/// `annotator`'s `vote` on `prompt` between `a` and `b` (text, version).
pub fn vote(
    prompt: &str,
    a: (&str, &ModelRef),
    b: (&str, &ModelRef),
    annotator: &str,
    vote: Vote,
) -> PreferencePair {
    let candidate = |(text, model): (&str, &ModelRef), seed| Candidate {
        text: text.into(),
        model: model.clone(),
        sampling: SamplingParams::default(),
        seed,
    };
    PreferencePair {
        schema_version: 2,
        idempotency_key: format!("{annotator}-{prompt}-{}-{}", a.0, vote.as_str())
            .replace(' ', "_")
            .replace('?', ""),
        annotator_id: annotator.into(),
        prompt_id: None,
        conversation: vec![ChatMessage::user(prompt)],
        candidate_a: candidate(a, 1),
        candidate_b: candidate(b, 2),
        vote,
        edited_answer: None,
        shown_at: time::macros::datetime!(2026-12-02 10:00 UTC),
        voted_at: time::macros::datetime!(2026-12-02 10:01 UTC),
    }
}

/// v2 (trained from v1) wins 3 battles, loses 1, ties 1, on both sides of the screen; one
/// more comparison is no battle (both answers from v1).
pub fn v2_beats_v1() -> Vec<PreferencePair> {
    let (v1, v2) = (model("v1"), model("v2"));
    vec![
        vote("q1", ("x", &v2), ("y", &v1), "alice", Vote::A),
        vote("q2", ("x", &v1), ("y", &v2), "alice", Vote::B),
        vote("q3", ("x", &v1), ("y", &v2), "bob", Vote::B),
        vote("q4", ("x", &v1), ("y", &v2), "bob", Vote::A),
        vote("q5", ("x", &v2), ("y", &v1), "carol", Vote::Tie),
        vote("q6", ("x", &v1), ("y", &v1), "carol", Vote::A),
    ]
}

/// Three raters on five comparisons of the texts Alpha and Beta, sides varying: categories
/// first (Alpha) better, second (Beta) better, tie.
pub fn three_raters() -> Vec<PreferencePair> {
    let v1 = model("v1");
    let (alpha, beta) = (("Alpha", &v1), ("Beta", &v1));
    vec![
        vote("c1", alpha, beta, "r1", Vote::A), // first
        vote("c1", beta, alpha, "r2", Vote::B), // first
        vote("c2", alpha, beta, "r1", Vote::A), // first
        vote("c2", alpha, beta, "r2", Vote::B), // second
        vote("c2", beta, alpha, "r3", Vote::A), // second
        vote("c3", alpha, beta, "r1", Vote::Tie),
        vote("c3", beta, alpha, "r2", Vote::Tie),
        vote("c4", beta, alpha, "r1", Vote::A), // second
        vote("c4", alpha, beta, "r2", Vote::B), // second
        vote("c5", alpha, beta, "r3", Vote::A), // labelled once: not compared
    ]
}
