//! A slide's model input from its feature file: the K×D matrix itself when the file holds
//! exactly K rows, else the seeded k-means of its N×D tiles. `rnafm-run` and `rnafm-train`
//! both come through here, so a slide's clusters at training and at inference are the same
//! (same code, same seed rule: k-means with the run's `--seed`, which training takes at its
//! default [`DEFAULT_SEED`]).
//!
//! Training reads every slide each time it starts (each fold, each `--resume`), so the
//! means of tile files are kept in a cache keyed by the file's sha256, K, the seed and
//! [`KMEANS_VERSION`].

use std::path::{Path, PathBuf};

use ndarray::Array2;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::features::{read_features, write_features};
use crate::kmeans::{KMeansOptions, kmeans};

/// `rnafm-run --seed`'s default: the k-means seed of training.
pub const DEFAULT_SEED: u64 = 0;

/// Changes whenever k-means would give other centres for the same input; part of the
/// cache key.
pub const KMEANS_VERSION: u32 = 1;

/// A slide's K×D input, with the tile count when it was clustered.
#[derive(Debug, Clone)]
pub struct ClusterMeans {
    pub means: Array2<f32>,
    pub tiles: Option<usize>,
    /// The cluster of each tile (row i of the file); with K rows, row i is cluster i. Not
    /// kept in the cache (`None` from there).
    pub labels: Option<Vec<usize>>,
}

/// K×D input of `features` read from `path` (named in errors): as given when it has K rows,
/// k-means of its tiles when it has more, an error when fewer.
pub fn cluster_means(
    features: Array2<f32>,
    clusters: usize,
    seed: u64,
    path: &Path,
) -> Result<ClusterMeans> {
    let n = features.nrows();
    if n == clusters {
        return Ok(ClusterMeans {
            means: features,
            tiles: None,
            labels: Some((0..n).collect()),
        });
    }
    if n < clusters {
        return Err(Error::invalid(
            path,
            format!("{n} tiles, fewer than the model's {clusters} clusters"),
        ));
    }
    let km = kmeans(features.view(), KMeansOptions::new(clusters, seed), path)?;
    Ok(ClusterMeans {
        means: km.centers,
        tiles: Some(n),
        labels: Some(km.labels),
    })
}

/// [`cluster_means`] of the file at `path`, through the cache in `cache` (a folder; `None`:
/// no cache). A cache that cannot be read or written only costs the k-means.
pub fn cluster_means_cached(
    path: &Path,
    clusters: usize,
    seed: u64,
    cache: Option<&Path>,
) -> Result<ClusterMeans> {
    let Some(dir) = cache else {
        return cluster_means(read_features(path)?, clusters, seed, path);
    };
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let key = hex::encode(
        Sha256::new()
            .chain_update(&bytes)
            .chain_update(format!("|k={clusters}|seed={seed}|v={KMEANS_VERSION}"))
            .finalize(),
    );
    drop(bytes);
    let cached = cache_file(dir, &key);
    if cached.is_file() {
        match read_features(&cached) {
            Ok(m) if m.nrows() == clusters => {
                let tiles = read_tile_count(&cached);
                return Ok(ClusterMeans {
                    means: m,
                    tiles,
                    labels: None,
                });
            }
            _ => tracing::debug!("ignoring unreadable cache file {}", cached.display()),
        }
    }
    let cm = cluster_means(read_features(path)?, clusters, seed, path)?;
    if let Some(tiles) = cm.tiles {
        let stored = write_features(&cached, &cm.means).and_then(|_| {
            crate::atomic::write_bytes_atomic(&tiles_file(&cached), tiles.to_string().as_bytes())
        });
        if let Err(e) = stored {
            tracing::debug!("not caching the cluster means of {}: {e}", path.display());
        }
    }
    Ok(cm)
}

fn cache_file(dir: &Path, key: &str) -> PathBuf {
    dir.join("clusters").join(format!("{key}.npy"))
}

fn tiles_file(cached: &Path) -> PathBuf {
    cached.with_extension("tiles")
}

fn read_tile_count(cached: &Path) -> Option<usize> {
    std::fs::read_to_string(tiles_file(cached))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiles(n: usize, d: usize) -> Array2<f32> {
        Array2::from_shape_fn((n, d), |(i, j)| ((i * 37 + j * 11) % 23) as f32 * 0.1)
    }

    #[test]
    fn k_rows_pass_through_more_are_clustered_fewer_refused() {
        let p = Path::new("s.npy");
        let f = tiles(4, 3);
        let cm = cluster_means(f.clone(), 4, 0, p).unwrap();
        assert_eq!((cm.means, cm.tiles), (f, None));
        let cm = cluster_means(tiles(40, 3), 4, 0, p).unwrap();
        assert_eq!((cm.means.dim(), cm.tiles), ((4, 3), Some(40)));
        let e = cluster_means(tiles(3, 3), 4, 0, p).unwrap_err().to_string();
        assert!(e.contains("s.npy") && e.contains("3 tiles, fewer"), "{e}");
    }

    #[test]
    fn cache_gives_the_same_means_and_follows_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let p = dir.path().join("s.npy");
        write_features(&p, &tiles(60, 5)).unwrap();
        let direct = cluster_means(read_features(&p).unwrap(), 6, 3, &p).unwrap();
        let first = cluster_means_cached(&p, 6, 3, Some(&cache)).unwrap();
        assert_eq!(first.means, direct.means);
        let entries = std::fs::read_dir(cache.join("clusters")).unwrap().count();
        assert_eq!(entries, 2); // means and tile count
        let again = cluster_means_cached(&p, 6, 3, Some(&cache)).unwrap();
        assert_eq!((again.means, again.tiles), (direct.means.clone(), Some(60)));
        // another seed or other content is another entry
        let other_seed = cluster_means_cached(&p, 6, 4, Some(&cache)).unwrap();
        assert_eq!(
            other_seed.means,
            cluster_means(read_features(&p).unwrap(), 6, 4, &p)
                .unwrap()
                .means
        );
        let mut changed = tiles(60, 5);
        changed[[0, 0]] += 5.0;
        write_features(&p, &changed).unwrap();
        let after = cluster_means_cached(&p, 6, 3, Some(&cache)).unwrap();
        assert_eq!(after.means, cluster_means(changed, 6, 3, &p).unwrap().means);
        assert_ne!(after.means, direct.means);
    }
}
