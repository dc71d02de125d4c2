//! Per-gene normalisation: mean and sd of log2(FPKM-UQ+1), used to z-score training targets
//! and to turn sampled z back into log2(FPKM-UQ+1).

use crate::error::{Error, Result};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Normalization {
    pub mean: Vec<f32>,
    pub sd: Vec<f32>,
}

impl Normalization {
    /// Smallest sd used when z-scoring: genes with sd 0 (constant in the cohort) would
    /// otherwise divide by zero. Their z is 0 and their prediction is the mean.
    pub const MIN_SD: f32 = 1e-6;

    pub fn new(mean: Vec<f32>, sd: Vec<f32>, origin: &Path) -> Result<Self> {
        if mean.len() != sd.len() {
            return Err(Error::invalid(
                origin,
                format!("mean has {} genes but sd has {}", mean.len(), sd.len()),
            ));
        }
        if let Some(i) = mean.iter().chain(&sd).position(|v| !v.is_finite()) {
            return Err(Error::invalid(
                origin,
                format!("non-finite value at gene {}", i % mean.len().max(1)),
            ));
        }
        if let Some(i) = sd.iter().position(|&v| v < 0.0) {
            return Err(Error::invalid(origin, format!("negative sd at gene {i}")));
        }
        Ok(Normalization { mean, sd })
    }

    pub fn len(&self) -> usize {
        self.mean.len()
    }

    pub fn is_empty(&self) -> bool {
        self.mean.is_empty()
    }

    /// log2(x+1) value → z.
    pub fn to_z(&self, gene: usize, log_value: f32) -> f32 {
        (log_value - self.mean[gene]) / self.sd[gene].max(Self::MIN_SD)
    }

    /// z → log2(x+1) value.
    pub fn from_z(&self, gene: usize, z: f32) -> f32 {
        z * self.sd[gene].max(Self::MIN_SD) + self.mean[gene]
    }
}
