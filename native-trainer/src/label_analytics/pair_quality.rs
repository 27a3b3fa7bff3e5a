//! `dpo pairs quality`: what a labelling lead checks before a round — labels per annotator
//! (and their votes), comparisons labelled more than once (the same prompt and the same two
//! answers) with how far their labels agree, and how many labels are such repeats; then
//! Cohen's kappa for every two annotators with shared comparisons, Fleiss' kappa over the
//! comparisons with several labels, and each annotator's agreement with the majority
//! (`annotator_agreement.rs`). The grouping is the one `dpo train --data sqlite:…` uses to
//! count a comparison once.

use std::collections::BTreeMap;

use anyhow::Result;
use clap::Args;
use serde_json::json;
use shared::PreferencePair;

use super::annotator_agreement::agreement as annotator_agreement;
use super::vote_selection::label_outcome;
use crate::store::store_url::open_store;

#[derive(Args, Debug)]
pub struct PairQualityArgs {
    /// Pair database: `sqlite:PATH` or `postgres://…`.
    #[arg(long)]
    pub db: String,
}

/// Agreement of one comparison's labels: the most common outcome's share.
fn agreement(labels: &[&PreferencePair]) -> f64 {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for pair in labels {
        let (winner, edit) = label_outcome(pair);
        *counts
            .entry(format!("{winner}\u{0}{}", edit.unwrap_or_default()))
            .or_default() += 1;
    }
    counts.values().copied().max().unwrap_or(0) as f64 / labels.len().max(1) as f64
}

pub fn run(args: &PairQualityArgs) -> Result<()> {
    let pairs = open_store(&args.db)?.all_pairs()?;
    let mut annotators: BTreeMap<&str, BTreeMap<&str, u64>> = BTreeMap::new();
    let mut comparisons: BTreeMap<String, Vec<&PreferencePair>> = BTreeMap::new();
    for pair in &pairs {
        *annotators
            .entry(pair.annotator_id.as_str())
            .or_default()
            .entry(pair.vote.as_str())
            .or_default() += 1;
        comparisons
            .entry(pair.comparison_key())
            .or_default()
            .push(pair);
    }
    println!(
        "{} labels, {} annotators, {} distinct comparisons",
        pairs.len(),
        annotators.len(),
        comparisons.len()
    );
    println!();
    println!("| annotator | labels | a | b | tie | both_bad |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (annotator, votes) in &annotators {
        let count = |vote: &str| votes.get(vote).copied().unwrap_or(0);
        println!(
            "| {annotator} | {} | {} | {} | {} | {} |",
            votes.values().sum::<u64>(),
            count("a"),
            count("b"),
            count("tie"),
            count("both_bad")
        );
    }
    let repeated: Vec<(&String, &Vec<&PreferencePair>)> = comparisons
        .iter()
        .filter(|(_, labels)| labels.len() > 1)
        .collect();
    let duplicates: usize = repeated.iter().map(|(_, labels)| labels.len() - 1).sum();
    println!();
    println!(
        "{} comparisons labelled more than once ({duplicates} repeat labels, counted once by dpo train)",
        repeated.len()
    );
    if !repeated.is_empty() {
        println!();
        println!("| prompt | labels | agreement |");
        println!("|---|---:|---:|");
        for (_, labels) in &repeated {
            let prompt = labels[0]
                .conversation
                .last()
                .map(|m| m.content.chars().take(60).collect::<String>())
                .unwrap_or_default()
                .replace('|', "\\|")
                .replace('\n', " ");
            println!("| {prompt} | {} | {:.2} |", labels.len(), agreement(labels));
        }
        let mean = repeated.iter().map(|(_, l)| agreement(l)).sum::<f64>() / repeated.len() as f64;
        println!();
        println!("mean agreement over repeated comparisons: {mean:.2}");
    }
    let report = annotator_agreement(&pairs);
    let figure = |value: Option<f64>| value.map_or("-".to_string(), |v| format!("{v:.3}"));
    println!();
    println!(
        "Fleiss' kappa over {} comparisons with several labels: {}",
        report.fleiss_comparisons,
        figure(report.fleiss_kappa)
    );
    if !report.cohen.is_empty() {
        println!();
        println!("| annotators | shared comparisons | Cohen's kappa |");
        println!("|---|---:|---:|");
        for pair in &report.cohen {
            println!(
                "| {} · {} | {} | {} |",
                pair.first,
                pair.second,
                pair.shared_comparisons,
                figure(pair.kappa)
            );
        }
    }
    if !report.majority.is_empty() {
        println!();
        println!("| annotator | labels compared with the majority | agreement with the majority |");
        println!("|---|---:|---:|");
        for (annotator, majority) in &report.majority {
            println!(
                "| {annotator} | {} | {} |",
                majority.compared,
                figure(majority.share())
            );
        }
    }
    tracing::debug!(
        "{}",
        json!({ "labels": pairs.len(), "annotators": annotators.len(), "repeated": repeated.len() })
    );
    Ok(())
}
