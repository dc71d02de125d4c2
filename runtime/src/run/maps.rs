//! Spatial maps (`rnafm-run --maps`): where on the slide a prediction comes from.
//!
//! Occlusion by cluster: the model sees a slide as K cluster means of its tiles. For each
//! cluster k, its row is replaced by the mean of the other K−1 rows (the slide's average
//! appearance, so the slide reads as if that region looked like the rest; a row of zeros
//! would be far outside anything the encoder produces), and the slide is sampled again with
//! the same noise draws. The effect of cluster k on a target (a gene, or a pathway score) is
//! prediction(slide) − prediction(slide without k), per draw; the map reports its mean and
//! its sd over the draws, and every tile of cluster k carries its cluster's effect.
//! Positive: the region raises the prediction.
//!
//! Draws share their noise between the slide and each occluded version, so the difference
//! is far less noisy than either prediction. Maps are sampled with few time points by
//! default (`--map-steps 2`: one Euler step from the noise, which for a trained flow lands
//! on the network's conditional mean; see the trainer's `predict_time_points`), so a map of
//! K clusters costs about (K+1) × draws velocity calls.

use ndarray::{Array1, Array2, ArrayView2, Axis};

use crate::error::{Error, Result};
use crate::run::model::RunModel;
use crate::run::summary::pathway_scores;
use crate::sampler::SampleParams;

/// What `--maps` computes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MapSettings {
    /// Draws per occluded slide (and for the slide itself).
    pub draws: usize,
    /// Time points of the maps' sampler.
    pub steps: usize,
    /// The pathways with the largest predicted |score| are mapped, this many.
    pub top_pathways: usize,
    /// Genes mapped besides (symbols as in the model's gene list).
    pub genes: Vec<String>,
}

impl MapSettings {
    /// Every gene named must be one of the model's (a usage error otherwise).
    pub fn check(&self, model: &RunModel) -> Result<()> {
        for g in &self.genes {
            if !model.genes.iter().any(|m| m == g) {
                return Err(Error::Usage(format!(
                    "--map-genes: {g} is not one of the model's {} genes",
                    model.genes.len()
                )));
            }
        }
        if self.draws == 0 || self.steps < 2 {
            return Err(Error::Usage(
                "--map-draws must be at least 1 and --map-steps at least 2".into(),
            ));
        }
        Ok(())
    }

    /// The sampler settings of the maps: the run's guidance and seed.
    pub fn params(&self, run: &SampleParams) -> SampleParams {
        SampleParams {
            samples: self.draws,
            steps: self.steps,
            ..*run
        }
    }
}

/// What a map is of.
#[derive(Debug, Clone, PartialEq)]
pub struct MapTarget {
    pub name: String,
    /// `gene` or `pathway`.
    pub kind: &'static str,
    /// `log2(FPKM-UQ+1)` for genes of a model with normalisation, else `z` (pathway scores
    /// are mean z-scores, as in `<slide>.pathways.tsv`).
    pub unit: &'static str,
    /// The gene (one) or the pathway's genes.
    genes: Vec<usize>,
    /// z → unit factor (a gene's sd), 1 for z.
    scale: f32,
}

/// The targets of a slide: the `top_pathways` pathways whose mean score over the run's
/// draws `z` is largest in magnitude, then the chosen genes.
pub fn choose_targets(
    model: &RunModel,
    z: ArrayView2<'_, f32>,
    settings: &MapSettings,
) -> Vec<MapTarget> {
    let scores = pathway_scores(z, &model.pathways);
    let means = scores
        .mean_axis(Axis(0))
        .unwrap_or_else(|| Array1::zeros(0));
    let mut order: Vec<usize> = (0..model.pathways.len())
        .filter(|&p| !model.pathways.members[p].is_empty())
        .collect();
    order.sort_by(|&a, &b| means[b].abs().total_cmp(&means[a].abs()).then(a.cmp(&b)));
    let mut targets: Vec<MapTarget> = order
        .into_iter()
        .take(settings.top_pathways)
        .map(|p| MapTarget {
            name: model.pathways.names[p].clone(),
            kind: "pathway",
            unit: "z",
            genes: model.pathways.members[p].clone(),
            scale: 1.0,
        })
        .collect();
    for g in &settings.genes {
        let Some(i) = model.genes.iter().position(|m| m == g) else {
            continue; // MapSettings::check refused it already
        };
        let (unit, scale) = match &model.normalization {
            Some(n) => ("log2(FPKM-UQ+1)", n.sd[i]),
            None => ("z", 1.0),
        };
        targets.push(MapTarget {
            name: g.clone(),
            kind: "gene",
            unit,
            genes: vec![i],
            scale,
        });
    }
    targets
}

/// Per draw and target: the gene's value or the pathway's score, [n, T].
fn target_values(z: ArrayView2<'_, f32>, targets: &[MapTarget]) -> Array2<f64> {
    Array2::from_shape_fn((z.nrows(), targets.len()), |(i, t)| {
        let tg = &targets[t];
        let sum: f64 = tg.genes.iter().map(|&g| f64::from(z[[i, g]])).sum();
        sum / tg.genes.len() as f64 * f64::from(tg.scale)
    })
}

/// The slide with cluster `k`'s row replaced by the mean of the other rows.
pub fn occlude(clusters: ArrayView2<'_, f32>, k: usize) -> Array2<f32> {
    let n = clusters.nrows();
    let mut out = clusters.to_owned();
    let mut mean = Array1::<f64>::zeros(clusters.ncols());
    for (r, row) in clusters.rows().into_iter().enumerate() {
        if r != k {
            mean.zip_mut_with(&row, |m, &v| *m += f64::from(v));
        }
    }
    let others = (n - 1).max(1) as f64;
    out.row_mut(k).assign(&mean.mapv(|v| (v / others) as f32));
    out
}

/// Effects of each cluster on each target: mean and sd over the draws, [K, T].
#[derive(Debug, Clone)]
pub struct ClusterEffects {
    pub targets: Vec<MapTarget>,
    pub mean: Array2<f64>,
    pub sd: Array2<f64>,
    pub draws: usize,
}

/// Samples the slide and each occluded version with the same draws (see the module
/// comment); `tick` once per Euler step of each batch.
pub fn cluster_effects(
    model: &mut RunModel,
    clusters: ArrayView2<'_, f32>,
    targets: Vec<MapTarget>,
    params: &SampleParams,
    tick: &mut dyn FnMut(),
) -> Result<ClusterEffects> {
    let k = clusters.nrows();
    if k < 2 {
        return Err(Error::Runtime(
            "maps need at least 2 clusters (the model has 1)".into(),
        ));
    }
    let genes = model.genes.len();
    let base = model.graphs.sample(clusters, genes, params, tick)?;
    let base = target_values(base.view(), &targets);
    let n = base.nrows();
    let mut mean = Array2::<f64>::zeros((k, targets.len()));
    let mut sd = Array2::<f64>::zeros((k, targets.len()));
    for c in 0..k {
        let occluded = occlude(clusters, c);
        let z = model.graphs.sample(occluded.view(), genes, params, tick)?;
        let diff = &base - &target_values(z.view(), &targets);
        let m = diff.mean_axis(Axis(0)).expect("at least one draw");
        mean.row_mut(c).assign(&m);
        if n > 1 {
            sd.row_mut(c).assign(&diff.std_axis(Axis(0), 1.0));
        }
    }
    Ok(ClusterEffects {
        targets,
        mean,
        sd,
        draws: n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn occlusion_takes_the_mean_of_the_other_rows() {
        let c = array![[1.0f32, 0.0], [3.0, 2.0], [5.0, 4.0]];
        let o = occlude(c.view(), 1);
        assert_eq!(o, array![[1.0f32, 0.0], [3.0, 2.0], [5.0, 4.0]]);
        let o = occlude(c.view(), 0);
        assert_eq!(o, array![[4.0f32, 3.0], [3.0, 2.0], [5.0, 4.0]]);
    }

    #[test]
    fn targets_average_their_genes_in_their_unit() {
        let z = array![[1.0f32, 3.0, -2.0], [3.0, 5.0, 0.0]];
        let t = [
            MapTarget {
                name: "p".into(),
                kind: "pathway",
                unit: "z",
                genes: vec![0, 1],
                scale: 1.0,
            },
            MapTarget {
                name: "g".into(),
                kind: "gene",
                unit: "log2(FPKM-UQ+1)",
                genes: vec![2],
                scale: 0.5,
            },
        ];
        assert_eq!(target_values(z.view(), &t), array![[2.0, -1.0], [4.0, 0.0]]);
    }
}
