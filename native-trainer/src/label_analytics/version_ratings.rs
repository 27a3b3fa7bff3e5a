//! How model versions compare in blind battles (pairs whose two candidates came from two
//! different versions): each version's Bradley–Terry rating on the Elo scale (1000 is the
//! geometric mean strength; 400 points is 10:1 odds) with a 95% interval, and a version's win
//! rate against its parent with its exact interval. A `tie` or `both_bad` vote counts as half
//! a win for each side.
//!
//! The ratings are the posterior mode under a Normal prior of [`PRIOR_SD`] Elo points on each
//! version's strength (Glicko's deviation for an unrated player), found by Newton's method, and
//! the interval is ±1.96 posterior standard deviations of the rating relative to the mean
//! (Laplace's approximation: the inverse Hessian of the log posterior). Maximum likelihood with
//! a bootstrap, as before, sent a one-sided record (35 wins of 35) to the ±2400 cap with an
//! interval of zero width; with the prior every record has a finite rating and an interval
//! that narrows only as battles accumulate. `tests/fixtures/make_rating_fixtures.py` computes
//! the same quantities with scipy as the independent reference.

use std::collections::BTreeMap;

use serde::Serialize;
use shared::{PreferencePair, Vote};

use super::binomial_interval::clopper_pearson;

/// The prior's standard deviation of a version's rating, in Elo points.
pub const PRIOR_SD: f64 = 350.0;
/// The normal quantile of a two-sided 95% interval.
const Z_95: f64 = 1.959_963_984_540_054;
/// The reference values `make_rating_fixtures.py` computed with scipy.
#[cfg(test)]
pub const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/fixtures/version_ratings.json"
);

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
    /// The 95% interval: ±1.96 posterior standard deviations.
    pub low: f64,
    pub high: f64,
    pub battles: usize,
}

/// Bradley–Terry ratings of every version that fought (the posterior modes).
pub fn bradley_terry(battles: &[Battle]) -> BTreeMap<String, f64> {
    rate_versions(battles)
        .into_iter()
        .map(|(version, rated)| (version, rated.rating))
        .collect()
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

/// Elo points per unit of natural log-odds.
fn elo_per_log_odds() -> f64 {
    400.0 / std::f64::consts::LN_10
}

/// The log posterior's gradient and negated Hessian at `strength` (log-odds units).
fn gradient_and_information(
    strength: &[f64],
    battles: &[(usize, usize, f64)],
    prior_precision: f64,
) -> (Vec<f64>, Vec<Vec<f64>>) {
    let n = strength.len();
    let mut gradient: Vec<f64> = strength.iter().map(|s| -s * prior_precision).collect();
    let mut information = vec![vec![0.0; n]; n];
    for (i, row) in information.iter_mut().enumerate() {
        row[i] = prior_precision;
    }
    for &(i, j, score) in battles {
        let p = 1.0 / (1.0 + (strength[j] - strength[i]).exp());
        gradient[i] += score - p;
        gradient[j] -= score - p;
        let w = p * (1.0 - p);
        information[i][i] += w;
        information[j][j] += w;
        information[i][j] -= w;
        information[j][i] -= w;
    }
    (gradient, information)
}

/// The posterior mode of the strengths (log-odds units, mean 0) and the covariance of each
/// strength's distance from the mean, by Newton's method (the log posterior is concave).
fn fit(n: usize, battles: &[(usize, usize, f64)]) -> (Vec<f64>, Vec<Vec<f64>>) {
    let prior_precision = (elo_per_log_odds() / PRIOR_SD).powi(2);
    let mut strength = vec![0.0f64; n];
    for _ in 0..100 {
        let (gradient, information) = gradient_and_information(&strength, battles, prior_precision);
        let step = solve(&information, &gradient);
        for (s, d) in strength.iter_mut().zip(&step) {
            // Bounded steps keep Newton stable far from the mode (one-sided records).
            *s += d.clamp(-2.0, 2.0);
        }
        if step.iter().all(|d| d.abs() < 1e-12) {
            break;
        }
    }
    let (_, information) = gradient_and_information(&strength, battles, prior_precision);
    let covariance = invert(&information);
    // Only differences are identified: the ratings are relative to their mean.
    let mean_row: Vec<f64> = (0..n)
        .map(|j| covariance.iter().map(|row| row[j]).sum::<f64>() / n as f64)
        .collect();
    let mean_all = mean_row.iter().sum::<f64>() / n as f64;
    let centred = (0..n)
        .map(|i| {
            (0..n)
                .map(|j| covariance[i][j] - mean_row[i] - mean_row[j] + mean_all)
                .collect()
        })
        .collect();
    (strength, centred)
}

/// `matrix · x = rhs` for a symmetric positive definite `matrix` (Cholesky).
fn solve(matrix: &[Vec<f64>], rhs: &[f64]) -> Vec<f64> {
    solve_factored(&cholesky(matrix), rhs)
}

/// `L Lᵀ · x = rhs` for the Cholesky factor `lower`: forward, then back substitution.
fn solve_factored(lower: &[Vec<f64>], rhs: &[f64]) -> Vec<f64> {
    let n = rhs.len();
    let mut y = vec![0.0; n];
    for i in 0..n {
        y[i] = (rhs[i] - (0..i).map(|k| lower[i][k] * y[k]).sum::<f64>()) / lower[i][i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        x[i] = (y[i] - (i + 1..n).map(|k| lower[k][i] * x[k]).sum::<f64>()) / lower[i][i];
    }
    x
}

fn cholesky(matrix: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let n = matrix.len();
    let mut lower = vec![vec![0.0; n]; n];
    for i in 0..n {
        for j in 0..=i {
            let sum = matrix[i][j] - (0..j).map(|k| lower[i][k] * lower[j][k]).sum::<f64>();
            lower[i][j] = if i == j {
                sum.max(f64::MIN_POSITIVE).sqrt()
            } else {
                sum / lower[j][j]
            };
        }
    }
    lower
}

/// The inverse, one column per unit vector, the matrix factored once.
fn invert(matrix: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let n = matrix.len();
    let lower = cholesky(matrix);
    let columns: Vec<Vec<f64>> = (0..n)
        .map(|j| {
            solve_factored(
                &lower,
                &(0..n)
                    .map(|i| f64::from(u8::from(i == j)))
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    (0..n)
        .map(|i| (0..n).map(|j| columns[j][i]).collect())
        .collect()
}

/// Ratings with 95% intervals and the battles behind each.
pub fn rate_versions(battles: &[Battle]) -> BTreeMap<String, VersionRating> {
    let (names, indexed) = indexed_battles(battles);
    let (strength, covariance) = fit(names.len(), &indexed);
    let mut fought = vec![0usize; names.len()];
    for &(i, j, _) in &indexed {
        fought[i] += 1;
        fought[j] += 1;
    }
    let scale = elo_per_log_odds();
    names
        .into_iter()
        .enumerate()
        .map(|(i, version)| {
            let rating = 1000.0 + strength[i] * scale;
            let half_width = Z_95 * covariance[i][i].max(0.0).sqrt() * scale;
            (
                version,
                VersionRating {
                    rating,
                    low: rating - half_width,
                    high: rating + half_width,
                    battles: fought[i],
                },
            )
        })
        .collect()
}

/// A version's record against another: its share of the points (ties half) with the exact
/// 95% interval on the rate behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WinRate {
    pub rate: f64,
    pub low: f64,
    pub high: f64,
    pub battles: usize,
}

/// `version`'s record against `parent`; `None` if they never met.
pub fn win_rate_against(battles: &[Battle], version: &str, parent: &str) -> Option<WinRate> {
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
    (count > 0).then(|| {
        let (low, high) = clopper_pearson(points, count as f64, 0.95);
        WinRate {
            rate: points / count as f64,
            low,
            high,
            battles: count,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::label_analytics::test_votes::{model, v2_beats_v1, vote};

    fn fixture() -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(FIXTURE).unwrap()).unwrap()
    }

    fn battle(first: &str, second: &str, score: f64) -> Battle {
        Battle {
            first: first.into(),
            second: second.into(),
            score,
        }
    }

    #[test]
    fn ratings_and_intervals_match_scipys_posterior_on_every_record() {
        let fixture = fixture();
        assert_eq!(fixture["prior_sd_elo"], PRIOR_SD);
        for (name, case) in fixture["ratings"].as_object().unwrap() {
            let fought: Vec<Battle> = case["battles"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| {
                    battle(
                        b[0].as_str().unwrap(),
                        b[1].as_str().unwrap(),
                        b[2].as_f64().unwrap(),
                    )
                })
                .collect();
            let rated = rate_versions(&fought);
            let expected = case["expected"].as_object().unwrap();
            assert_eq!(rated.len(), expected.len(), "{name}");
            for (version, want) in expected {
                let got = &rated[version];
                for (value, key) in [(got.rating, "rating"), (got.low, "low"), (got.high, "high")] {
                    let want = want[key].as_f64().unwrap();
                    // scipy's mode and finite-difference Hessian agree to ~1e-4 points.
                    assert!(
                        (value - want).abs() < 0.05,
                        "{name} {version} {key}: {value} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_one_sided_record_is_finite_and_claims_no_more_than_its_battles_allow() {
        let sweep = vec![battle("v1", "v0", 1.0); 35];
        let rated = rate_versions(&sweep);
        let (winner, loser) = (&rated["v1"], &rated["v0"]);
        assert!(winner.rating.is_finite() && loser.rating.is_finite());
        assert!(winner.high - winner.low > 100.0, "{winner:?}");
        // 35 of 35 still allows a true win rate of 0.90 (exact interval): the intervals must
        // admit a gap as small as 0.90's odds, 400·log10(9) ≈ 382 points.
        assert!(
            winner.low - loser.high < 400.0 * 9f64.log10(),
            "{winner:?} {loser:?}"
        );
        let record = win_rate_against(&sweep, "v1", "v0").unwrap();
        assert_eq!((record.rate, record.high, record.battles), (1.0, 1.0, 35));
        assert!((record.low - 0.025f64.powf(1.0 / 35.0)).abs() < 1e-9);
    }

    #[test]
    fn the_interval_covers_the_true_gap_about_95_times_in_100() {
        // Known answer: versions 0, 200 and −150 points from the first, 40 battles per pair,
        // 400 simulated campaigns. The Laplace interval of each version's distance from the
        // mean must cover the truth in about 95% of campaigns (binomial sd ≈ 1.1%).
        let truth = [0.0f64, 200.0, -150.0];
        let mean = truth.iter().sum::<f64>() / 3.0;
        let mut rng = shared::seeded_rng::SplitMix64(7);
        let (mut covered, mut total) = (0, 0);
        for _ in 0..400 {
            let mut fought = Vec::new();
            for (i, j) in [(0, 1), (1, 2), (0, 2)] {
                let p = 1.0 / (1.0 + 10f64.powf((truth[j] - truth[i]) / 400.0));
                for _ in 0..40 {
                    let score = f64::from(u8::from(rng.next_f64() < p));
                    fought.push(battle(&format!("v{i}"), &format!("v{j}"), score));
                }
            }
            let rated = rate_versions(&fought);
            for (i, t) in truth.iter().enumerate() {
                let r = &rated[&format!("v{i}")];
                let true_rating = 1000.0 + t - mean;
                covered += usize::from(r.low <= true_rating && true_rating <= r.high);
                total += 1;
            }
        }
        let coverage = covered as f64 / total as f64;
        eprintln!("coverage of the 95% intervals: {coverage}");
        assert!((0.92..=0.98).contains(&coverage), "coverage {coverage}");
    }

    #[test]
    fn ratings_and_win_rates_of_a_hand_counted_record() {
        let fought = battles(&v2_beats_v1());
        assert_eq!(fought.len(), 5);
        // The mode solves 3.5 − 5·σ(Δ) = θ₂ / s² with θ₁ = −θ₂ and Δ = θ₂ − θ₁ (log-odds).
        let ratings = bradley_terry(&fought);
        let theta = (ratings["v2"] - 1000.0) / elo_per_log_odds();
        let prior_precision = (elo_per_log_odds() / PRIOR_SD).powi(2);
        let p = 1.0 / (1.0 + (-2.0 * theta).exp());
        assert!(
            (3.5 - 5.0 * p - theta * prior_precision).abs() < 1e-9,
            "{ratings:?}"
        );
        assert!((ratings["v1"] + ratings["v2"] - 2000.0).abs() < 1e-9);
        // The prior pulls the gap below maximum likelihood's 400·log10(3.5 / 1.5).
        let gap = ratings["v2"] - ratings["v1"];
        assert!(gap > 0.0 && gap < 400.0 * (3.5f64 / 1.5).log10(), "{gap}");
        let record = win_rate_against(&fought, "v2", "v1").unwrap();
        assert_eq!((record.rate, record.battles), (0.7, 5));
        assert_eq!(win_rate_against(&fought, "v1", "v2").unwrap().rate, 0.3);
        let rated = rate_versions(&fought);
        for version in ["v1", "v2"] {
            let r = &rated[version];
            assert_eq!(r.battles, 5);
            assert!(r.low < r.rating && r.rating < r.high, "{r:?}");
            assert!(
                r.high - r.low > 200.0,
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
