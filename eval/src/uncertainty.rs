//! Uncertainty of sample ensembles against the truth, over all (slide, gene) entries:
//! central-interval coverage and the calibration curve, Gaussian NLL, CRPS, and whether the
//! predicted variance follows the error.

use ndarray::{ArrayView2, ArrayView3};

use crate::stats::{crps_sorted, gaussian_nll, quantile_sorted, spearman};

/// Central interval levels whose coverage is reported.
pub const INTERVAL_LEVELS: [f64; 3] = [0.5, 0.8, 0.9];
/// Levels of the calibration curve (nominal vs empirical coverage) in the report.
pub const CURVE_LEVELS: [f64; 10] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95];

/// Coverage of one central interval.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Coverage {
    pub level: f64,
    /// Fraction of (slide, gene) truths inside the interval; `level` when calibrated.
    pub covered: f64,
}

/// Uncertainty metrics of a sample ensemble, over all (slide, gene) entries.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct UncertaintyScores {
    pub coverage: Vec<Coverage>,
    /// Coverage at every level of [`CURVE_LEVELS`] (the calibration curve).
    pub curve: Vec<Coverage>,
    /// Mean Gaussian NLL with the samples' mean and variance.
    pub gaussian_nll: f64,
    /// Spearman correlation of predicted variance with |mean − truth|: > 0 when the model
    /// is less certain where it is more wrong.
    pub spearman_var_abs_err: f64,
    pub crps: f64,
}

/// Uncertainty metrics from `samples` [n, slides, genes] against `truth` [slides, genes].
pub fn uncertainty(samples: ArrayView3<'_, f32>, truth: ArrayView2<'_, f32>) -> UncertaintyScores {
    let (n, s, g) = samples.dim();
    assert_eq!((s, g), truth.dim(), "samples and truth shapes differ");
    let mut inside = vec![0usize; INTERVAL_LEVELS.len()];
    let mut inside_curve = vec![0usize; CURVE_LEVELS.len()];
    let (mut nll, mut crps) = (0.0, 0.0);
    let mut vars = Vec::with_capacity(s * g);
    let mut errs = Vec::with_capacity(s * g);
    let mut buf = vec![0f64; n];
    for i in 0..s {
        for j in 0..g {
            for (b, &v) in buf.iter_mut().zip(samples.slice(ndarray::s![.., i, j])) {
                *b = f64::from(v);
            }
            buf.sort_by(f64::total_cmp);
            let y = f64::from(truth[[i, j]]);
            let mean = buf.iter().sum::<f64>() / n as f64;
            let var = buf.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
            let within = |level: f64| {
                let lo = quantile_sorted(&buf, (1.0 - level) / 2.0);
                let hi = quantile_sorted(&buf, (1.0 + level) / 2.0);
                lo <= y && y <= hi
            };
            for (c, &level) in inside.iter_mut().zip(&INTERVAL_LEVELS) {
                *c += usize::from(within(level));
            }
            for (c, &level) in inside_curve.iter_mut().zip(&CURVE_LEVELS) {
                *c += usize::from(within(level));
            }
            nll += gaussian_nll(mean, var, y);
            crps += crps_sorted(&buf, y);
            vars.push(var);
            errs.push((mean - y).abs());
        }
    }
    let total = (s * g).max(1) as f64;
    let cov = |levels: &[f64], counts: &[usize]| -> Vec<Coverage> {
        levels
            .iter()
            .zip(counts)
            .map(|(&level, &c)| Coverage {
                level,
                covered: c as f64 / total,
            })
            .collect()
    };
    UncertaintyScores {
        coverage: cov(&INTERVAL_LEVELS, &inside),
        curve: cov(&CURVE_LEVELS, &inside_curve),
        gaussian_nll: nll / total,
        spearman_var_abs_err: spearman(&vars, &errs),
        crps: crps / total,
    }
}

/// Interval coverage of one group of genes by pathway count (`calibration::GeneGroup`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GroupCoverage {
    /// e.g. "4–10 pathways".
    pub group: String,
    pub min_pathways: usize,
    pub max_pathways: Option<usize>,
    pub genes: usize,
    pub coverage: Vec<Coverage>,
}

/// Coverage at [`INTERVAL_LEVELS`] per gene group of the calibration's grouping
/// (`calibration::group_ranges` of `pathway_counts`, the model's count per gene):
/// whether intervals are right for genes in many pathways as for the rest.
pub fn coverage_by_group(
    samples: ArrayView3<'_, f32>,
    truth: ArrayView2<'_, f32>,
    pathway_counts: &[usize],
) -> Vec<GroupCoverage> {
    let (n, s, g) = samples.dim();
    assert_eq!(g, pathway_counts.len(), "pathway counts and genes differ");
    let mut buf = vec![0f64; n];
    rnafm_runtime::calibration::group_ranges(pathway_counts)
        .into_iter()
        .map(|(min_pathways, max_pathways)| {
            let group = rnafm_runtime::calibration::GeneGroup {
                min_pathways,
                max_pathways,
                genes: 0,
                values: 0,
                levels: Vec::new(),
            };
            let genes: Vec<usize> = (0..g).filter(|&j| group.holds(pathway_counts[j])).collect();
            let mut inside = [0usize; INTERVAL_LEVELS.len()];
            for i in 0..s {
                for &j in &genes {
                    for (b, &v) in buf.iter_mut().zip(samples.slice(ndarray::s![.., i, j])) {
                        *b = f64::from(v);
                    }
                    buf.sort_by(f64::total_cmp);
                    let y = f64::from(truth[[i, j]]);
                    for (c, &level) in inside.iter_mut().zip(&INTERVAL_LEVELS) {
                        let lo = quantile_sorted(&buf, (1.0 - level) / 2.0);
                        let hi = quantile_sorted(&buf, (1.0 + level) / 2.0);
                        *c += usize::from(lo <= y && y <= hi);
                    }
                }
            }
            let total = (s * genes.len()).max(1) as f64;
            GroupCoverage {
                group: group.label(),
                min_pathways,
                max_pathways,
                genes: genes.len(),
                coverage: INTERVAL_LEVELS
                    .iter()
                    .zip(inside)
                    .map(|(&level, c)| Coverage {
                        level,
                        covered: c as f64 / total,
                    })
                    .collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array3, array};

    use crate::stats::close;

    #[test]
    fn uncertainty_on_a_known_ensemble() {
        // 5 samples of one slide × 2 genes; truth inside the 50% interval for gene 0 only
        let mut smp = Array3::<f32>::zeros((5, 1, 2));
        for k in 0..5 {
            smp[[k, 0, 0]] = k as f32; // 0..4: 25%..75% quantiles = 1..3
            smp[[k, 0, 1]] = 10.0 + 2.0 * k as f32; // 10..18, wider
        }
        let truth = array![[2.0f32, 30.0]];
        let u = uncertainty(smp.view(), truth.view());
        let cov: Vec<f64> = u.coverage.iter().map(|c| c.covered).collect();
        assert_eq!(cov, vec![0.5, 0.5, 0.5]);
        // mean NLL from hand-computed population variances (2 and 8)
        let expect = (gaussian_nll(2.0, 2.0, 2.0) + gaussian_nll(14.0, 8.0, 30.0)) / 2.0;
        assert!(close(u.gaussian_nll, expect, 1e-9));
        // the wider gene has the larger error: rank correlation +1
        assert!(close(u.spearman_var_abs_err, 1.0, 1e-12));
        let c0 = crps_sorted(&[0.0, 1.0, 2.0, 3.0, 4.0], 2.0);
        let c1 = crps_sorted(&[10.0, 12.0, 14.0, 16.0, 18.0], 30.0);
        assert!(close(u.crps, (c0 + c1) / 2.0, 1e-9));
    }

    #[test]
    fn coverage_by_group_splits_genes_by_pathway_count() {
        // 60 background genes whose truth sits at the median, 60 in three pathways whose
        // truth lies far outside every draw
        let (n, g) = (11, 120);
        let mut smp = Array3::<f32>::zeros((n, 2, g));
        for k in 0..n {
            smp.slice_mut(ndarray::s![k, .., ..]).fill(k as f32);
        }
        let counts: Vec<usize> = (0..g).map(|j| if j < 60 { 0 } else { 3 }).collect();
        let truth =
            ndarray::Array2::from_shape_fn((2, g), |(_, j)| if j < 60 { 5.0 } else { 99.0 });
        let by = coverage_by_group(smp.view(), truth.view(), &counts);
        assert_eq!(by.len(), 2);
        assert_eq!(
            (by[0].group.as_str(), by[0].genes),
            ("background genes", 60)
        );
        assert_eq!((by[1].group.as_str(), by[1].genes), ("1+ pathways", 60));
        assert!(by[0].coverage.iter().all(|c| c.covered == 1.0));
        assert!(by[1].coverage.iter().all(|c| c.covered == 0.0));
    }
}
