//! The mean anchor of an anchored model: a linear map from a slide's mean cluster feature to
//! the model's z-scored profile. An anchored flow is trained on what the anchor leaves (its
//! leave-one-out residuals), and every draw gets the anchor's prediction for its slide
//! added back: regression for the mean, the flow for the spread around it (as CorrDiff
//! pairs a regression network with a residual diffusion model). With about a hundred
//! training slides a well-regularised linear model on mean-pooled features finds the
//! slide's signal far more reliably than the flow's slide encoder does (README, "Accuracy at
//! a realistic scale").
//!
//! Stored as three float32 tensors in `anchor.safetensors` (checkpoint folders and bundle
//! members): `anchor.center` [D], `anchor.weight` [D, G], `anchor.bias` [G];
//! z = (mean over clusters − center) · weight + bias.

use std::path::Path;

use ndarray::{Array1, Array2, ArrayView2, Axis};

use crate::error::{Error, Result};
use crate::weights::{Tensor, WeightMap};

/// The checkpoint file and bundle member (under `ensemble/k/` for model k).
pub const ANCHOR_FILE: &str = "anchor.safetensors";

/// What kind of anchor a model has (the model spec and the manifest record it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnchorKind {
    /// Per-gene ridge regression on the mean cluster feature, each gene's penalty by exact
    /// leave-one-out error on the training slides.
    RidgeClusterMean,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Anchor {
    pub center: Array1<f32>,
    /// [D, G]
    pub weight: Array2<f32>,
    pub bias: Array1<f32>,
}

impl Anchor {
    pub fn feat_dim(&self) -> usize {
        self.center.len()
    }

    pub fn genes(&self) -> usize {
        self.bias.len()
    }

    /// The anchor's z-scored profile [G] for one slide's cluster features [K, D].
    pub fn predict(&self, features: ArrayView2<'_, f32>) -> Array1<f32> {
        let k = features.nrows().max(1) as f32;
        let mean = features.sum_axis(Axis(0)) / k;
        (mean - &self.center).dot(&self.weight) + &self.bias
    }

    /// Adds the anchor's prediction for `features` to every draw [n, G], in place.
    pub fn add_to(&self, features: ArrayView2<'_, f32>, draws: &mut Array2<f32>) {
        let z = self.predict(features);
        for mut row in draws.rows_mut() {
            row += &z;
        }
    }

    pub fn to_weights(&self) -> WeightMap {
        let mut w = WeightMap::new();
        let t = |shape: Vec<usize>, data: Vec<f32>| Tensor::new(shape, data);
        w.insert(
            "anchor.center",
            t(vec![self.feat_dim()], self.center.to_vec()),
        );
        w.insert(
            "anchor.weight",
            t(
                vec![self.feat_dim(), self.genes()],
                self.weight.iter().copied().collect(),
            ),
        );
        w.insert("anchor.bias", t(vec![self.genes()], self.bias.to_vec()));
        w
    }

    /// From its tensors, checked against the model's D and G; `origin` names the file.
    pub fn from_weights(
        w: &WeightMap,
        feat_dim: usize,
        genes: usize,
        origin: &Path,
    ) -> Result<Self> {
        let center = w.get("anchor.center", &[feat_dim], origin)?;
        let weight = w.get("anchor.weight", &[feat_dim, genes], origin)?;
        let bias = w.get("anchor.bias", &[genes], origin)?;
        if let Some(i) = [center, weight, bias]
            .iter()
            .flat_map(|t| t.data.iter())
            .position(|v| !v.is_finite())
        {
            return Err(Error::invalid(
                origin,
                format!("anchor holds a non-finite value (element {i})"),
            ));
        }
        Ok(Anchor {
            center: Array1::from(center.data.clone()),
            weight: Array2::from_shape_vec((feat_dim, genes), weight.data.clone())
                .expect("shape checked"),
            bias: Array1::from(bias.data.clone()),
        })
    }

    pub fn from_bytes(bytes: &[u8], feat_dim: usize, genes: usize, origin: &Path) -> Result<Self> {
        let w = WeightMap::from_safetensors_bytes(bytes, origin)?;
        Self::from_weights(&w, feat_dim, genes, origin)
    }

    pub fn read(path: &Path, feat_dim: usize, genes: usize) -> Result<Self> {
        Self::from_weights(&WeightMap::read_safetensors(path)?, feat_dim, genes, path)
    }

    /// `anchor.safetensors` bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.to_weights().to_safetensors_bytes(None)
    }

    /// Writes `anchor.safetensors` atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        self.to_weights().write_safetensors(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn anchor() -> Anchor {
        Anchor {
            center: array![1.0, -1.0],
            weight: array![[1.0, 0.0, 2.0], [0.5, -1.0, 0.0]],
            bias: array![0.1, 0.2, 0.3],
        }
    }

    #[test]
    fn predicts_from_the_mean_cluster_feature() {
        // mean over the two rows: [2, 0] → minus center [1, 1] → · W + b
        let f = array![[1.0f32, 1.0], [3.0, -1.0]];
        let z = anchor().predict(f.view());
        let want = [1.0 + 0.5 + 0.1, -1.0 + 0.2, 2.0 + 0.3];
        for (a, b) in z.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{z:?}");
        }
        let mut draws = Array2::<f32>::ones((2, 3));
        anchor().add_to(f.view(), &mut draws);
        assert!((draws[[1, 2]] - 3.3).abs() < 1e-6);
    }

    #[test]
    fn round_trips_and_checks_shapes() {
        let p = Path::new("anchor.safetensors");
        let bytes = anchor().to_bytes();
        assert_eq!(Anchor::from_bytes(&bytes, 2, 3, p).unwrap(), anchor());
        let e = Anchor::from_bytes(&bytes, 2, 4, p).unwrap_err().to_string();
        assert!(
            e.contains("anchor.weight") && e.contains("anchor.safetensors"),
            "{e}"
        );
        let mut bad = anchor();
        bad.bias[1] = f32::NAN;
        let e = Anchor::from_bytes(&bad.to_bytes(), 2, 3, p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("non-finite"), "{e}");
    }
}
