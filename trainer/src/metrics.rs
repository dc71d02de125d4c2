//! Per-gene Pearson r and RMSE between predicted and measured log2 expression, and the
//! summaries the paper reports (mean over all genes and over the top-k genes by r).

use ndarray::{ArrayView2, Axis};

/// Gene counts of the top-k summaries.
pub const TOP_K: [usize; 6] = [1000, 500, 200, 100, 50, 20];

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct GeneMetrics {
    /// Pearson r per gene (0 where either side is constant).
    pub r: Vec<f64>,
    pub rmse: Vec<f64>,
}

/// Metrics of `pred` against `truth`, both slides × genes.
pub fn gene_metrics(pred: ArrayView2<'_, f32>, truth: ArrayView2<'_, f32>) -> GeneMetrics {
    let mut r = Vec::with_capacity(pred.ncols());
    let mut rmse = Vec::with_capacity(pred.ncols());
    for (p, t) in pred.axis_iter(Axis(1)).zip(truth.axis_iter(Axis(1))) {
        let n = p.len() as f64;
        let mp = p.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let mt = t.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let (mut sxy, mut sxx, mut syy, mut se) = (0.0, 0.0, 0.0, 0.0);
        for (&a, &b) in p.iter().zip(t.iter()) {
            let (a, b) = (f64::from(a), f64::from(b));
            sxy += (a - mp) * (b - mt);
            sxx += (a - mp).powi(2);
            syy += (b - mt).powi(2);
            se += (a - b).powi(2);
        }
        let den = (sxx * syy).sqrt();
        r.push(if den > 0.0 { sxy / den } else { 0.0 });
        rmse.push((se / n).sqrt());
    }
    GeneMetrics { r, rmse }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    /// "all" or "top N".
    pub genes: String,
    pub n: usize,
    pub mean_r: f64,
    pub mean_rmse: f64,
}

/// Mean r and RMSE over all genes and over the top-k genes of `ranking` (gene indices,
/// best first).
pub fn summarize(m: &GeneMetrics, ranking: &[usize]) -> Vec<Summary> {
    let mean =
        |idx: &[usize], v: &[f64]| idx.iter().map(|&i| v[i]).sum::<f64>() / idx.len().max(1) as f64;
    let all: Vec<usize> = (0..m.r.len()).collect();
    let mut out = vec![Summary {
        genes: "all".into(),
        n: all.len(),
        mean_r: mean(&all, &m.r),
        mean_rmse: mean(&all, &m.rmse),
    }];
    for k in TOP_K {
        if k <= ranking.len() {
            let idx = &ranking[..k];
            out.push(Summary {
                genes: format!("top {k}"),
                n: k,
                mean_r: mean(idx, &m.r),
                mean_rmse: mean(idx, &m.rmse),
            });
        }
    }
    out
}

/// Gene indices ordered by r, best first (NaN-free by construction).
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
            gene_metrics(
                oof.select(Axis(0), &rows).view(),
                truth.select(Axis(0), &rows).view(),
            )
            .r
        })
        .collect()
}

pub fn rank_by_r(r: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..r.len()).collect();
    idx.sort_by(|&a, &b| r[b].total_cmp(&r[a]));
    idx
}

#[cfg(test)]
mod tests {

    /// Fold k's ranking uses only the other folds' rows.
    #[test]
    fn r_without_each_fold_leaves_that_fold_out() {
        // gene 0 predicted perfectly in fold 0 (rows 0-2), inversely in fold 1 (rows 3-5)
        let truth = ndarray::array![[1.0f32], [2.0], [3.0], [1.0], [2.0], [3.0]];
        let oof = ndarray::array![[1.0f32], [2.0], [3.0], [3.0], [2.0], [1.0]];
        let r = gene_r_without_each_fold(oof.view(), truth.view(), &[vec![0, 1, 2], vec![3, 4, 5]]);
        assert!((r[0][0] + 1.0).abs() < 1e-12, "{r:?}");
        assert!((r[1][0] - 1.0).abs() < 1e-12, "{r:?}");
    }

    use super::*;
    use ndarray::array;

    #[test]
    fn pearson_and_rmse_per_gene() {
        let truth = array![[1.0f32, 5.0], [2.0, 5.0], [3.0, 5.0]];
        let pred = array![[2.0f32, 1.0], [4.0, 2.0], [6.0, 3.0]];
        let m = gene_metrics(pred.view(), truth.view());
        assert!((m.r[0] - 1.0).abs() < 1e-12);
        assert_eq!(m.r[1], 0.0, "constant truth gives r 0, not NaN");
        let want = ((1.0f64 + 4.0 + 9.0) / 3.0).sqrt();
        assert!((m.rmse[0] - want).abs() < 1e-12);
        assert_eq!(rank_by_r(&[0.1, 0.9, -0.2]), vec![1, 0, 2]);
    }
}
