//! Where preference pairs are kept: one storage trait for every database. A store commits a
//! batch durably before it returns, stores each idempotency key once, and tells apart a
//! retry (same key, same pair) from a key reused for a different pair. A pair that labels a
//! served prompt is stored only while that prompt wants labels, once per annotator, with
//! the prompt's own conversation. The same stores keep the prompt sets (with leases on
//! handed-out prompts), the invited annotators and the versions' role changes.

use anyhow::Result;
use shared::PreferencePair;

use super::annotator_records::{AnnotatorRecord, TokenCheck};
use shared::api::{PairStats, PromptProgress};

use super::prompt_set::{NewPrompt, PromptImport, ServedPrompt};
use super::version_events::NewVersionChange;
use shared::api::VersionChange;

/// What happened to one submitted pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Stored now, under this row id.
    Created(i64),
    /// The same pair was stored before under this id (a retry).
    Replayed(i64),
    /// The key is taken by a different pair (stored under this id); nothing was stored.
    KeyReused(i64),
    /// The pair names a served prompt it may not label; nothing was stored.
    Refused(PromptRefusal),
}

/// Why a pair naming a prompt was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptRefusal {
    UnknownPrompt,
    /// Its conversation is not the prompt's.
    OtherConversation,
    /// This annotator has labelled the prompt already.
    AlreadyLabelled,
    /// The prompt has all the labels it wants.
    Complete,
}

impl PromptRefusal {
    pub fn reason(self) -> &'static str {
        match self {
            PromptRefusal::UnknownPrompt => "no such prompt in this server's prompt set",
            PromptRefusal::OtherConversation => "the conversation is not the served prompt's",
            PromptRefusal::AlreadyLabelled => "this annotator has already labelled this prompt",
            PromptRefusal::Complete => "this prompt has all the labels it wants",
        }
    }
}

pub trait PairStore: Send + Sync + 'static {
    /// Stores `pairs` in one durable commit; one outcome per pair, in order.
    fn insert_batch(&self, pairs: &[(PreferencePair, String)]) -> Result<Vec<InsertOutcome>>;
    fn stats(&self) -> Result<PairStats>;
    /// Every stored pair, in the order they were stored.
    fn all_pairs(&self) -> Result<Vec<PreferencePair>>;

    /// Adds prompts in one commit, skipping those the store has (same normalised
    /// conversation or id) and repeats within `prompts`.
    fn add_prompts(&self, prompts: &[NewPrompt]) -> Result<PromptImport>;
    /// A prompt for `annotator`: one they have not labelled among those with fewer labels
    /// (acknowledged, plus other annotators' unexpired leases) than they want — the one
    /// they already hold a lease on, else the least labelled, random among equals — leased
    /// to them until `now_ms + lease_ms`. `None` when none is left for them.
    fn next_prompt(
        &self,
        annotator: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<Option<ServedPrompt>>;
    fn prompt_progress(&self) -> Result<PromptProgress>;

    /// Records an invited annotator; an error if the name is taken.
    fn add_annotator(&self, name: &str, token_sha256: &str) -> Result<()>;
    /// Every invited annotator, in invitation order.
    fn annotators(&self) -> Result<Vec<AnnotatorRecord>>;
    /// Revokes `name`'s invite; `false` if there is no such annotator.
    fn revoke_annotator(&self, name: &str) -> Result<bool>;
    fn check_token(&self, token_sha256: &str) -> Result<TokenCheck>;

    /// Records a change of a version, now.
    fn record_version_event(&self, event: NewVersionChange<'_>) -> Result<()>;
    /// Every recorded change, in the order they were recorded.
    fn version_events(&self) -> Result<Vec<VersionChange>>;
    /// Takes or renews the lease `name` for `owner` until `now_ms + lease_ms`; `false` while
    /// another owner holds it unexpired.
    fn try_lease(&self, name: &str, owner: &str, now_ms: i64, lease_ms: i64) -> Result<bool>;
    /// Gives the lease back if `owner` holds it.
    fn release_lease(&self, name: &str, owner: &str) -> Result<()>;
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
