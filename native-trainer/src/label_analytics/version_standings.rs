//! Where each served version stands after its battles, as `dpo rounds`, `GET /api/stats` and
//! the dashboard show it: its Bradley–Terry rating with the 95% interval and the battles
//! behind it, and its win rate against the version it was trained from with its exact interval.

use shared::api::VersionStanding;
use shared::{ModelManifest, PreferencePair};

use super::version_ratings::{battles, rate_versions, win_rate_against};

/// One standing per version, in the order given (oldest first).
pub fn version_standings(
    versions: &[ModelManifest],
    pairs: &[PreferencePair],
) -> Vec<VersionStanding> {
    let battles = battles(pairs);
    let ratings = rate_versions(&battles);
    versions
        .iter()
        .map(|manifest| {
            let rating = ratings.get(&manifest.version);
            let against_parent = manifest
                .parent_version
                .as_deref()
                .and_then(|parent| win_rate_against(&battles, &manifest.version, parent));
            VersionStanding {
                version: manifest.version.clone(),
                parent_version: manifest.parent_version.clone(),
                rating: rating.map(|r| r.rating),
                rating_low: rating.map(|r| r.low),
                rating_high: rating.map(|r| r.high),
                battles: rating.map_or(0, |r| r.battles),
                win_rate_vs_parent: against_parent.as_ref().map(|r| r.rate),
                win_rate_low: against_parent.as_ref().map(|r| r.low),
                win_rate_high: against_parent.as_ref().map(|r| r.high),
                battles_vs_parent: against_parent.as_ref().map_or(0, |r| r.battles),
            }
        })
        .collect()
}

/// The record against the parent as `dpo rounds` and `dpo versions list` print it:
/// `0.700 [0.209, 0.977] (5 battles)`, or `-` without one.
pub fn parent_record_text(standing: &VersionStanding) -> String {
    match (
        standing.win_rate_vs_parent,
        standing.win_rate_low,
        standing.win_rate_high,
    ) {
        (Some(rate), Some(low), Some(high)) => format!(
            "{rate:.3} [{low:.3}, {high:.3}] ({} battles)",
            standing.battles_vs_parent
        ),
        _ => "-".into(),
    }
}
