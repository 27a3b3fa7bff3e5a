//! The figures behind the admin dashboard (`GET /api/admin/dashboard`), which the app draws
//! as SVG: labels per day and per annotator, prompt-set progress, agreement (Cohen's and
//! Fleiss' kappa, agreement with the majority), each version's rating with its interval in
//! round order, each round's training curves (`loss`, `rewards/accuracies` per logged step)
//! from the `metrics.jsonl` its export carries, and the versions' recorded history.

use std::collections::BTreeMap;

use anyhow::Result;
use shared::api::{AnnotatorLabels, CurvePoint, Dashboard, DayLabels, TrainingCurve};

use super::model_catalog::ModelCatalog;
use crate::label_analytics::annotator_agreement::agreement;
use crate::label_analytics::version_standings::version_standings;
use crate::store::PairStore;

pub fn dashboard_data(store: &dyn PairStore, catalog: &ModelCatalog) -> Result<Dashboard> {
    let pairs = store.all_pairs()?;
    let mut per_day: BTreeMap<String, u64> = BTreeMap::new();
    let mut per_annotator: BTreeMap<&str, u64> = BTreeMap::new();
    for pair in &pairs {
        let day = pair.voted_at.date();
        *per_day.entry(day.to_string()).or_default() += 1;
        *per_annotator.entry(pair.annotator_id.as_str()).or_default() += 1;
    }
    let versions = catalog.versions();
    let training = versions
        .iter()
        .filter_map(|manifest| {
            let file = catalog.file(&manifest.version, "metrics.jsonl")?;
            let text = std::fs::read_to_string(&file.path).ok()?;
            Some(TrainingCurve {
                version: manifest.version.clone(),
                points: text.lines().filter_map(curve_point).collect(),
            })
        })
        .collect();
    Ok(Dashboard {
        labels: pairs.len() as u64,
        labels_per_day: per_day
            .into_iter()
            .map(|(day, labels)| DayLabels { day, labels })
            .collect(),
        labels_per_annotator: per_annotator
            .into_iter()
            .map(|(annotator, labels)| AnnotatorLabels {
                annotator: annotator.to_string(),
                labels,
            })
            .collect(),
        prompts: store.prompt_progress()?,
        agreement: agreement(&pairs),
        versions: version_standings(&versions, &pairs),
        training,
        history: store.version_events()?,
    })
}

/// A `metrics.jsonl` line's point on the curves, if it is a logged training step (it has a
/// `step` and a `loss`).
fn curve_point(line: &str) -> Option<CurvePoint> {
    let line: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line).ok()?;
    let metric = |name: &str| line.get(name).and_then(serde_json::Value::as_f64);
    Some(CurvePoint {
        step: line.get("step")?.as_u64()?,
        loss: Some(metric("loss")?),
        rewards_accuracies: metric("rewards/accuracies"),
    })
}
