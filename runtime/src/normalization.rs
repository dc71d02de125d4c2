//! Per-gene normalisation: mean and sd of log2(FPKM-UQ+1), used to z-score training targets
//! and to turn sampled z back into log2(FPKM-UQ+1).

use crate::error::{Error, Result};
use ndarray::{ArrayView1, ArrayView2, Ix1};
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

    /// Reads mean and sd from two 1-d float `.npy` files (the release's
    /// `*_rna_data_mean.npy` / `*_rna_data_std.npy`).
    pub fn read_npy(mean_path: &Path, sd_path: &Path) -> Result<Self> {
        let mean = read_vector(mean_path)?;
        let sd = read_vector(sd_path)?;
        if mean.len() != sd.len() {
            return Err(Error::invalid(
                sd_path,
                format!(
                    "sd has {} genes but the mean file {} has {}",
                    sd.len(),
                    mean_path.display(),
                    mean.len()
                ),
            ));
        }
        if let Some(i) = mean.iter().position(|v| !v.is_finite()) {
            return Err(Error::invalid(
                mean_path,
                format!("non-finite mean at gene {i}"),
            ));
        }
        if let Some(i) = sd.iter().position(|v| !v.is_finite() || *v < 0.0) {
            return Err(Error::invalid(
                sd_path,
                format!("sd {} at gene {i} is not a finite value ≥ 0", sd[i]),
            ));
        }
        Normalization::new(mean, sd, sd_path)
    }

    /// Per-gene mean and sd (population sd, ddof 0, as `numpy.std`) of a training cohort's
    /// log2 values, slides × genes. `origin` names the cohort in errors.
    pub fn from_cohort(log2: ArrayView2<'_, f32>, origin: &Path) -> Result<Self> {
        let n = log2.nrows();
        if n == 0 {
            return Err(Error::invalid(
                origin,
                "cannot compute normalisation from zero slides",
            ));
        }
        let mut mean = Vec::with_capacity(log2.ncols());
        let mut sd = Vec::with_capacity(log2.ncols());
        for col in log2.columns() {
            // f64 sums: cohorts of thousands of slides lose digits in f32.
            let m = col.iter().map(|&v| f64::from(v)).sum::<f64>() / n as f64;
            let var = col.iter().map(|&v| (f64::from(v) - m).powi(2)).sum::<f64>() / n as f64;
            mean.push(m as f32);
            sd.push(var.sqrt() as f32);
        }
        Normalization::new(mean, sd, origin)
    }

    /// Writes mean and sd as two float32 `.npy` files, atomically.
    pub fn write_npy(&self, mean_path: &Path, sd_path: &Path) -> Result<()> {
        crate::npy::write_npy(mean_path, &ArrayView1::from(&self.mean[..]))?;
        crate::npy::write_npy(sd_path, &ArrayView1::from(&self.sd[..]))
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

/// A 1-d float vector from `.npy` (float32 or float64).
fn read_vector(path: &Path) -> Result<Vec<f32>> {
    let a = crate::npy::read_float_array(path, None)?;
    let shape = a.shape().to_vec();
    let a = a.into_dimensionality::<Ix1>().map_err(|_| {
        Error::invalid(
            path,
            format!("expected a 1-d vector of per-gene values, found shape {shape:?}"),
        )
    })?;
    if a.is_empty() {
        return Err(Error::invalid(path, "vector has no genes"));
    }
    Ok(a.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, Array2, array};
    use ndarray_npy::WriteNpyExt;

    fn shared() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/reference-cohorts")
    }

    #[test]
    fn reads_the_release_statistics() {
        let d = shared();
        let n = Normalization::read_npy(
            &d.join("LUAD_rna_data_mean.npy"),
            &d.join("LUAD_rna_data_std.npy"),
        )
        .unwrap();
        assert_eq!(n.len(), 20_820);
        assert!(n.sd.iter().all(|&s| s >= 0.0));
        assert!(n.mean.iter().any(|&m| m > 1.0));
        // constant genes (sd 0) map back to (almost) their mean
        let g =
            n.sd.iter()
                .position(|&s| s == 0.0)
                .expect("the release has sd-0 genes");
        assert!((n.from_z(g, 3.0) - n.mean[g]).abs() < 1e-4);
    }

    #[test]
    fn from_cohort_matches_hand_computation_and_roundtrips() {
        let x = array![[1.0f32, 5.0], [3.0, 5.0], [8.0, 5.0]];
        let n = Normalization::from_cohort(x.view(), Path::new("c")).unwrap();
        let m0 = (1.0 + 3.0 + 8.0) / 3.0;
        let v0 = ((1.0f64 - m0).powi(2) + (3.0 - m0).powi(2) + (8.0 - m0).powi(2)) / 3.0;
        assert!((n.mean[0] as f64 - m0).abs() < 1e-6);
        assert!((n.sd[0] as f64 - v0.sqrt()).abs() < 1e-6);
        assert_eq!((n.mean[1], n.sd[1]), (5.0, 0.0));
        assert!((n.from_z(0, n.to_z(0, 2.5)) - 2.5).abs() < 1e-6);

        let dir = tempfile::tempdir().unwrap();
        let (mp, sp) = (dir.path().join("m.npy"), dir.path().join("s.npy"));
        n.write_npy(&mp, &sp).unwrap();
        assert_eq!(Normalization::read_npy(&mp, &sp).unwrap(), n);
        let e = Normalization::from_cohort(Array2::<f32>::zeros((0, 2)).view(), Path::new("c"));
        assert!(e.is_err());
    }

    #[test]
    fn bad_statistics_files() {
        let dir = tempfile::tempdir().unwrap();
        let w = |name: &str, a: Array1<f64>| {
            let p = dir.path().join(name);
            a.write_npy(std::fs::File::create(&p).unwrap()).unwrap();
            p
        };
        let m = w("m.npy", array![1.0, 2.0, 3.0]);
        let short = w("short.npy", array![1.0, 2.0]);
        let neg = w("neg.npy", array![1.0, -2.0, 3.0]);
        let nan = w("nan.npy", array![1.0, f64::NAN, 3.0]);
        let e = Normalization::read_npy(&m, &short).unwrap_err().to_string();
        assert!(
            e.contains("short.npy") && e.contains("2 genes") && e.contains("has 3"),
            "{e}"
        );
        let e = Normalization::read_npy(&m, &neg).unwrap_err().to_string();
        assert!(e.contains("neg.npy") && e.contains("gene 1"), "{e}");
        let e = Normalization::read_npy(&nan, &m).unwrap_err().to_string();
        assert!(e.contains("nan.npy") && e.contains("gene 1"), "{e}");
        let p2 = dir.path().join("2d.npy");
        Array2::<f32>::zeros((2, 3))
            .write_npy(std::fs::File::create(&p2).unwrap())
            .unwrap();
        let e = Normalization::read_npy(&p2, &m).unwrap_err().to_string();
        assert!(e.contains("2d.npy") && e.contains("[2, 3]"), "{e}");
    }
}
