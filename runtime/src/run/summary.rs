//! Summaries of sampled expression: per gene (mean, sd, median, quantiles) and per pathway
//! (score = mean z of its member genes, per sample).

use ndarray::{Array2, ArrayView2, Axis};

use crate::pathways::PathwaySet;
pub use crate::stats::quantile_sorted;

/// Distribution summary of one quantity over the samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub mean: f32,
    /// Sample sd (n − 1 denominator); 0 for a single sample.
    pub sd: f32,
    pub median: f32,
    pub q05: f32,
    pub q25: f32,
    pub q75: f32,
    pub q95: f32,
}

impl Stats {
    pub fn of(values: &[f32]) -> Stats {
        let n = values.len();
        let mean = (values.iter().map(|&v| v as f64).sum::<f64>() / n.max(1) as f64) as f32;
        let sd = if n > 1 {
            let ss: f64 = values
                .iter()
                .map(|&v| (v as f64 - mean as f64).powi(2))
                .sum();
            (ss / (n - 1) as f64).sqrt() as f32
        } else {
            0.0
        };
        let mut s = values.to_vec();
        s.sort_by(f32::total_cmp);
        Stats {
            mean,
            sd,
            median: quantile_sorted(&s, 0.5),
            q05: quantile_sorted(&s, 0.05),
            q25: quantile_sorted(&s, 0.25),
            q75: quantile_sorted(&s, 0.75),
            q95: quantile_sorted(&s, 0.95),
        }
    }
}

/// Stats of every column of `samples` [n, G].
pub fn column_stats(samples: ArrayView2<'_, f32>) -> Vec<Stats> {
    samples
        .axis_iter(Axis(1))
        .map(|col| Stats::of(&col.to_vec()))
        .collect()
}

/// Pathway scores [n, P]: per sample, the mean z of each pathway's member genes.
pub fn pathway_scores(z: ArrayView2<'_, f32>, pathways: &PathwaySet) -> Array2<f32> {
    let mut out = Array2::<f32>::zeros((z.nrows(), pathways.len()));
    for (p, members) in pathways.members.iter().enumerate() {
        if members.is_empty() {
            continue;
        }
        for (i, row) in z.axis_iter(Axis(0)).enumerate() {
            let sum: f64 = members.iter().map(|&g| row[g] as f64).sum();
            out[[i, p]] = (sum / members.len() as f64) as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let v = [4.0, 1.0, 3.0, 2.0, 5.0];
        let s = Stats::of(&v);
        assert_eq!(s.median, 3.0);
        assert_eq!(s.mean, 3.0);
        // numpy.quantile([1,2,3,4,5], 0.05) = 1.2, 0.25 = 2.0, 0.95 = 4.8
        assert!((s.q05 - 1.2).abs() < 1e-6);
        assert!((s.q25 - 2.0).abs() < 1e-6);
        assert!((s.q95 - 4.8).abs() < 1e-6);
        // sample sd of 1..5 = sqrt(2.5)
        assert!((s.sd - 2.5f32.sqrt()).abs() < 1e-6);
        assert_eq!(Stats::of(&[7.0]).sd, 0.0);
    }

    #[test]
    fn pathway_score_is_member_mean() {
        let p = PathwaySet {
            n_genes: 4,
            names: vec!["a".into(), "b".into()],
            members: vec![vec![0, 1], vec![1, 2, 3]],
            background: vec![],
        };
        let z = array![[1.0, 3.0, 0.0, 0.0], [2.0, 2.0, 4.0, 6.0]];
        let s = pathway_scores(z.view(), &p);
        assert_eq!(s, array![[2.0, 1.0], [2.0, 4.0]]);
    }
}
