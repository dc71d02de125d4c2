//! rnafm evaluation: everything that scores, calibrates or reports, without burn. It reads
//! what `rnafm-run` and `rnafm-train` write and the reference CSV; the trainer uses its
//! per-gene scores for validation and out-of-fold metrics, so training and evaluation count
//! r the same way.
//!
//! - [`stats`]: scalar statistics (Pearson, ranks, quantiles, CRPS, NLL, bootstrap).
//! - [`gene_scores`]: per-gene r and RMSE over slides and their all/top-k summaries.
//! - [`uncertainty`]: interval coverage, calibration curve, NLL, CRPS of sample ensembles.
//! - [`model_pathways`]: each gene's pathway count from a model (coverage per gene group).
//! - [`oracle`]: a synthetic cohort's true conditional distribution and comparisons with it.
//! - [`cv_metrics`]: `metrics.json` of a cross-validation (used by the trainer).
//! - [`versus`]: paired bootstrap of one model's mean r against another's.
//! - [`pool`]: the mean of such differences over cohorts, with an interval (`rnafm-eval pool`).
//! - [`ridge`]: the ridge baseline on order-invariant summaries of the cluster features.
//! - [`evaluate`], [`calibrate`], [`synth`], [`report`]: the `rnafm-eval` commands.

pub mod calibrate;
pub mod cv_metrics;
pub mod evaluate;
pub mod gene_scores;
pub mod model_pathways;
pub mod oracle;
pub mod plots;
pub mod pool;
pub mod report;
pub mod ridge;
pub mod stats;
pub mod synth;
pub mod uncertainty;
pub mod versus;
