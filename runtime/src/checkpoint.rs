//! What `rnafm-train` writes and `rnafm-export` reads: a checkpoint folder holds `model.json`
//! (ModelSpec), `model.safetensors` (raw weights) and `ema.safetensors` (EMA weights), both in
//! official PyTorch names; training adds `train_state.json` and optimiser state. A training
//! run's folder holds `metrics.json`, the pooled out-of-fold predictions, `splits.json`, and
//! per fold `fold_<k>/` with its checkpoints (`best/`, `last/`) and slide lists.

use std::path::{Path, PathBuf};

use crate::model_spec::ModelSpec;
use crate::weights::WeightMap;
use crate::{Error, Result};

pub use crate::training_metrics::METRICS_FILE;

pub const SPEC_FILE: &str = "model.json";
pub const RAW_FILE: &str = "model.safetensors";
pub const EMA_FILE: &str = "ema.safetensors";
/// A regression-baseline fold's weights (`fold_<k>/`); `rnafm-train --init-slide-encoder`
/// reads its slide encoder.
pub const REGRESSION_WEIGHTS_FILE: &str = "regression.safetensors";
/// Out-of-fold predictions [slides, genes] (log2): a fold's held-out slides in `fold_<k>/`,
/// and every slide in the reference CSV's row order in the run folder. RNA-FM and the
/// regression baseline write the same files.
pub const PRED_FILE: &str = "oof_predictions.npy";
/// Interval calibration fitted on a fold's validation patients (`fold_<k>/calibration.json`).
pub const CALIBRATION_FILE: &str = "calibration.json";
/// A fold's held-out slides (never trained on; what its model is evaluated on) and its
/// validation patients' slides (early stopping and interval calibration), one name a line.
pub const HELDOUT_LIST: &str = "heldout.txt";
pub const VALIDATION_LIST: &str = "validation.txt";
/// The fold's checkpoint with the best validation loss, and the latest (for `--resume`).
pub const BEST_DIR: &str = "best";
pub const LAST_DIR: &str = "last";

/// Folder of fold `k` in a training run.
pub fn fold_dir(run: &Path, k: usize) -> PathBuf {
    run.join(format!("fold_{k}"))
}

pub struct CheckpointDir {
    pub dir: PathBuf,
}

impl CheckpointDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        CheckpointDir { dir: dir.into() }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Writes spec and both weight files, each atomically.
    pub fn write(&self, spec: &ModelSpec, raw: &WeightMap, ema: &WeightMap) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        raw.write_safetensors(&self.path(RAW_FILE))?;
        ema.write_safetensors(&self.path(EMA_FILE))?;
        // The spec last: its presence marks a complete checkpoint.
        spec.write(&self.path(SPEC_FILE))
    }

    pub fn read_spec(&self) -> Result<ModelSpec> {
        ModelSpec::read(&self.path(SPEC_FILE))
    }

    pub fn read_weights(&self, file: &str) -> Result<WeightMap> {
        WeightMap::read_safetensors(&self.path(file))
    }

    pub fn exists(dir: &Path) -> bool {
        dir.join(SPEC_FILE).is_file()
    }
}
