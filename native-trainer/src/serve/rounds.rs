//! `dpo rounds`: the flywheel's history as one table — every model version a server offers,
//! oldest first, with the version it was trained from, the pairs labelled on it, its DPO
//! run's final metrics under TRL's names (`loss`, `rewards/accuracies`, and the held-out
//! `eval_rewards/accuracies`), its GGUF size and quantization, and how it fared in blind
//! battles: its Bradley–Terry rating with the 95% interval and the battles behind it, and its
//! win rate against its parent with the exact 95% interval, and the promotion rule's verdict
//! on that record (`promote`, `retire` or `keep_battling`). `--json` prints the rows as JSON
//! Lines instead.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use serde_json::{Value, json};
use shared::ModelManifest;

use super::model_catalog::ModelCatalog;
use shared::api::VersionStanding;

use crate::label_analytics::promotion_rule::PromotionRule;
use crate::label_analytics::version_standings::{parent_record_text, version_standings};
use crate::store::open_store;

#[derive(Args, Debug)]
pub struct RoundsArgs {
    /// The server's models directory.
    #[arg(long)]
    pub models_dir: PathBuf,
    /// Pair database: `sqlite:PATH` or `postgres://…`.
    #[arg(long, default_value = "sqlite:pairs.db")]
    pub db: String,
    /// One JSON object per version instead of the table.
    #[arg(long)]
    pub json: bool,
}

fn metric(manifest: &ModelManifest, key: &str) -> Option<f64> {
    manifest.training.as_ref()?.metrics.get(key)?.as_f64()
}

/// One version's row.
fn row(manifest: &ModelManifest, pairs: u64, standing: &VersionStanding) -> Value {
    json!({
        "rating": standing.rating,
        "rating_low": standing.rating_low,
        "rating_high": standing.rating_high,
        "battles": standing.battles,
        "win_rate_vs_parent": standing.win_rate_vs_parent,
        "win_rate_low": standing.win_rate_low,
        "win_rate_high": standing.win_rate_high,
        "battles_vs_parent": standing.battles_vs_parent,
        "verdict": PromotionRule::default().verdict_on(standing),
        "version": manifest.version,
        "parent_version": manifest.parent_version,
        "created": manifest.created,
        "pairs": pairs,
        "global_step": manifest.training.as_ref().map(|t| t.global_step),
        "loss": metric(manifest, "loss"),
        "rewards/accuracies": metric(manifest, "rewards/accuracies"),
        "eval_rewards/accuracies": metric(manifest, "eval_rewards/accuracies"),
        "size_bytes": manifest.gguf.size,
        "quant": manifest.quant,
    })
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::Number(n) if n.is_f64() => format!("{:.3}", n.as_f64().unwrap_or_default()),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub fn run(args: &RoundsArgs) -> Result<()> {
    let versions = ModelCatalog::new(&args.models_dir).versions();
    let store = open_store(&args.db)?;
    let stats = store.stats()?;
    let standings = version_standings(&versions, &store.all_pairs()?);
    let rows: Vec<Value> = versions
        .iter()
        .zip(&standings)
        .map(|(manifest, standing)| {
            let pairs = stats
                .by_model_version
                .get(&manifest.version)
                .map(|votes| votes.values().sum())
                .unwrap_or(0);
            row(manifest, pairs, standing)
        })
        .collect();
    if args.json {
        for row in &rows {
            println!("{row}");
        }
        return Ok(());
    }
    let columns = [
        ("version", "version"),
        ("parent", "parent_version"),
        ("pairs", "pairs"),
        ("steps", "global_step"),
        ("loss", "loss"),
        ("rewards/accuracies", "rewards/accuracies"),
        ("eval_rewards/accuracies", "eval_rewards/accuracies"),
        ("MB", "size_bytes"),
        ("quant", "quant"),
        ("rating (95% CI)", "rating"),
        ("battles", "battles"),
        ("win rate vs parent (95% CI)", "win_rate_vs_parent"),
        ("verdict", "verdict"),
    ];
    let table: Vec<Vec<String>> = rows
        .iter()
        .zip(&standings)
        .map(|(row, standing)| {
            columns
                .iter()
                .map(|(_, key)| match *key {
                    "size_bytes" => {
                        format!("{:.1}", row[key].as_u64().unwrap_or_default() as f64 / 1e6)
                    }
                    "rating" => match (
                        row["rating"].as_f64(),
                        row["rating_low"].as_f64(),
                        row["rating_high"].as_f64(),
                    ) {
                        (Some(r), Some(low), Some(high)) => format!("{r:.0} [{low:.0}, {high:.0}]"),
                        _ => "-".into(),
                    },
                    "win_rate_vs_parent" => parent_record_text(standing),
                    _ => cell(&row[key]),
                })
                .collect()
        })
        .collect();
    println!(
        "| {} |",
        columns
            .iter()
            .map(|(h, _)| *h)
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|{}", "---|".repeat(columns.len()));
    for cells in table {
        println!("| {} |", cells.join(" | "));
    }
    Ok(())
}
