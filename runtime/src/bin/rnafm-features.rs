//! `rnafm-features`: turns a whole-slide image (tiled pyramidal TIFF or Aperio SVS) into the
//! K×D cluster features `rnafm-run` takes, with any ONNX tile encoder.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use rnafm_runtime::features::{is_h5_path, write_features};
use rnafm_runtime::ort_env::{DeviceChoice, SessionFactory, SessionOptions};
use rnafm_runtime::slide::encoder::TileEncoder;
use rnafm_runtime::slide::extract::{extract, open_and_plan};
use rnafm_runtime::slide::options::{TileOptions, check_encoder_path};
use rnafm_runtime::slide::outputs::write_tiles_npz;
use rnafm_runtime::slide::thumbnail::write_png;

#[path = "shared/tile_args.rs"]
mod tile_args;
use tile_args::TileArgs;
const LONG_ABOUT: &str = "\
Turn a whole-slide image into RNA-FM's input: K x D cluster means of tile features.
Given a TRIDENT/CLAM .h5 of tile features instead, no encoder is needed: its tiles are
clustered (as rnafm-run and rnafm-train cluster them) into --out's K x D means, with
<stem>_tiles.npz beside it.

The slide (tiled pyramidal TIFF or Aperio SVS; JPEG, LZW, deflate or uncompressed tiles) is
read at --tile-mpp microns per pixel from the nearest pyramid level. Tissue is found with
Otsu's threshold on saturation at low resolution; tiles with more than 20 % background or
without contrast are dropped, and up to --max-tiles tiles are chosen at random (--seed).
Each tile goes through the ONNX encoder (N x 3 x H x W floats -> N x D) and the tile
features are grouped into --clusters clusters with seeded k-means.

Written (atomically): --out (K x D float32 .npy), beside it <stem>_tiles.npz (level-0 tile
corners `coords`, `features`, `cluster`) and <stem>_thumbnail.png (tissue tinted green, tiles
outlined red). With --out X.h5 the tiles themselves are written in TRIDENT's HDF5 layout
(`features` N x D float32, `coords` N x 2 int64 level-0 corners with patch_size,
patch_size_level0, level0_magnification, target_magnification, patch_level and mpp as
attributes), which TRIDENT/CLAM tooling opens and rnafm-run and rnafm-train cluster
exactly as the .npy means here (same k-means, same seed); no _tiles.npz then.
A tile that cannot be decoded is skipped and counted; a file that cannot be read is an
error.";

/// Tiles are encoded at this resolution and size unless --tile-mpp / --tile say otherwise.
const DEFAULT_TILE_MPP: f64 = 0.5;
const DEFAULT_TILE: u32 = 256;

#[derive(Parser, Debug)]
#[command(name = "rnafm-features", allow_negative_numbers = true, version, about = "Whole-slide image -> K x D cluster features for rnafm-run.", long_about = LONG_ABOUT)]
struct Cli {
    /// The slide (.svs, .tif, .tiff), or a TRIDENT/CLAM .h5 of its tile features.
    slide: PathBuf,
    /// ONNX tile encoder: input N x 3 x H x W float, output N x D (needed for slides, not
    /// for .h5 tile files).
    #[arg(long)]
    encoder: Option<PathBuf>,
    #[command(flatten)]
    tiles: TileArgs,
    /// Number of k-means clusters K (the model's cluster count); not used with --out X.h5,
    /// which keeps the tiles.
    #[arg(long, default_value_t = 100)]
    clusters: usize,
    /// Seed of the tile choice and of k-means.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output: .npy of the K x D cluster means, or .h5 of the tiles (TRIDENT layout).
    #[arg(long, default_value = "slide_features.npy")]
    out: PathBuf,
    /// Tiles per encoder call (1 to 4096).
    #[arg(long, default_value_t = 32, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=4096))]
    batch: usize,
    /// auto (CUDA when it works, else CPU), cuda or cpu.
    #[arg(long, default_value = "auto")]
    device: DeviceChoice,
    /// ONNX Runtime threads (0 = one per core; at most 256).
    #[arg(long, default_value_t = 0, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=rnafm_runtime::limits::MAX_THREADS as u64))]
    threads: usize,
    /// Also write timings and counts as JSON here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// More log output (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn sibling(out: &Path, suffix: &str) -> PathBuf {
    let stem = out
        .file_stem()
        .map_or("slide".into(), |s| s.to_string_lossy().into_owned());
    let stem = stem.strip_suffix("_features").unwrap_or(&stem).to_string();
    out.with_file_name(format!("{stem}{suffix}"))
}

#[cfg(feature = "hdf5")]
fn write_h5(
    out: &Path,
    ex: &rnafm_runtime::slide::extract::Extraction,
    tile: u32,
    tile_mpp: f64,
) -> anyhow::Result<()> {
    Ok(rnafm_runtime::slide::outputs::write_tiles_h5(
        out, ex, tile, tile_mpp,
    )?)
}

#[cfg(not(feature = "hdf5"))]
fn write_h5(
    out: &Path,
    _ex: &rnafm_runtime::slide::extract::Extraction,
    _tile: u32,
    _tile_mpp: f64,
) -> anyhow::Result<()> {
    anyhow::bail!(
        "{}: this build of rnafm writes no HDF5 (built without the `hdf5` feature)",
        out.display()
    )
}

/// A TRIDENT/CLAM tile file → K×D cluster means (.npy) and `_tiles.npz`, as `rnafm-run`
/// clusters it (same k-means, same seed rule).
#[cfg(feature = "hdf5")]
fn tile_file_to_means(cli: &Cli) -> anyhow::Result<()> {
    use ndarray::{Array0, Array1};
    if is_h5_path(&cli.out) {
        anyhow::bail!(
            "{}: the input holds tiles already; --out takes the .npy of its cluster means",
            cli.out.display()
        );
    }
    let t = rnafm_runtime::features::read_h5_tiles(&cli.slide)?;
    let n = t.features.nrows();
    let cm = rnafm_runtime::cluster_means::cluster_means(
        t.features.clone(),
        cli.clusters,
        cli.seed,
        &cli.slide,
    )?;
    write_features(&cli.out, &cm.means)?;
    let tiles_path = sibling(&cli.out, "_tiles.npz");
    if let (Some(coords), Some(labels)) = (&t.coords, &cm.labels) {
        let cluster: Array1<i64> = labels.iter().map(|&c| c as i64).collect();
        rnafm_runtime::atomic::write_atomic(&tiles_path, |w| {
            let mut z = ndarray_npy::NpzWriter::new_compressed(w);
            let e = std::io::Error::other;
            z.add_array("coords", coords).map_err(e)?;
            z.add_array("features", &t.features).map_err(e)?;
            z.add_array("cluster", &cluster).map_err(e)?;
            if let Some(s) = t.geometry.patch_size_level0 {
                z.add_array("tile_size_level0", &Array0::from_elem((), s))
                    .map_err(e)?;
            }
            z.finish().map_err(e)?;
            Ok(())
        })?;
    }
    let (k, d) = cm.means.dim();
    eprintln!(
        "{}: {n} tiles -> {} ({k}x{d}){}",
        cli.slide.display(),
        cli.out.display(),
        if t.coords.is_some() {
            format!(", {}", tiles_path.display())
        } else {
            String::new()
        }
    );
    Ok(())
}

#[cfg(not(feature = "hdf5"))]
fn tile_file_to_means(cli: &Cli) -> anyhow::Result<()> {
    anyhow::bail!(
        "{}: this build of rnafm reads no HDF5 (built without the `hdf5` feature)",
        cli.slide.display()
    )
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let started = Instant::now();
    if is_h5_path(&cli.slide) {
        return tile_file_to_means(&cli);
    }
    let encoder_path = cli.encoder.clone().ok_or_else(|| {
        anyhow::anyhow!(
            "{}: a whole-slide image needs --encoder ENCODER.onnx",
            cli.slide.display()
        )
    })?;
    check_encoder_path(&encoder_path)?;
    let tiles = TileOptions::from(cli.tiles.clone());
    let norm = tiles.normalization().map_err(anyhow::Error::msg)?;
    // An .h5 keeps the tiles; whoever reads it clusters them with its own K.
    let clusters = if is_h5_path(&cli.out) {
        0
    } else {
        cli.clusters
    };
    let opts = tiles.extract_options(
        DEFAULT_TILE_MPP,
        DEFAULT_TILE,
        clusters,
        cli.seed,
        cli.batch,
    );
    let (mut slide, plan, tissue_s) = open_and_plan(&cli.slide, &opts)?;
    let (w, h) = slide.dimensions();
    tracing::info!(
        "{}: {w}x{h} px, {} levels, {:.4} µm/px ({}), tile = {:.1} level-0 px read from level {}; \
         tissue {:.1} %, {} tissue tiles, {} chosen",
        cli.slide.display(),
        slide.levels().len(),
        plan.mpp,
        plan.mpp_from,
        plan.size0,
        plan.level,
        plan.mask.coverage() * 100.0,
        plan.candidates,
        plan.chosen.len()
    );
    let mut factory = SessionFactory::new(SessionOptions {
        device: cli.device,
        threads: cli.threads,
    })?;
    let mut encoder = TileEncoder::load(&encoder_path, &mut factory, norm)?;
    tracing::info!("encoder on {}", encoder.device());

    let bar = ProgressBar::new(plan.chosen.len() as u64);
    bar.set_draw_target(ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} tiles {per_sec} eta {eta}")
            .context("progress template")?,
    );
    let ex = extract(&mut slide, plan, &mut encoder, &opts, tissue_s, &|n| {
        bar.set_position(n)
    })?;
    bar.finish_and_clear();

    let thumb_path = sibling(&cli.out, "_thumbnail.png");
    let d = ex.features.ncols();
    let written = match &ex.kmeans {
        None => {
            write_h5(&cli.out, &ex, opts.tile, opts.tile_mpp)?;
            format!("{} ({}x{d} tiles)", cli.out.display(), ex.tiles.len())
        }
        Some(km) => {
            let k = km.centers.nrows();
            let tiles_path = sibling(&cli.out, "_tiles.npz");
            write_features(&cli.out, &km.centers)?;
            write_tiles_npz(&tiles_path, &ex)?;
            format!("{} ({k}x{d}), {}", cli.out.display(), tiles_path.display())
        }
    };
    write_png(&thumb_path, &ex.review_image(w, h))?;
    eprintln!(
        "{}: {} tiles encoded ({} corrupt skipped, {} low-contrast dropped) -> {written}, {}",
        cli.slide.display(),
        ex.tiles.len(),
        ex.corrupt,
        ex.low_contrast,
        thumb_path.display()
    );
    if let Some(report) = &cli.report {
        let t = ex.timings;
        let json = serde_json::json!({
            "slide": cli.slide,
            "width": w, "height": h,
            "mpp": ex.plan.mpp, "mpp_from": ex.plan.mpp_from,
            "tile": opts.tile, "tile_mpp": opts.tile_mpp, "tile_size_level0": ex.plan.size0,
            "read_level": ex.plan.level,
            "tissue_fraction": ex.plan.mask.coverage(),
            "tissue_tiles": ex.plan.candidates,
            "chosen_tiles": ex.plan.chosen.len(),
            "encoded_tiles": ex.tiles.len(),
            "corrupt_tiles": ex.corrupt,
            "low_contrast_tiles": ex.low_contrast,
            "clusters": ex.kmeans.as_ref().map(|k| k.centers.nrows()), "feature_dim": d,
            "device": encoder.device().as_str(),
            "threads": factory.threads(),
            "seconds": {"tissue": t.tissue_s, "read": t.read_s, "encode": t.encode_s,
                        "kmeans": t.kmeans_s, "total": started.elapsed().as_secs_f64()},
        });
        let text = serde_json::to_string_pretty(&json)?;
        rnafm_runtime::atomic::write_bytes_atomic(report, text.as_bytes())?;
    }
    Ok(())
}

fn main() -> ExitCode {
    rnafm_runtime::sigpipe::default_on_broken_pipe();
    let cli = Cli::parse();
    rnafm_runtime::logging::init(cli.verbose);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The runtime's errors already name the file and the cause on one line.
            eprintln!("rnafm-features: {e}");
            ExitCode::FAILURE
        }
    }
}
