//! Which stored votes a training run learns from: `?model_version=V` (on-policy: only pairs
//! whose two candidates came from V), `since=` / `until=` (RFC 3339, on the vote time),
//! `annotator=ID`, `min_agreement=F` and `min_annotator_agreement=F`, parsed from the store
//! URL's query. `min_annotator_agreement` leaves out every label of an annotator whose
//! agreement with the majority (`annotator_agreement.rs`) is below F; annotators with no
//! repeated comparison to judge them by are kept.
//!
//! Pairs whose prompt and two candidate texts are identical (the same comparison labelled
//! more than once) are one comparison: its labels must agree — the most common outcome's
//! share at least `min_agreement` (default 0.5, a strict majority is then not required) — or
//! the comparison is dropped; otherwise it counts once, with the most common outcome.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use shared::{PreferencePair, Vote};

use super::annotator_agreement::agreement;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Which stored votes to train on.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VoteFilter {
    pub model_version: Option<String>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    pub annotator: Option<String>,
    pub min_agreement: f64,
    pub min_annotator_agreement: Option<f64>,
}

/// How the stored pairs were narrowed down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VoteSelection {
    pub stored: usize,
    /// Left out by the version, time or annotator filter.
    pub filtered_out: usize,
    /// Labels left out because their annotator agrees with the majority too rarely.
    pub low_agreement_labels: usize,
    /// The annotators those labels came from.
    pub low_agreement_annotators: usize,
    /// Extra labels of a comparison already counted.
    pub duplicates: usize,
    /// Comparisons dropped because their labels disagree.
    pub disagreeing: usize,
    /// Comparisons kept.
    pub kept: usize,
}

/// Splits `sqlite:PATH?key=value&…` into the store URL and the filter; an unknown key or a
/// bad value is an error naming it.
pub fn parse_vote_source(data: &str) -> Result<(String, VoteFilter)> {
    let (url, query) = data.split_once('?').unwrap_or((data, ""));
    let mut filter = VoteFilter {
        min_agreement: 0.5,
        ..VoteFilter::default()
    };
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = part
            .split_once('=')
            .with_context(|| format!("{data}: `{part}` is not key=value"))?;
        let time = |value: &str| {
            OffsetDateTime::parse(value, &Rfc3339)
                .with_context(|| format!("{data}: `{key}` must be an RFC 3339 time, got `{value}`"))
        };
        match key {
            "model_version" => filter.model_version = Some(value.to_string()),
            "annotator" => filter.annotator = Some(value.to_string()),
            "since" => filter.since = Some(time(value)?),
            "until" => filter.until = Some(time(value)?),
            "min_agreement" | "min_annotator_agreement" => {
                let share: f64 = value
                    .parse()
                    .ok()
                    .filter(|v: &f64| (0.0..=1.0).contains(v))
                    .with_context(|| {
                        format!("{data}: `{key}` must be a number in [0, 1], got `{value}`")
                    })?;
                if key == "min_agreement" {
                    filter.min_agreement = share;
                } else {
                    filter.min_annotator_agreement = Some(share);
                }
            }
            other => bail!(
                "{data}: unknown selector `{other}` (use model_version, since, until, annotator, min_agreement, min_annotator_agreement)"
            ),
        }
    }
    Ok((url.to_string(), filter))
}

/// What a label says about its comparison: which text won, or tie / both bad, plus any
/// ideal answer.
pub fn label_outcome(pair: &PreferencePair) -> (String, Option<String>) {
    let winner = match pair.vote {
        Vote::A => format!("text:{}", pair.candidate_a.text),
        Vote::B => format!("text:{}", pair.candidate_b.text),
        Vote::Tie => "tie".to_string(),
        Vote::BothBad => "both_bad".to_string(),
    };
    (winner, pair.edited_answer.clone())
}

/// The pairs to train on, in storage order (one per comparison), and how they were chosen.
pub fn select_votes(
    pairs: Vec<PreferencePair>,
    filter: &VoteFilter,
) -> (Vec<PreferencePair>, VoteSelection) {
    let mut selection = VoteSelection {
        stored: pairs.len(),
        ..VoteSelection::default()
    };
    let matching: Vec<PreferencePair> = pairs
        .into_iter()
        .filter(|pair| {
            let keep = filter.model_version.as_ref().is_none_or(|v| {
                &pair.candidate_a.model.version == v && &pair.candidate_b.model.version == v
            }) && filter.since.is_none_or(|t| pair.voted_at >= t)
                && filter.until.is_none_or(|t| pair.voted_at < t)
                && filter
                    .annotator
                    .as_ref()
                    .is_none_or(|a| &pair.annotator_id == a);
            if !keep {
                selection.filtered_out += 1;
            }
            keep
        })
        .collect();
    let matching = match filter.min_annotator_agreement {
        None => matching,
        Some(threshold) => {
            let majority = agreement(&matching).majority;
            let below: Vec<&String> = majority
                .iter()
                .filter(|(_, m)| m.share().is_some_and(|share| share < threshold))
                .map(|(annotator, _)| annotator)
                .collect();
            selection.low_agreement_annotators = below.len();
            let (kept, dropped): (Vec<_>, Vec<_>) = matching
                .into_iter()
                .partition(|pair| !below.contains(&&pair.annotator_id));
            selection.low_agreement_labels = dropped.len();
            kept
        }
    };
    let mut groups: HashMap<String, Vec<usize>> = HashMap::new();
    let mut order = Vec::new();
    for (index, pair) in matching.iter().enumerate() {
        let members = groups.entry(pair.comparison_key()).or_default();
        if members.is_empty() {
            order.push(pair.comparison_key());
        }
        members.push(index);
    }
    let mut kept = Vec::new();
    for key in order {
        let members = &groups[&key];
        let mut counts: Vec<((String, Option<String>), usize)> = Vec::new();
        for &index in members {
            let label = label_outcome(&matching[index]);
            match counts.iter_mut().find(|(l, _)| *l == label) {
                Some((_, count)) => *count += 1,
                None => counts.push((label, 1)),
            }
        }
        // The most common outcome; ties between outcomes go to the earliest label.
        let (best, best_count) = counts
            .iter()
            .fold(
                None::<&((String, Option<String>), usize)>,
                |best, entry| match best {
                    Some(b) if b.1 >= entry.1 => Some(b),
                    _ => Some(entry),
                },
            )
            .map(|(label, count)| (label.clone(), *count))
            .expect("a comparison has at least one label");
        selection.duplicates += members.len() - 1;
        let agreement = best_count as f64 / members.len() as f64;
        if members.len() > 1 && agreement < filter.min_agreement {
            selection.disagreeing += 1;
            continue;
        }
        let representative = members
            .iter()
            .find(|&&i| label_outcome(&matching[i]) == best)
            .expect("the best outcome has a label");
        kept.push(matching[*representative].clone());
    }
    selection.kept = kept.len();
    (kept, selection)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::label_analytics::test_votes::three_raters;

    #[test]
    fn min_annotator_agreement_leaves_out_the_annotator_below_it() {
        let (_, filter) = parse_vote_source("sqlite:x.db?min_annotator_agreement=0.8").unwrap();
        let (kept, selection) = select_votes(three_raters(), &filter);
        assert_eq!(
            (
                selection.low_agreement_labels,
                selection.low_agreement_annotators
            ),
            (4, 1)
        );
        assert!(kept.iter().all(|p| p.annotator_id != "r1"));
        assert!(parse_vote_source("sqlite:x.db?min_annotator_agreement=2").is_err());
    }
}
