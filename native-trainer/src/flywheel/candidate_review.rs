//! Judging the candidates: each served candidate's blind battles against its parent, at the
//! promotion rule's last look (the first 20, 40, … battles in the order they were stored, or
//! all of them at the budget), and the verdict recorded as a promotion or a retirement with
//! the figures behind it. A verdict to keep battling records nothing.

use anyhow::Result;
use shared::ModelManifest;

use crate::label_analytics::promotion_rule::{PromotionRule, Verdict};
use crate::label_analytics::version_ratings::{Battle, battles, win_rate_against};
use crate::store::PairStore;
use crate::store::version_events::NewVersionChange;
use shared::api::VersionChangeKind;

/// What the review decided for one candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    pub version: String,
    pub verdict: Verdict,
    pub reason: String,
}

/// Judges `candidates` (served versions with a parent) and records each decision.
pub fn review_candidates(
    store: &dyn PairStore,
    versions: &[ModelManifest],
    candidates: &[String],
    rule: &PromotionRule,
) -> Result<Vec<Review>> {
    let fought = battles(&store.all_pairs()?);
    let mut reviews = Vec::new();
    for candidate in candidates {
        let Some(parent) = versions
            .iter()
            .find(|m| &m.version == candidate)
            .and_then(|m| m.parent_version.clone())
        else {
            continue;
        };
        let against_parent: Vec<Battle> = fought
            .iter()
            .filter(|b| {
                (b.first == *candidate && b.second == parent)
                    || (b.first == parent && b.second == *candidate)
            })
            .cloned()
            .collect();
        let looked_at = if against_parent.len() >= rule.battle_budget {
            rule.battle_budget
        } else {
            against_parent.len() / rule.look_every * rule.look_every
        };
        let Some(record) = win_rate_against(&against_parent[..looked_at], candidate, &parent)
        else {
            continue;
        };
        let points = record.rate * record.battles as f64;
        let judged = rule.judge(points, record.battles);
        let (low, high) = judged.interval.expect("a look has battles");
        let reason = format!(
            "won {points:.1} of {} battles against {parent}: rate {:.3}, {:.1}% interval \
             [{low:.3}, {high:.3}]",
            record.battles,
            record.rate,
            rule.interval_level() * 100.0,
        );
        let kind = match judged.verdict {
            Verdict::Promote => VersionChangeKind::Promoted,
            Verdict::Retire => VersionChangeKind::Retired,
            Verdict::KeepBattling => continue,
        };
        store.record_version_event(NewVersionChange {
            version: candidate,
            kind,
            parent_version: Some(&parent),
            reason: &reason,
        })?;
        tracing::info!("{candidate} {}: {reason}", kind.as_str());
        reviews.push(Review {
            version: candidate.clone(),
            verdict: judged.verdict,
            reason,
        });
    }
    Ok(reviews)
}
