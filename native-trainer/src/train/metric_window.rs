//! Metrics averaged over a window of micro-batches (a logging interval, or an eval pass), in
//! the order they were first recorded — how TRL averages its `_metrics` before logging: each
//! metric over the micro-batches that recorded it (KTO's per-side metrics skip batches
//! without rows of that side).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricWindow {
    /// Sum of each metric over the window, in first-recorded order.
    sums: Vec<(String, f64)>,
    count: usize,
    /// How many micro-batches recorded each metric of `sums` (empty in a window saved before
    /// this was kept: then every metric counts `count`).
    #[serde(default)]
    counts: Vec<usize>,
}

impl MetricWindow {
    /// Adds one micro-batch's metrics (a serialized `DpoMetrics`).
    pub fn record(&mut self, metrics: &impl Serialize) {
        let Ok(Value::Object(values)) = serde_json::to_value(metrics) else {
            return;
        };
        for (key, value) in values {
            let Some(value) = value.as_f64() else {
                continue;
            };
            if self.counts.len() < self.sums.len() {
                self.counts.resize(self.sums.len(), self.count);
            }
            match self.sums.iter().position(|(k, _)| *k == key) {
                Some(index) => {
                    self.sums[index].1 += value;
                    self.counts[index] += 1;
                }
                None => {
                    self.sums.push((key, value));
                    self.counts.push(1);
                }
            }
        }
        self.count += 1;
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The mean of each metric, keys prefixed with `prefix` (`eval_` for the eval split).
    pub fn means(&self, prefix: &str) -> Map<String, Value> {
        self.sums
            .iter()
            .enumerate()
            .map(|(index, (key, sum))| {
                (
                    format!("{prefix}{key}"),
                    Value::from(sum / self.count_of(index) as f64),
                )
            })
            .collect()
    }

    /// The mean of one metric.
    pub fn mean(&self, key: &str) -> Option<f64> {
        let index = self.sums.iter().position(|(k, _)| k == key)?;
        Some(self.sums[index].1 / self.count_of(index) as f64)
    }

    fn count_of(&self, index: usize) -> usize {
        self.counts.get(index).copied().unwrap_or(self.count).max(1)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn each_metric_averages_over_the_batches_that_recorded_it() {
        let mut window = MetricWindow::default();
        window.record(&json!({"loss": 1.0, "rewards/chosen": 0.5}));
        window.record(&json!({"loss": 3.0}));
        window.record(&json!({"loss": 2.0, "rewards/chosen": 1.5, "kl": 0.25}));
        assert_eq!(window.mean("loss"), Some(2.0));
        assert_eq!(window.mean("rewards/chosen"), Some(1.0));
        assert_eq!(window.mean("kl"), Some(0.25));
        assert_eq!(window.mean("rewards/rejected"), None);
        let means = window.means("eval_");
        assert_eq!(
            means.keys().collect::<Vec<_>>(),
            vec!["eval_loss", "eval_rewards/chosen", "eval_kl"]
        );
    }

    #[test]
    fn a_window_saved_before_counts_were_kept_averages_over_every_batch() {
        let saved = r#"{"sums": [["loss", 6.0], ["kl", 3.0]], "count": 3}"#;
        let mut window: MetricWindow = serde_json::from_str(saved).unwrap();
        assert_eq!(window.mean("loss"), Some(2.0));
        window.record(&json!({"loss": 2.0, "rewards/chosen": 4.0}));
        assert_eq!(window.mean("loss"), Some(2.0));
        assert_eq!(window.mean("kl"), Some(1.0));
        assert_eq!(window.mean("rewards/chosen"), Some(4.0));
    }
}
