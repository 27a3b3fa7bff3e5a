//! `GET /api/stats`: the stored pairs counted per vote and per model version, the prompt set's
//! progress and each version's standing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{PromptProgress, VersionStanding};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatsReport {
    #[serde(flatten)]
    pub pairs: PairStats,
    pub prompts: PromptProgress,
    pub versions: Vec<VersionStanding>,
}

/// The stored pairs' counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PairStats {
    pub total: u64,
    /// Per vote (`a`, `b`, `tie`, `both_bad`).
    pub by_vote: BTreeMap<String, u64>,
    /// Per model version: pairs with a candidate from it, per vote.
    pub by_model_version: BTreeMap<String, BTreeMap<String, u64>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counts_sit_at_the_top_level_beside_prompts_and_versions() {
        let report = StatsReport {
            pairs: PairStats {
                total: 2,
                by_vote: [("a".to_string(), 2)].into(),
                by_model_version: BTreeMap::new(),
            },
            prompts: PromptProgress::default(),
            versions: vec![],
        };
        let wire = serde_json::to_value(&report).unwrap();
        assert_eq!(wire["total"], 2);
        assert_eq!(wire["by_vote"]["a"], 2);
        assert!(wire["prompts"].is_object() && wire["versions"].is_array());
        assert_eq!(serde_json::from_value::<StatsReport>(wire).unwrap(), report);
    }
}
