//! Metrics averaged over a window of micro-batches (a logging interval, or an eval pass), in
//! the order they were first recorded — how TRL averages its `_metrics` before logging.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricWindow {
    /// Sum of each metric over the window, in first-recorded order.
    sums: Vec<(String, f64)>,
    count: usize,
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
            match self.sums.iter_mut().find(|(k, _)| *k == key) {
                Some((_, sum)) => *sum += value,
                None => self.sums.push((key, value)),
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
            .map(|(key, sum)| {
                (
                    format!("{prefix}{key}"),
                    Value::from(sum / self.count.max(1) as f64),
                )
            })
            .collect()
    }

    /// The mean of one metric.
    pub fn mean(&self, key: &str) -> Option<f64> {
        self.sums
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, sum)| sum / self.count.max(1) as f64)
    }
}
