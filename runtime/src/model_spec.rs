//! Everything besides the weights that defines a trained model: hyper-parameters, genes in
//! output order, pathway tokens and normalisation. The trainer writes it next to its
//! checkpoints (`model.json`), the exporter copies it into the bundle manifest.

use std::path::Path;

use crate::error::{Error, Result};
use crate::model_config::ModelConfig;
use crate::normalization::Normalization;
use crate::pathways::PathwaySet;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ModelSpec {
    pub config: ModelConfig,
    /// Gene symbols in output order.
    pub genes: Vec<String>,
    pub pathways: PathwaySet,
    /// Present once trained on a cohort (or imported with statistics).
    pub normalization: Option<Normalization>,
}

impl ModelSpec {
    /// Checks that genes, pathways, normalisation and config agree.
    pub fn validate(&self, origin: &Path) -> Result<()> {
        self.config.validate(origin)?;
        let g = self.config.genes;
        if self.genes.len() != g {
            return Err(Error::invalid(
                origin,
                format!(
                    "config has {g} genes but {} gene symbols are listed",
                    self.genes.len()
                ),
            ));
        }
        if self.pathways.n_genes != g {
            return Err(Error::invalid(
                origin,
                format!(
                    "config has {g} genes but the pathways index {}",
                    self.pathways.n_genes
                ),
            ));
        }
        if let Some(n) = &self.normalization
            && n.len() != g
        {
            return Err(Error::invalid(
                origin,
                format!("config has {g} genes but the normalisation has {}", n.len()),
            ));
        }
        Ok(())
    }

    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let spec: ModelSpec = serde_json::from_str(&text)
            .map_err(|e| Error::invalid(path, format!("not a model spec: {e}")))?;
        spec.validate(path)?;
        Ok(spec)
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string(self).expect("a model spec always serialises");
        crate::atomic::write_bytes_atomic(path, text.as_bytes())
    }
}
