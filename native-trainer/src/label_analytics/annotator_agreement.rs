//! How far annotators agree, over comparisons labelled more than once (the same prompt and
//! the same two answers, `PreferencePair::comparison_key`; a served prompt's fixed seeds make
//! its labels such repeats). A label's category is which of the two texts won — the first or
//! the second in sorted order, so the random sides do not matter — or tie, or both bad; an
//! annotator's later labels of a comparison they labelled before are left out.
//!
//! - Cohen's kappa for each two annotators with shared comparisons: (p_o − p_e) / (1 − p_e).
//! - Fleiss' kappa over every comparison with several labels (raters per comparison may
//!   differ): (P̄ − P̄_e) / (1 − P̄_e).
//! - Each annotator's agreement with the majority: the share of their labels that match the
//!   strict majority of the other labels of the comparison (comparisons where the others
//!   have no strict majority are not counted).
//!
//! A kappa is `None` where it is undefined (p_e = 1: every label in one category).

use std::collections::BTreeMap;

use shared::api::{AgreementReport, CohenKappa, MajorityAgreement};
use shared::{PreferencePair, Vote};

const CATEGORIES: usize = 4;

/// A label's category: 0 = the first text (sorted) won, 1 = the second, 2 = tie, 3 = both bad.
fn category(pair: &PreferencePair) -> usize {
    let first = pair
        .candidate_a
        .text
        .as_str()
        .min(pair.candidate_b.text.as_str());
    match pair.vote {
        Vote::A => usize::from(pair.candidate_a.text != first),
        Vote::B => usize::from(pair.candidate_b.text != first),
        Vote::Tie => 2,
        Vote::BothBad => 3,
    }
}

/// Each comparison's labels: annotator → category (first label per annotator).
fn labelled_comparisons(pairs: &[PreferencePair]) -> Vec<BTreeMap<String, usize>> {
    let mut comparisons: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for pair in pairs {
        comparisons
            .entry(pair.comparison_key())
            .or_default()
            .entry(pair.annotator_id.clone())
            .or_insert_with(|| category(pair));
    }
    comparisons.into_values().collect()
}

fn kappa(observed: f64, expected: f64) -> Option<f64> {
    (expected < 1.0 - 1e-12).then(|| (observed - expected) / (1.0 - expected))
}

pub fn agreement(pairs: &[PreferencePair]) -> AgreementReport {
    let comparisons = labelled_comparisons(pairs);
    let repeated: Vec<&BTreeMap<String, usize>> = comparisons
        .iter()
        .filter(|labels| labels.len() > 1)
        .collect();

    // Cohen: every two annotators over the comparisons both labelled.
    let mut shared: BTreeMap<(String, String), Vec<(usize, usize)>> = BTreeMap::new();
    for labels in &repeated {
        let entries: Vec<(&String, &usize)> = labels.iter().collect();
        for (i, (first, a)) in entries.iter().enumerate() {
            for (second, b) in &entries[i + 1..] {
                shared
                    .entry(((*first).clone(), (*second).clone()))
                    .or_default()
                    .push((**a, **b));
            }
        }
    }
    let cohen = shared
        .into_iter()
        .map(|((first, second), items)| {
            let n = items.len() as f64;
            let observed = items.iter().filter(|(a, b)| a == b).count() as f64 / n;
            let mut first_share = [0.0; CATEGORIES];
            let mut second_share = [0.0; CATEGORIES];
            for (a, b) in &items {
                first_share[*a] += 1.0 / n;
                second_share[*b] += 1.0 / n;
            }
            let expected: f64 = (0..CATEGORIES)
                .map(|k| first_share[k] * second_share[k])
                .sum();
            CohenKappa {
                first,
                second,
                shared_comparisons: items.len(),
                kappa: kappa(observed, expected),
            }
        })
        .collect();

    // Fleiss, with the number of raters free per comparison.
    let mut totals = [0.0; CATEGORIES];
    let mut per_comparison = 0.0;
    let mut all_labels = 0.0;
    for labels in &repeated {
        let mut counts = [0.0f64; CATEGORIES];
        for &c in labels.values() {
            counts[c] += 1.0;
        }
        let raters = labels.len() as f64;
        per_comparison +=
            (counts.iter().map(|c| c * c).sum::<f64>() - raters) / (raters * (raters - 1.0));
        for k in 0..CATEGORIES {
            totals[k] += counts[k];
        }
        all_labels += raters;
    }
    let fleiss_kappa = if repeated.is_empty() {
        None
    } else {
        let observed = per_comparison / repeated.len() as f64;
        let expected: f64 = totals.iter().map(|t| (t / all_labels).powi(2)).sum();
        kappa(observed, expected)
    };

    // Agreement with the strict majority of the others.
    let mut majority: BTreeMap<String, MajorityAgreement> = BTreeMap::new();
    for labels in &repeated {
        for (annotator, &own) in labels.iter() {
            let mut counts = [0usize; CATEGORIES];
            for (other, &c) in labels.iter() {
                if other != annotator {
                    counts[c] += 1;
                }
            }
            let top = *counts.iter().max().expect("four categories");
            let leaders: Vec<usize> = (0..CATEGORIES).filter(|&k| counts[k] == top).collect();
            let entry = majority.entry(annotator.clone()).or_default();
            if leaders.len() == 1 {
                entry.compared += 1;
                entry.agreeing += usize::from(leaders[0] == own);
            }
        }
    }
    AgreementReport {
        cohen,
        fleiss_comparisons: repeated.len(),
        fleiss_kappa,
        majority,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::label_analytics::test_votes::three_raters;

    #[test]
    fn kappas_and_majority_agreement_match_values_computed_by_hand() {
        let report = agreement(&three_raters());
        let cohen: BTreeMap<(String, String), Option<f64>> = report
            .cohen
            .iter()
            .map(|c| ((c.first.clone(), c.second.clone()), c.kappa))
            .collect();
        // r1·r2 over c1–c4: p_o = 3/4, p_e = ½·¼ + ¼·½ + ¼·¼ = 5/16 → κ = (3/4 − 5/16)/(11/16) = 7/11.
        let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-9);
        assert!(
            close(cohen[&("r1".into(), "r2".into())], 7.0 / 11.0),
            "{cohen:?}"
        );
        // r1·r3 share c2 only and disagree: p_o = 0, p_e = 0 → κ = 0; r2·r3 agree on their one
        // comparison: p_e = 1, κ undefined.
        assert!(close(cohen[&("r1".into(), "r3".into())], 0.0));
        assert_eq!(cohen[&("r2".into(), "r3".into())], None);
        // Fleiss over c1–c4: P = 1, 1/3, 1, 1 → P̄ = 5/6; shares 3/9, 4/9, 2/9 → P̄e = 29/81;
        // κ = (5/6 − 29/81)/(52/81) = 231/312.
        assert_eq!(report.fleiss_comparisons, 4);
        assert!(
            close(report.fleiss_kappa, 231.0 / 312.0),
            "{:?}",
            report.fleiss_kappa
        );
        // r1 loses the majority on c2 (3 of 4); r2 has no strict majority of others on c2 (3 of
        // 3); r3's one repeated comparison has none either.
        let majority = |r: &str| (report.majority[r].compared, report.majority[r].agreeing);
        assert_eq!(majority("r1"), (4, 3));
        assert_eq!(majority("r2"), (3, 3));
        assert_eq!(report.majority["r3"].share(), None);
    }
}
