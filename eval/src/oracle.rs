//! A synthetic cohort's oracle: the true conditional mean and quantiles of every gene given
//! what the slide shows (written by [`crate::synth`] as `oracle.npz`), and how a prediction
//! compares with it.

use std::path::Path;

use ndarray::{Array2, ArrayView2, ArrayView3, Axis, Ix2};
use rnafm_runtime::{Error, Result, npy};

use crate::gene_scores::{GeneSetSummary, TOP_KS, per_gene, summarize};
use crate::stats::{finite_mean, quantile_sorted, rmse};
use crate::uncertainty::{Coverage, INTERVAL_LEVELS};

/// Quantile levels stored in the oracle (they give the 50/80/90% central intervals).
pub const ORACLE_LEVELS: [f64; 7] = [0.05, 0.10, 0.25, 0.5, 0.75, 0.90, 0.95];

/// The npz key of an oracle quantile, e.g. `q05` for 0.05.
pub fn quantile_key(level: f64) -> String {
    format!("q{:02}", (level * 100.0).round() as u32)
}

/// A synthetic cohort's oracle: the true conditional mean and quantiles of every gene given
/// what the slide shows (see `synth`).
#[derive(Debug, Clone, PartialEq)]
pub struct Oracle {
    pub mean: Array2<f32>,
    /// (level, slides × genes) in ascending level.
    pub quantiles: Vec<(f64, Array2<f32>)>,
}

/// How a prediction compares with the oracle.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OracleComparison {
    /// Mean per-gene r of the oracle mean with the truth: the ceiling of any predictor.
    pub oracle_mean_pearson: f64,
    /// The oracle mean's accuracy over all genes and the top-k sets of the same ranking as
    /// the prediction's.
    pub oracle_accuracy: Vec<GeneSetSummary>,
    /// Mean per-gene r of the prediction with the truth, divided by the ceiling.
    pub fraction_of_ceiling: f64,
    /// Mean per-gene r of the prediction with the oracle mean.
    pub pearson_to_oracle_mean: f64,
    /// RMSE of the prediction to the oracle mean over all entries.
    pub rmse_to_oracle_mean: f64,
    /// Coverage of the oracle's own central intervals (a check of the oracle).
    pub oracle_coverage: Vec<Coverage>,
    /// Mean |predicted quantile − oracle quantile| per oracle level, when samples are given.
    pub quantile_abs_error: Vec<(f64, f64)>,
}

/// Compares a mean prediction (and optionally samples [n, slides, genes]) with the oracle.
pub fn compare_with_oracle(
    pred_mean: ArrayView2<'_, f32>,
    samples: Option<ArrayView3<'_, f32>>,
    truth: ArrayView2<'_, f32>,
    oracle: &Oracle,
    rank_by: Option<&[f64]>,
) -> OracleComparison {
    let oracle_scores = per_gene(oracle.mean.view(), truth);
    let ceiling = finite_mean(&oracle_scores.pearson).0;
    // Without a given ranking the prediction's own r ranks the genes (as in `summarize`).
    let own_r;
    let rank_by = match rank_by {
        Some(r) => r,
        None => {
            own_r = per_gene(pred_mean, truth).pearson;
            &own_r
        }
    };
    let oracle_accuracy = summarize(&oracle_scores, Some(rank_by), &TOP_KS);
    let pred_r = finite_mean(&per_gene(pred_mean, truth).pearson).0;
    let to_oracle = per_gene(pred_mean, oracle.mean.view());
    let flat_p: Vec<f64> = pred_mean.iter().map(|&v| f64::from(v)).collect();
    let flat_o: Vec<f64> = oracle.mean.iter().map(|&v| f64::from(v)).collect();
    let level_of = |q: f64| oracle.quantiles.iter().find(|(l, _)| (l - q).abs() < 1e-9);
    let oracle_coverage = INTERVAL_LEVELS
        .iter()
        .filter_map(|&level| {
            let (_, lo) = level_of((1.0 - level) / 2.0)?;
            let (_, hi) = level_of((1.0 + level) / 2.0)?;
            let inside = ndarray::Zip::from(lo)
                .and(hi)
                .and(truth)
                .fold(0usize, |c, &l, &h, &y| c + usize::from(l <= y && y <= h));
            Some(Coverage {
                level,
                covered: inside as f64 / truth.len().max(1) as f64,
            })
        })
        .collect();
    let quantile_abs_error = match samples {
        Some(smp) => oracle
            .quantiles
            .iter()
            .map(|(level, oq)| {
                let mut err = 0.0;
                let mut buf = vec![0f64; smp.len_of(Axis(0))];
                for ((i, j), &o) in oq.indexed_iter() {
                    for (b, &v) in buf.iter_mut().zip(smp.slice(ndarray::s![.., i, j])) {
                        *b = f64::from(v);
                    }
                    buf.sort_by(f64::total_cmp);
                    err += (quantile_sorted(&buf, *level) - f64::from(o)).abs();
                }
                (*level, err / oq.len().max(1) as f64)
            })
            .collect(),
        None => Vec::new(),
    };
    OracleComparison {
        oracle_mean_pearson: ceiling,
        oracle_accuracy,
        fraction_of_ceiling: pred_r / ceiling,
        pearson_to_oracle_mean: finite_mean(&to_oracle.pearson).0,
        rmse_to_oracle_mean: rmse(&flat_p, &flat_o),
        oracle_coverage,
        quantile_abs_error,
    }
}

/// Reads an oracle written by `synth` (`oracle.npz`: `mean` and `q05`…`q95`).
pub fn read_oracle(path: &Path) -> Result<Oracle> {
    let mat = |key: &str| -> Result<Array2<f32>> {
        npy::read_float_array(path, Some(key))?
            .into_dimensionality::<Ix2>()
            .map_err(|_| Error::invalid(path, format!("oracle array {key:?} is not 2-d")))
    };
    let mean = mat("mean")?;
    let mut quantiles = Vec::new();
    for &level in &ORACLE_LEVELS {
        let q = mat(&quantile_key(level))?;
        if q.dim() != mean.dim() {
            return Err(Error::invalid(
                path,
                "oracle quantiles and mean differ in shape",
            ));
        }
        quantiles.push((level, q));
    }
    Ok(Oracle { mean, quantiles })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::pearson;
    use ndarray::array;

    use crate::stats::close;

    #[test]
    fn oracle_comparison_of_the_oracle_itself() {
        let truth = array![[1.0f32, 4.0], [2.0, 1.0], [3.5, 2.0], [0.5, 3.0]];
        let om = array![[1.2f32, 3.5], [1.8, 1.5], [3.0, 2.5], [0.7, 2.5]];
        let lo = &om - 1.0;
        let hi = &om + 1.0;
        let oracle = Oracle {
            mean: om.clone(),
            quantiles: vec![(0.05, lo), (0.95, hi)],
        };
        let c = compare_with_oracle(om.view(), None, truth.view(), &oracle, None);
        assert!(close(c.fraction_of_ceiling, 1.0, 1e-12));
        assert!(close(c.pearson_to_oracle_mean, 1.0, 1e-12));
        assert_eq!(c.rmse_to_oracle_mean, 0.0);
        // 90% interval = mean ± 1 and every |truth − mean| ≤ 0.5: all covered
        assert_eq!(c.oracle_coverage.len(), 1);
        assert_eq!(c.oracle_coverage[0].covered, 1.0);
        let r0 = pearson(&[1.2, 1.8, 3.0, 0.7], &[1.0, 2.0, 3.5, 0.5]);
        let r1 = pearson(&[3.5, 1.5, 2.5, 2.5], &[4.0, 1.0, 2.0, 3.0]);
        assert!(close(c.oracle_mean_pearson, (r0 + r1) / 2.0, 1e-6));
    }
}
