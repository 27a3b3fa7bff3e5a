//! The model versions' history as the store records it, one row per change: a training
//! round for a new version **started** (or **failed**), a version made a **candidate**
//! (served beside the default for blind battles against its parent), **promoted** (the
//! default every labeller's app loads) or **retired** (no longer a candidate). Rows are only
//! ever added, so the history stays, and every server and `dpo flywheel` reading one store
//! agree on the roles (`flywheel/version_roles.rs` derives them from the rows). The row's type
//! is the wire's (`shared::api::VersionChange`): the dashboard shows the same rows.

use shared::api::{VersionChange, VersionChangeKind};

/// A stored row as an event; a kind this build does not know is an error naming it.
pub fn event(
    version: String,
    kind: &str,
    parent_version: Option<String>,
    reason: String,
    recorded_at: String,
) -> anyhow::Result<VersionChange> {
    let kind = VersionChangeKind::parse(kind).ok_or_else(|| {
        anyhow::anyhow!(
            "version_events: unknown kind `{kind}` for version `{version}` (known: \
             round_started, round_failed, candidate, promoted, retired)"
        )
    })?;
    Ok(VersionChange {
        version,
        kind,
        parent_version,
        reason,
        recorded_at,
    })
}

/// A change about to be recorded.
#[derive(Debug, Clone, Copy)]
pub struct NewVersionChange<'a> {
    pub version: &'a str,
    pub kind: VersionChangeKind,
    pub parent_version: Option<&'a str>,
    pub reason: &'a str,
}
