//! The preference-pair schema: JSON round trip, validation errors that name the field, and
//! conversion to TRL's standard and conversational rows.

use shared::trl_rows::{preferences, to_trl_rows};
use shared::{
    Candidate, ChatMessage, ChatTemplate, ModelRef, PairLimits, PairRejection, PreferencePair,
    SamplingParams, TrlRow, TrlStyle, Vote,
};
use time::macros::datetime;

fn candidate(text: &str, seed: u64) -> Candidate {
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

fn pair(vote: Vote) -> PreferencePair {
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

fn validation_error(pair: &PreferencePair) -> (String, String) {
    let e = PairLimits::default().validate(pair).unwrap_err();
    (e.field, e.reason)
}

#[test]
fn json_round_trip_uses_snake_case_votes_and_rfc3339_times() {
    let original = pair(Vote::BothBad);
    let json = serde_json::to_string(&original).unwrap();
    assert!(json.contains("\"vote\":\"both_bad\""), "{json}");
    assert!(
        json.contains("\"shown_at\":\"2026-11-26T10:00:00Z\""),
        "{json}"
    );
    assert!(
        !json.contains("edited_answer"),
        "absent edit is omitted: {json}"
    );
    let parsed = PairLimits::default().read_submission(&json, None).unwrap();
    assert_eq!(parsed, original);
}

/// The refusal of a document that is not a pair (`400`).
fn submission_error(text: &str) -> shared::ValidationError {
    match PairLimits::default().read_submission(text, None) {
        Err(PairRejection::Malformed(error)) => error,
        other => panic!("expected a malformed-pair refusal, got {other:?}"),
    }
}

#[test]
fn malformed_json_and_unknown_fields_are_rejected_with_a_location() {
    let error = submission_error("{\"schema_version\": 1,");
    assert!(error.reason.contains("line 1"), "{error}");

    let mut value = serde_json::to_value(pair(Vote::A)).unwrap();
    value["vote"] = "c".into();
    let error = submission_error(&value.to_string());
    assert!(error.reason.contains("unknown variant `c`"), "{error}");

    let mut value = serde_json::to_value(pair(Vote::A)).unwrap();
    value["surprise"] = 1.into();
    let error = submission_error(&value.to_string());
    assert!(error.reason.contains("surprise"), "{error}");
}

#[test]
fn validation_names_the_offending_field() {
    let mut p = pair(Vote::A);
    p.conversation[1].content = "x".repeat(32_001);
    assert_eq!(validation_error(&p).0, "conversation[1].content");

    let mut p = pair(Vote::A);
    p.conversation.push(ChatMessage::assistant("trailing"));
    assert_eq!(validation_error(&p).0, "conversation[2].role");

    let mut p = pair(Vote::A);
    p.conversation.insert(1, ChatMessage::system("late system"));
    assert_eq!(validation_error(&p).0, "conversation[1].role");

    let mut p = pair(Vote::A);
    p.conversation = (0..65).map(|_| ChatMessage::user("hi")).collect();
    assert_eq!(validation_error(&p).0, "conversation");

    let mut p = pair(Vote::A);
    p.idempotency_key = "short".into();
    assert_eq!(validation_error(&p).0, "idempotency_key");

    let mut p = pair(Vote::A);
    p.annotator_id = "alice@example.com".into();
    assert_eq!(validation_error(&p).0, "annotator_id");

    let mut p = pair(Vote::A);
    p.candidate_b.model.sha256 = "ABC".into();
    assert_eq!(validation_error(&p).0, "candidate_b.model.sha256");

    let mut p = pair(Vote::A);
    p.candidate_a.sampling.top_p = 1.5;
    let (field, reason) = validation_error(&p);
    assert_eq!(field, "candidate_a.sampling");
    assert!(reason.contains("top_p"));

    let mut p = pair(Vote::A);
    p.candidate_a.text = "nul\0byte".into();
    assert_eq!(validation_error(&p).0, "candidate_a.text");

    let mut p = pair(Vote::A);
    p.edited_answer = Some("   ".into());
    assert_eq!(validation_error(&p).0, "edited_answer");

    let mut p = pair(Vote::A);
    p.voted_at = datetime!(2026-11-26 09:00:00 UTC);
    assert_eq!(validation_error(&p).0, "voted_at");

    let mut p = pair(Vote::A);
    p.schema_version = 3;
    assert_eq!(validation_error(&p).0, "schema_version");

    // Version 1 pairs are still read, but only version 2 names a served prompt.
    let mut p = pair(Vote::A);
    p.schema_version = 1;
    assert!(PairLimits::default().validate(&p).is_ok());
    p.prompt_id = Some("p-1".into());
    assert_eq!(validation_error(&p).0, "prompt_id");
    p.schema_version = 2;
    assert!(PairLimits::default().validate(&p).is_ok());
    p.prompt_id = Some("no spaces".into());
    assert_eq!(validation_error(&p).0, "prompt_id");

    assert!(PairLimits::default().validate(&pair(Vote::Tie)).is_ok());
}

#[test]
fn votes_map_to_chosen_and_rejected() {
    assert_eq!(preferences(&pair(Vote::A)), vec![("4", "5")]);
    assert_eq!(preferences(&pair(Vote::B)), vec![("5", "4")]);
    assert!(preferences(&pair(Vote::Tie)).is_empty());
    assert!(preferences(&pair(Vote::BothBad)).is_empty());
    let mut identical = pair(Vote::A);
    identical.candidate_b.text = identical.candidate_a.text.clone();
    assert!(
        preferences(&identical).is_empty(),
        "a vote between two identical answers teaches nothing"
    );

    let mut edited = pair(Vote::BothBad);
    edited.edited_answer = Some("2+2 = 4".into());
    assert_eq!(
        preferences(&edited),
        vec![("2+2 = 4", "4"), ("2+2 = 4", "5")]
    );
    edited.vote = Vote::A;
    assert_eq!(preferences(&edited), vec![("2+2 = 4", "5")]);
    edited.edited_answer = Some("5".into());
    edited.vote = Vote::Tie;
    assert_eq!(
        preferences(&edited),
        vec![("5", "4")],
        "an edit equal to a candidate is not its own rival"
    );
}

#[test]
fn trl_rows_have_trl_shapes() {
    let template = ChatTemplate::new(None, "<|endoftext|>", "<|im_end|>").unwrap();
    let rows = to_trl_rows(&pair(Vote::B), TrlStyle::Conversational, &template).unwrap();
    assert_eq!(
        serde_json::to_value(&rows[0]).unwrap(),
        serde_json::json!({
            "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}],
            "chosen": [{"role": "assistant", "content": "5"}],
            "rejected": [{"role": "assistant", "content": "4"}],
        })
    );
    let rows = to_trl_rows(&pair(Vote::A), TrlStyle::Standard, &template).unwrap();
    assert_eq!(
        rows,
        vec![TrlRow::Standard {
            prompt: "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n".into(),
            chosen: "4".into(),
            rejected: "5".into(),
        }]
    );
    assert!(
        to_trl_rows(&pair(Vote::Tie), TrlStyle::Standard, &template)
            .unwrap()
            .is_empty()
    );
}
