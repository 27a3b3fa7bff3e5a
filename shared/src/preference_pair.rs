//! The preference-pair schema, defined once: what the browser submits after a vote, what the
//! server stores and what the trainer turns into TRL rows.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::chat_message::ChatMessage;
use crate::json_integer::whole_number;
use crate::sampling::SamplingParams;

/// Version of this schema; bumped on any change. Version 2 added `prompt_id`; pairs of
/// version 1 (no `prompt_id`) are still read.
pub const PAIR_SCHEMA_VERSION: u32 = 2;
/// The oldest schema version still read.
pub const OLDEST_PAIR_SCHEMA_VERSION: u32 = 1;

/// Which of the two candidates the annotator preferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Vote {
    /// Candidate A is better.
    A,
    /// Candidate B is better.
    B,
    /// Equally good: no preference to learn from (unless an edited answer is given).
    Tie,
    /// Neither is acceptable: no preference between them (unless an edited answer is given).
    BothBad,
}

impl Vote {
    pub fn as_str(self) -> &'static str {
        match self {
            Vote::A => "a",
            Vote::B => "b",
            Vote::Tie => "tie",
            Vote::BothBad => "both_bad",
        }
    }
}

/// The exact model that produced a candidate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ModelRef {
    /// The serving manifest's version id.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9._:-]{1,128}$"))]
    pub version: String,
    /// Lower-case hex sha256 of the GGUF file.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{64}$"))]
    pub sha256: String,
}

/// One generated answer and how it was generated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Candidate {
    pub text: String,
    pub model: ModelRef,
    pub sampling: SamplingParams,
    #[serde(deserialize_with = "whole_number")]
    pub seed: u64,
}

/// A labelled comparison of two answers to the same conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PreferencePair {
    /// `OLDEST_PAIR_SCHEMA_VERSION` to `PAIR_SCHEMA_VERSION`.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 2))]
    #[serde(deserialize_with = "whole_number")]
    pub schema_version: u32,
    /// Chosen by the client; a retried submission with the same key is stored once.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9._:-]{8,128}$"))]
    pub idempotency_key: String,
    /// Pseudonymous: a random id per labeller, never a name or e-mail.
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9._:-]{1,128}$"))]
    pub annotator_id: String,
    /// The served prompt this pair labels (from a prompt set, `dpo prompts import`); `None`
    /// when the annotator wrote the prompt. A pair naming a prompt carries its conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[A-Za-z0-9._:-]{1,128}$"))]
    pub prompt_id: Option<String>,
    /// The prompt: the turns before the answers, ending with a user turn.
    pub conversation: Vec<ChatMessage>,
    pub candidate_a: Candidate,
    pub candidate_b: Candidate,
    pub vote: Vote,
    /// An answer the annotator wrote or corrected; preferred over both candidates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edited_answer: Option<String>,
    /// When the candidates were shown.
    #[serde(with = "time::serde::rfc3339")]
    pub shown_at: OffsetDateTime,
    /// When the vote was cast.
    #[serde(with = "time::serde::rfc3339")]
    pub voted_at: OffsetDateTime,
}

impl PreferencePair {
    /// The comparison this pair labels: its prompt and its two candidate texts, in either
    /// order. Labels with one key judged the same two answers to the same prompt.
    pub fn comparison_key(&self) -> String {
        let mut texts = [
            self.candidate_a.text.as_str(),
            self.candidate_b.text.as_str(),
        ];
        texts.sort();
        serde_json::to_string(&(&self.conversation, texts)).expect("strings serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PairLimits;
    use crate::test_pairs::pair;

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
}
