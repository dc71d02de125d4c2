//! Command-line options shared by `rnafm-features` and `rnafm-run SLIDE.svs --encoder …`:
//! how a slide is tiled and how its tiles are normalised for the encoder, plus the one call
//! that turns a slide file into tile features and cluster means.

use std::path::Path;

use super::encoder::{Normalization, TileEncoder};
use super::extract::{ExtractOptions, Extraction, extract, open_and_plan};
use crate::error::{Error, Result};

/// File extensions read as whole-slide images (everything else is a feature file).
pub const SLIDE_EXTENSIONS: [&str; 3] = ["svs", "tif", "tiff"];

/// Whether `path` names a whole-slide image (by extension, case-insensitive).
pub fn is_slide_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| SLIDE_EXTENSIONS.iter().any(|s| e.eq_ignore_ascii_case(s)))
}

/// How tiles are chosen and normalised (the flags of `rnafm-features` and `rnafm-run`).
#[derive(Debug, Clone, PartialEq)]
pub struct TileOptions {
    /// Level-0 microns per pixel, overriding the file's (needed when the file has none).
    pub mpp: Option<f64>,
    /// Microns per pixel the tiles are encoded at (0.5 = 20x) [default: rnafm-features 0.5,
    /// rnafm-run the model's].
    pub tile_mpp: Option<f64>,
    /// Tile size in pixels at --tile-mpp, resized to the encoder's input size if it has one
    /// [default: rnafm-features 256, rnafm-run the model's].
    pub tile: Option<u32>,
    /// At most this many tissue tiles are encoded, chosen at random (--seed).
    pub max_tiles: usize,
    /// Per-channel mean of 0-1 RGB pixels, subtracted before the encoder (ImageNet default).
    pub mean: Vec<f32>,
    /// Per-channel standard deviation pixels are divided by (ImageNet default).
    pub std: Vec<f32>,
    /// Minimum grey-level standard deviation (0-255) of a kept tile.
    pub min_contrast: f32,
}

impl Default for TileOptions {
    /// The flags' defaults: 4000 tiles at most, ImageNet pixel statistics, contrast 4.
    fn default() -> Self {
        TileOptions {
            mpp: None,
            tile_mpp: None,
            tile: None,
            max_tiles: 4000,
            mean: vec![0.485, 0.456, 0.406],
            std: vec![0.229, 0.224, 0.225],
            min_contrast: 4.0,
        }
    }
}

impl TileOptions {
    /// The encoder's pixel normalisation; an error names the bad flag.
    pub fn normalization(&self) -> std::result::Result<Normalization, String> {
        let three = |v: &[f32], flag: &str| -> std::result::Result<[f32; 3], String> {
            <[f32; 3]>::try_from(v).map_err(|_| format!("{flag} takes three values (R,G,B)"))
        };
        let norm = Normalization {
            mean: three(&self.mean, "--mean")?,
            std: three(&self.std, "--std")?,
        };
        if norm.std.iter().any(|s| s.is_nan() || *s <= 0.0) {
            return Err("--std values must be positive".into());
        }
        Ok(norm)
    }

    /// Extraction settings; `tile_mpp` and `tile` apply where the flags were not given.
    pub fn extract_options(
        &self,
        tile_mpp: f64,
        tile: u32,
        clusters: usize,
        seed: u64,
        batch: usize,
    ) -> ExtractOptions {
        ExtractOptions {
            mpp: self.mpp,
            tile_mpp: self.tile_mpp.unwrap_or(tile_mpp),
            tile: self.tile.unwrap_or(tile),
            max_tiles: self.max_tiles,
            min_contrast: self.min_contrast,
            seed,
            clusters,
            batch,
            ..ExtractOptions::default()
        }
    }
}

/// Reads the slide at `path`, finds its tissue, encodes the chosen tiles and clusters them
/// (everything `rnafm-features` does before writing). `progress(done, total)` follows tiles.
pub fn slide_features(
    path: &Path,
    encoder: &mut TileEncoder,
    opts: &ExtractOptions,
    progress: &dyn Fn(u64, u64),
) -> Result<Extraction> {
    let (mut slide, plan, tissue_s) = open_and_plan(path, opts)?;
    let total = plan.chosen.len() as u64;
    tracing::info!(
        "{}: {:.4} µm/px ({}), tissue {:.1} %, {} tissue tiles, {} chosen, read from level {}",
        path.display(),
        plan.mpp,
        plan.mpp_from,
        plan.mask.coverage() * 100.0,
        plan.candidates,
        plan.chosen.len(),
        plan.level
    );
    extract(&mut slide, plan, encoder, opts, tissue_s, &|n| {
        progress(n, total)
    })
}

/// `encoder` as a path that exists, or a one-line error naming it and the flag.
pub fn check_encoder_path(encoder: &Path) -> Result<()> {
    if std::fs::metadata(encoder).is_err() {
        return Err(Error::invalid(
            encoder,
            "encoder model not found (--encoder)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slide_extensions() {
        assert!(is_slide_image(Path::new("a/b.SVS")));
        assert!(is_slide_image(Path::new("b.tiff")));
        assert!(!is_slide_image(Path::new("b.npy")));
        assert!(!is_slide_image(Path::new("svs")));
    }

    #[test]
    fn defaults_and_overrides() {
        let d = TileOptions::default();
        let o = d.extract_options(0.25, 224, 7, 3, 16);
        assert_eq!((o.tile_mpp, o.tile, o.clusters, o.seed), (0.25, 224, 7, 3));
        assert_eq!(d.normalization().unwrap(), Normalization::default());
        let c = TileOptions {
            tile_mpp: Some(1.0),
            tile: Some(64),
            std: vec![1.0, 0.0, 1.0],
            ..TileOptions::default()
        };
        let o = c.extract_options(0.25, 224, 7, 3, 16);
        assert_eq!((o.tile_mpp, o.tile), (1.0, 64));
        assert!(c.normalization().unwrap_err().contains("--std"));
        let c = TileOptions {
            mean: vec![0.5, 0.5],
            ..TileOptions::default()
        };
        assert!(c.normalization().unwrap_err().contains("--mean"));
    }
}
