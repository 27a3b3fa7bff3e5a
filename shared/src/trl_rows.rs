//! Conversion of preference pairs into TRL's DPO dataset rows, in its standard (plain text)
//! and conversational (message list) formats.
//!
//! Which rows a vote yields:
//! - `a` / `b`: the preferred candidate is chosen, the other rejected — unless the two answers
//!   are the same text, which teaches nothing (chosen == rejected) and yields no row;
//! - with an `edited_answer`, the edit is chosen instead and every candidate whose text differs
//!   from the edit is rejected (one row each) — for `a`/`b` only the losing candidate, since
//!   the winner was judged good;
//! - `tie` and `both_bad` without an edit teach no preference and yield no row.

use serde::{Deserialize, Serialize};

use crate::chat_message::ChatMessage;
use crate::chat_template::{ChatTemplate, ChatTemplateError};
use crate::preference_pair::{PreferencePair, Vote};

/// TRL's two dataset layouts for DPO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrlStyle {
    /// `{"prompt": str, "chosen": str, "rejected": str}`; the prompt is chat-templated with the
    /// generation prompt, answers are plain text (TRL appends the EOS token).
    Standard,
    /// `{"prompt": [messages], "chosen": [assistant], "rejected": [assistant]}`.
    Conversational,
}

/// One DPO training row in either layout; serializes to exactly TRL's JSON shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TrlRow {
    Standard {
        prompt: String,
        chosen: String,
        rejected: String,
    },
    Conversational {
        prompt: Vec<ChatMessage>,
        chosen: Vec<ChatMessage>,
        rejected: Vec<ChatMessage>,
    },
}

/// The (chosen, rejected) answer texts a pair teaches, per the rules in the module docs.
pub fn preferences(pair: &PreferencePair) -> Vec<(&str, &str)> {
    let a = pair.candidate_a.text.as_str();
    let b = pair.candidate_b.text.as_str();
    match (&pair.edited_answer, pair.vote) {
        (None, Vote::A) if a != b => vec![(a, b)],
        (None, Vote::B) if a != b => vec![(b, a)],
        (None, _) => vec![],
        (Some(edit), vote) => {
            let losers: Vec<&str> = match vote {
                Vote::A => vec![b],
                Vote::B => vec![a],
                Vote::Tie | Vote::BothBad => vec![a, b],
            };
            let mut rows: Vec<(&str, &str)> = Vec::new();
            for loser in losers {
                if loser != edit.as_str() && !rows.iter().any(|(_, r)| *r == loser) {
                    rows.push((edit.as_str(), loser));
                }
            }
            rows
        }
    }
}

/// TRL rows for one pair. `template` renders the prompt of standard rows.
pub fn to_trl_rows(
    pair: &PreferencePair,
    style: TrlStyle,
    template: &ChatTemplate,
) -> Result<Vec<TrlRow>, ChatTemplateError> {
    let rows = preferences(pair);
    if rows.is_empty() {
        return Ok(vec![]);
    }
    match style {
        TrlStyle::Standard => {
            let prompt = template.render(&pair.conversation, true)?;
            Ok(rows
                .into_iter()
                .map(|(chosen, rejected)| TrlRow::Standard {
                    prompt: prompt.clone(),
                    chosen: chosen.to_string(),
                    rejected: rejected.to_string(),
                })
                .collect())
        }
        TrlStyle::Conversational => Ok(rows
            .into_iter()
            .map(|(chosen, rejected)| TrlRow::Conversational {
                prompt: pair.conversation.clone(),
                chosen: vec![ChatMessage::assistant(chosen)],
                rejected: vec![ChatMessage::assistant(rejected)],
            })
            .collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Vote;
    use crate::test_pairs::pair;

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
}
