//! How model versions compare in blind battles (pairs whose two candidates came from two
//! different versions): each version's Bradley–Terry rating on the Elo scale (1000 is the
//! geometric mean strength; 400 points is 10:1 odds), fitted by Hunter's MM iterations, with
//! a 95% percentile-bootstrap interval over the battles; and a version's win rate against
//! its parent. A `tie` or `both_bad` vote counts as half a win for each side.

use std::collections::BTreeMap;

use serde::Serialize;
use shared::seeded_rng::SplitMix64;
use shared::{PreferencePair, Vote};

/// Bootstrap resamples behind each interval.
pub const BOOTSTRAP_ROUNDS: usize = 1000;
/// Fixed, so the same votes always give the same interval.
const BOOTSTRAP_SEED: u64 = 0x05ee_dba7_71e5;
/// Strength floor (relative to the geometric mean) for a version that never won: keeps its
/// rating finite (1000 − 2400) instead of running off to minus infinity.
const MIN_STRENGTH: f64 = 1e-6;

/// One blind battle: `score` is what `first` earned (1, 0, or ½ for a tie).
#[derive(Debug, Clone, PartialEq)]
pub struct Battle {
    pub first: String,
    pub second: String,
    pub score: f64,
}

/// The battles among `pairs`: those whose candidates come from two versions.
pub fn battles(pairs: &[PreferencePair]) -> Vec<Battle> {
    pairs
        .iter()
        .filter(|p| p.candidate_a.model.version != p.candidate_b.model.version)
        .map(|p| Battle {
            first: p.candidate_a.model.version.clone(),
            second: p.candidate_b.model.version.clone(),
            score: match p.vote {
                Vote::A => 1.0,
                Vote::B => 0.0,
                Vote::Tie | Vote::BothBad => 0.5,
            },
        })
        .collect()
}

/// A version's rating with its interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VersionRating {
    pub rating: f64,
    /// 2.5th and 97.5th percentiles of the bootstrap ratings.
    pub low: f64,
    pub high: f64,
    pub battles: usize,
}

/// Bradley–Terry ratings of every version that fought: the maximum-likelihood strengths
/// (ties as half wins), as `1000 + 400·log10(strength / geometric mean)`.
pub fn bradley_terry(battles: &[Battle]) -> BTreeMap<String, f64> {
    let (names, indexed) = indexed_battles(battles);
    let ratings = fit(names.len(), &indexed);
    names.into_iter().zip(ratings).collect()
}

/// The versions that fought (sorted) and each battle as (first, second, score) indices.
fn indexed_battles(battles: &[Battle]) -> (Vec<String>, Vec<(usize, usize, f64)>) {
    let names: Vec<String> = battles
        .iter()
        .flat_map(|b| [b.first.clone(), b.second.clone()])
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let index = |name: &str| {
        names
            .binary_search_by(|n| n.as_str().cmp(name))
            .expect("listed")
    };
    let indexed = battles
        .iter()
        .map(|b| (index(&b.first), index(&b.second), b.score))
        .collect();
    (names, indexed)
}

/// Hunter's MM iterations for `n` players; their ratings on the Elo scale.
fn fit(n: usize, battles: &[(usize, usize, f64)]) -> Vec<f64> {
    let mut wins = vec![0.0f64; n];
    let mut games = vec![vec![0.0f64; n]; n];
    for &(i, j, score) in battles {
        wins[i] += score;
        wins[j] += 1.0 - score;
        games[i][j] += 1.0;
        games[j][i] += 1.0;
    }
    let mut strength = vec![1.0f64; n];
    for _ in 0..2_000 {
        let mut next: Vec<f64> = (0..n)
            .map(|i| {
                let denominator: f64 = (0..n)
                    .filter(|&j| games[i][j] > 0.0)
                    .map(|j| games[i][j] / (strength[i] + strength[j]))
                    .sum();
                if denominator > 0.0 {
                    (wins[i] / denominator).max(MIN_STRENGTH)
                } else {
                    strength[i]
                }
            })
            .collect();
        // Normalised over the players that fought (in a bootstrap resample some did not).
        let active: Vec<usize> = (0..n)
            .filter(|&i| games[i].iter().any(|&g| g > 0.0))
            .collect();
        let log_mean =
            active.iter().map(|&i| next[i].ln()).sum::<f64>() / active.len().max(1) as f64;
        for &i in &active {
            next[i] = (next[i] / log_mean.exp()).max(MIN_STRENGTH);
        }
        let change = next
            .iter()
            .zip(&strength)
            .map(|(a, b)| (a.ln() - b.ln()).abs())
            .fold(0.0, f64::max);
        strength = next;
        if change < 1e-10 {
            break;
        }
    }
    strength
        .iter()
        .map(|s| 1000.0 + 400.0 * s.log10())
        .collect()
}

/// Ratings with 95% bootstrap intervals and the battles behind each.
pub fn rate_versions(battles: &[Battle]) -> BTreeMap<String, VersionRating> {
    let (names, indexed) = indexed_battles(battles);
    let point = fit(names.len(), &indexed);
    let mut fought = vec![0usize; names.len()];
    for &(i, j, _) in &indexed {
        fought[i] += 1;
        fought[j] += 1;
    }
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(BOOTSTRAP_ROUNDS); names.len()];
    let mut rng = SplitMix64(BOOTSTRAP_SEED);
    let mut resample = Vec::with_capacity(indexed.len());
    for _ in 0..if indexed.is_empty() {
        0
    } else {
        BOOTSTRAP_ROUNDS
    } {
        resample.clear();
        resample
            .extend((0..indexed.len()).map(|_| indexed[rng.below(indexed.len() as u64) as usize]));
        let mut present = vec![false; names.len()];
        for &(i, j, _) in &resample {
            present[i] = true;
            present[j] = true;
        }
        // A version absent from a resample has no rating in it (not the mean's 1000).
        for (version, rating) in fit(names.len(), &resample).into_iter().enumerate() {
            if present[version] {
                samples[version].push(rating);
            }
        }
    }
    names
        .into_iter()
        .enumerate()
        .map(|(i, version)| {
            let mut draws = std::mem::take(&mut samples[i]);
            draws.sort_by(f64::total_cmp);
            let percentile = |q: f64| {
                if draws.is_empty() {
                    point[i]
                } else {
                    draws[((draws.len() - 1) as f64 * q).round() as usize]
                }
            };
            (
                version,
                VersionRating {
                    rating: point[i],
                    low: percentile(0.025),
                    high: percentile(0.975),
                    battles: fought[i],
                },
            )
        })
        .collect()
}

/// `version`'s share of the points in its battles against `parent` (ties half), and how
/// many battles that is; `None` if they never met.
pub fn win_rate_against(battles: &[Battle], version: &str, parent: &str) -> Option<(f64, usize)> {
    let mut points = 0.0;
    let mut count = 0;
    for battle in battles {
        if battle.first == version && battle.second == parent {
            points += battle.score;
        } else if battle.first == parent && battle.second == version {
            points += 1.0 - battle.score;
        } else {
            continue;
        }
        count += 1;
    }
    (count > 0).then(|| (points / count as f64, count))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::label_analytics::test_votes::{model, v2_beats_v1, vote};

    #[test]
    fn bradley_terry_ratings_and_win_rates_match_values_computed_by_hand() {
        let fought = battles(&v2_beats_v1());
        assert_eq!(fought.len(), 5);
        // Two players: the MLE odds are the points ratio, 3.5 : 1.5, split around 1000.
        let half_gap = 200.0 * (3.5f64 / 1.5).log10();
        let ratings = bradley_terry(&fought);
        assert!(
            (ratings["v2"] - (1000.0 + half_gap)).abs() < 1e-6,
            "{ratings:?}"
        );
        assert!(
            (ratings["v1"] - (1000.0 - half_gap)).abs() < 1e-6,
            "{ratings:?}"
        );
        assert_eq!(win_rate_against(&fought, "v2", "v1"), Some((0.7, 5)));
        assert_eq!(win_rate_against(&fought, "v1", "v2"), Some((0.3, 5)));
        let rated = rate_versions(&fought);
        for version in ["v1", "v2"] {
            let r = &rated[version];
            assert_eq!(r.battles, 5);
            assert!(r.low <= r.rating && r.rating <= r.high, "{r:?}");
            assert!(
                r.high - r.low > 50.0,
                "five battles leave a wide interval: {r:?}"
            );
        }
    }

    #[test]
    fn three_versions_on_a_cycle_with_equal_records_are_equal() {
        let (v1, v2, v3) = (model("v1"), model("v2"), model("v3"));
        let cycle = vec![
            vote("c1", ("x", &v1), ("y", &v2), "a", Vote::A),
            vote("c2", ("x", &v2), ("y", &v3), "a", Vote::A),
            vote("c3", ("x", &v3), ("y", &v1), "a", Vote::A),
        ];
        for rating in bradley_terry(&battles(&cycle)).values() {
            assert!((rating - 1000.0).abs() < 1e-6);
        }
    }
}
