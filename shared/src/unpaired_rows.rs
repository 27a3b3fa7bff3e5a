//! TRL's unpaired preference rows (`{"prompt", "completion", "label"}`, what KTO trains on),
//! and where they come from besides files:
//! - a paired dataset, unpaired as TRL's `unpair_preference_dataset` does: per block of 1,000
//!   pairs, every chosen completion (desirable) and then every rejected one (undesirable);
//! - a vote of the labelling app, each candidate a labelled row: `a` / `b` make the winner
//!   desirable and the loser undesirable, `both_bad` makes both undesirable, an edited
//!   ("ideal") answer is desirable; a `tie` alone says nothing good or bad about either.
//!   The same text is never labelled twice for one vote, and a text labelled both ways (two
//!   identical candidates) is left out.

use serde::{Deserialize, Serialize};

use crate::chat_message::ChatMessage;
use crate::preference_pair::{PreferencePair, Vote};
use crate::trl_rows::TrlRow;

/// One labelled completion in either TRL layout; serializes to exactly TRL's JSON shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum UnpairedRow {
    Standard {
        prompt: String,
        completion: String,
        label: bool,
    },
    Conversational {
        prompt: Vec<ChatMessage>,
        completion: Vec<ChatMessage>,
        label: bool,
    },
}

impl UnpairedRow {
    /// Whether the completion is desirable.
    pub fn label(&self) -> bool {
        match self {
            Self::Standard { label, .. } | Self::Conversational { label, .. } => *label,
        }
    }
}

/// TRL's `datasets.map(batched=True)` block size, which `unpair_preference_dataset` unpairs in.
pub const UNPAIR_BLOCK: usize = 1000;

/// Each pair's chosen completion as a desirable row and its rejected one as an undesirable
/// row, in TRL's order (per block of 1,000 pairs: the chosen ones, then the rejected ones).
pub fn unpair(rows: &[TrlRow]) -> Vec<UnpairedRow> {
    let mut unpaired = Vec::with_capacity(2 * rows.len());
    for block in rows.chunks(UNPAIR_BLOCK) {
        for label in [true, false] {
            unpaired.extend(block.iter().map(|row| match row {
                TrlRow::Standard {
                    prompt,
                    chosen,
                    rejected,
                } => UnpairedRow::Standard {
                    prompt: prompt.clone(),
                    completion: if label { chosen } else { rejected }.clone(),
                    label,
                },
                TrlRow::Conversational {
                    prompt,
                    chosen,
                    rejected,
                } => UnpairedRow::Conversational {
                    prompt: prompt.clone(),
                    completion: if label { chosen } else { rejected }.clone(),
                    label,
                },
            }));
        }
    }
    unpaired
}

/// The (completion text, desirable) labels one vote gives, per the rules in the module docs.
pub fn vote_labels(pair: &PreferencePair) -> Vec<(&str, bool)> {
    let a = pair.candidate_a.text.as_str();
    let b = pair.candidate_b.text.as_str();
    let mut labels: Vec<(&str, bool)> = match pair.vote {
        Vote::A => vec![(a, true), (b, false)],
        Vote::B => vec![(b, true), (a, false)],
        Vote::BothBad => vec![(a, false), (b, false)],
        Vote::Tie => vec![],
    };
    if let Some(edit) = &pair.edited_answer {
        labels.push((edit.as_str(), true));
    }
    let contested: Vec<&str> = labels
        .iter()
        .filter(|(text, label)| labels.iter().any(|(t, l)| t == text && l != label))
        .map(|(text, _)| *text)
        .collect();
    let mut kept: Vec<(&str, bool)> = Vec::new();
    for (text, label) in labels {
        if !contested.contains(&text) && !kept.iter().any(|(t, _)| *t == text) {
            kept.push((text, label));
        }
    }
    kept
}

/// The conversational unpaired rows of one vote (the conversation as the prompt).
pub fn vote_rows(pair: &PreferencePair) -> Vec<UnpairedRow> {
    vote_labels(pair)
        .into_iter()
        .map(|(text, label)| UnpairedRow::Conversational {
            prompt: pair.conversation.clone(),
            completion: vec![ChatMessage::assistant(text)],
            label,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_pairs::pair;

    #[test]
    fn every_vote_labels_its_candidates() {
        assert_eq!(vote_labels(&pair(Vote::A)), vec![("4", true), ("5", false)]);
        assert_eq!(vote_labels(&pair(Vote::B)), vec![("5", true), ("4", false)]);
        assert_eq!(
            vote_labels(&pair(Vote::BothBad)),
            vec![("4", false), ("5", false)]
        );
        assert!(vote_labels(&pair(Vote::Tie)).is_empty());

        let mut edited = pair(Vote::BothBad);
        edited.edited_answer = Some("2+2 = 4".into());
        assert_eq!(
            vote_labels(&edited),
            vec![("4", false), ("5", false), ("2+2 = 4", true)]
        );
        edited.vote = Vote::Tie;
        assert_eq!(vote_labels(&edited), vec![("2+2 = 4", true)]);
        edited.vote = Vote::A;
        edited.edited_answer = Some("4".into());
        assert_eq!(
            vote_labels(&edited),
            vec![("4", true), ("5", false)],
            "an edit equal to the winner is one desirable row"
        );
        edited.vote = Vote::BothBad;
        assert_eq!(
            vote_labels(&edited),
            vec![("5", false)],
            "a text both bad and ideal teaches nothing"
        );
        let mut identical = pair(Vote::A);
        identical.candidate_b.text = identical.candidate_a.text.clone();
        assert!(vote_labels(&identical).is_empty());

        let rows = vote_rows(&pair(Vote::B));
        assert_eq!(
            serde_json::to_value(&rows[0]).unwrap(),
            serde_json::json!({
                "prompt": serde_json::to_value(&pair(Vote::B).conversation).unwrap(),
                "completion": [{"role": "assistant", "content": "5"}],
                "label": true,
            })
        );
    }

    #[test]
    fn unpairing_follows_trls_blocks() {
        let pairs: Vec<TrlRow> = (0..1001)
            .map(|i| TrlRow::Standard {
                prompt: format!("p{i}"),
                chosen: format!("c{i}"),
                rejected: format!("r{i}"),
            })
            .collect();
        let rows = unpair(&pairs);
        assert_eq!(rows.len(), 2002);
        let completion = |row: &UnpairedRow| match row {
            UnpairedRow::Standard {
                completion, label, ..
            } => (completion.clone(), *label),
            UnpairedRow::Conversational { .. } => unreachable!(),
        };
        assert_eq!(completion(&rows[0]), ("c0".into(), true));
        assert_eq!(completion(&rows[999]), ("c999".into(), true));
        assert_eq!(completion(&rows[1000]), ("r0".into(), false));
        assert_eq!(completion(&rows[1999]), ("r999".into(), false));
        assert_eq!(completion(&rows[2000]), ("c1000".into(), true));
        assert_eq!(completion(&rows[2001]), ("r1000".into(), false));
    }
}
