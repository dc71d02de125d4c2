//! The folder `rnafm-train refit-anchor` writes, and what `rnafm-eval calibrate` reads from
//! it.
//!
//! A fold's anchor is fitted on the fold's training patients only, so that its validation
//! patients stay unseen for early stopping and its held-out patients for the out-of-fold
//! scores. The model that is deployed can use every patient: the anchor (a ridge fitted in
//! seconds) is refitted on all of them, and the flow is kept. Calibration then needs, on each
//! slide it is fitted on, the anchor prediction that slide did not take part in. The ridge's
//! exact leave-one-out prediction gives it, and the folder stores, per refitted slide, how
//! far the refitted anchor's prediction for that slide lies from its leave-one-out one (in
//! log2(FPKM-UQ+1)). Draws of the refitted model on that slide, shifted back by it, are the
//! draws a model that never saw the slide would make; `rnafm-eval calibrate --anchor-loo`
//! moves the truth instead, which gives the same scores.
//!
//! Layout of the folder:
//! - `best/`: the checkpoint (model.json, the flow's weights, the refitted
//!   `anchor.safetensors`, and the run's metrics.json when there was one), exported as any
//!   checkpoint is; `rnafm-export` takes `calibration.json` from the folder, as from a fold's;
//! - `anchor_loo_shift.npy` [slides, genes]: refitted − leave-one-out prediction, log2 units,
//!   genes in the model's order;
//! - `anchor_loo_slides.txt`: the refitted slides, one a line, in the rows' order;
//! - `anchor_refit.json`: where it came from (for the record).

use std::path::{Path, PathBuf};

use ndarray::{Array2, Ix2};

use crate::error::{Error, Result};

pub const LOO_SHIFT_FILE: &str = "anchor_loo_shift.npy";
pub const LOO_SLIDES_FILE: &str = "anchor_loo_slides.txt";
pub const REFIT_RECORD_FILE: &str = "anchor_refit.json";

/// Per refitted slide: the refitted anchor's prediction minus its leave-one-out prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct LooShift {
    pub slides: Vec<String>,
    /// [slides, genes], log2(FPKM-UQ+1).
    pub shift: Array2<f32>,
}

impl LooShift {
    /// Writes both files into `dir` (each atomically).
    pub fn write(&self, dir: &Path) -> Result<()> {
        crate::npy::write_npy(&dir.join(LOO_SHIFT_FILE), &self.shift)?;
        let mut names = self.slides.join("\n");
        names.push('\n');
        crate::atomic::write_bytes_atomic(&dir.join(LOO_SLIDES_FILE), names.as_bytes())
    }

    /// Reads a refit folder's shift; `genes`: the model's gene count, checked.
    pub fn read(dir: &Path, genes: usize) -> Result<Self> {
        let (sp, np) = (dir.join(LOO_SHIFT_FILE), dir.join(LOO_SLIDES_FILE));
        if !sp.is_file() || !np.is_file() {
            return Err(Error::invalid(
                dir,
                format!(
                    "not an rnafm-train refit-anchor folder (no {LOO_SHIFT_FILE} and {LOO_SLIDES_FILE})"
                ),
            ));
        }
        let shift = crate::npy::read_float_array(&sp, None)?
            .into_dimensionality::<Ix2>()
            .map_err(|_| Error::invalid(&sp, "expected a 2-d array [slides, genes]"))?;
        let text = std::fs::read_to_string(&np).map_err(|e| Error::io(&np, e))?;
        let slides: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        if shift.dim() != (slides.len(), genes) {
            return Err(Error::invalid(
                &sp,
                format!(
                    "is {:?}, expected {} slides (as in {LOO_SLIDES_FILE}) × {genes} genes",
                    shift.dim(),
                    slides.len()
                ),
            ));
        }
        if shift.iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid(&sp, "has non-finite values"));
        }
        Ok(LooShift { slides, shift })
    }

    /// The shift of slide `name` (also matched without its file extension), if refitted.
    pub fn of(&self, name: &str) -> Option<ndarray::ArrayView1<'_, f32>> {
        use crate::slide_names::slide_stem as stem;
        self.slides
            .iter()
            .position(|s| s == name || stem(s) == stem(name))
            .map(|i| self.shift.row(i))
    }
}

/// Where it came from (`anchor_refit.json`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RefitRecord {
    /// The checkpoint whose flow is kept.
    pub checkpoint: PathBuf,
    /// The reference CSV whose slides the anchor was refitted on.
    pub csv: PathBuf,
    pub slides: usize,
    /// Median over genes of the chosen penalty, relative to the mean eigenvalue.
    pub median_relative_lambda: f64,
}

/// Refuses calibrations `cals` (read from `cal_path`) for the checkpoint `checkpoint` when
/// it is a refit's `best/` and one of them was fitted without `--anchor-loo`: the refitted
/// anchor has seen the calibration slides, so such factors come out too small (README,
/// "Interval calibration").
pub fn check_calibration(
    checkpoint: &Path,
    cals: &[crate::calibration::Calibration],
    cal_path: &Path,
) -> Result<()> {
    let refit = checkpoint.join("..");
    if !refit.join(REFIT_RECORD_FILE).is_file() {
        return Ok(());
    }
    if let Some(c) = cals.iter().find(|c| !c.anchor_loo) {
        let dir = std::fs::canonicalize(&refit).unwrap_or(refit);
        return Err(Error::invalid(
            cal_path,
            format!(
                "the calibration for guidance {} was fitted without --anchor-loo, but {} is a checkpoint whose anchor was refitted on the calibration slides (its intervals would come out too narrow); fit it again with `rnafm-eval calibrate --anchor-loo {}`, or export with --no-calibration",
                c.cfg,
                checkpoint.display(),
                dir.display()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refitted_checkpoint_takes_only_anchor_loo_calibrations() {
        use crate::calibration::{Calibration, LevelFactor};
        let d = tempfile::tempdir().unwrap();
        let (fold, refit) = (d.path().join("fold_0/best"), d.path().join("refit/best"));
        std::fs::create_dir_all(&fold).unwrap();
        std::fs::create_dir_all(&refit).unwrap();
        std::fs::write(d.path().join("refit").join(REFIT_RECORD_FILE), "{}").unwrap();
        let cal = |anchor_loo| Calibration {
            cfg: 1.0,
            steps: 20,
            levels: vec![LevelFactor {
                level: 0.9,
                factor: 1.1,
                coverage_before: 0.85,
            }],
            slides: 80,
            values: 800,
            fitted_on: None,
            draws: Some(50),
            groups: Vec::new(),
            anchor_loo,
        };
        let f = Path::new("calibration.json");
        assert!(check_calibration(&refit, &[cal(true)], f).is_ok());
        // a fold's own checkpoint takes either
        assert!(check_calibration(&fold, &[cal(false)], f).is_ok());
        let e = check_calibration(&refit, &[cal(true), cal(false)], f)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("calibration.json")
                && e.contains("--anchor-loo")
                && e.contains("--no-calibration")
                && !e.contains('\n'),
            "{e}"
        );
    }

    #[test]
    fn round_trips_matches_names_and_checks_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let s = LooShift {
            slides: vec!["a.svs".into(), "b".into()],
            shift: Array2::from_shape_fn((2, 3), |(i, j)| (i * 3 + j) as f32 * 0.1),
        };
        s.write(dir.path()).unwrap();
        let back = LooShift::read(dir.path(), 3).unwrap();
        assert_eq!(back, s);
        // rnafm-run names outputs without the extension; either form finds the slide.
        assert_eq!(back.of("a").unwrap()[1], 0.1);
        assert_eq!(back.of("a.svs").unwrap()[1], 0.1);
        assert_eq!(back.of("b.svs").unwrap()[2], 0.5);
        assert!(back.of("c").is_none());
        let e = LooShift::read(dir.path(), 4).unwrap_err().to_string();
        assert!(e.contains(LOO_SHIFT_FILE) && e.contains("× 4 genes"), "{e}");
        let e = LooShift::read(&dir.path().join("none"), 3)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an rnafm-train refit-anchor folder"), "{e}");
    }
}
