//! When blind battles have decided between a version and the parent it was trained from:
//! **promote** when the version wins significantly more than half its battles against the
//! parent, **retire** when it wins significantly less, or when its battle budget is spent
//! without either; otherwise keep battling.
//!
//! The record is looked at every [`PromotionRule::look_every`] battles, up to the budget, and
//! each look uses the exact (Clopper–Pearson) interval at the Bonferroni-corrected level for
//! that many looks. So a version no better than its parent (a labeller voting at random) is
//! promoted in at most 2.5% of campaigns however often the record is looked at, where one
//! uncorrected 95% interval checked after every battle would promote it far more often.

use serde::Serialize;
use shared::api::VersionStanding;

use super::binomial_interval::clopper_pearson;

/// The rule's numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PromotionRule {
    /// Battles against the parent after which a version not yet promoted is retired.
    pub battle_budget: usize,
    /// The record is judged at every multiple of this many battles.
    pub look_every: usize,
    /// The chance, over a whole campaign, of promoting a version exactly as good as its parent.
    pub false_promotion_rate: f64,
}

impl Default for PromotionRule {
    fn default() -> Self {
        Self {
            battle_budget: 200,
            look_every: 20,
            false_promotion_rate: 0.025,
        }
    }
}

/// What the battles say about a version against its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Promote,
    Retire,
    KeepBattling,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Promote => "promote",
            Verdict::Retire => "retire",
            Verdict::KeepBattling => "keep_battling",
        }
    }
}

impl PromotionRule {
    /// How many times a campaign looks at the record.
    pub fn looks(&self) -> usize {
        self.battle_budget.div_ceil(self.look_every).max(1)
    }

    /// The two-sided level of each look's interval: one-sided false_promotion_rate / looks.
    pub fn interval_level(&self) -> f64 {
        1.0 - 2.0 * self.false_promotion_rate / self.looks() as f64
    }

    /// Whether the record after `battles` is one the campaign looks at.
    pub fn is_look(&self, battles: usize) -> bool {
        battles > 0 && (battles.is_multiple_of(self.look_every) || battles >= self.battle_budget)
    }

    /// The verdict on `points` won (ties half) of `battles` against the parent, judged now (a
    /// campaign judges only at its looks; `dpo rounds` shows what a look now would say).
    pub fn verdict(&self, points: f64, battles: usize) -> Verdict {
        self.judge(points, battles).verdict
    }

    /// As `verdict`, with the interval at `interval_level` it was decided on (`None` without
    /// battles).
    pub fn judge(&self, points: f64, battles: usize) -> Judgement {
        if battles == 0 {
            return Judgement {
                verdict: Verdict::KeepBattling,
                interval: None,
            };
        }
        let at_budget = battles >= self.battle_budget;
        let (low, high) = clopper_pearson(points, battles as f64, self.interval_level());
        let verdict = if low > 0.5 {
            Verdict::Promote
        } else if high < 0.5 || at_budget {
            Verdict::Retire
        } else {
            Verdict::KeepBattling
        };
        Judgement {
            verdict,
            interval: Some((low, high)),
        }
    }

    /// The verdict on a served version's record against its parent (`None` without a parent
    /// or battles against it).
    pub fn verdict_on(&self, standing: &VersionStanding) -> Option<Verdict> {
        let rate = standing.win_rate_vs_parent?;
        let battles = standing.battles_vs_parent;
        Some(self.verdict(rate * battles as f64, battles))
    }
}

/// A verdict and the exact interval behind it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Judgement {
    pub verdict: Verdict,
    pub interval: Option<(f64, f64)>,
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use shared::seeded_rng::SplitMix64;

    /// A campaign of battles won with probability `p`, judged at its looks: the verdict and
    /// the battles it took. `verdicts` remembers each (points, battles) already judged.
    fn campaign(
        rule: &PromotionRule,
        p: f64,
        rng: &mut SplitMix64,
        verdicts: &mut HashMap<(usize, usize), Verdict>,
    ) -> (Verdict, usize) {
        let mut points = 0;
        for battles in 1..=rule.battle_budget {
            points += usize::from(rng.next_f64() < p);
            if !rule.is_look(battles) {
                continue;
            }
            let verdict = *verdicts
                .entry((points, battles))
                .or_insert_with(|| rule.verdict(points as f64, battles));
            if verdict != Verdict::KeepBattling {
                return (verdict, battles);
            }
        }
        unreachable!("the budget ends every campaign")
    }

    fn share(rule: &PromotionRule, p: f64, verdict: Verdict, campaigns: usize) -> f64 {
        let mut rng = SplitMix64(11);
        let mut verdicts = HashMap::new();
        (0..campaigns)
            .filter(|_| campaign(rule, p, &mut rng, &mut verdicts).0 == verdict)
            .count() as f64
            / campaigns as f64
    }

    #[test]
    fn a_version_as_good_as_its_parent_is_almost_never_promoted() {
        let rule = PromotionRule::default();
        // Bonferroni bounds it by 2.5%; 4,000 campaigns put the estimate within ~0.5%.
        let promoted = share(&rule, 0.5, Verdict::Promote, 4_000);
        assert!(promoted <= 0.025, "{promoted}");
        // The uncorrected rule (one 95% interval after every battle) is far worse.
        let naive = PromotionRule {
            look_every: 1,
            false_promotion_rate: 0.025 * 200.0,
            ..rule
        };
        assert!((naive.interval_level() - 0.95).abs() < 1e-12);
        let naive_promoted = share(&naive, 0.5, Verdict::Promote, 4_000);
        eprintln!("promoted at random: {promoted} with the rule, {naive_promoted} uncorrected");
        assert!(
            naive_promoted > 4.0 * promoted.max(0.025),
            "{naive_promoted} vs {promoted}"
        );
    }

    #[test]
    fn a_clearly_better_version_is_promoted_and_a_worse_one_retired() {
        let rule = PromotionRule::default();
        assert!(share(&rule, 0.75, Verdict::Promote, 1_000) > 0.99);
        assert!(share(&rule, 0.25, Verdict::Retire, 1_000) > 0.99);
        // A version barely better than its parent mostly runs out of budget.
        assert!(share(&rule, 0.52, Verdict::Retire, 1_000) > 0.8);
    }

    #[test]
    fn verdicts_on_records_with_known_intervals() {
        let rule = PromotionRule {
            battle_budget: 40,
            look_every: 20,
            false_promotion_rate: 0.025,
        };
        assert_eq!(rule.looks(), 2);
        assert!(!rule.is_look(19) && rule.is_look(20) && rule.is_look(40) && !rule.is_look(0));
        // 20 of 20: the lower end at level 0.975 is 0.0125^(1/20) ≈ 0.80.
        assert_eq!(rule.verdict(20.0, 20), Verdict::Promote);
        assert_eq!(rule.verdict(0.0, 20), Verdict::Retire);
        assert_eq!(rule.verdict(12.0, 20), Verdict::KeepBattling);
        // At the budget an undecided record is retired.
        assert_eq!(rule.verdict(22.0, 40), Verdict::Retire);
        assert_eq!(rule.verdict(32.0, 40), Verdict::Promote);
    }
}
