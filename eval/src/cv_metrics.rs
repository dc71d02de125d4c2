//! The metrics of a cross-validation (`metrics.json` and `metrics.txt` of `rnafm-train`):
//! every slide's out-of-fold prediction scored per fold and pooled, genes ranked by their
//! pooled r, and per fold the ranking its held-out slides took no part in. RNA-FM and the
//! regression baseline both write them through here, with the r of [`crate::gene_scores`].

use std::path::Path;

use ndarray::{ArrayView2, Axis};
use rnafm_runtime::Result;
use rnafm_runtime::checkpoint::PRED_FILE;
use rnafm_runtime::training_metrics::{FoldMetrics, FoldSeconds, METRICS_FILE, TrainingMetrics};

use crate::gene_scores::{TOP_KS, gene_r_without_each_fold, per_gene, rank_by_r, summarize};

/// Readable table of the metrics, next to `metrics.json`.
pub const METRICS_TABLE_FILE: &str = "metrics.txt";

/// Scores out-of-fold predictions `oof` against `truth` (both slides × genes, log2):
/// `folds[k]` lists fold k's held-out rows, `best_epochs[k]` its chosen epoch and
/// `seconds[k]` where its time went (missing entries: not measured).
pub fn cv_metrics(
    oof: ArrayView2<'_, f32>,
    truth: ArrayView2<'_, f32>,
    folds: &[Vec<usize>],
    best_epochs: &[Option<usize>],
    seconds: &[Option<FoldSeconds>],
    genes: &[String],
) -> TrainingMetrics {
    let pooled = per_gene(oof, truth);
    let ranking = rank_by_r(&pooled.pearson);
    let fold_metrics = folds
        .iter()
        .enumerate()
        .map(|(f, idx)| {
            let m = per_gene(
                oof.select(Axis(0), idx).view(),
                truth.select(Axis(0), idx).view(),
            );
            FoldMetrics {
                fold: f,
                slides: idx.len(),
                best_epoch: best_epochs.get(f).copied().flatten(),
                summary: summarize(&m, Some(&pooled.pearson), &TOP_KS),
                seconds: seconds.get(f).copied().flatten(),
            }
        })
        .collect();
    debug_assert_eq!(ranking.len(), genes.len());
    TrainingMetrics {
        folds: fold_metrics,
        pooled: summarize(&pooled, Some(&pooled.pearson), &TOP_KS),
        genes: genes.to_vec(),
        gene_r_without_fold: gene_r_without_each_fold(oof, truth, folds),
        pooled_gene_r: pooled.pearson,
        pooled_gene_rmse: pooled.rmse,
    }
}

/// The end of a cross-validation: writes the pooled out-of-fold predictions, scores them
/// ([`cv_metrics`]) and writes `metrics.json` and `metrics.txt` into the run folder `run`.
pub fn finish_run(
    run: &Path,
    oof: ArrayView2<'_, f32>,
    truth: ArrayView2<'_, f32>,
    folds: &[Vec<usize>],
    best_epochs: &[Option<usize>],
    seconds: &[Option<FoldSeconds>],
    genes: &[String],
) -> Result<TrainingMetrics> {
    rnafm_runtime::npy::write_npy(&run.join(PRED_FILE), &oof)?;
    let m = cv_metrics(oof, truth, folds, best_epochs, seconds, genes);
    write_cv_metrics(run, &m)?;
    Ok(m)
}

/// Writes `metrics.json` and `metrics.txt` into a training run's folder.
pub fn write_cv_metrics(run: &Path, m: &TrainingMetrics) -> Result<()> {
    m.write(&run.join(METRICS_FILE))?;
    rnafm_runtime::atomic::write_bytes_atomic(
        &run.join(METRICS_TABLE_FILE),
        metrics_table(m).as_bytes(),
    )
}

/// A readable table: rows = gene sets, columns = folds and pooled (mean r / RMSE).
pub fn metrics_table(r: &TrainingMetrics) -> String {
    let mut s = String::new();
    s.push_str(&format!("{:<10}", "genes"));
    for f in &r.folds {
        s.push_str(&format!(" {:>17}", format!("fold {} r / rmse", f.fold)));
    }
    s.push_str(&format!(" {:>17}\n", "pooled r / rmse"));
    for (i, row) in r.pooled.iter().enumerate() {
        s.push_str(&format!("{:<10}", row.label()));
        for f in &r.folds {
            if let Some(x) = f.summary.get(i) {
                s.push_str(&format!(" {:>8.4} / {:<6.4}", x.mean_pearson, x.mean_rmse));
            }
        }
        s.push_str(&format!(
            " {:>8.4} / {:<6.4}\n",
            row.mean_pearson, row.mean_rmse
        ));
    }
    for f in &r.folds {
        if let Some(t) = &f.seconds {
            s.push_str(&format!(
                "fold {}: {} epochs in {:.0} s ({:.2} s/epoch); sampling {:.0} s ({} validations {:.0} s, out-of-fold {:.0} s) = {:.0}% of the fold\n",
                f.fold,
                t.epochs,
                t.training,
                t.per_epoch(),
                t.validation + t.out_of_fold,
                t.validations,
                t.validation,
                t.out_of_fold,
                100.0 * t.sampling_share()
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    /// A constant gene has undefined r in the per-gene list and the summaries, ranks last,
    /// and the table shows the defined genes' mean: the convention of `evaluate`.
    #[test]
    fn constant_gene_is_undefined_as_in_evaluate() {
        let truth = array![
            [1.0f32, 5.0, 2.0],
            [2.0, 5.0, 1.0],
            [3.0, 5.0, 3.0],
            [4.0, 5.0, 0.0]
        ];
        let oof = array![
            [1.1f32, 4.0, 2.5],
            [2.1, 6.0, 0.5],
            [2.9, 5.0, 2.0],
            [4.2, 4.0, 1.0]
        ];
        let folds = vec![vec![0, 1], vec![2, 3]];
        let genes: Vec<String> = ["A", "B", "C"].map(String::from).to_vec();
        let m = cv_metrics(
            oof.view(),
            truth.view(),
            &folds,
            &[Some(3), None],
            &[],
            &genes,
        );
        assert!(m.pooled_gene_r[1].is_nan());
        let col = |a: &ndarray::Array2<f32>, j: usize| -> Vec<f64> {
            a.column(j).iter().map(|&v| f64::from(v)).collect()
        };
        let r = |j| crate::stats::pearson(&col(&oof, j), &col(&truth, j));
        // the mean over the two defined genes, not a 0 for the constant one
        assert!((m.pooled[0].mean_pearson - (r(0) + r(2)) / 2.0).abs() < 1e-12);
        assert_eq!(m.pooled[0].undefined_r, 1);
        assert_eq!(m.folds[0].best_epoch, Some(3));
        assert_eq!(m.gene_r_without_fold.len(), 2);
        let t = metrics_table(&m);
        assert!(t.lines().nth(1).unwrap().starts_with("all"), "{t}");
    }
}
