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
