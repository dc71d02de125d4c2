//! Seeded k-means (k-means++ initialisation, Lloyd iterations) that turns a slide's N×D
//! tile features into K×D cluster means, the model's input.
//!
//! Hand-written rather than `linfa-clustering`: that crate pulls a large dependency tree
//! into the runtime, and this is ~100 lines whose output is fixed by the seed (ChaCha8)
//! on every platform, which the reproducibility of predictions needs.

use std::path::Path;

use ndarray::{Array2, ArrayView2};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};

/// Options of [`kmeans`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KMeansOptions {
    pub clusters: usize,
    pub seed: u64,
    /// Lloyd iterations at most; it stops earlier when no assignment changes.
    pub max_iter: usize,
}

impl KMeansOptions {
    pub fn new(clusters: usize, seed: u64) -> Self {
        KMeansOptions {
            clusters,
            seed,
            max_iter: 300,
        }
    }
}

/// Result of [`kmeans`]: K×D centres (cluster means) in k-means++ pick order, the cluster
/// of each tile, the within-cluster sum of squares and the iterations run.
#[derive(Debug, Clone, PartialEq)]
pub struct KMeans {
    pub centers: Array2<f32>,
    pub labels: Vec<usize>,
    pub inertia: f64,
    pub iterations: usize,
}

/// Clusters the rows of `tiles`. `origin` names the feature file in errors. Fewer tiles than
/// clusters is an error (a mean of nothing cannot stand in for a cluster).
pub fn kmeans(tiles: ArrayView2<'_, f32>, opts: KMeansOptions, origin: &Path) -> Result<KMeans> {
    let (n, d) = tiles.dim();
    let k = opts.clusters;
    if k == 0 {
        return Err(Error::invalid(origin, "k-means needs at least one cluster"));
    }
    if n < k {
        return Err(Error::invalid(
            origin,
            format!("{n} tiles are fewer than the {k} clusters the model needs"),
        ));
    }
    if let Some(((r, c), v)) = tiles.indexed_iter().find(|(_, v)| !v.is_finite()) {
        return Err(Error::invalid(
            origin,
            format!("non-finite value {v} at row {r}, column {c}"),
        ));
    }
    // f64 internally: sums over many tiles of 1024-d features.
    let x: Array2<f64> = tiles.mapv(f64::from);
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    let mut centers = init_plus_plus(&x, k, &mut rng);
    let x_sq: Vec<f64> = x.rows().into_iter().map(|r| r.dot(&r)).collect();

    let mut labels = vec![usize::MAX; n];
    let mut dist = vec![0f64; n];
    let mut iterations = 0;
    for _ in 0..opts.max_iter.max(1) {
        iterations += 1;
        let mut changed = false;
        for (i, (c, dd)) in nearest_all(&x, &x_sq, &centers).into_iter().enumerate() {
            if labels[i] != c {
                labels[i] = c;
                changed = true;
            }
            dist[i] = dd;
        }
        if !changed && iterations > 1 {
            break;
        }
        let mut sums = Array2::<f64>::zeros((k, d));
        let mut counts = vec![0usize; k];
        for i in 0..n {
            counts[labels[i]] += 1;
            let mut row = sums.row_mut(labels[i]);
            row += &x.row(i);
        }
        // An empty cluster takes the tile farthest from its centre (as scikit-learn does):
        // deterministic, and it splits the worst-fitting cluster.
        for c in 0..k {
            if counts[c] > 0 {
                continue;
            }
            let far = (0..n)
                .filter(|&i| counts[labels[i]] > 1)
                .max_by(|&a, &b| dist[a].total_cmp(&dist[b]).then(b.cmp(&a)));
            if let Some(i) = far {
                let old = labels[i];
                counts[old] -= 1;
                let mut row = sums.row_mut(old);
                row -= &x.row(i);
                labels[i] = c;
                counts[c] = 1;
                sums.row_mut(c).assign(&x.row(i));
                dist[i] = 0.0;
                changed = true;
            }
        }
        for (c, &count) in counts.iter().enumerate() {
            if count > 0 {
                let mean = &sums.row(c) / count as f64;
                centers.row_mut(c).assign(&mean);
            }
        }
        if !changed {
            break;
        }
    }
    // Final assignment and inertia against the final centres.
    let mut inertia = 0.0;
    for (i, (label, (c, _))) in labels
        .iter_mut()
        .zip(nearest_all(&x, &x_sq, &centers))
        .enumerate()
    {
        *label = c;
        inertia += sq_dist(&x, i, &centers, c); // exact, not via the expansion
    }
    Ok(KMeans {
        centers: centers.mapv(|v| v as f32),
        labels,
        inertia,
        iterations,
    })
}

/// k-means++: the first centre uniformly, each next one with probability ∝ squared distance
/// to the nearest chosen centre (uniformly when all tiles coincide with chosen centres).
fn init_plus_plus(x: &Array2<f64>, k: usize, rng: &mut ChaCha8Rng) -> Array2<f64> {
    let (n, d) = x.dim();
    let mut centers = Array2::<f64>::zeros((k, d));
    let first = rng.random_range(0..n);
    centers.row_mut(0).assign(&x.row(first));
    let mut best: Vec<f64> = (0..n).map(|i| sq_dist(x, i, &centers, 0)).collect();
    for c in 1..k {
        let total: f64 = best.iter().sum();
        let pick = if total > 0.0 {
            let mut r = rng.random::<f64>() * total;
            let mut pick = n - 1;
            for (i, &b) in best.iter().enumerate() {
                if r < b {
                    pick = i;
                    break;
                }
                r -= b;
            }
            pick
        } else {
            rng.random_range(0..n)
        };
        centers.row_mut(c).assign(&x.row(pick));
        for (i, b) in best.iter_mut().enumerate() {
            *b = b.min(sq_dist(x, i, &centers, c));
        }
    }
    centers
}

fn sq_dist(x: &Array2<f64>, i: usize, centers: &Array2<f64>, c: usize) -> f64 {
    x.row(i)
        .iter()
        .zip(centers.row(c))
        .map(|(a, b)| (a - b) * (a - b))
        .sum()
}

/// Nearest centre of every tile (lowest index on ties) and its squared distance. Uses
/// |x|² − 2x·c + |c|² so that the N×K products are one matrix multiplication: tiles × 100
/// clusters × 1024-d features would be slow as a per-pair loop.
fn nearest_all(x: &Array2<f64>, x_sq: &[f64], centers: &Array2<f64>) -> Vec<(usize, f64)> {
    let c_sq: Vec<f64> = centers.rows().into_iter().map(|r| r.dot(&r)).collect();
    let prod = x.dot(&centers.t());
    prod.rows()
        .into_iter()
        .zip(x_sq)
        .map(|(row, &xs)| {
            let mut best = (0, f64::INFINITY);
            for (c, (&p, &cs)) in row.iter().zip(&c_sq).enumerate() {
                let d = (xs - 2.0 * p + cs).max(0.0);
                if d < best.1 {
                    best = (c, d);
                }
            }
            best
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_distr::{Distribution, Normal};

    /// Three well-separated blobs of 2-d points with known centres.
    fn blobs(seed: u64) -> (Array2<f32>, Vec<[f32; 2]>, Vec<usize>) {
        let truth = vec![[0.0f32, 0.0], [10.0, 0.0], [0.0, 10.0]];
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let noise = Normal::new(0.0f32, 0.5).unwrap();
        let mut x = Array2::zeros((90, 2));
        let mut lab = Vec::new();
        for i in 0..90 {
            let c = (i * 7) % 3;
            lab.push(c);
            x[[i, 0]] = truth[c][0] + noise.sample(&mut rng);
            x[[i, 1]] = truth[c][1] + noise.sample(&mut rng);
        }
        (x, truth, lab)
    }

    #[test]
    fn recovers_separated_clusters_and_centres_are_means() {
        let (x, truth, lab) = blobs(1);
        let r = kmeans(x.view(), KMeansOptions::new(3, 42), Path::new("t")).unwrap();
        // every true centre has a found centre within 0.5
        for t in &truth {
            let dmin = r
                .centers
                .rows()
                .into_iter()
                .map(|c| ((c[0] - t[0]).powi(2) + (c[1] - t[1]).powi(2)).sqrt())
                .fold(f32::INFINITY, f32::min);
            assert!(dmin < 0.5, "centre {t:?} not found: {:?}", r.centers);
        }
        // same partition as the truth (up to label names)
        for i in 0..90 {
            for j in 0..90 {
                assert_eq!(lab[i] == lab[j], r.labels[i] == r.labels[j]);
            }
        }
        // each centre is the mean of its tiles
        for c in 0..3 {
            let members: Vec<usize> = (0..90).filter(|&i| r.labels[i] == c).collect();
            let m0 = members.iter().map(|&i| x[[i, 0]] as f64).sum::<f64>() / members.len() as f64;
            assert!((r.centers[[c, 0]] as f64 - m0).abs() < 1e-4);
        }
    }

    #[test]
    fn deterministic_for_a_seed() {
        let (x, _, _) = blobs(2);
        let a = kmeans(x.view(), KMeansOptions::new(5, 7), Path::new("t")).unwrap();
        let b = kmeans(x.view(), KMeansOptions::new(5, 7), Path::new("t")).unwrap();
        assert_eq!(a, b);
        let c = kmeans(x.view(), KMeansOptions::new(5, 8), Path::new("t")).unwrap();
        assert_ne!(
            a.centers, c.centers,
            "another seed should pick other initial centres"
        );
    }

    #[test]
    fn duplicate_tiles_leave_no_cluster_empty() {
        // 6 tiles but only 2 distinct points, 4 clusters: k-means++ must pick duplicates and
        // the empty-cluster rule must still give every cluster a tile.
        let x =
            Array2::from_shape_vec((6, 2), vec![0., 0., 0., 0., 0., 0., 1., 1., 1., 1., 1., 1.])
                .unwrap();
        let r = kmeans(x.view(), KMeansOptions::new(4, 3), Path::new("t")).unwrap();
        assert!(r.centers.iter().all(|v| v.is_finite()));
        assert!(r.inertia.abs() < 1e-12);
        for c in r.centers.rows() {
            assert!(c[0] == c[1] && (c[0] == 0.0 || c[0] == 1.0), "{c}");
        }
    }

    #[test]
    fn exactly_k_tiles_gives_the_tiles() {
        let x = Array2::from_shape_fn((4, 3), |(i, j)| (i * 3 + j) as f32);
        let r = kmeans(x.view(), KMeansOptions::new(4, 0), Path::new("t")).unwrap();
        let mut got: Vec<f32> = r.centers.column(0).to_vec();
        got.sort_by(f32::total_cmp);
        assert_eq!(got, vec![0.0, 3.0, 6.0, 9.0]);
        assert_eq!(r.inertia, 0.0);
    }

    #[test]
    fn fewer_tiles_than_clusters_is_an_error() {
        let x = Array2::<f32>::zeros((3, 2));
        let e = kmeans(x.view(), KMeansOptions::new(8, 0), Path::new("slide.npy"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("slide.npy") && e.contains("3 tiles") && e.contains("8 clusters"),
            "{e}"
        );
        let mut x = Array2::<f32>::zeros((3, 2));
        x[[1, 1]] = f32::NAN;
        let e = kmeans(x.view(), KMeansOptions::new(2, 0), Path::new("s")).unwrap_err();
        assert!(e.to_string().contains("row 1, column 1"));
    }
}
