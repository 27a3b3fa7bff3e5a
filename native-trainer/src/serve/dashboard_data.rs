//! The figures behind the admin dashboard (`GET /api/admin/dashboard`), which the app draws
//! as SVG: labels per day and per annotator, prompt-set progress, agreement (Cohen's and
//! Fleiss' kappa, agreement with the majority), each version's rating with its interval in
//! round order, and each round's training curves (`loss`, `rewards/accuracies` per logged
//! step) from the `metrics.jsonl` its export carries.

use std::collections::BTreeMap;

use anyhow::Result;
use serde_json::{Value, json};

use super::model_catalog::ModelCatalog;
use crate::campaign::version_standings::version_standings;
use crate::store::PairStore;
use crate::store::annotator_agreement::agreement;

/// The metrics a training curve shows, under TRL's names.
const CURVE_METRICS: [&str; 2] = ["loss", "rewards/accuracies"];

pub fn dashboard_data(store: &dyn PairStore, catalog: &ModelCatalog) -> Result<Value> {
    let pairs = store.all_pairs()?;
    let mut per_day: BTreeMap<String, u64> = BTreeMap::new();
    let mut per_annotator: BTreeMap<&str, u64> = BTreeMap::new();
    for pair in &pairs {
        let day = pair.voted_at.date();
        *per_day.entry(day.to_string()).or_default() += 1;
        *per_annotator.entry(pair.annotator_id.as_str()).or_default() += 1;
    }
    let versions = catalog.versions();
    let training: Vec<Value> = versions
        .iter()
        .filter_map(|manifest| {
            let file = catalog.file(&manifest.version, "metrics.jsonl")?;
            let text = std::fs::read_to_string(&file.path).ok()?;
            let points: Vec<Value> = text
                .lines()
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .filter(|line| line.get("step").is_some() && line.get("loss").is_some())
                .map(|line| {
                    let mut point = json!({ "step": line["step"] });
                    for metric in CURVE_METRICS {
                        point[metric] = line.get(metric).cloned().unwrap_or(Value::Null);
                    }
                    point
                })
                .collect();
            Some(json!({ "version": manifest.version, "points": points }))
        })
        .collect();
    Ok(json!({
        "labels": pairs.len(),
        "labels_per_day": per_day.iter().map(|(day, n)| json!({"day": day, "labels": n})).collect::<Vec<_>>(),
        "labels_per_annotator": per_annotator.iter().map(|(a, n)| json!({"annotator": a, "labels": n})).collect::<Vec<_>>(),
        "prompts": store.prompt_progress()?,
        "agreement": agreement(&pairs),
        "versions": version_standings(&versions, &pairs),
        "training": training,
    }))
}
