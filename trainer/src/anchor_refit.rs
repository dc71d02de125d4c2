//! `rnafm-train refit-anchor`: a fold's checkpoint with its mean anchor refitted on every
//! slide of a reference CSV (normally all the patients the run trained on), and each slide's
//! leave-one-out shift for calibrating it. Why, and the folder it writes:
//! [`rnafm_runtime::anchor_refit`].
//!
//! The flow is kept as it is: it was trained on the fold anchor's leave-one-out residuals,
//! and the refitted anchor's leave-one-out residuals on more slides are somewhat smaller, so
//! the raw draws come out a little wide rather than narrow; the calibration, fitted with the
//! leave-one-out shift, corrects either.

use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayView2};
use rnafm_runtime::anchor::ANCHOR_FILE;
use rnafm_runtime::anchor_refit::{LooShift, REFIT_RECORD_FILE, RefitRecord};
use rnafm_runtime::checkpoint::{
    BEST_DIR, CheckpointDir, EMA_FILE, METRICS_FILE, RAW_FILE, SPEC_FILE,
};
use rnafm_runtime::genes::GeneList;
use rnafm_runtime::{Error, Result};

use crate::dataset::Cohort;

/// What to refit (the flags of `rnafm-train refit-anchor`).
#[derive(Debug, Clone)]
pub struct RefitOptions {
    /// The checkpoint whose flow is kept, e.g. <run>/fold_0/best.
    pub checkpoint: PathBuf,
    /// Reference CSV: the anchor is refitted on every slide in it.
    pub csv: PathBuf,
    /// Folder of per-slide features (as for `rnafm-train train`).
    pub features: PathBuf,
    /// K, when the feature files may hold tiles (as `rnafm-train train --clusters`).
    pub clusters: Option<usize>,
    /// The folder to write (replaced if it is an earlier refit).
    pub out: PathBuf,
}

/// Fewest slides to refit on: the leave-one-out fit needs a few, and fewer than this is
/// not a cohort.
const MIN_SLIDES: usize = 8;

/// Refits and writes the folder; returns its record.
pub fn run_refit(o: &RefitOptions) -> Result<RefitRecord> {
    let ck = CheckpointDir::new(&o.checkpoint);
    let spec = ck.read_spec()?;
    let spec_path = ck.path(SPEC_FILE);
    let norm = spec
        .normalization
        .clone()
        .ok_or_else(|| Error::invalid(&spec_path, "the checkpoint has no normalisation"))?;
    if !ck.path(ANCHOR_FILE).is_file() {
        return Err(Error::invalid(
            &o.checkpoint,
            format!("has no {ANCHOR_FILE} (a model trained with --no-anchor): nothing to refit"),
        ));
    }
    let genes = GeneList::new(spec.genes.clone(), &spec_path)?;
    let cache = rnafm_runtime::checked_cache::default_dir();
    let cohort = Cohort::load(&o.csv, &o.features, &genes, o.clusters, cache.as_deref())?;
    let (k, d) = (spec.config.clusters, spec.config.feat_dim);
    if (cohort.clusters, cohort.feat_dim) != (k, d) {
        return Err(Error::invalid(
            &o.features,
            format!(
                "features are {}×{} but the model takes {k}×{d} (give --clusters {k} for tile files)",
                cohort.clusters, cohort.feat_dim
            ),
        ));
    }
    if cohort.len() < MIN_SLIDES {
        return Err(Error::invalid(
            &o.csv,
            format!(
                "{} slides; refitting the anchor needs at least {MIN_SLIDES}",
                cohort.len()
            ),
        ));
    }
    let mut z = cohort.log2.clone();
    for mut row in z.rows_mut() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = norm.to_z(j, *v);
        }
    }
    let all: Vec<usize> = (0..cohort.len()).collect();
    let fa = crate::anchor_fit::fit(&cohort, &z, &all);
    // Refitted minus leave-one-out prediction, in log2 units.
    let per_slide = k * d;
    let mut shift = Array2::<f32>::zeros(z.dim());
    for i in 0..cohort.len() {
        let f =
            ArrayView2::from_shape((k, d), &cohort.features[i * per_slide..(i + 1) * per_slide])
                .expect("K×D features per slide");
        let full = fa.anchor.predict(f);
        for (g, (s, &p)) in shift.row_mut(i).iter_mut().zip(&full).enumerate() {
            *s = norm.from_z(g, p) - norm.from_z(g, fa.predicted[[i, g]]);
        }
    }
    let record = RefitRecord {
        checkpoint: o.checkpoint.clone(),
        csv: o.csv.clone(),
        slides: cohort.len(),
        median_relative_lambda: fa.median_relative_lambda,
    };
    write_folder(
        o,
        &ck,
        &fa.anchor,
        &LooShift {
            slides: cohort.slides.clone(),
            shift,
        },
        &record,
    )?;
    Ok(record)
}

/// Writes the folder under a temporary name beside `o.out`, then renames it, so that a
/// failure leaves no half-written folder.
fn write_folder(
    o: &RefitOptions,
    ck: &CheckpointDir,
    anchor: &rnafm_runtime::anchor::Anchor,
    shift: &LooShift,
    record: &RefitRecord,
) -> Result<()> {
    if o.out.exists() && !o.out.join(REFIT_RECORD_FILE).is_file() {
        return Err(Error::invalid(
            &o.out,
            format!(
                "exists and is not a refit-anchor folder (no {REFIT_RECORD_FILE}); give a new --out"
            ),
        ));
    }
    let parent = match o.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    let tmp = tempfile::Builder::new()
        .prefix(".refit-anchor-")
        .tempdir_in(&parent)
        .map_err(|e| Error::io(&parent, e))?;
    let best = tmp.path().join(BEST_DIR);
    std::fs::create_dir(&best).map_err(|e| Error::io(&best, e))?;
    for f in [SPEC_FILE, EMA_FILE, RAW_FILE] {
        let from = ck.path(f);
        if from.is_file() {
            copy(&from, &best.join(f))?;
        }
    }
    // The run's cross-validated r per gene (rnafm-export puts it in the manifest): beside
    // the checkpoint, or in the run folder two levels up, as rnafm-export looks for it.
    if let Some(m) = [
        ck.path(METRICS_FILE),
        o.checkpoint.join("../..").join(METRICS_FILE),
    ]
    .into_iter()
    .find(|p| p.is_file())
    {
        copy(&m, &best.join(METRICS_FILE))?;
    }
    anchor.write(&best.join(ANCHOR_FILE))?;
    shift.write(tmp.path())?;
    let json = serde_json::to_string_pretty(record)
        .map_err(|e| Error::Runtime(format!("cannot serialise the refit record: {e}")))?;
    rnafm_runtime::atomic::write_bytes_atomic(
        &tmp.path().join(REFIT_RECORD_FILE),
        json.as_bytes(),
    )?;
    if o.out.exists() {
        std::fs::remove_dir_all(&o.out).map_err(|e| Error::io(&o.out, e))?;
    }
    let kept = tmp.keep();
    std::fs::rename(&kept, &o.out).map_err(|e| Error::io(&o.out, e))
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| Error::io(from, e))
}
