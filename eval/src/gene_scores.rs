//! Per-gene accuracy over slides: Pearson r and RMSE per gene, and the means the papers
//! report over all genes and over the top-k genes of a ranking (each gene's
//! cross-validated r). r follows the convention of [`crate::stats`]: NaN for a constant
//! gene, left out of means and counted.

use ndarray::{ArrayView2, Axis};

use crate::stats::{finite_mean, pearson, rmse};

/// Top-k gene sets reported besides "all genes".
pub const TOP_KS: [usize; 6] = [1000, 500, 200, 100, 50, 20];

/// Per-gene scores over slides.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GeneScores {
    /// Pearson r across slides per gene (NaN where truth or prediction is constant).
    pub pearson: Vec<f64>,
    pub rmse: Vec<f64>,
}

/// Per-gene Pearson r and RMSE of `pred` against `truth` (both slides × genes).
pub fn per_gene(pred: ArrayView2<'_, f32>, truth: ArrayView2<'_, f32>) -> GeneScores {
    assert_eq!(
        pred.dim(),
        truth.dim(),
        "prediction and truth shapes differ"
    );
    let mut pearson_r = Vec::with_capacity(pred.ncols());
    let mut rmse_g = Vec::with_capacity(pred.ncols());
    for (p, t) in pred.columns().into_iter().zip(truth.columns()) {
        let p: Vec<f64> = p.iter().map(|&v| f64::from(v)).collect();
        let t: Vec<f64> = t.iter().map(|&v| f64::from(v)).collect();
        pearson_r.push(pearson(&p, &t));
        rmse_g.push(rmse(&p, &t));
    }
    GeneScores {
        pearson: pearson_r,
        rmse: rmse_g,
    }
}

/// Means over a gene set (the row type of `metrics.json` and of `evaluate`'s report).
pub use rnafm_runtime::training_metrics::GeneSetSummary;

/// Means over all genes and over the top-k genes ranked by `rank_by` (e.g. each gene's
/// cross-validated r; NaN ranks last). Without `rank_by`, genes are ranked by their own
/// r here, which flatters the top-k means (the sets are chosen on the test data). Sets
/// larger than the gene count are skipped.
pub fn summarize(
    scores: &GeneScores,
    rank_by: Option<&[f64]>,
    ks: &[usize],
) -> Vec<GeneSetSummary> {
    let g = scores.pearson.len();
    let key = rank_by.unwrap_or(&scores.pearson);
    let order = rank_by_r(key);
    let set = |top_k: Option<usize>, idx: &[usize]| {
        let r: Vec<f64> = idx.iter().map(|&i| scores.pearson[i]).collect();
        let e: Vec<f64> = idx.iter().map(|&i| scores.rmse[i]).collect();
        let (mean_pearson, undefined_r) = finite_mean(&r);
        GeneSetSummary {
            top_k,
            genes: idx.len(),
            mean_pearson,
            mean_rmse: finite_mean(&e).0,
            undefined_r,
        }
    };
    let mut out = vec![set(None, &order)];
    for &k in ks.iter().filter(|&&k| k <= g) {
        out.push(set(Some(k), &order[..k]));
    }
    out
}

/// Gene indices by r, best first; NaN last; ties by index, so the choice is stable.
pub fn rank_by_r(r: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..r.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (r[a], r[b]);
        match (x.is_nan(), y.is_nan()) {
            (true, true) => a.cmp(&b),
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            _ => y.total_cmp(&x).then(a.cmp(&b)),
        }
    });
    order
}

/// For each fold k, per-gene r of the out-of-fold predictions of every slide outside fold k
/// (`folds[k]` = its held-out rows of `oof`/`truth`): a ranking of genes that fold k's
/// held-out slides took no part in, so top-k sets scored on them carry no selection bias.
pub fn gene_r_without_each_fold(
    oof: ArrayView2<'_, f32>,
    truth: ArrayView2<'_, f32>,
    folds: &[Vec<usize>],
) -> Vec<Vec<f64>> {
    (0..folds.len())
        .map(|k| {
            let rows: Vec<usize> = folds
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != k)
                .flat_map(|(_, idx)| idx.iter().copied())
                .collect();
            per_gene(
                oof.select(Axis(0), &rows).view(),
                truth.select(Axis(0), &rows).view(),
            )
            .pearson
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    use crate::stats::close;

    #[test]
    fn per_gene_and_top_k_ranking() {
        // gene 0 predicted perfectly, gene 1 anti-correlated, gene 2 constant truth
        let truth = array![[1.0f32, 1.0, 5.0], [2.0, 2.0, 5.0], [3.0, 3.0, 5.0]];
        let pred = array![[1.0f32, 3.0, 4.0], [2.0, 2.0, 5.0], [3.0, 1.0, 6.0]];
        let s = per_gene(pred.view(), truth.view());
        assert!(close(s.pearson[0], 1.0, 1e-12) && close(s.pearson[1], -1.0, 1e-12));
        assert!(s.pearson[2].is_nan());
        assert!(close(s.rmse[1], (8.0f64 / 3.0).sqrt(), 1e-6));
        let sum = summarize(&s, Some(&[0.1, 0.9, 0.5]), &[1, 2, 5]);
        assert_eq!(sum.len(), 3); // all, top 1, top 2 (5 > 3 genes is skipped)
        assert_eq!((sum[0].genes, sum[0].undefined_r), (3, 1));
        assert!(close(sum[0].mean_pearson, 0.0, 1e-12));
        // ranked by the given r: gene 1 first, then gene 2 (r undefined)
        assert_eq!(sum[1].top_k, Some(1));
        assert!(close(sum[1].mean_pearson, -1.0, 1e-12));
        assert_eq!(sum[2].undefined_r, 1);
        // ranked by its own r, top 1 is gene 0
        let own = summarize(&s, None, &[1]);
        assert!(close(own[1].mean_pearson, 1.0, 1e-12));
    }

    /// Fold k's ranking uses only the other folds' rows.
    #[test]
    fn r_without_each_fold_leaves_that_fold_out() {
        // gene 0 predicted perfectly in fold 0 (rows 0-2), inversely in fold 1 (rows 3-5)
        let truth = array![[1.0f32], [2.0], [3.0], [1.0], [2.0], [3.0]];
        let oof = array![[1.0f32], [2.0], [3.0], [3.0], [2.0], [1.0]];
        let r = gene_r_without_each_fold(oof.view(), truth.view(), &[vec![0, 1, 2], vec![3, 4, 5]]);
        assert!((r[0][0] + 1.0).abs() < 1e-12, "{r:?}");
        assert!((r[1][0] - 1.0).abs() < 1e-12, "{r:?}");
    }

    #[test]
    fn ranking_puts_undefined_r_last_and_breaks_ties_by_index() {
        assert_eq!(
            rank_by_r(&[0.1, f64::NAN, 0.9, 0.1, -0.2]),
            vec![2, 0, 3, 4, 1]
        );
    }
}
