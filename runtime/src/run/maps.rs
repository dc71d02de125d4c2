//! Spatial maps (`rnafm-run --maps`): where on the slide a prediction comes from.
//!
//! The model sees a slide as K cluster means of its tiles. A map gives each cluster an
//! effect on each target (a gene, or a pathway score), and every tile of the cluster carries
//! it. Two ways to get it (`--map-method`):
//! - `include` (default): every row is set to the slide's average cluster (the mean of the
//!   K rows), then cluster k alone gets its own row back; its effect is prediction(with k)
//!   − prediction(all average). It asks what cluster k alone tells the model.
//! - `occlude`: cluster k's row is replaced by the mean of the other K−1 rows; its effect is
//!   prediction(slide) − prediction(slide without k). It asks what the model loses without
//!   k, which is little when other clusters carry the same signal (a large region split
//!   into several clusters), so it misses regions that `include` finds.
//!
//! On planted-region cohorts (`scripts/bench-maps`) `include` separated the driving tiles
//! from the rest with a mean AUROC of 0.89 against `occlude`'s 0.76 on the cohort the
//! choice was made on; the other cohorts' figures are in the README.
//!
//! Both use the same noise draws for every version of the slide, so a difference is far
//! less noisy than either prediction; the map reports its mean and sd over the draws. Maps
//! are sampled with few time points by default (`--map-steps 2`: one Euler step from the
//! noise, which for a trained flow lands on the network's conditional mean; see the
//! trainer's `predict_time_points`), so a map of K clusters costs (K+1) × draws velocity
//! calls. Positive effect: the region raises the prediction.

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
    /// How a cluster's effect is found.
    #[serde(default)]
    pub method: MapMethod,
}

/// How a cluster's effect is found (see the module comment).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MapMethod {
    /// The cluster alone on the slide's average.
    #[default]
    Include,
    /// The slide without the cluster.
    Occlude,
}

impl std::str::FromStr for MapMethod {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "include" => Ok(MapMethod::Include),
            "occlude" => Ok(MapMethod::Occlude),
            _ => Err(format!("`{s}`: expected include or occlude")),
        }
    }
}

impl std::fmt::Display for MapMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MapMethod::Include => "include",
            MapMethod::Occlude => "occlude",
        })
    }
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

/// Every row set to the mean of the rows (the slide's average cluster).
pub fn averaged(clusters: ArrayView2<'_, f32>) -> Array2<f32> {
    let mean = clusters
        .mapv(f64::from)
        .mean_axis(Axis(0))
        .expect("at least one row")
        .mapv(|v| v as f32);
    let mut out = clusters.to_owned();
    for mut row in out.rows_mut() {
        row.assign(&mean);
    }
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

/// Samples the reference and each cluster's version of the slide with the same draws (see
/// the module comment); `tick` once per Euler step of each batch.
pub fn cluster_effects(
    model: &mut RunModel,
    clusters: ArrayView2<'_, f32>,
    targets: Vec<MapTarget>,
    how: MapMethod,
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
    let mut sample = |x: ArrayView2<'_, f32>, tick: &mut dyn FnMut()| -> Result<Array2<f64>> {
        let z = model.graphs.sample(x, genes, params, tick)?;
        Ok(target_values(z.view(), &targets))
    };
    // The reference every version is compared with: the slide itself (occlude) or its
    // average (include).
    let average = averaged(clusters);
    let reference = match how {
        MapMethod::Include => sample(average.view(), tick)?,
        MapMethod::Occlude => sample(clusters, tick)?,
    };
    let n = reference.nrows();
    let mut mean = Array2::<f64>::zeros((k, targets.len()));
    let mut sd = Array2::<f64>::zeros((k, targets.len()));
    for c in 0..k {
        let diff = match how {
            MapMethod::Include => {
                let mut only = average.clone();
                only.row_mut(c).assign(&clusters.row(c));
                sample(only.view(), tick)? - &reference
            }
            MapMethod::Occlude => &reference - &sample(occlude(clusters, c).view(), tick)?,
        };
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
    fn averaged_sets_every_row_to_the_mean() {
        let c = array![[1.0f32, 0.0], [3.0, 2.0], [5.0, 7.0]];
        assert_eq!(
            averaged(c.view()),
            array![[3.0f32, 3.0], [3.0, 3.0], [3.0, 3.0]]
        );
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
