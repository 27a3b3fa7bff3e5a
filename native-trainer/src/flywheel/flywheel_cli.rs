//! `dpo flywheel`: the loop beside `dpo serve` that turns the flywheel by itself. On each tick,
//! holding the store's `flywheel` lease (so two flywheels on one store never work at once):
//!
//! 1. a round that a stopped flywheel left unfinished (started, its version never served) is
//!    recorded as failed;
//! 2. each candidate's battles against its parent are judged by the promotion rule, and a
//!    decision is recorded (`candidate_review.rs`);
//! 3. with no candidate left, when the default version has at least `--min-votes` usable
//!    votes (on-policy: both answers from it; after the agreement filter `dpo train` applies)
//!    cast since its last round that did not fail started, a round trains and publishes the
//!    next candidate (`training_round.rs`).
//!
//! `--once` runs one tick and exits; otherwise a tick every `--poll-secs`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::candidate_review::review_candidates;
use super::training_round::{RoundPlan, run_round};
use super::version_roles::version_roles;
use crate::label_analytics::promotion_rule::PromotionRule;
use crate::label_analytics::vote_selection::{VoteFilter, select_votes};
use crate::serve::model_catalog::ModelCatalog;
use crate::store::version_events::NewVersionChange;
use crate::store::{PairStore, open_store};
use shared::api::{VersionChange, VersionChangeKind};

/// The lease's name in the store.
const LEASE: &str = "flywheel";

#[derive(Args, Debug)]
pub struct FlywheelArgs {
    /// The models directory `dpo serve` serves.
    #[arg(long)]
    pub models_dir: PathBuf,
    /// The store `dpo serve` writes: `sqlite:PATH` or `postgres://…`.
    #[arg(long)]
    pub db: String,
    /// Usable votes on the default version, since its last round, that start a round.
    #[arg(long, default_value_t = 50)]
    pub min_votes: usize,
    /// The rounds' `dpo train` config (TRL keys; TOML, JSON or YAML).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Train every weight instead of LoRA adapters.
    #[arg(long)]
    pub full_fine_tuning: bool,
    /// The published versions' quantization (`dpo export --quant`).
    #[arg(long, default_value = "q4_k_m")]
    pub quant: String,
    /// Where rounds keep their training runs.
    #[arg(long, default_value = "flywheel-runs")]
    pub work_dir: PathBuf,
    /// Battles against its parent after which an undecided candidate is retired.
    #[arg(long, default_value_t = 200)]
    pub battle_budget: usize,
    /// The candidate's record is judged every this many battles.
    #[arg(long, default_value_t = 20)]
    pub look_every: usize,
    /// Seconds between ticks.
    #[arg(long, default_value_t = 60)]
    pub poll_secs: u64,
    /// How long the lease outlives its last renewal (renewed every few seconds while a
    /// round's steps run): a flywheel that stops is replaced by another after this long.
    #[arg(long, default_value_t = 60)]
    pub lease_secs: u64,
    /// One tick, then exit.
    #[arg(long)]
    pub once: bool,
}

pub fn run(args: &FlywheelArgs) -> Result<()> {
    if args.look_every == 0 || args.battle_budget == 0 {
        bail!("--look-every and --battle-budget must be at least 1");
    }
    let store = open_store(&args.db)?;
    let owner = format!(
        "{}-{}",
        std::process::id(),
        OffsetDateTime::now_utc().unix_timestamp_nanos()
    );
    loop {
        let lease_ms = args.lease_secs as i64 * 1000;
        let renew = || -> Result<()> {
            if !store.try_lease(LEASE, &owner, now_ms(), lease_ms)? {
                bail!("the flywheel's lease was taken by another flywheel");
            }
            Ok(())
        };
        if store.try_lease(LEASE, &owner, now_ms(), lease_ms)? {
            let ticked = tick(store.as_ref(), args, &renew);
            store.release_lease(LEASE, &owner)?;
            ticked?;
        } else {
            tracing::info!("another dpo flywheel holds this store's lease: nothing done");
        }
        if args.once {
            return Ok(());
        }
        std::thread::sleep(Duration::from_secs(args.poll_secs));
    }
}

fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// One tick, under the lease.
fn tick(
    store: &dyn PairStore,
    args: &FlywheelArgs,
    renew_lease: &dyn Fn() -> Result<()>,
) -> Result<()> {
    let catalog = ModelCatalog::new(&args.models_dir);
    let versions = catalog.versions();
    let events = store.version_events()?;
    fail_unfinished_rounds(store, &versions, &events)?;
    let rule = PromotionRule {
        battle_budget: args.battle_budget,
        look_every: args.look_every,
        ..PromotionRule::default()
    };
    let roles = version_roles(&versions, &events);
    review_candidates(store, &versions, &roles.candidates, &rule)?;
    let events = store.version_events()?;
    let roles = version_roles(&versions, &events);
    if !roles.candidates.is_empty() {
        tracing::info!("candidates still battling: {}", roles.candidates.join(", "));
        return Ok(());
    }
    let Some(default) = roles.default_version else {
        tracing::info!("no default version to train from");
        return Ok(());
    };
    let rounds_from_default: Vec<&VersionChange> = events
        .iter()
        .filter(|e| {
            e.kind == VersionChangeKind::RoundStarted
                && e.parent_version.as_deref() == Some(default.as_str())
        })
        .collect();
    // Votes count from the start of the default's last round that did not fail.
    let since = rounds_from_default
        .iter()
        .rev()
        .find(|e| !round_failed(&events, &e.version))
        .map(|e| OffsetDateTime::parse(&e.recorded_at, &Rfc3339))
        .transpose()
        .context("a round's start time in the store")?;
    let votes = usable_votes(store, &default, since)?;
    if votes < args.min_votes {
        tracing::info!(
            "{votes} usable votes on {default} since its last round; a round starts at {}",
            args.min_votes
        );
        return Ok(());
    }
    let manifest = versions
        .iter()
        .find(|m| m.version == default)
        .expect("the default is served");
    let parent_gguf = catalog
        .file(&default, &manifest.gguf.path)
        .context("the default version's GGUF")?
        .path;
    run_round(
        store,
        &RoundPlan {
            dpo: std::env::current_exe()?,
            db: &args.db,
            models_dir: &args.models_dir,
            work_dir: &args.work_dir,
            parent: &default,
            parent_gguf,
            version: format!("{default}-r{}", rounds_from_default.len() + 1),
            config: args.config.as_deref(),
            full_fine_tuning: args.full_fine_tuning,
            quant: &args.quant,
            votes,
            renew_lease,
            // Three renewals per lease, at most every 5 s.
            renew_every: Duration::from_millis((args.lease_secs * 1000 / 3).clamp(100, 5_000)),
        },
    )?;
    Ok(())
}

/// Votes on `version` (both answers from it) since `since` that teach something after the
/// agreement filter: an A/B vote, or any vote with an ideal answer.
fn usable_votes(
    store: &dyn PairStore,
    version: &str,
    since: Option<OffsetDateTime>,
) -> Result<usize> {
    let filter = VoteFilter {
        model_version: Some(version.to_string()),
        since,
        min_agreement: 0.5,
        ..VoteFilter::default()
    };
    let (kept, _) = select_votes(store.all_pairs()?, &filter);
    Ok(kept
        .iter()
        .filter(|pair| {
            matches!(pair.vote, shared::Vote::A | shared::Vote::B) || pair.edited_answer.is_some()
        })
        .count())
}

/// Whether the round for `version` was recorded as failed.
fn round_failed(events: &[VersionChange], version: &str) -> bool {
    events
        .iter()
        .any(|e| e.kind == VersionChangeKind::RoundFailed && e.version == version)
}

/// Rounds started whose version is not served and that recorded no failure: a flywheel
/// stopped in the middle of them. Recorded as failed (their version ids are not reused).
fn fail_unfinished_rounds(
    store: &dyn PairStore,
    versions: &[shared::ModelManifest],
    events: &[VersionChange],
) -> Result<()> {
    for started in events
        .iter()
        .filter(|e| e.kind == VersionChangeKind::RoundStarted)
    {
        let served = versions.iter().any(|m| m.version == started.version);
        if !served && !round_failed(events, &started.version) {
            tracing::warn!(
                "the round for {} stopped before it published; recorded as failed",
                started.version
            );
            store.record_version_event(NewVersionChange {
                version: &started.version,
                kind: VersionChangeKind::RoundFailed,
                parent_version: started.parent_version.as_deref(),
                reason: "interrupted: the flywheel stopped before the version was published",
            })?;
        }
    }
    Ok(())
}
