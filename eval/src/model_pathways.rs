//! Each gene's pathway count read from a model, for calibrating and scoring intervals per
//! group of genes (`rnafm_runtime::calibration::GeneGroup`).

use std::path::{Path, PathBuf};

use rnafm_runtime::bundle::Bundle;
use rnafm_runtime::model_spec::ModelSpec;
use rnafm_runtime::{Error, Result};

/// How many pathway tokens hold each gene of the model at `path` (a `.rnafm` bundle, an
/// unpacked bundle or a checkpoint folder with `model.json`), in output order.
pub fn pathway_counts(path: &Path) -> Result<Vec<usize>> {
    let ck = path.join("model.json");
    let spec = if path.is_dir() && !Bundle::is_unpacked(path) && ck.is_file() {
        ModelSpec::read(&ck)?
    } else {
        Bundle::open_any_lazy(path)?.manifest.model
    };
    Ok(spec.pathways.pathway_counts())
}

/// The model an output folder's run.json names: `model` (rnafm-run's bundle) or
/// `checkpoint` (`rnafm-train sample`'s checkpoint folder). `alternative` ends the error.
fn run_model(pred: &Path, alternative: &str) -> Result<PathBuf> {
    let path = pred.join("run.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::invalid(&path, format!("not JSON: {e}")))?;
    ["model", "checkpoint"]
        .iter()
        .find_map(|k| v.get(*k).and_then(|m| m.as_str()))
        .map(PathBuf::from)
        .ok_or_else(|| {
            Error::invalid(
                &path,
                format!(
                    "names no model; pass --model with the model the draws came from{alternative}"
                ),
            )
        })
}

/// The pathway counts of the model that made the draws in `pred`: `model` when given,
/// else the one its run.json names. `alternative` ends the error when neither can be read
/// (e.g. ", or --no-gene-groups").
pub fn counts_for_run(pred: &Path, model: Option<&Path>, alternative: &str) -> Result<Vec<usize>> {
    if let Some(m) = model {
        return pathway_counts(m);
    }
    let m = run_model(pred, alternative)?;
    pathway_counts(&m).map_err(|e| {
        Error::invalid(
            pred.join("run.json"),
            format!(
                "its model {} cannot be read for the genes' pathways ({e}); pass --model with the model the draws came from{alternative}",
                m.display()
            ),
        )
    })
}
