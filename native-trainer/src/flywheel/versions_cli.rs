//! `dpo versions list | candidate | promote | retire`: the served versions' roles by hand.
//! `list` prints each version's role, its record against its parent with the exact interval
//! and the promotion rule's verdict (`label_analytics/promotion_rule.rs`), then the role
//! history; the others record one role change in the store, which every `dpo serve` on that
//! store applies from its next `GET /api/models` (the app loads the default; battles put
//! candidates against it).

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};

use super::version_roles::version_roles;
use crate::label_analytics::promotion_rule::{PromotionRule, Verdict};
use crate::label_analytics::version_standings::{parent_record_text, version_standings};
use crate::serve::model_catalog::ModelCatalog;
use crate::store::open_store;
use crate::store::version_events::NewVersionChange;
use shared::api::{VersionChange, VersionChangeKind};

#[derive(Subcommand, Debug)]
pub enum VersionsCommand {
    /// Every served version with its role, its record against its parent and the verdict.
    List(VersionsArgs),
    /// Serve VERSION as a candidate: a share of comparisons (`--battle-share`) become blind
    /// battles between it and the default.
    Candidate(ChangeArgs),
    /// Make VERSION the default, the version every labeller's app loads.
    Promote(ChangeArgs),
    /// Stop battling VERSION (it stays downloadable; promote it again to bring it back).
    Retire(ChangeArgs),
}

#[derive(Args, Debug)]
pub struct VersionsArgs {
    /// The server's models directory.
    #[arg(long)]
    pub models_dir: PathBuf,
    /// Pair database: `sqlite:PATH` or `postgres://…`.
    #[arg(long)]
    pub db: String,
}

#[derive(Args, Debug)]
pub struct ChangeArgs {
    pub version: String,
    #[command(flatten)]
    pub store: VersionsArgs,
    /// Why, recorded with the change.
    #[arg(long, default_value = "by hand")]
    pub reason: String,
}

pub fn run(command: &VersionsCommand) -> Result<()> {
    let (args, kind) = match command {
        VersionsCommand::List(args) => return list(args),
        VersionsCommand::Candidate(args) => (args, VersionChangeKind::Candidate),
        VersionsCommand::Promote(args) => (args, VersionChangeKind::Promoted),
        VersionsCommand::Retire(args) => (args, VersionChangeKind::Retired),
    };
    let versions = ModelCatalog::new(&args.store.models_dir).versions();
    if !versions.iter().any(|m| m.version == args.version) {
        let served: Vec<&str> = versions.iter().map(|m| m.version.as_str()).collect();
        bail!(
            "version `{}` is not served from {} (served: {})",
            args.version,
            args.store.models_dir.display(),
            if served.is_empty() {
                "none".to_string()
            } else {
                served.join(", ")
            }
        );
    }
    let store = open_store(&args.store.db)?;
    let mut events = store.version_events()?;
    let was_default = version_roles(&versions, &events).default_version;
    // The change as it would be: the default may move off this version only onto another.
    events.push(VersionChange {
        version: args.version.clone(),
        kind,
        parent_version: None,
        reason: args.reason.clone(),
        recorded_at: String::new(),
    });
    let after = version_roles(&versions, &events);
    if kind != VersionChangeKind::Promoted
        && was_default.as_deref() == Some(args.version.as_str())
        && after
            .default_version
            .as_deref()
            .is_none_or(|v| v == args.version)
    {
        bail!(
            "version `{}` is the default and no other version would take its place: promote \
             another version first",
            args.version
        );
    }
    store.record_version_event(NewVersionChange {
        version: &args.version,
        kind,
        parent_version: None,
        reason: &args.reason,
    })?;
    // The roles as recorded: what `after` computed from the same rows.
    tracing::info!(
        "{} is now {}; default {}, candidates [{}]",
        args.version,
        kind.as_str(),
        after.default_version.as_deref().unwrap_or("none"),
        after.candidates.join(", ")
    );
    Ok(())
}

fn list(args: &VersionsArgs) -> Result<()> {
    let versions = ModelCatalog::new(&args.models_dir).versions();
    let store = open_store(&args.db)?;
    let events = store.version_events()?;
    let roles = version_roles(&versions, &events);
    let standings = version_standings(&versions, &store.all_pairs()?);
    let rule = PromotionRule::default();
    println!("| version | parent | role | win rate vs parent (95% CI) | verdict |");
    println!("|---|---|---|---|---|");
    for standing in &standings {
        let role = if roles.default_version.as_deref() == Some(standing.version.as_str()) {
            "default"
        } else if roles.candidates.contains(&standing.version) {
            "candidate"
        } else {
            "-"
        };
        let record = parent_record_text(standing);
        let verdict = rule.verdict_on(standing).map_or("-", Verdict::as_str);
        println!(
            "| {} | {} | {role} | {record} | {verdict} |",
            standing.version,
            standing.parent_version.as_deref().unwrap_or("-"),
        );
    }
    if !events.is_empty() {
        println!();
        for event in &events {
            println!(
                "{} {} {}: {}",
                event.recorded_at,
                event.version,
                event.kind.as_str(),
                event.reason
            );
        }
    }
    Ok(())
}
