//! Validation limits for preference pairs, kept in one place: the browser checks them before
//! submitting, the server before storing, the exporter before writing TRL rows.

use crate::chat_message::Role;
use crate::preference_pair::{
    Candidate, OLDEST_PAIR_SCHEMA_VERSION, PAIR_SCHEMA_VERSION, PreferencePair,
};

/// What a pair may contain. Character counts are Unicode scalar values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairLimits {
    pub max_turns: usize,
    pub max_message_chars: usize,
    pub max_answer_chars: usize,
    pub max_total_chars: usize,
    pub max_id_chars: usize,
    pub min_idempotency_key_chars: usize,
}

impl Default for PairLimits {
    fn default() -> Self {
        Self {
            max_turns: 64,
            max_message_chars: 32_000,
            max_answer_chars: 32_000,
            max_total_chars: 256_000,
            max_id_chars: 128,
            min_idempotency_key_chars: 8,
        }
    }
}

/// A rejected pair: which field, and why. `field` is a path such as `conversation[2].content`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[error("{field}: {reason}")]
pub struct ValidationError {
    pub field: String,
    pub reason: String,
}

impl ValidationError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// A submitted pair refused, with the field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairRejection {
    /// Not the JSON of a pair (HTTP 400).
    Malformed(ValidationError),
    /// A pair outside the limits (HTTP 422).
    Invalid(ValidationError),
}

impl PairRejection {
    pub fn error(&self) -> &ValidationError {
        match self {
            Self::Malformed(error) | Self::Invalid(error) => error,
        }
    }
}

impl PairLimits {
    /// Reads a submitted pair as `POST /api/pairs` does: the JSON (a malformed document's error
    /// says where), the invited annotator in place of the body's when the server names one,
    /// then these limits.
    pub fn read_submission(
        &self,
        text: &str,
        invited_annotator: Option<String>,
    ) -> Result<PreferencePair, PairRejection> {
        let mut pair: PreferencePair = serde_json::from_str(text).map_err(|e| {
            PairRejection::Malformed(ValidationError::new(
                "$",
                format!(
                    "invalid pair at line {} column {}: {e}",
                    e.line(),
                    e.column()
                ),
            ))
        })?;
        if let Some(name) = invited_annotator {
            pair.annotator_id = name;
        }
        self.validate(&pair).map_err(PairRejection::Invalid)?;
        Ok(pair)
    }

    /// Checks every field; returns the first problem found, in document order.
    pub fn validate(&self, pair: &PreferencePair) -> Result<(), ValidationError> {
        if !(OLDEST_PAIR_SCHEMA_VERSION..=PAIR_SCHEMA_VERSION).contains(&pair.schema_version) {
            return Err(ValidationError::new(
                "schema_version",
                format!(
                    "unsupported version {}, expected {OLDEST_PAIR_SCHEMA_VERSION} to \
                     {PAIR_SCHEMA_VERSION}",
                    pair.schema_version
                ),
            ));
        }
        if let Some(prompt_id) = &pair.prompt_id {
            if pair.schema_version < 2 {
                return Err(ValidationError::new(
                    "prompt_id",
                    "needs schema_version 2 or later",
                ));
            }
            self.check_id("prompt_id", prompt_id, 1)?;
        }
        self.check_id(
            "idempotency_key",
            &pair.idempotency_key,
            self.min_idempotency_key_chars,
        )?;
        self.check_id("annotator_id", &pair.annotator_id, 1)?;

        if pair.conversation.is_empty() {
            return Err(ValidationError::new(
                "conversation",
                "must contain at least one user turn",
            ));
        }
        if pair.conversation.len() > self.max_turns {
            return Err(ValidationError::new(
                "conversation",
                format!(
                    "{} turns exceed the limit of {}",
                    pair.conversation.len(),
                    self.max_turns
                ),
            ));
        }
        let mut total_chars = 0;
        for (i, message) in pair.conversation.iter().enumerate() {
            let field = format!("conversation[{i}]");
            if message.role == Role::System && i != 0 {
                return Err(ValidationError::new(
                    format!("{field}.role"),
                    "a system message may only be the first turn",
                ));
            }
            total_chars += self.check_text(
                &format!("{field}.content"),
                &message.content,
                self.max_message_chars,
                message.role != Role::System,
            )?;
        }
        let last = pair.conversation.len() - 1;
        if pair.conversation[last].role != Role::User {
            return Err(ValidationError::new(
                format!("conversation[{last}].role"),
                "the conversation must end with a user turn",
            ));
        }
        total_chars += self.check_candidate("candidate_a", &pair.candidate_a)?;
        total_chars += self.check_candidate("candidate_b", &pair.candidate_b)?;
        if let Some(edited) = &pair.edited_answer {
            total_chars += self.check_text("edited_answer", edited, self.max_answer_chars, true)?;
        }
        if total_chars > self.max_total_chars {
            return Err(ValidationError::new(
                "$",
                format!(
                    "{total_chars} characters in total exceed the limit of {}",
                    self.max_total_chars
                ),
            ));
        }
        if pair.voted_at < pair.shown_at {
            return Err(ValidationError::new("voted_at", "is earlier than shown_at"));
        }
        Ok(())
    }

    fn check_candidate(
        &self,
        field: &str,
        candidate: &Candidate,
    ) -> Result<usize, ValidationError> {
        let chars = self.check_text(
            &format!("{field}.text"),
            &candidate.text,
            self.max_answer_chars,
            false,
        )?;
        self.check_id(
            &format!("{field}.model.version"),
            &candidate.model.version,
            1,
        )?;
        let sha = &candidate.model.sha256;
        if sha.len() != 64
            || !sha
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(ValidationError::new(
                format!("{field}.model.sha256"),
                "must be 64 lower-case hex characters",
            ));
        }
        candidate
            .sampling
            .validate()
            .map_err(|reason| ValidationError::new(format!("{field}.sampling"), reason))?;
        Ok(chars)
    }

    /// Identifiers: ASCII letters, digits, `-`, `_`, `.`, `:`; bounded length.
    fn check_id(&self, field: &str, value: &str, min_chars: usize) -> Result<(), ValidationError> {
        let len = value.chars().count();
        if len < min_chars || len > self.max_id_chars {
            return Err(ValidationError::new(
                field,
                format!(
                    "length {len} is outside {min_chars}..={}",
                    self.max_id_chars
                ),
            ));
        }
        if let Some(bad) = value
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
        {
            return Err(ValidationError::new(
                field,
                format!("character {bad:?} is not allowed (use letters, digits, - _ . :)"),
            ));
        }
        Ok(())
    }

    /// Free text: bounded, no NUL, and not blank when `must_not_be_blank`.
    fn check_text(
        &self,
        field: &str,
        text: &str,
        max_chars: usize,
        must_not_be_blank: bool,
    ) -> Result<usize, ValidationError> {
        let chars = text.chars().count();
        if chars > max_chars {
            return Err(ValidationError::new(
                field,
                format!("{chars} characters exceed the limit of {max_chars}"),
            ));
        }
        if text.contains('\0') {
            return Err(ValidationError::new(field, "contains a NUL character"));
        }
        if must_not_be_blank && text.trim().is_empty() {
            return Err(ValidationError::new(field, "must not be empty"));
        }
        Ok(chars)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_pairs::pair;
    use crate::{ChatMessage, Vote};
    use time::macros::datetime;

    fn validation_error(pair: &PreferencePair) -> (String, String) {
        let e = PairLimits::default().validate(pair).unwrap_err();
        (e.field, e.reason)
    }

    /// The refusal of a document that is not a pair (`400`).
    fn submission_error(text: &str) -> ValidationError {
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
}
