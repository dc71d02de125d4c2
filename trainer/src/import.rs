//! `import-official`: turns official RNA-FM weights into an rnafm checkpoint folder (the
//! model as `rnafm_official` infers it, its weights passed through the burn model so the
//! checkpoint holds exactly what training would write).

use std::path::Path;

use burn::backend::Flex;
use rnafm_official::{WeightSet, read_official_weights, spec_from_official};
use rnafm_runtime::Result;
use rnafm_runtime::checkpoint::CheckpointDir;
use rnafm_runtime::model_spec::ModelSpec;

use crate::velocity_net::VelocityNet;

/// Imports `weights` into checkpoint directory `out`; returns the spec written.
pub fn import_official(
    weights: &Path,
    pathways: &Path,
    genes: Option<&Path>,
    heads: usize,
    set: WeightSet,
    out: &Path,
) -> Result<ModelSpec> {
    let map = read_official_weights(weights, set)?;
    let spec = spec_from_official(&map, weights, pathways, genes, heads)?;
    let net = VelocityNet::<Flex>::from_weights(&spec, &map, weights, &Default::default())?;
    let w = net.to_weights();
    CheckpointDir::new(out).write(&spec, &w, &w)?;
    Ok(spec)
}
