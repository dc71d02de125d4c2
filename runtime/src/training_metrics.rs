//! `metrics.json`, what `rnafm-train` writes at the end of a cross-validation (both RNA-FM
//! and the regression baseline): per-fold and pooled accuracy summaries, and per-gene r of
//! the out-of-fold predictions. `rnafm-eval evaluate --rank-by` ranks genes by it and
//! `rnafm-export` copies its per-gene r into the bundle (the `cv_r` column of rnafm-run).
//!
//! Pearson r is NaN for a gene that is constant in the truth or the predictions (see
//! `rnafm_eval::stats`); JSON has no NaN, so such values are written and read as `null`.

use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{Error, Result};

/// Mean accuracy over a gene set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneSetSummary {
    /// `None` for all genes, else the k of the top-k set.
    pub top_k: Option<usize>,
    pub genes: usize,
    #[serde(deserialize_with = "f64_or_nan")]
    pub mean_pearson: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub mean_rmse: f64,
    /// Genes of the set whose r is undefined (constant truth or prediction), left out of
    /// the mean r.
    pub undefined_r: usize,
}

impl GeneSetSummary {
    /// "all" or "top k".
    pub fn label(&self) -> String {
        self.top_k.map_or("all".to_string(), |k| format!("top {k}"))
    }
}

/// One fold's held-out slides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldMetrics {
    pub fold: usize,
    pub slides: usize,
    pub best_epoch: Option<usize>,
    /// Over all genes and the top-k sets of the pooled ranking.
    pub summary: Vec<GeneSetSummary>,
    /// Where the fold's time went (RNA-FM; absent for the regression baseline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<FoldSeconds>,
}

/// Wall-clock seconds of one fold of RNA-FM training, split into the optimiser steps and
/// the sampling that validation and the out-of-fold predictions do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct FoldSeconds {
    /// Epochs trained and the seconds of their optimiser steps.
    pub epochs: usize,
    pub training: f64,
    /// Validations run and their seconds (sampling the validation slides).
    pub validations: usize,
    pub validation: f64,
    /// Sampling the held-out slides once the fold is trained.
    pub out_of_fold: f64,
}

impl FoldSeconds {
    /// Seconds of optimiser steps per epoch.
    pub fn per_epoch(&self) -> f64 {
        self.training / self.epochs.max(1) as f64
    }

    /// Share of the fold's time spent sampling (validation and out-of-fold).
    pub fn sampling_share(&self) -> f64 {
        let sampling = self.validation + self.out_of_fold;
        sampling / (sampling + self.training).max(1e-12)
    }
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingMetrics {
    pub folds: Vec<FoldMetrics>,
    /// Out-of-fold predictions of all folds pooled; genes ranked by their pooled r.
    pub pooled: Vec<GeneSetSummary>,
    /// Gene symbols in the order of the per-gene lists.
    pub genes: Vec<String>,
    #[serde(deserialize_with = "vec_or_nan")]
    pub pooled_gene_r: Vec<f64>,
    #[serde(deserialize_with = "vec_or_nan")]
    pub pooled_gene_rmse: Vec<f64>,
    /// Per fold k: per-gene r of the pooled out-of-fold predictions of the other folds'
    /// slides (a ranking fold k's held-out slides took no part in; `evaluate
    /// --rank-excluding-fold k`).
    #[serde(deserialize_with = "vecs_or_nan")]
    pub gene_r_without_fold: Vec<Vec<f64>>,
}

/// File name of the metrics in a training run's folder.
pub const METRICS_FILE: &str = "metrics.json";

impl TrainingMetrics {
    pub fn read(path: &Path) -> Result<TrainingMetrics> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let m: TrainingMetrics = serde_json::from_str(&text).map_err(|e| {
            Error::invalid(
                path,
                format!("not rnafm-train metrics ({e}); metrics from an older rnafm-train need the run trained again"),
            )
        })?;
        if m.pooled_gene_r.len() != m.genes.len() {
            return Err(Error::invalid(
                path,
                format!(
                    "{} genes but {} per-gene r values",
                    m.genes.len(),
                    m.pooled_gene_r.len()
                ),
            ));
        }
        Ok(m)
    }

    /// Writes the file atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::Runtime(format!("cannot serialise metrics: {e}")))?;
        crate::atomic::write_bytes_atomic(path, text.as_bytes())
    }

    /// The per-gene r to rank genes by: the pooled out-of-fold r, or with `excluding_fold`
    /// = k the r of the other folds' out-of-fold predictions.
    pub fn gene_r(&self, excluding_fold: Option<usize>, origin: &Path) -> Result<&[f64]> {
        match excluding_fold {
            None => Ok(&self.pooled_gene_r),
            Some(k) => self
                .gene_r_without_fold
                .get(k)
                .map(Vec::as_slice)
                .ok_or_else(|| {
                    Error::invalid(
                        origin,
                        format!(
                            "fold {k} asked for, the run has {} folds",
                            self.gene_r_without_fold.len()
                        ),
                    )
                }),
        }
    }
}

fn f64_or_nan<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

fn vec_or_nan<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<f64>, D::Error> {
    let v = Vec::<Option<f64>>::deserialize(d)?;
    Ok(v.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect())
}

fn vecs_or_nan<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<Vec<f64>>, D::Error> {
    let v = Vec::<Vec<Option<f64>>>::deserialize(d)?;
    Ok(v.into_iter()
        .map(|r| r.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TrainingMetrics {
        let s = |top_k, r| GeneSetSummary {
            top_k,
            genes: 2,
            mean_pearson: r,
            mean_rmse: 0.5,
            undefined_r: 1,
        };
        TrainingMetrics {
            folds: vec![FoldMetrics {
                fold: 0,
                slides: 3,
                best_epoch: Some(5),
                summary: vec![s(None, f64::NAN)],
                seconds: Some(FoldSeconds {
                    epochs: 4,
                    training: 2.0,
                    validations: 2,
                    validation: 1.0,
                    out_of_fold: 1.0,
                }),
            }],
            pooled: vec![s(None, 0.25), s(Some(1), 0.5)],
            genes: vec!["A".into(), "B".into()],
            pooled_gene_r: vec![0.5, f64::NAN],
            pooled_gene_rmse: vec![0.1, 0.2],
            gene_r_without_fold: vec![vec![f64::NAN, 0.3], vec![0.2, 0.1]],
        }
    }

    /// Undefined r goes out as null and comes back as NaN; everything else unchanged.
    #[test]
    fn round_trip_keeps_undefined_r() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(METRICS_FILE);
        let m = sample();
        m.write(&p).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("null"), "{text}");
        let back = TrainingMetrics::read(&p).unwrap();
        assert!(back.pooled_gene_r[1].is_nan() && back.gene_r_without_fold[0][0].is_nan());
        assert!(back.folds[0].summary[0].mean_pearson.is_nan());
        assert_eq!(back.pooled, m.pooled);
        assert_eq!(back.gene_r(Some(1), &p).unwrap(), &[0.2, 0.1]);
        assert!(
            back.gene_r(Some(2), &p)
                .unwrap_err()
                .to_string()
                .contains("fold 2")
        );
        assert_eq!(back.pooled[1].label(), "top 1");
        assert_eq!(back.folds[0].seconds, m.folds[0].seconds);
        let t = back.folds[0].seconds.unwrap();
        assert_eq!((t.per_epoch(), t.sampling_share()), (0.5, 0.5));
    }

    #[test]
    fn foreign_json_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        std::fs::write(&p, r#"{"pooled_gene_r": [0.5]}"#).unwrap();
        let e = TrainingMetrics::read(&p).unwrap_err().to_string();
        assert!(
            e.contains("m.json") && e.contains("not rnafm-train metrics"),
            "{e}"
        );
    }
}
