//! Scalar statistics used by everything that scores: Pearson and Spearman correlation,
//! RMSE, quantiles (the runtime's one definition), CRPS and Gaussian NLL of ensembles, and a
//! seeded bootstrap over rows.
//!
//! The convention for r: Pearson r is NaN when fewer than two values or either side is
//! constant (a gene the model or the truth never varies has no correlation), and means over
//! genes leave NaN out and count it ([`finite_mean`]). Training metrics, `evaluate` and the
//! report all follow it.

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use rnafm_runtime::stats::quantile_sorted;

/// Smallest variance in the Gaussian NLL: a gene whose samples all agree would give +inf.
pub const MIN_VAR: f64 = 1e-6;

/// Pearson correlation; NaN when fewer than two values or either side is constant.
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    if n < 2 {
        return f64::NAN;
    }
    let ma = a[..n].iter().sum::<f64>() / n as f64;
    let mb = b[..n].iter().sum::<f64>() / n as f64;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a[..n].iter().zip(&b[..n]) {
        let (dx, dy) = (x - ma, y - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    if saa <= 0.0 || sbb <= 0.0 {
        return f64::NAN;
    }
    sab / (saa * sbb).sqrt()
}

/// Root mean squared difference.
pub fn rmse(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    if n == 0 {
        return f64::NAN;
    }
    (a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>() / n as f64).sqrt()
}

/// Ranks 1..n, ties given their average rank (as `scipy.stats.rankdata`).
pub fn ranks(a: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..a.len()).collect();
    idx.sort_by(|&i, &j| a[i].total_cmp(&a[j]));
    let mut r = vec![0.0; a.len()];
    let mut s = 0;
    while s < idx.len() {
        let mut e = s + 1;
        while e < idx.len() && a[idx[e]] == a[idx[s]] {
            e += 1;
        }
        let avg = (s + e + 1) as f64 / 2.0; // mean of ranks s+1..=e
        for &i in &idx[s..e] {
            r[i] = avg;
        }
        s = e;
    }
    r
}

/// Spearman rank correlation (Pearson of average ranks).
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    pearson(&ranks(a), &ranks(b))
}

/// CRPS of an ensemble (sorted ascending) for outcome `y`:
/// E|X − y| − ½E|X − X′|, with E|X − X′| = (2/m²) Σᵢ (2i − m − 1) x₍ᵢ₎ for 1-based i.
pub fn crps_sorted(sorted: &[f64], y: f64) -> f64 {
    let m = sorted.len() as f64;
    if sorted.is_empty() {
        return f64::NAN;
    }
    let abs_err = sorted.iter().map(|x| (x - y).abs()).sum::<f64>() / m;
    let spread = sorted
        .iter()
        .enumerate()
        .map(|(i, x)| (2.0 * (i + 1) as f64 - m - 1.0) * x)
        .sum::<f64>()
        / (m * m);
    abs_err - spread
}

/// Negative log-likelihood of `y` under N(mean, var) (variance floored at [`MIN_VAR`]).
pub fn gaussian_nll(mean: f64, var: f64, y: f64) -> f64 {
    let v = var.max(MIN_VAR);
    0.5 * ((2.0 * std::f64::consts::PI * v).ln() + (y - mean).powi(2) / v)
}

/// Mean of the finite values and how many were not finite.
pub fn finite_mean(v: &[f64]) -> (f64, usize) {
    let finite: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    let mean = if finite.is_empty() {
        f64::NAN
    } else {
        finite.iter().sum::<f64>() / finite.len() as f64
    };
    (mean, v.len() - finite.len())
}

/// A 95% percentile interval over bootstrap replicates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PercentileInterval {
    /// 2.5% and 97.5% percentiles.
    pub low: f64,
    pub high: f64,
    /// Replicates with a finite value (the others drop out).
    pub replicates: usize,
}

/// Bootstrap over `n` rows: `replicates` times, draws `n` row indices with replacement
/// (ChaCha8 from `seed`) and evaluates `stat` on them; `stat` returns several statistics at
/// once, and each gets its 95% percentile interval. A replicate value that is not finite
/// (e.g. a resample that makes a gene constant) drops out of that statistic.
pub fn bootstrap_rows(
    n: usize,
    replicates: usize,
    seed: u64,
    stat: impl FnMut(&[usize]) -> Vec<f64>,
) -> Vec<PercentileInterval> {
    bootstrap_replicates(n, replicates, seed, stat)
        .iter()
        .map(|r| percentile_interval(r))
        .collect()
}

/// The replicates of [`bootstrap_rows`] themselves: per statistic, one value per replicate in
/// replicate order, non-finite values kept (so that replicates of different statistics, or
/// of different cohorts, can be lined up).
pub fn bootstrap_replicates(
    n: usize,
    replicates: usize,
    seed: u64,
    mut stat: impl FnMut(&[usize]) -> Vec<f64>,
) -> Vec<Vec<f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut reps: Vec<Vec<f64>> = Vec::new();
    for done in 0..replicates {
        let idx: Vec<usize> = (0..n).map(|_| rng.random_range(0..n)).collect();
        let values = stat(&idx);
        if values.len() > reps.len() {
            reps.resize_with(values.len(), || vec![f64::NAN; done]);
        }
        for (slot, v) in reps
            .iter_mut()
            .zip(values.into_iter().chain(std::iter::repeat(f64::NAN)))
        {
            slot.push(v);
        }
    }
    reps
}

/// 95% percentile interval of replicate values; non-finite values drop out.
pub fn percentile_interval(values: &[f64]) -> PercentileInterval {
    let mut r: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    r.sort_by(f64::total_cmp);
    PercentileInterval {
        low: quantile_sorted(&r, 0.025),
        high: quantile_sorted(&r, 0.975),
        replicates: r.len(),
    }
}

/// |a − b| ≤ tol (for the crate's tests).
#[cfg(test)]
pub(crate) fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pearson_and_rmse_by_hand() {
        let a = [1.0, 2.0, 3.0, 4.0];
        let b = [2.0, 4.0, 5.0, 9.0];
        // r = cov / (sd_a sd_b), computed from deviations
        let (ma, mb) = (2.5, 5.0);
        let cov: f64 = a.iter().zip(&b).map(|(x, y)| (x - ma) * (y - mb)).sum();
        let va: f64 = a.iter().map(|x| (x - ma) * (x - ma)).sum();
        let vb: f64 = b.iter().map(|y| (y - mb) * (y - mb)).sum();
        assert!(close(pearson(&a, &b), cov / (va * vb).sqrt(), 1e-12));
        assert!(close(pearson(&a, &a.map(|x| -3.0 * x + 1.0)), -1.0, 1e-12));
        assert!(pearson(&a, &[1.0; 4]).is_nan());
        let d2: f64 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
        assert!(close(rmse(&a, &b), (d2 / 4.0).sqrt(), 1e-12));
    }

    #[test]
    fn ranks_average_ties_and_spearman_is_monotone_invariant() {
        assert_eq!(ranks(&[10.0, 20.0, 10.0, 5.0]), vec![2.5, 4.0, 2.5, 1.0]);
        let a = [0.1, 0.5, 0.2, 0.9, 0.3];
        let b: Vec<f64> = a.iter().map(|x: &f64| x.exp() * 7.0).collect();
        assert!(close(spearman(&a, &b), 1.0, 1e-12));
        let c: Vec<f64> = a.iter().map(|x| -x * x).collect();
        assert!(close(spearman(&a, &c), -1.0, 1e-12));
    }

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let v = [1.0, 2.0, 4.0, 8.0];
        assert_eq!(quantile_sorted(&v, 0.0), 1.0);
        assert_eq!(quantile_sorted(&v, 1.0), 8.0);
        // position 0.5 * 3 = 1.5: halfway between 2 and 4
        assert_eq!(quantile_sorted(&v, 0.5), 3.0);
    }

    #[test]
    fn crps_matches_the_pairwise_definition() {
        let x = [0.3f64, -1.0, 2.5, 0.7, 1.1];
        let y = 0.4f64;
        let m = x.len() as f64;
        let e1: f64 = x.iter().map(|v| (v - y).abs()).sum::<f64>() / m;
        let mut e2 = 0.0;
        for a in &x {
            for b in &x {
                e2 += (a - b).abs();
            }
        }
        let expect = e1 - 0.5 * e2 / (m * m);
        let mut sorted = x.to_vec();
        sorted.sort_by(f64::total_cmp);
        assert!(close(crps_sorted(&sorted, y), expect, 1e-12));
        // a point forecast's CRPS is its absolute error
        assert!(close(crps_sorted(&[2.0], 5.0), 3.0, 1e-12));
    }

    #[test]
    fn gaussian_nll_by_hand() {
        let (m, v, y) = (1.0, 4.0, 3.0);
        let expect = 0.5 * (2.0 * std::f64::consts::PI * v).ln() + (y - m) * (y - m) / (2.0 * v);
        assert!(close(gaussian_nll(m, v, y), expect, 1e-12));
        assert!(gaussian_nll(0.0, 0.0, 1.0).is_finite());
    }

    #[test]
    fn bootstrap_of_the_mean_covers_it_and_repeats() {
        let x: Vec<f64> = (0..40).map(|i| (i as f64 * 0.37).sin()).collect();
        let mean = |idx: &[usize]| vec![idx.iter().map(|&i| x[i]).sum::<f64>() / idx.len() as f64];
        let a = bootstrap_rows(x.len(), 500, 7, mean);
        let b = bootstrap_rows(x.len(), 500, 7, mean);
        assert_eq!(a, b, "seeded");
        let m = mean(&(0..40).collect::<Vec<_>>())[0];
        assert!(a[0].low < m && m < a[0].high, "{a:?} around {m}");
        assert_eq!(a[0].replicates, 500);
        // a statistic that is never finite has no replicate
        let nan = bootstrap_rows(5, 10, 1, |_| vec![f64::NAN]);
        assert_eq!(nan[0].replicates, 0);
    }
}
