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
const BOOTSTRAP_SEED: u64 = 0x5eed_ba77_1e5;
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
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for battle in battles {
        let next = index.len();
        index.entry(&battle.first).or_insert(next);
        let next = index.len();
        index.entry(&battle.second).or_insert(next);
    }
    let n = index.len();
    let mut wins = vec![0.0f64; n];
    let mut games = vec![vec![0.0f64; n]; n];
    for battle in battles {
        let (i, j) = (index[battle.first.as_str()], index[battle.second.as_str()]);
        wins[i] += battle.score;
        wins[j] += 1.0 - battle.score;
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
        let log_mean = next.iter().map(|s| s.ln()).sum::<f64>() / n as f64;
        for s in &mut next {
            *s = (*s / log_mean.exp()).max(MIN_STRENGTH);
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
    index
        .into_iter()
        .map(|(version, i)| (version.to_string(), 1000.0 + 400.0 * strength[i].log10()))
        .collect()
}

/// Ratings with 95% bootstrap intervals and the battles behind each.
pub fn rate_versions(battles: &[Battle]) -> BTreeMap<String, VersionRating> {
    let point = bradley_terry(battles);
    let mut samples: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut rng = SplitMix64(BOOTSTRAP_SEED);
    if !battles.is_empty() {
        for _ in 0..BOOTSTRAP_ROUNDS {
            let resample: Vec<Battle> = (0..battles.len())
                .map(|_| battles[rng.below(battles.len() as u64) as usize].clone())
                .collect();
            let ratings = bradley_terry(&resample);
            for version in point.keys() {
                if let Some(rating) = ratings.get(version) {
                    samples.entry(version).or_default().push(*rating);
                }
            }
        }
    }
    point
        .iter()
        .map(|(version, &rating)| {
            let mut draws = samples.remove(version.as_str()).unwrap_or_default();
            draws.sort_by(f64::total_cmp);
            let percentile = |q: f64| {
                if draws.is_empty() {
                    rating
                } else {
                    draws[((draws.len() - 1) as f64 * q).round() as usize]
                }
            };
            let fought = battles
                .iter()
                .filter(|b| &b.first == version || &b.second == version)
                .count();
            (
                version.clone(),
                VersionRating {
                    rating,
                    low: percentile(0.025),
                    high: percentile(0.975),
                    battles: fought,
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
