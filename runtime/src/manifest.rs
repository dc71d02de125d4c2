//! The bundle manifest (`manifest.json` inside a `.rnafm` file): everything a workstation
//! needs besides the graphs — model spec, slide contract, sampling defaults, optional
//! statistics and provenance, member checksums and a self-test. JSON schema:
//! `models/bundle.schema.json`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::model_spec::ModelSpec;

/// Manifest schema versions this build reads.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub schema_version: u32,
    /// Config, gene symbols in output order, pathways/background and normalisation.
    pub model: ModelSpec,
    pub slide: SlideContract,
    pub sampling: SamplingDefaults,
    /// Per-dimension mean/sd of the training slides' cluster features.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_stats: Option<FeatureStats>,
    /// Per-gene cross-validated Pearson r (reliability table), output order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cv_r: Option<Vec<f32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
    /// Interval calibrations fitted on validation slides, one per sampling setting
    /// (guidance, steps); rnafm-run applies the one matching its run (`calibration.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<Vec<crate::calibration::Calibration>>,
    /// sha256 (hex) of every member besides the manifest.
    pub members: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_test: Option<SelfTest>,
    /// Models 2..k of a fold ensemble (model 0 is `model`; model j's members under
    /// `ensemble/j/`, see `bundle_members::ensemble_member`); rnafm-run splits the draws
    /// across all k. Empty for a single model. A build that predates ensembles refuses the
    /// field instead of running model 0 alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ensemble: Vec<EnsembleModel>,
    /// An anchored model: every model's draws get its mean anchor's prediction added
    /// (`anchor.rs`; member `anchor.safetensors`, model k's under `ensemble/k/`). A build
    /// that predates anchors refuses the field instead of sampling the residuals alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<crate::anchor::AnchorKind>,
}

/// What differs between the models of a fold ensemble besides their weights.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnsembleModel {
    /// This model's per-gene normalisation: each fold z-scores its targets with its own
    /// training patients' mean and sd, so its draws are mapped into model 0's z-scale.
    pub normalization: Option<crate::normalization::Normalization>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlideContract {
    pub clusters: usize,
    pub feat_dim: usize,
    pub encoder: String,
    pub microns_per_pixel: f32,
    pub tile_size: usize,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingDefaults {
    /// Time points of the Euler grid linspace(0,1,T).
    pub steps: usize,
    pub cfg: f32,
}

impl Default for SamplingDefaults {
    fn default() -> Self {
        SamplingDefaults {
            steps: 20,
            cfg: 2.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureStats {
    pub mean: Vec<f32>,
    pub sd: Vec<f32>,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Provenance {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cohort: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folds: Option<usize>,
    /// Free-form training metrics (the trainer's `metrics.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trained_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exported_at: Option<String>,
    pub rnafm_version: String,
}

/// A short sampling run whose output the runtime reproduces to check its installation.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelfTest {
    /// Member holding the input cluster features [K, D] (.npy float32).
    pub features: String,
    pub seed: u64,
    pub samples: usize,
    pub steps: usize,
    pub cfg: f32,
    /// Member holding the expected samples [samples, G] (.npy float32, model scale).
    pub expected: String,
    pub tolerance: f32,
}

impl Manifest {
    /// Models in the bundle (1 + the fold ensemble's others).
    pub fn models(&self) -> usize {
        1 + self.ensemble.len()
    }

    /// Parses and checks a manifest; `origin` names the bundle in errors.
    pub fn from_json(bytes: &[u8], origin: &Path) -> Result<Self> {
        // Check the version before the full parse so a newer bundle gets a clear message.
        let raw: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::invalid(origin, format!("manifest.json is not JSON: {e}")))?;
        match raw.get("schema_version").and_then(|v| v.as_u64()) {
            Some(v) if v == u64::from(SCHEMA_VERSION) => {}
            Some(v) => {
                return Err(Error::invalid(
                    origin,
                    format!(
                        "manifest schema version {v} is not supported (this build reads {SCHEMA_VERSION})"
                    ),
                ));
            }
            None => {
                return Err(Error::invalid(
                    origin,
                    "manifest.json has no integer schema_version",
                ));
            }
        }
        let m: Manifest = serde_json::from_value(raw)
            .map_err(|e| Error::invalid(origin, format!("bad manifest.json: {e}")))?;
        m.validate(origin)?;
        Ok(m)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("manifest serialises")
    }

    /// Cross-field checks: spec consistency and the slide contract agreeing with the config.
    pub fn validate(&self, origin: &Path) -> Result<()> {
        self.model.validate(origin)?;
        let c = &self.model.config;
        if self.slide.clusters != c.clusters || self.slide.feat_dim != c.feat_dim {
            return Err(Error::invalid(
                origin,
                format!(
                    "manifest slide contract {}x{} disagrees with the model config {}x{}",
                    self.slide.clusters, self.slide.feat_dim, c.clusters, c.feat_dim
                ),
            ));
        }
        if let Some(fs) = &self.feature_stats
            && (fs.mean.len() != c.feat_dim || fs.sd.len() != c.feat_dim)
        {
            return Err(Error::invalid(
                origin,
                format!("manifest feature_stats must have {} entries", c.feat_dim),
            ));
        }
        if let Some(r) = &self.cv_r
            && r.len() != c.genes
        {
            return Err(Error::invalid(
                origin,
                format!(
                    "manifest cv_r has {} entries for {} genes",
                    r.len(),
                    c.genes
                ),
            ));
        }
        for cal in self.calibration.iter().flatten() {
            cal.validate(origin)?;
        }
        if self.models() > crate::bundle_members::MAX_ENSEMBLE {
            return Err(Error::invalid(
                origin,
                format!(
                    "manifest ensemble has {} models, more than {}",
                    self.models(),
                    crate::bundle_members::MAX_ENSEMBLE
                ),
            ));
        }
        for (j, e) in self.ensemble.iter().enumerate() {
            let ok = match (&e.normalization, &self.model.normalization) {
                (Some(n), Some(_)) => n.len() == c.genes,
                (None, None) => true,
                _ => false,
            };
            if !ok {
                return Err(Error::invalid(
                    origin,
                    format!(
                        "manifest ensemble model {}: its normalisation must cover the model's {} genes exactly when model 0 has one",
                        j + 1,
                        c.genes
                    ),
                ));
            }
        }
        if self.sampling.steps < 2 {
            return Err(Error::invalid(
                origin,
                "manifest sampling.steps must be >= 2",
            ));
        }
        Ok(())
    }
}
