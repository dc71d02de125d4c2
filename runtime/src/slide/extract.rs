//! The whole path from a slide file to its cluster features: resolution, tissue mask, tile
//! choice, reading, encoding, k-means. Each step is timed for `scripts/bench-features`.

use std::path::Path;
use std::time::Instant;

use image::RgbImage;
use image::imageops::FilterType;
use ndarray::Array2;

use super::encoder::TileEncoder;
use super::thumbnail;
use super::tiff_reader::{MppSource, Slide};
use super::tiling::{self, TileSpot};
use super::tissue::{self, TissueMask};
use crate::error::{Error, Result};
use crate::kmeans::{KMeans, KMeansOptions, kmeans};

/// Settings of [`extract`].
#[derive(Debug, Clone, PartialEq)]
pub struct ExtractOptions {
    /// Level-0 microns per pixel, overriding the file's.
    pub mpp: Option<f64>,
    /// Resolution tiles are encoded at (0.5 µm/px ≈ 20× objective).
    pub tile_mpp: f64,
    /// Tile width and height in pixels at `tile_mpp`.
    pub tile: u32,
    pub max_tiles: usize,
    /// Tissue fraction a tile needs (0.8 = at most 20 % background).
    pub min_tissue: f32,
    /// Grey-level standard deviation (0–255) below which a tile is dropped as featureless.
    pub min_contrast: f32,
    pub seed: u64,
    /// k-means clusters of the tiles; 0: the tiles are not clustered (`rnafm-features
    /// --out X.h5` keeps the tiles, and whoever reads them clusters them).
    pub clusters: usize,
    /// Tiles per encoder call.
    pub batch: usize,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            mpp: None,
            tile_mpp: 0.5,
            tile: 256,
            max_tiles: 4000,
            min_tissue: 0.8,
            min_contrast: 4.0,
            seed: 0,
            clusters: 100,
            batch: 32,
        }
    }
}

/// The slide, its mask and the tiles to encode, before any tile is read.
pub struct TilePlan {
    /// Level-0 width and height in pixels.
    pub width: u32,
    pub height: u32,
    pub mpp: f64,
    pub mpp_from: &'static str,
    /// Tile size in level-0 pixels.
    pub size0: f64,
    /// The pyramid level tiles are read from, and its downsample.
    pub level: usize,
    pub level_downsample: f64,
    /// Low-resolution image of the whole slide and its tissue mask.
    pub thumbnail: RgbImage,
    pub mask: TissueMask,
    /// Tiles of the thumbnail level that could not be decoded.
    pub thumbnail_corrupt: usize,
    /// Tissue tiles found, and the ones chosen.
    pub candidates: usize,
    pub chosen: Vec<TileSpot>,
}

/// The result of [`extract`].
pub struct Extraction {
    pub plan: TilePlan,
    /// Tiles encoded (row `i` of `features` is tile `i`).
    pub tiles: Vec<TileSpot>,
    pub features: Array2<f32>,
    /// `None` when [`ExtractOptions::clusters`] is 0.
    pub kmeans: Option<KMeans>,
    pub corrupt: usize,
    pub low_contrast: usize,
    pub timings: Timings,
}

/// Seconds spent per step.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    pub tissue_s: f64,
    pub read_s: f64,
    pub encode_s: f64,
    pub kmeans_s: f64,
}

/// Opens nothing: finds the resolution, the tissue and the tiles of an open slide.
pub fn plan(slide: &mut Slide, opts: &ExtractOptions) -> Result<TilePlan> {
    let path = slide.path().to_path_buf();
    if opts.tile == 0 || opts.tile_mpp.is_nan() || opts.tile_mpp <= 0.0 {
        return Err(Error::invalid(
            &path,
            "tile size and tile resolution must be positive",
        ));
    }
    let (mpp, mpp_from) = match (opts.mpp, slide.mpp()) {
        (Some(m), _) if m > 0.0 && m.is_finite() => (m, "--mpp"),
        (Some(m), _) => {
            return Err(Error::invalid(
                &path,
                format!("--mpp {m} is not a positive number"),
            ));
        }
        (None, Some((m, MppSource::Aperio))) => (m, "Aperio MPP"),
        (None, Some((m, MppSource::ResolutionTags))) => (m, "TIFF resolution tags"),
        (None, None) => {
            return Err(Error::invalid(
                &path,
                "the file does not say its microns per pixel (no Aperio MPP, no TIFF resolution \
                 unit); pass it with --mpp (e.g. --mpp 0.25 for 40x, 0.5 for 20x)",
            ));
        }
    };
    let (w, h) = slide.dimensions();
    let size0 = opts.tile as f64 * opts.tile_mpp / mpp;
    if size0 > w.min(h) as f64 {
        return Err(Error::invalid(
            &path,
            format!(
                "a {} px tile at {} µm/px is {size0:.0} px of the {w}x{h} slide; the slide is \
                 smaller than one tile",
                opts.tile, opts.tile_mpp
            ),
        ));
    }
    // ≥ 16 mask pixels across a tile, and a thumbnail no longer than 4096 px.
    let thumb_ds = (size0 / 16.0).max(w.max(h) as f64 / 4096.0).max(1.0);
    let tl = slide.level_for_downsample(thumb_ds);
    let tl_ds = slide.levels()[tl].downsample;
    let (thumbnail, thumbnail_corrupt) = slide.read_level_reduced(tl, thumb_ds / tl_ds)?;
    let total_chunks = {
        let l = &slide.levels()[tl];
        (l.width.div_ceil(l.chunk_width) * l.height.div_ceil(l.chunk_height)) as usize
    };
    if thumbnail_corrupt == total_chunks {
        return Err(Error::invalid(
            &path,
            format!("none of the {total_chunks} tiles of pyramid level {tl} can be decoded"),
        ));
    }
    let mask = tissue::detect(&thumbnail);
    let found = tiling::tissue_tiles(&mask, w, h, size0, opts.min_tissue);
    let candidates = found.len();
    let chosen = tiling::choose(found, opts.max_tiles, opts.seed);
    let level = slide.level_for_downsample(opts.tile_mpp / mpp);
    let (width, height) = slide.dimensions();
    Ok(TilePlan {
        width,
        height,
        mpp,
        mpp_from,
        size0,
        level,
        level_downsample: slide.levels()[level].downsample,
        thumbnail,
        mask,
        thumbnail_corrupt,
        candidates,
        chosen,
    })
}

/// Reads one tile and resizes it to `out`×`out` pixels.
pub fn read_tile(
    slide: &mut Slide,
    plan: &TilePlan,
    spot: &TileSpot,
    out: (u32, u32),
) -> Result<RgbImage> {
    let ds = plan.level_downsample;
    let x = (spot.x as f64 / ds).round() as i64;
    let y = (spot.y as f64 / ds).round() as i64;
    let side = (plan.size0 / ds).round().max(1.0) as u32;
    let region = slide.read_region(plan.level, x, y, side, side)?;
    if region.dimensions() == out {
        Ok(region)
    } else {
        Ok(image::imageops::resize(
            &region,
            out.0,
            out.1,
            FilterType::Triangle,
        ))
    }
}

/// Encodes the chosen tiles of `plan` and clusters them. `progress` is called with the
/// number of tiles done after each one.
pub fn extract(
    slide: &mut Slide,
    plan: TilePlan,
    encoder: &mut TileEncoder,
    opts: &ExtractOptions,
    tissue_s: f64,
    progress: &dyn Fn(u64),
) -> Result<Extraction> {
    let path = slide.path().to_path_buf();
    if plan.chosen.is_empty() {
        return Err(Error::invalid(
            &path,
            format!(
                "no tile of {} px at {} µm/px is ≥ {:.0} % tissue (tissue covers {:.1} % of the \
                 thumbnail); check the slide, --mpp, --tile",
                opts.tile,
                opts.tile_mpp,
                opts.min_tissue * 100.0,
                plan.mask.coverage() * 100.0
            ),
        ));
    }
    let out = encoder
        .input_size()
        .map_or((opts.tile, opts.tile), |(h, w)| (w, h));
    let batch = encoder.fixed_batch().unwrap_or(opts.batch.max(1));
    let mut timings = Timings {
        tissue_s,
        ..Timings::default()
    };
    let (mut corrupt, mut low_contrast) = (0usize, 0usize);
    let mut tiles = Vec::new();
    let mut rows: Vec<Array2<f32>> = Vec::new();
    let mut pending: Vec<(TileSpot, RgbImage)> = Vec::new();
    let mut done = 0u64;
    let n = plan.chosen.len();
    for (i, spot) in plan.chosen.iter().enumerate() {
        let t0 = Instant::now();
        match read_tile(slide, &plan, spot, out) {
            Ok(img) if tiling::contrast(&img) < opts.min_contrast => low_contrast += 1,
            Ok(img) => pending.push((*spot, img)),
            Err(Error::Invalid { msg, .. }) => {
                tracing::warn!(
                    "{}: skipping tile at ({}, {}): {msg}",
                    path.display(),
                    spot.x,
                    spot.y
                );
                corrupt += 1;
            }
            Err(e) => return Err(e),
        }
        timings.read_s += t0.elapsed().as_secs_f64();
        if pending.len() >= batch || (i + 1 == n && !pending.is_empty()) {
            let t0 = Instant::now();
            let imgs: Vec<RgbImage> = pending.iter().map(|p| p.1.clone()).collect();
            rows.push(encoder.encode(&imgs)?);
            tiles.extend(pending.drain(..).map(|p| p.0));
            timings.encode_s += t0.elapsed().as_secs_f64();
        }
        done += 1;
        progress(done);
    }
    if tiles.is_empty() {
        return Err(Error::invalid(
            &path,
            format!(
                "all {n} chosen tiles were unusable ({corrupt} corrupt, {low_contrast} without contrast)"
            ),
        ));
    }
    let views: Vec<_> = rows.iter().map(|r| r.view()).collect();
    let features = ndarray::concatenate(ndarray::Axis(0), &views)
        .map_err(|e| Error::Runtime(format!("encoder gave rows of different widths: {e}")))?;
    let t0 = Instant::now();
    let km = if opts.clusters == 0 {
        None
    } else {
        Some(
            kmeans(
                features.view(),
                KMeansOptions::new(opts.clusters, opts.seed),
                &path,
            )
            .map_err(|e| match e {
                Error::Invalid { path, msg } => Error::Invalid {
                    path,
                    msg: format!("{msg}; lower --clusters or --tile, or raise --max-tiles"),
                },
                e => e,
            })?,
        )
    };
    timings.kmeans_s = t0.elapsed().as_secs_f64();
    Ok(Extraction {
        plan,
        tiles,
        features,
        kmeans: km,
        corrupt,
        low_contrast,
        timings,
    })
}

impl Extraction {
    /// The thumbnail with the mask and the encoded tiles drawn on it.
    pub fn review_image(&self, width: u32, height: u32) -> RgbImage {
        thumbnail::render(
            &self.plan.thumbnail,
            &self.plan.mask,
            &self.tiles,
            self.plan.size0,
            width,
            height,
        )
    }
}

/// Convenience for callers that hold only a path: opens the slide and plans its tiles.
pub fn open_and_plan(path: &Path, opts: &ExtractOptions) -> Result<(Slide, TilePlan, f64)> {
    let t0 = Instant::now();
    let mut slide = Slide::open(path)?;
    let p = plan(&mut slide, opts)?;
    Ok((slide, p, t0.elapsed().as_secs_f64()))
}
