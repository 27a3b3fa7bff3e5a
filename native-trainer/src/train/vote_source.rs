//! Training data straight from the vote store: `--data sqlite:PATH` or
//! `--data postgres://…`, optionally with a query that selects the votes (see
//! `label_analytics::vote_selection`). The whole string is the run's `dataset_name`, so the selection is
//! recorded with the run. What remains becomes TRL rows by the same conversion the exports
//! use (`shared::trl_rows`): A/B votes; an ideal answer is `chosen` against the rejected candidate (both, for a tie or
//! both-bad); ties and both-bad without one teach nothing. For KTO each vote becomes labelled
//! rows instead (`shared::unpaired_rows`): both-bad votes are two undesirable rows, ideal
//! answers desirable ones.

use std::path::Path;

use anyhow::{Context, Result, bail};
use shared::{ChatTemplate, PreferencePair, TrlStyle, UnpairedRow};

use super::preference_file::PreferenceFile;
use crate::label_analytics::vote_selection::{parse_vote_source, select_votes};
use crate::store::open_store;

/// Whether `data` names a vote store rather than a file.
pub fn is_vote_store(data: &Path) -> bool {
    crate::store::is_store_url(&data.to_string_lossy())
}

/// The selected votes of `data` as conversational TRL rows (the model's own chat template
/// renders them at tokenization, as TRL does for conversational data).
pub fn read_votes(data: &Path) -> Result<PreferenceFile> {
    // Conversational rows do not use the template; it only has to exist.
    let template = ChatTemplate::new(None, "", "")?;
    read_selected(data, |pair| {
        Ok(shared::trl_rows::to_trl_rows(
            pair,
            TrlStyle::Conversational,
            &template,
        )?)
    })
}

/// The selected votes of `data` as conversational unpaired rows (KTO).
pub fn read_vote_labels(data: &Path) -> Result<PreferenceFile<UnpairedRow>> {
    read_selected(data, |pair| Ok(shared::unpaired_rows::vote_rows(pair)))
}

/// The votes `data` selects, each turned into rows by `rows_of`.
fn read_selected<Row>(
    data: &Path,
    rows_of: impl Fn(&PreferencePair) -> Result<Vec<Row>>,
) -> Result<PreferenceFile<Row>> {
    let text = data.to_string_lossy();
    let (url, filter) = parse_vote_source(&text)?;
    let store = open_store(&url).with_context(|| format!("opening the vote store {url}"))?;
    let pairs = store.all_pairs()?;
    let (pairs, selection) = select_votes(pairs, &filter);
    let mut rows = Vec::new();
    let mut line_numbers = Vec::new();
    for (index, pair) in pairs.iter().enumerate() {
        for row in rows_of(pair)? {
            rows.push(row);
            line_numbers.push(index + 1);
        }
    }
    if let Some(threshold) = filter.min_annotator_agreement {
        tracing::info!(
            "{url}: left out {} labels of {} annotators whose agreement with the majority is \
             below {threshold}",
            selection.low_agreement_labels,
            selection.low_agreement_annotators
        );
    }
    tracing::info!(
        "{url}: {} stored pairs, {} filtered out, {} left out for low annotator agreement, {} \
         duplicate labels, {} comparisons dropped for disagreement, {} kept → {} TRL rows",
        selection.stored,
        selection.filtered_out,
        selection.low_agreement_labels,
        selection.duplicates,
        selection.disagreeing,
        selection.kept,
        rows.len()
    );
    if rows.is_empty() {
        bail!(
            "{text}: no preference rows: {} stored pairs, {} after the filters, and ties (and, \
             for DPO, both-bad votes) without an ideal answer teach nothing",
            selection.stored,
            selection.kept
        );
    }
    Ok(PreferenceFile {
        rows,
        line_numbers,
        skipped: 0,
    })
}
