//! The exact (Clopper–Pearson) confidence interval on a win rate: the rates whose binomial
//! distribution makes the observed points no more extreme than `(1 − level)/2` on either side.
//! It never has zero width, so `35` wins of `35` still admit a true rate of 0.90 at 95%
//! (`(0.025)^(1/35)`). Points may be fractional (a tie is half a win): the beta quantiles take
//! any positive parameters. Computed with the regularized incomplete beta function (Lentz's
//! continued fraction) and bisection, so no statistics crate is needed.

/// The interval `[low, high]` on the rate behind `points` won of `battles`, at `level` (0.95
/// for 95%). `battles` must be positive and `0 ≤ points ≤ battles`.
pub fn clopper_pearson(points: f64, battles: f64, level: f64) -> (f64, f64) {
    assert!(
        battles > 0.0 && (0.0..=battles).contains(&points),
        "{points} points of {battles} battles"
    );
    let tail = (1.0 - level) / 2.0;
    let low = if points == 0.0 {
        0.0
    } else {
        beta_quantile(tail, points, battles - points + 1.0)
    };
    let high = if points == battles {
        1.0
    } else {
        beta_quantile(1.0 - tail, points + 1.0, battles - points)
    };
    (low, high)
}

/// The `p`-quantile of Beta(a, b), by bisection on the distribution function.
fn beta_quantile(p: f64, a: f64, b: f64) -> f64 {
    let (mut low, mut high) = (0.0f64, 1.0f64);
    // 64 halvings of [0, 1] reach f64's resolution near every quantile that matters.
    for _ in 0..64 {
        let middle = 0.5 * (low + high);
        if regularized_incomplete_beta(middle, a, b) < p {
            low = middle;
        } else {
            high = middle;
        }
    }
    0.5 * (low + high)
}

/// I_x(a, b), the distribution function of Beta(a, b) at x.
fn regularized_incomplete_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    // The continued fraction converges fast below the mean; above it, use the symmetry.
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_continued_fraction(x, a, b) / a
    } else {
        1.0 - front * beta_continued_fraction(1.0 - x, b, a) / b
    }
}

/// The continued fraction of the incomplete beta function, by the modified Lentz method.
fn beta_continued_fraction(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let guard = |v: f64| if v.abs() < TINY { TINY } else { v };
    let mut c = 1.0;
    let mut d = 1.0 / guard(1.0 - (a + b) * x / (a + 1.0));
    let mut fraction = d;
    for m in 1..=10_000 {
        let m = m as f64;
        let even = m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m));
        d = 1.0 / guard(1.0 + even * d);
        c = guard(1.0 + even / c);
        fraction *= d * c;
        let odd = -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0));
        d = 1.0 / guard(1.0 + odd * d);
        c = guard(1.0 + odd / c);
        let step = d * c;
        fraction *= step;
        if (step - 1.0).abs() < 1e-15 {
            break;
        }
    }
    fraction
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, nine terms: ~15 significant digits).
fn ln_gamma(x: f64) -> f64 {
    const COEFFICIENTS: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1 − x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let series = COEFFICIENTS[1..]
        .iter()
        .enumerate()
        .fold(COEFFICIENTS[0], |sum, (i, c)| {
            sum + c / (x + i as f64 + 1.0)
        });
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + series.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_sweep_has_the_closed_form_bound_and_never_zero_width() {
        for n in [1.0, 5.0, 35.0, 400.0] {
            let (low, high) = clopper_pearson(n, n, 0.95);
            assert_eq!(high, 1.0);
            assert!((low - 0.025f64.powf(1.0 / n)).abs() < 1e-12, "{n}: {low}");
            let (low, high) = clopper_pearson(0.0, n, 0.95);
            assert_eq!(low, 0.0);
            assert!(
                (high - (1.0 - 0.025f64.powf(1.0 / n))).abs() < 1e-12,
                "{n}: {high}"
            );
        }
        // The record: 35 of 35 still allows 0.90.
        assert!((clopper_pearson(35.0, 35.0, 0.95).0 - 0.9).abs() < 1e-4);
    }

    #[test]
    fn the_interval_is_symmetric_in_wins_and_losses() {
        for (points, n) in [(3.0, 10.0), (12.5, 20.0), (1.0, 40.0)] {
            let (low, high) = clopper_pearson(points, n, 0.95);
            let (mirror_low, mirror_high) = clopper_pearson(n - points, n, 0.95);
            assert!((low - (1.0 - mirror_high)).abs() < 1e-12);
            assert!((high - (1.0 - mirror_low)).abs() < 1e-12);
        }
    }

    #[test]
    fn ln_gamma_matches_factorials_and_the_half_integer() {
        let mut factorial = 1.0f64;
        for n in 1..30 {
            // Γ(n) = (n − 1)!
            assert!((ln_gamma(n as f64) - factorial.ln()).abs() < 1e-10 * factorial.ln().max(1.0));
            factorial *= n as f64;
        }
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-13);
    }

    #[test]
    fn matches_scipys_beta_quantiles() {
        let fixture: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(crate::label_analytics::version_ratings::FIXTURE).unwrap(),
        )
        .unwrap();
        for case in fixture["clopper_pearson_95"].as_array().unwrap() {
            let points = case["points"].as_f64().unwrap();
            let battles = case["battles"].as_f64().unwrap();
            let (low, high) = clopper_pearson(points, battles, 0.95);
            let expected = &case["interval"];
            for (got, want) in [(low, &expected[0]), (high, &expected[1])] {
                let want = want.as_f64().unwrap();
                assert!(
                    (got - want).abs() < 1e-9,
                    "{points}/{battles}: {got} vs {want}"
                );
            }
        }
    }
}
