//! The checkpoint directory contract shared with the exporter: `model.json` (ModelSpec),
//! `model.safetensors` (raw weights) and `ema.safetensors` (EMA weights), both in official
//! PyTorch names. Training adds `train_state.json` and optimiser state.

use std::path::{Path, PathBuf};

use rnafm_runtime::model_spec::ModelSpec;
use rnafm_runtime::weights::WeightMap;
use rnafm_runtime::{Error, Result};

pub const SPEC_FILE: &str = "model.json";
pub const RAW_FILE: &str = "model.safetensors";
pub const EMA_FILE: &str = "ema.safetensors";

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
