//! The model versions' roles as the store records them, one row per change: a version made a
//! **candidate** (served beside the default for blind battles against its parent),
//! **promoted** (the default every labeller's app loads) or **retired** (no longer a
//! candidate). Rows are only ever added, so the history stays, and every server and
//! `dpo flywheel` reading one store agree on the roles (`flywheel/version_roles.rs` derives
//! them from the rows).

use serde::Serialize;

/// What happened to a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VersionEventKind {
    Candidate,
    Promoted,
    Retired,
}

impl VersionEventKind {
    pub const ALL: [VersionEventKind; 3] = [Self::Candidate, Self::Promoted, Self::Retired];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Candidate => "candidate",
            Self::Promoted => "promoted",
            Self::Retired => "retired",
        }
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
    /// Why, in words (the battles behind a decision, or who did it by hand).
    pub reason: String,
    /// RFC 3339, set by the store.
    pub recorded_at: String,
}

/// A stored row as an event; a kind this build does not know is an error naming it.
pub fn event(
    version: String,
    kind: &str,
    reason: String,
    recorded_at: String,
) -> anyhow::Result<VersionEvent> {
    let kind = VersionEventKind::parse(kind).ok_or_else(|| {
        anyhow::anyhow!(
            "version_events: unknown kind `{kind}` for version `{version}` (known: candidate, \
             promoted, retired)"
        )
    })?;
    Ok(VersionEvent {
        version,
        kind,
        reason,
        recorded_at,
    })
}
