//! What every route of `dpo serve` shares: the store and its commit queue, the served model
//! versions, the rate limits, the admin token, the web app's directory and the campaign's
//! settings.

use std::path::PathBuf;
use std::sync::Arc;

use shared::api::AccessMode;

use super::commit_queue::CommitQueue;
use super::compressed_files::CompressedFiles;
use super::model_catalog::ModelCatalog;
use super::rate_limiter::RateLimiter;
use crate::store::PairStore;

pub struct AppState {
    pub queue: CommitQueue,
    pub store: Arc<dyn PairStore>,
    pub catalog: ModelCatalog,
    pub annotator_limit: RateLimiter,
    pub ip_limit: RateLimiter,
    pub admin_token: Option<String>,
    pub web_dir: Option<PathBuf>,
    pub compressed: CompressedFiles,
    pub max_body_bytes: usize,
    /// Origins allowed to call the API from other sites' pages; empty: CORS off.
    pub cors_origins: Vec<String>,
    pub access: AccessMode,
    /// The labelling guidelines (Markdown) the app shows before the first vote.
    pub guidelines: Option<String>,
    /// Whether annotators may label prompts they write (always, while the store has no
    /// prompt set).
    pub allow_own_prompts: bool,
    /// The share of comparisons drawn from two different versions, when there are two.
    pub battle_share: Option<f64>,
    /// How long a handed-out prompt stays reserved for its annotator.
    pub prompt_lease: std::time::Duration,
}

impl AppState {
    /// The share of comparisons that are battles between two versions, as served now.
    pub fn battle_share_now(&self) -> f64 {
        if self.catalog.versions().len() < 2 {
            return 0.0;
        }
        self.battle_share.unwrap_or(0.5)
    }
}
