//! Which served version is the **default** (what a labeller's app loads) and which are
//! **candidates** (served for blind battles against the default), derived from the store's
//! role changes (`store/version_events.rs`) and the versions the models directory serves.
//!
//! - A candidate is a served version whose last change made it one.
//! - The default is the served version promoted most recently and not retired since; while
//!   none has been promoted, the newest served version that was never a candidate (a version
//!   published by hand, as before roles existed); else the oldest served version that is
//!   neither a candidate nor retired.
//!
//! Events may name a version before it is served (the flywheel records a candidate before it
//! publishes the files): they apply from the moment the version appears.
//!
//! Being derived from rows that are only ever added, every server and flywheel reading the
//! same store sees one default at a time.

use std::collections::BTreeMap;

use shared::ModelManifest;

use shared::api::{VersionChange, VersionChangeKind};

/// The roles of the served versions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VersionRoles {
    pub default_version: Option<String>,
    /// Oldest first.
    pub candidates: Vec<String>,
}

/// The roles of `versions` (oldest first, as the catalog lists them) after `events`.
pub fn version_roles(versions: &[ModelManifest], events: &[VersionChange]) -> VersionRoles {
    let served = |version: &str| versions.iter().any(|m| m.version == version);
    let mut last: BTreeMap<&str, (usize, VersionChangeKind)> = BTreeMap::new();
    for (order, event) in events.iter().enumerate() {
        if event.kind.is_role() && served(&event.version) {
            last.insert(&event.version, (order, event.kind));
        }
    }
    let last_kind = |version: &str| last.get(version).map(|(_, kind)| *kind);
    let candidates: Vec<String> = versions
        .iter()
        .filter(|m| last_kind(&m.version) == Some(VersionChangeKind::Candidate))
        .map(|m| m.version.clone())
        .collect();
    let promoted = last
        .iter()
        .filter(|(_, (_, kind))| *kind == VersionChangeKind::Promoted)
        .max_by_key(|(_, (order, _))| *order)
        .map(|(version, _)| version.to_string());
    let never_a_candidate = |m: &&ModelManifest| !last.contains_key(m.version.as_str());
    let default_version = promoted
        .or_else(|| {
            versions
                .iter()
                .rev()
                .find(never_a_candidate)
                .map(|m| m.version.clone())
        })
        .or_else(|| {
            versions
                .iter()
                .find(|m| {
                    !matches!(
                        last_kind(&m.version),
                        Some(VersionChangeKind::Candidate | VersionChangeKind::Retired)
                    )
                })
                .map(|m| m.version.clone())
        });
    VersionRoles {
        default_version,
        candidates,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(version: &str) -> ModelManifest {
        let file = serde_json::json!({ "path": "model.gguf", "sha256": "0".repeat(64), "size": 1 });
        serde_json::from_value(serde_json::json!({
            "format_version": 1,
            "version": version,
            "parent_version": null,
            "created": "2026-12-07T10:00:00Z",
            "model_name": "test",
            "base_model": "test",
            "architecture": "qwen2",
            "quant": "q8_0",
            "gguf": file,
            "files": [file],
            "training": null,
            "exporter": "test",
        }))
        .unwrap()
    }

    fn event(version: &str, kind: VersionChangeKind) -> VersionChange {
        VersionChange {
            version: version.into(),
            kind,
            parent_version: None,
            reason: "test".into(),
            recorded_at: "2026-12-07T10:00:00Z".into(),
        }
    }

    fn roles(
        versions: &[&str],
        events: &[(&str, VersionChangeKind)],
    ) -> (Option<String>, Vec<String>) {
        let versions: Vec<ModelManifest> = versions.iter().map(|v| manifest(v)).collect();
        let events: Vec<VersionChange> = events.iter().map(|(v, k)| event(v, *k)).collect();
        let roles = version_roles(&versions, &events);
        (roles.default_version, roles.candidates)
    }

    use VersionChangeKind::{Candidate, Promoted, Retired, RoundFailed, RoundStarted};

    #[test]
    fn without_role_changes_the_newest_version_is_the_default_as_before() {
        assert_eq!(roles(&["v0", "v1"], &[]), (Some("v1".into()), vec![]));
        assert_eq!(roles(&[], &[]), (None, vec![]));
    }

    #[test]
    fn a_candidate_battles_beside_the_default_until_promoted_or_retired() {
        let served = ["v0", "v1"];
        assert_eq!(
            roles(&served, &[("v1", Candidate)]),
            (Some("v0".into()), vec!["v1".into()])
        );
        assert_eq!(
            roles(&served, &[("v1", Candidate), ("v1", Promoted)]),
            (Some("v1".into()), vec![])
        );
        assert_eq!(
            roles(&served, &[("v1", Candidate), ("v1", Retired)]),
            (Some("v0".into()), vec![])
        );
    }

    #[test]
    fn the_latest_promotion_wins_and_a_retired_default_falls_back() {
        let served = ["v0", "v1", "v2"];
        let history = [
            ("v1", Candidate),
            ("v1", Promoted),
            ("v2", Candidate),
            ("v2", Promoted),
        ];
        assert_eq!(roles(&served, &history), (Some("v2".into()), vec![]));
        // Promoting an older version again (a rollback) makes it the default.
        let rollback = [history.as_slice(), &[("v1", Promoted)]].concat();
        assert_eq!(roles(&served, &rollback), (Some("v1".into()), vec![]));
        // A version published by hand after promotions does not displace the promoted one.
        let with_hand = ["v0", "v1", "v2", "v3"];
        assert_eq!(roles(&with_hand, &history).0, Some("v2".into()));
        // Events about versions no longer served, and a round's own rows, are ignored.
        assert_eq!(
            roles(
                &["v0", "v1"],
                &[
                    ("v1", RoundStarted),
                    ("v1", Candidate),
                    ("gone", Promoted),
                    ("v0", RoundFailed)
                ]
            ),
            (Some("v0".into()), vec!["v1".into()])
        );
    }

    #[test]
    fn a_newly_served_version_named_a_candidate_first_never_becomes_the_default() {
        // The candidate event comes before the files: the default stays v0 throughout.
        let history = [("v1", Candidate)];
        assert_eq!(roles(&["v0"], &history), (Some("v0".into()), vec![]));
        assert_eq!(
            roles(&["v0", "v1"], &history),
            (Some("v0".into()), vec!["v1".into()])
        );
    }

    #[test]
    fn with_every_version_a_candidate_or_retired_there_is_no_default() {
        assert_eq!(
            roles(&["v1", "v2"], &[("v1", Retired), ("v2", Candidate)]),
            (None, vec!["v2".into()])
        );
        assert_eq!(
            roles(
                &["v1", "v2"],
                &[("v1", Candidate), ("v1", Promoted), ("v2", Candidate)]
            ),
            (Some("v1".into()), vec!["v2".into()])
        );
    }
}
