//! How sure a difference in mean r between two models is: a paired bootstrap over slides.
//!
//! On a cohort of tens of slides a gene's r has a standard error of 0.1 or more, so two
//! models' top-k means can differ by a few hundredths by chance. Resampling the evaluated
//! slides with replacement, both models on the same resample, and recomputing each one's mean
//! r over its gene sets gives the spread of the difference. The gene sets stay fixed (each
//! model's own ranking), as in the point estimate. Percentile intervals from
//! [`bootstrap_replicates`](crate::stats::bootstrap_replicates); a crate for this would still need our per-gene r and top-k
//! definitions, which are the bulk of it.

use ndarray::{ArrayView2, Axis};

use crate::gene_scores::{per_gene, summarize};
use crate::stats::{bootstrap_replicates, percentile_interval};

/// Difference (first model − second) of mean r over one gene set.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PairedDifference {
    /// `None` for all genes, else k of the top-k sets (each model its own top k).
    pub top_k: Option<usize>,
    /// On the evaluated slides as they are.
    pub difference: f64,
    /// 2.5% and 97.5% percentiles over the bootstrap replicates.
    pub ci_low: f64,
    pub ci_high: f64,
    pub replicates: usize,
    /// Every replicate's difference in replicate order (null where a resample left it
    /// undefined), so that `rnafm-eval pool` can combine cohorts' bootstraps into one
    /// interval for the mean over cohorts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicate_differences: Vec<Option<f64>>,
}

/// One model's predictions (slides × genes) and the ranking that picks its top-k genes
/// (`None`: its own r on all the evaluated slides, then kept fixed).
#[derive(Debug, Clone, Copy)]
pub struct Scored<'a> {
    pub pred: ArrayView2<'a, f32>,
    pub rank: Option<&'a [f64]>,
}

/// Paired bootstrap of mean r (all genes and the top-`ks` sets) of `a` against `b`, both on
/// the slides of `truth`.
pub fn paired_bootstrap(
    a: Scored<'_>,
    b: Scored<'_>,
    truth: ArrayView2<'_, f32>,
    ks: &[usize],
    replicates: usize,
    seed: u64,
) -> Vec<PairedDifference> {
    let own_a = per_gene(a.pred, truth).pearson;
    let own_b = per_gene(b.pred, truth).pearson;
    let rank_a = a.rank.unwrap_or(&own_a);
    let rank_b = b.rank.unwrap_or(&own_b);
    let (a, b) = (a.pred, b.pred);
    let diff = |a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>, t: ArrayView2<'_, f32>| {
        let sa = summarize(&per_gene(a, t), Some(rank_a), ks);
        let sb = summarize(&per_gene(b, t), Some(rank_b), ks);
        sa.iter()
            .zip(&sb)
            .map(|(x, y)| (x.top_k, x.mean_pearson - y.mean_pearson))
            .collect::<Vec<_>>()
    };
    let point = diff(a, b, truth);
    let reps = bootstrap_replicates(truth.nrows(), replicates, seed, |idx| {
        diff(
            a.select(Axis(0), idx).view(),
            b.select(Axis(0), idx).view(),
            truth.select(Axis(0), idx).view(),
        )
        .into_iter()
        .map(|(_, v)| v)
        .collect()
    });
    point
        .into_iter()
        // (no replicates: no intervals, NaN bounds)
        .zip(reps.into_iter().chain(std::iter::repeat(Vec::new())))
        .map(|((top_k, difference), r)| {
            let ci = percentile_interval(&r);
            PairedDifference {
                top_k,
                difference,
                ci_low: ci.low,
                ci_high: ci.high,
                replicates: ci.replicates,
                replicate_differences: r.into_iter().map(|v| v.is_finite().then_some(v)).collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, StandardNormal};

    fn scored(p: &Array2<f32>) -> Scored<'_> {
        Scored {
            pred: p.view(),
            rank: None,
        }
    }

    fn noisy(truth: &Array2<f32>, sd: f32, rng: &mut ChaCha8Rng) -> Array2<f32> {
        truth.mapv(|t| {
            let e: f32 = StandardNormal.sample(rng);
            t + sd * e
        })
    }

    /// A clearly better model gets an interval above 0; two equal models one around 0.
    #[test]
    fn intervals_separate_real_differences_from_noise() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let truth = Array2::from_shape_fn((60, 30), |_| {
            let v: f32 = StandardNormal.sample(&mut rng);
            v
        });
        let good = noisy(&truth, 0.3, &mut rng);
        let bad = noisy(&truth, 2.0, &mut rng);
        let d = paired_bootstrap(scored(&good), scored(&bad), truth.view(), &[20], 400, 7);
        assert_eq!(d.len(), 2); // all genes, top 20
        for x in &d {
            assert!(x.ci_low > 0.2 && x.ci_low <= x.difference && x.difference <= x.ci_high);
            assert_eq!(x.replicates, 400);
            // The replicates themselves travel with it (for `rnafm-eval pool`), and give
            // back the interval.
            assert_eq!(x.replicate_differences.len(), 400);
            let r: Vec<f64> = x.replicate_differences.iter().map(|v| v.unwrap()).collect();
            let ci = crate::stats::percentile_interval(&r);
            assert_eq!((ci.low, ci.high), (x.ci_low, x.ci_high));
        }
        let twin = noisy(&truth, 0.3, &mut rng);
        let d = paired_bootstrap(scored(&good), scored(&twin), truth.view(), &[], 400, 7);
        assert!(d[0].ci_low < 0.0 && d[0].ci_high > 0.0, "{d:?}");
        // The same seed gives the same interval.
        let again = paired_bootstrap(scored(&good), scored(&twin), truth.view(), &[], 400, 7);
        assert_eq!(d, again);
    }
}
