//! One training round: `dpo train` on the default version's votes (LoRA unless told
//! otherwise, with the round's TRL config file), then `dpo export --publish` of the result as a
//! new version whose parent is the default. Each step runs as a child `dpo` process (its output
//! in `WORK_DIR/<version>.<step>.log`), so a failure is a logged exit status, never a
//! half-written state in this process; while a child runs, the flywheel's lease is renewed.
//! The round's rows go to the store in this order: `round_started`, then `candidate` *before*
//! the files are published (so the new version is never, even for a moment, the newest version
//! without a role, which would make it the default), or `round_failed` with the reason.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::store::PairStore;
use shared::api::VersionChangeKind;

use crate::store::version_events::NewVersionChange;

/// What a round needs to know.
pub struct RoundPlan<'a> {
    /// The `dpo` binary (this one).
    pub dpo: PathBuf,
    pub db: &'a str,
    pub models_dir: &'a Path,
    pub work_dir: &'a Path,
    /// The default version and its GGUF.
    pub parent: &'a str,
    pub parent_gguf: PathBuf,
    /// The new version's id.
    pub version: String,
    pub config: Option<&'a Path>,
    pub full_fine_tuning: bool,
    pub quant: &'a str,
    /// How many usable votes started the round (for the record).
    pub votes: usize,
    /// Renews the flywheel's lease; called every `renew_every` while a step runs.
    pub renew_lease: &'a dyn Fn() -> Result<()>,
    pub renew_every: std::time::Duration,
}

/// Runs the round; records its rows. `Ok(false)` when it failed (recorded as such).
pub fn run_round(store: &dyn PairStore, plan: &RoundPlan<'_>) -> Result<bool> {
    let record = |kind, reason: &str| {
        store.record_version_event(NewVersionChange {
            version: &plan.version,
            kind,
            parent_version: Some(plan.parent),
            reason,
        })
    };
    record(
        VersionChangeKind::RoundStarted,
        &format!("{} usable votes on {}", plan.votes, plan.parent),
    )?;
    tracing::info!(
        "round for {}: training on {} usable votes of {}",
        plan.version,
        plan.votes,
        plan.parent
    );
    let run_dir = plan.work_dir.join(&plan.version);
    let trained = train(plan, &run_dir).and_then(|summary| {
        record(VersionChangeKind::Candidate, &format!("trained: {summary}"))?;
        publish(plan, &run_dir)
    });
    match trained {
        Ok(()) => {
            tracing::info!(
                "{} is published as a candidate against {}",
                plan.version,
                plan.parent
            );
            Ok(true)
        }
        Err(error) => {
            let reason = format!("{error:#}");
            tracing::error!("round for {} failed: {reason}", plan.version);
            record(VersionChangeKind::RoundFailed, &reason)?;
            Ok(false)
        }
    }
}

/// `dpo train`; returns its JSON summary line.
fn train(plan: &RoundPlan<'_>, run_dir: &Path) -> Result<String> {
    let mut command = Command::new(&plan.dpo);
    command
        .arg("train")
        .arg("--model")
        .arg(&plan.parent_gguf)
        .arg("--data")
        .arg(format!("{}?model_version={}", plan.db, plan.parent))
        .arg("--output-dir")
        .arg(run_dir);
    if let Some(config) = plan.config {
        command.arg("--config").arg(config);
    }
    if !plan.full_fine_tuning {
        command.arg("--use-peft");
    }
    last_line_of(plan, command, "train")
}

/// `dpo export --publish` of the run as the new version.
fn publish(plan: &RoundPlan<'_>, run_dir: &Path) -> Result<()> {
    let mut command = Command::new(&plan.dpo);
    command
        .arg("export")
        .arg("--model")
        .arg(run_dir)
        .args(["--quant", plan.quant, "--no-hf"])
        .args([
            "--version-id",
            &plan.version,
            "--parent-version",
            plan.parent,
        ])
        .arg("--publish")
        .arg(plan.models_dir);
    last_line_of(plan, command, "export").map(drop)
}

/// Runs `command` as step `step`, renewing the lease while it runs; its last stdout line, or
/// an error with the end of its log.
fn last_line_of(plan: &RoundPlan<'_>, mut command: Command, step: &str) -> Result<String> {
    std::fs::create_dir_all(plan.work_dir)
        .with_context(|| format!("creating {}", plan.work_dir.display()))?;
    let log = plan.work_dir.join(format!("{}.{step}.log", plan.version));
    let out = plan.work_dir.join(format!("{}.{step}.out", plan.version));
    let mut child = command
        .stdout(std::fs::File::create(&out)?)
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .with_context(|| format!("starting dpo {step}"))?;
    let mut since_renewal = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if since_renewal.elapsed() >= plan.renew_every {
            (plan.renew_lease)()?;
            since_renewal = std::time::Instant::now();
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    if !status.success() {
        let stderr = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        bail!(
            "dpo {step} exited with {status} ({}): {}",
            log.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        );
    }
    Ok(std::fs::read_to_string(&out)?
        .lines()
        .last()
        .unwrap_or_default()
        .to_string())
}
