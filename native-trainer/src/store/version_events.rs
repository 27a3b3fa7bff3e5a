//! The model versions' history as the store records it, one row per change: a training
//! round for a new version **started** (or **failed**), a version made a **candidate**
//! (served beside the default for blind battles against its parent), **promoted** (the
//! default every labeller's app loads) or **retired** (no longer a candidate). Rows are only
//! ever added, so the history stays, and every server and `dpo flywheel` reading one store
//! agree on the roles (`flywheel/version_roles.rs` derives them from the rows).

use serde::Serialize;

/// What happened to a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionEventKind {
    RoundStarted,
    RoundFailed,
    Candidate,
    Promoted,
    Retired,
}

impl VersionEventKind {
    pub const ALL: [VersionEventKind; 5] = [
        Self::RoundStarted,
        Self::RoundFailed,
        Self::Candidate,
        Self::Promoted,
        Self::Retired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RoundStarted => "round_started",
            Self::RoundFailed => "round_failed",
            Self::Candidate => "candidate",
            Self::Promoted => "promoted",
            Self::Retired => "retired",
        }
    }

    /// Whether the change gives the version a role (the round's own rows do not).
    pub fn is_role(self) -> bool {
        matches!(self, Self::Candidate | Self::Promoted | Self::Retired)
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

/// One recorded change of a version's role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionEvent {
    pub version: String,
    pub kind: VersionEventKind,
    /// The version a round trains from (round and candidate rows of `dpo flywheel`).
    pub parent_version: Option<String>,
    /// Why, in words (the battles behind a decision, or who did it by hand).
    pub reason: String,
    /// RFC 3339, set by the store.
    pub recorded_at: String,
}

/// A stored row as an event; a kind this build does not know is an error naming it.
pub fn event(
    version: String,
    kind: &str,
    parent_version: Option<String>,
    reason: String,
    recorded_at: String,
) -> anyhow::Result<VersionEvent> {
    let kind = VersionEventKind::parse(kind).ok_or_else(|| {
        anyhow::anyhow!(
            "version_events: unknown kind `{kind}` for version `{version}` (known: \
             round_started, round_failed, candidate, promoted, retired)"
        )
    })?;
    Ok(VersionEvent {
        version,
        kind,
        parent_version,
        reason,
        recorded_at,
    })
}

/// A change about to be recorded.
#[derive(Debug, Clone, Copy)]
pub struct NewVersionEvent<'a> {
    pub version: &'a str,
    pub kind: VersionEventKind,
    pub parent_version: Option<&'a str>,
    pub reason: &'a str,
}
