//! Where preference pairs are kept: one storage trait for every database. A store commits a
//! batch durably before it returns, stores each idempotency key once, and tells apart a
//! retry (same key, same pair) from a key reused for a different pair.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;
use shared::PreferencePair;

/// What happened to one submitted pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Stored now, under this row id.
    Created(i64),
    /// The same pair was stored before under this id (a retry).
    Replayed(i64),
    /// The key is taken by a different pair (stored under this id); nothing was stored.
    KeyReused(i64),
}

/// Counts for `GET /api/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PairStats {
    pub total: u64,
    /// Per vote (`a`, `b`, `tie`, `both_bad`).
    pub by_vote: BTreeMap<String, u64>,
    /// Per model version: pairs with a candidate from it, per vote.
    pub by_model_version: BTreeMap<String, BTreeMap<String, u64>>,
}

pub trait PairStore: Send + Sync + 'static {
    /// Stores `pairs` in one durable commit; one outcome per pair, in order.
    fn insert_batch(&self, pairs: &[(PreferencePair, String)]) -> Result<Vec<InsertOutcome>>;
    fn stats(&self) -> Result<PairStats>;
    /// Every stored pair, in the order they were stored.
    fn all_pairs(&self) -> Result<Vec<PreferencePair>>;
}

/// Stats from `(model_a, model_b, vote, count)` groups, as both stores query them.
pub fn stats_from_counts(counts: Vec<(String, String, String, u64)>) -> PairStats {
    let mut stats = PairStats::default();
    for (model_a, model_b, vote, count) in counts {
        stats.total += count;
        *stats.by_vote.entry(vote.clone()).or_default() += count;
        let mut versions = vec![model_a];
        if model_b != versions[0] {
            versions.push(model_b);
        }
        for version in versions {
            *stats
                .by_model_version
                .entry(version)
                .or_default()
                .entry(vote.clone())
                .or_default() += count;
        }
    }
    stats
}
