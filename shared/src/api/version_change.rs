//! One recorded change of a model version, as the store keeps it and the dashboard and
//! `dpo versions list` show it: a training round for it started or failed, it became a
//! candidate, was promoted to the default, or retired.

use serde::{Deserialize, Serialize};

/// What happened to a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum VersionChangeKind {
    RoundStarted,
    RoundFailed,
    Candidate,
    Promoted,
    Retired,
}

impl VersionChangeKind {
    pub const ALL: [VersionChangeKind; 5] = [
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

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }

    /// Whether the change gives the version a role (a round's own rows do not).
    pub fn is_role(self) -> bool {
        matches!(self, Self::Candidate | Self::Promoted | Self::Retired)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionChange {
    pub version: String,
    pub kind: VersionChangeKind,
    /// The version a round trains from (round and candidate rows of `dpo flywheel`).
    pub parent_version: Option<String>,
    /// Why, in words: the votes behind a round, the battles behind a decision, an error.
    pub reason: String,
    /// RFC 3339, set by the store.
    pub recorded_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_read_back_from_their_names_on_the_wire() {
        for kind in VersionChangeKind::ALL {
            assert_eq!(VersionChangeKind::parse(kind.as_str()), Some(kind));
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::Value::String(kind.as_str().into())
            );
        }
        assert_eq!(VersionChangeKind::parse("published"), None);
    }
}
