//! Fits a fold's mean anchor (`rnafm_runtime::anchor`): the per-gene ridge of
//! `rnafm-eval ridge` (each gene's penalty by exact leave-one-out error), on each training
//! slide's mean cluster feature, predicting the fold's z-scored profile. The flow is then
//! trained on the anchor's leave-one-out residuals: what the anchor leaves on slides it did
//! not see, so the flow learns the spread a new slide will have, not the smaller in-sample
//! one.
//!
//! Why the mean alone, not the baseline's mean/sd/max summaries: on the five bench cohorts
//! the mean alone predicted better on external slides (README, "Accuracy at a realistic
//! scale"); with about a hundred slides every extra summary column is another coefficient
//! to estimate from the same few slides.

use ndarray::{Array1, Array2};
use rnafm_eval::ridge::Ridge;
use rnafm_runtime::anchor::Anchor;

use crate::dataset::Cohort;

pub struct FoldAnchor {
    pub anchor: Anchor,
    /// Per slide of the cohort, the anchor's out-of-sample prediction in z units: the
    /// leave-one-out prediction for a training slide, the fitted anchor's for the rest.
    pub predicted: Array2<f32>,
    /// Median over genes of the chosen penalty, relative to the mean eigenvalue.
    pub median_relative_lambda: f64,
}

impl FoldAnchor {
    /// The flow's targets: `z` less the anchor's out-of-sample prediction.
    pub fn residuals(&self, z: &Array2<f32>) -> Array2<f32> {
        z - &self.predicted
    }
}

/// Mean over the K cluster rows of slide `i`'s features [D].
fn cluster_mean(cohort: &Cohort, i: usize) -> Array1<f64> {
    let (k, d) = (cohort.clusters, cohort.feat_dim);
    let f = &cohort.features[i * k * d..(i + 1) * k * d];
    let mut m = Array1::<f64>::zeros(d);
    for row in f.chunks(d) {
        for (a, &v) in m.iter_mut().zip(row) {
            *a += f64::from(v);
        }
    }
    m / k.max(1) as f64
}

/// Fits the anchor on slides `train_idx` of `cohort` against `z` (every slide's z-scored
/// profile, rows in cohort order).
pub fn fit(cohort: &Cohort, z: &Array2<f32>, train_idx: &[usize]) -> FoldAnchor {
    let d = cohort.feat_dim;
    let means = |idx: &mut dyn Iterator<Item = usize>| {
        let rows: Vec<Array1<f64>> = idx.map(|i| cluster_mean(cohort, i)).collect();
        Array2::from_shape_fn((rows.len(), d), |(r, c)| rows[r][c])
    };
    let x = means(&mut train_idx.iter().copied());
    let y = Array2::from_shape_fn((train_idx.len(), z.ncols()), |(r, g)| {
        f64::from(z[[train_idx[r], g]])
    });
    let (ridge, loo) = Ridge::fit_with_loo(&x, &y);
    let all = means(&mut (0..cohort.len()));
    let mut predicted = ridge.predict(&all).mapv(|v| v as f32);
    for (r, &i) in train_idx.iter().enumerate() {
        for g in 0..z.ncols() {
            predicted[[i, g]] = (y[[r, g]] - loo[[r, g]]) as f32;
        }
    }
    let (center, weight, bias) = ridge.primal();
    let mut lambdas = ridge.relative_lambda.clone();
    lambdas.sort_by(f64::total_cmp);
    FoldAnchor {
        anchor: Anchor {
            center: center.mapv(|v| v as f32),
            weight: weight.mapv(|v| v as f32),
            bias: bias.mapv(|v| v as f32),
        },
        predicted,
        median_relative_lambda: lambdas.get(lambdas.len() / 2).copied().unwrap_or(0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Axis;

    /// A cohort whose profile is linear in the mean cluster feature: the anchor recovers it,
    /// its saved form predicts as the fit does, and a training slide's prediction is
    /// out-of-sample (worse than the in-sample fit, close to the truth).
    #[test]
    fn recovers_a_linear_profile_out_of_sample() {
        use rand::SeedableRng;
        use rand_distr::{Distribution, StandardNormal};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let (n, k, d, g) = (40, 5, 6, 4);
        let mut randn = |len: usize| -> Vec<f32> {
            (0..len).map(|_| StandardNormal.sample(&mut rng)).collect()
        };
        let features = randn(n * k * d);
        let w = Array2::from_shape_vec((d, g), randn(d * g)).unwrap();
        let noise = Array2::from_shape_vec((n, g), randn(n * g)).unwrap();
        let cohort = Cohort {
            slides: (0..n).map(|i| format!("s{i}")).collect(),
            patients: (0..n).map(|i| format!("p{i}")).collect(),
            log2: Array2::zeros((n, g)),
            features,
            clusters: k,
            feat_dim: d,
        };
        let means = Array2::from_shape_fn((n, d), |(i, c)| cluster_mean(&cohort, i)[c] as f32);
        let z = means.dot(&w) + 0.1 * &noise;
        let train: Vec<usize> = (0..30).collect();
        let fa = fit(&cohort, &z, &train);
        let f = |i: usize| {
            Array2::from_shape_vec((k, d), cohort.features[i * k * d..(i + 1) * k * d].to_vec())
                .unwrap()
        };
        for i in 30..n {
            let p = fa.anchor.predict(f(i).view());
            let err = (&p - &fa.predicted.row(i)).mapv(f32::abs);
            assert!(err.iter().all(|&e| e < 1e-4), "{err:?}");
            let truth_err = (&p - &z.row(i)).mapv(f32::abs).sum() / g as f32;
            assert!(truth_err < 0.5, "held-out error {truth_err}");
        }
        // Out-of-sample residuals on training slides are larger than in-sample ones.
        let oos = fa
            .residuals(&z)
            .select(Axis(0), &train)
            .mapv(|v| v * v)
            .sum();
        let ins: f32 = train
            .iter()
            .map(|&i| {
                (&fa.anchor.predict(f(i).view()) - &z.row(i))
                    .mapv(|v| v * v)
                    .sum()
            })
            .sum();
        assert!(oos > ins, "leave-one-out {oos} vs in-sample {ins}");
    }
}
