//! A training cohort in memory: measured log2 expression aligned to the model's gene list
//! and each slide's K×D cluster features, found in the features directory by slide name.
//! A file of N×D tile features (`.npy`, `.npz`, TRIDENT/CLAM `.h5`) is clustered exactly as
//! `rnafm-run` clusters it (`rnafm_runtime::cluster_means`), its means cached.

use std::path::{Path, PathBuf};

use ndarray::Array2;
use rnafm_runtime::cluster_means::{DEFAULT_SEED, cluster_means_cached};
use rnafm_runtime::features::read_features;
use rnafm_runtime::genes::GeneList;
use rnafm_runtime::reference_csv::ReferenceCohort;
use rnafm_runtime::{Error, Result};

pub struct Cohort {
    pub slides: Vec<String>,
    pub patients: Vec<String>,
    /// log2(FPKM-UQ+1), slides × genes in gene-list order.
    pub log2: Array2<f32>,
    /// Cluster features, slides × K × D, row-major.
    pub features: Vec<f32>,
    pub clusters: usize,
    pub feat_dim: usize,
}

impl Cohort {
    /// Reads the cohort. `clusters`: K, when feature files may hold tiles (files with K rows
    /// are taken as cluster means, files with more are clustered); `None`: every file must
    /// hold the same number of cluster rows, which is K. `cache`: where cluster means of tile
    /// files are kept (`None`: recomputed every time).
    pub fn load(
        csv: &Path,
        features_dir: &Path,
        genes: &GeneList,
        clusters: Option<usize>,
        cache: Option<&Path>,
    ) -> Result<Self> {
        let cohort = ReferenceCohort::read(csv)?;
        if cohort.is_empty() {
            return Err(Error::invalid(csv, "no slides"));
        }
        let log2 = cohort.aligned(genes)?;
        let mut features = Vec::new();
        let mut shape: Option<(usize, usize, PathBuf)> = None;
        for slide in &cohort.slides {
            let path = feature_file(features_dir, slide).ok_or_else(|| {
                Error::invalid(
                    features_dir,
                    format!("no feature file for slide {slide:?} (looked for {slide}.npy/.npz/.h5, also without its extension)"),
                )
            })?;
            let f = match clusters {
                Some(k) => cluster_means_cached(&path, k, DEFAULT_SEED, cache)?.means,
                None => read_features(&path)?,
            };
            match &shape {
                None => shape = Some((f.nrows(), f.ncols(), path.clone())),
                Some((k, d, first)) if (f.nrows(), f.ncols()) != (*k, *d) => {
                    return Err(Error::invalid(
                        &path,
                        format!(
                            "features are {}×{} but {} is {k}×{d}; every slide needs the same K cluster rows of D features (for tile files, give --clusters K)",
                            f.nrows(),
                            f.ncols(),
                            first.display()
                        ),
                    ));
                }
                Some(_) => {}
            }
            features.extend(f.iter().copied());
        }
        let (clusters, feat_dim, _) = shape.expect("at least one slide");
        Ok(Cohort {
            slides: cohort.slides,
            patients: cohort.patients,
            log2,
            features,
            clusters,
            feat_dim,
        })
    }

    pub fn len(&self) -> usize {
        self.slides.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slides.is_empty()
    }

    /// Features of slides `idx`, concatenated (|idx| × K × D).
    pub fn features_of(&self, idx: &[usize]) -> Vec<f32> {
        let n = self.clusters * self.feat_dim;
        let mut out = Vec::with_capacity(idx.len() * n);
        for &i in idx {
            out.extend_from_slice(&self.features[i * n..(i + 1) * n]);
        }
        out
    }
}

pub use rnafm_runtime::slide_names::feature_file;
