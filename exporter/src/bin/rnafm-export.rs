//! rnafm-export: turns a trained RNA-FM checkpoint (or official PyTorch weights) into a
//! self-checking `.rnafm` bundle of ONNX graphs for `rnafm-run`.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use rnafm_exporter::bundle_export::{ExportInfo, bundle_ensemble};
use rnafm_exporter::graphs;
use rnafm_official::{WeightSet, read_official_weights, spec_from_official};
use rnafm_runtime::anchor::{ANCHOR_FILE, Anchor};
use rnafm_runtime::checkpoint::{
    CALIBRATION_FILE, CheckpointDir, EMA_FILE, METRICS_FILE, RAW_FILE,
};
use rnafm_runtime::manifest::EnsembleModel;
use rnafm_runtime::model_spec::ModelSpec;
use rnafm_runtime::training_metrics::TrainingMetrics;
use rnafm_runtime::weights::WeightMap;

/// Export an RNA-FM model as a `.rnafm` bundle (five ONNX graphs, the null condition's
/// embedding, a manifest with genes/pathways/normalisation and a self-test).
///
/// From a trainer checkpoint:   rnafm-export --onnx runs/fold0 -o model.rnafm
/// A fold ensemble:             rnafm-export --onnx run/fold_0/best run/fold_1/best
///                              -o model.rnafm
/// From official weights:       rnafm-export --weights model.pt --pathways p.json
///                              --genes genes.txt --heads 8 -o model.rnafm
/// (--weights takes a safetensors state_dict or a PyTorch .pt/.pth: a state_dict, or a
/// training checkpoint holding `ema`/`model`, EMA preferred unless --raw.)
#[derive(Parser)]
#[command(version, about, long_about, allow_negative_numbers = true)]
struct Args {
    /// Trainer checkpoint folder: model.json, ema.safetensors (or model.safetensors with
    /// --raw), optional metrics.json. An official .pt/.safetensors file here is the same
    /// as --weights. Give several (`--onnx run/fold_0/best run/fold_1/best`) for a fold
    /// ensemble in one bundle: rnafm-run splits each slide's draws across the models. They
    /// must share genes, pathways and sizes; metrics and calibration come from the first.
    #[arg(long, value_name = "CHECKPOINT_DIR", num_args = 1.., conflicts_with = "weights")]
    onnx: Vec<PathBuf>,
    /// Training metrics (rnafm-train's metrics.json) to store in the bundle; its pooled
    /// out-of-fold per-gene r becomes the reliability column of rnafm-run's output.
    /// Default: metrics.json in the checkpoint folder or two folders up (the training run).
    #[arg(long, requires = "onnx")]
    metrics: Option<PathBuf>,
    /// Interval calibration (rnafm-eval calibrate's calibration.json) to store in the
    /// bundle. Default: calibration.json in the checkpoint's fold folder (one level up).
    #[arg(long, requires = "onnx")]
    calibration: Option<PathBuf>,
    /// Store no interval calibration even when the fold folder has one.
    #[arg(long, conflicts_with = "calibration")]
    no_calibration: bool,
    /// Folder of the training slides' feature files: their per-dimension mean/sd goes in
    /// the bundle so rnafm-run can warn when a slide lies far outside them.
    #[arg(long, value_name = "DIR")]
    training_features: Option<PathBuf>,
    /// Use the raw (non-EMA) weights: the checkpoint's model.safetensors, or `model` of an
    /// official training checkpoint (.pt).
    #[arg(long)]
    raw: bool,
    /// Official RNA-FM weights: safetensors or PyTorch .pt/.pth (state_dict, or a training
    /// checkpoint with `ema`/`model`), official tensor names; sizes are inferred.
    #[arg(long, requires = "pathways")]
    weights: Option<PathBuf>,
    /// Pathway index (.json with UNMAPPED/UNCLASSIFIED background, or .gmt) for --weights.
    #[arg(long)]
    pathways: Option<PathBuf>,
    /// Gene list in output order (one symbol a line, or gene_list.csv) for --weights;
    /// without it genes are counted from the pathway file and named by index.
    #[arg(long)]
    genes: Option<PathBuf>,
    /// Attention heads of the DiT blocks and slide transformer (not inferable from weights).
    #[arg(long, default_value_t = 8)]
    heads: usize,
    /// Output bundle.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// Tile encoder the slide features come from (recorded in the manifest).
    #[arg(long, default_value = "UNI")]
    encoder: String,
    /// Microns per pixel of the tiles (recorded in the manifest).
    #[arg(long, default_value_t = 0.5)]
    mpp: f32,
    /// Tile size in pixels (recorded in the manifest).
    #[arg(long, default_value_t = 224)]
    tile_size: usize,
    /// Skip the self-test (it needs ONNX Runtime at export time).
    #[arg(long)]
    no_self_test: bool,
    /// Also store an int8 (dynamically quantised) variant of the backbone graph, for
    /// `rnafm-run --precision int8` (faster on CPUs with VNNI, slightly less accurate;
    /// adds under 1% to a paper-size bundle).
    #[arg(long)]
    int8: bool,
    /// More log output (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn main() -> std::process::ExitCode {
    rnafm_runtime::sigpipe::default_on_broken_pipe();
    let args = Args::parse();
    rnafm_runtime::logging::init(args.verbose);
    match run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line naming the file, whatever RUST_BACKTRACE says.
            eprintln!("rnafm-export: {}", format!("{e:#}").replace('\n', " "));
            std::process::ExitCode::from(1)
        }
    }
}

/// The mean anchors of checkpoint folders trained with `--anchor` (`anchor.safetensors`
/// beside the weights): one per model, or none; official weights have none.
fn read_anchors(spec: &ModelSpec, dirs: &[PathBuf], official: bool) -> Result<Vec<Anchor>> {
    if official {
        return Ok(Vec::new());
    }
    let paths: Vec<PathBuf> = dirs.iter().map(|d| d.join(ANCHOR_FILE)).collect();
    let with = paths.iter().filter(|p| p.is_file()).count();
    if with != 0 && with != paths.len() {
        let missing = paths.iter().find(|p| !p.is_file()).expect("one is missing");
        bail!(
            "{}: missing, but other checkpoints of the ensemble have a mean anchor; a fold ensemble's models must be trained alike",
            missing.display()
        );
    }
    let (d, g) = (spec.config.feat_dim, spec.config.genes);
    paths
        .iter()
        .filter(|p| p.is_file())
        .map(|p| Ok(Anchor::read(p, d, g)?))
        .collect()
}

fn run(args: &Args) -> Result<()> {
    let mut calibration = None;
    let official = match (&args.weights, args.onnx.as_slice()) {
        (Some(w), _) => Some(w.clone()),
        (None, [f]) if f.is_file() => Some(f.clone()),
        (None, many) => {
            if let Some(f) = many.iter().find(|f| f.is_file()) {
                bail!(
                    "{}: a fold ensemble takes trainer checkpoint folders, not official weight files",
                    f.display()
                );
            }
            None
        }
    };
    // Models 2.. of a fold ensemble: (checkpoint, weights) with the first model's spec.
    let mut more = Vec::new();
    let (spec, weights, wpath, metrics) = if let Some(wp) = &official {
        let Some(pp) = &args.pathways else {
            bail!("{}: official weights need --pathways", wp.display());
        };
        let set = if args.raw {
            WeightSet::Raw
        } else {
            WeightSet::Ema
        };
        let w = read_official_weights(wp, set)?;
        let spec = spec_from_official(&w, wp, pp, args.genes.as_deref(), args.heads)?;
        (spec, w, wp.clone(), None)
    } else if let Some((dir, rest)) = args.onnx.split_first() {
        let weight_file = if args.raw { RAW_FILE } else { EMA_FILE };
        let ck = CheckpointDir::new(dir);
        let spec = ck.read_spec()?;
        let wpath = ck.path(weight_file);
        let w = WeightMap::read_safetensors(&wpath)?;
        for other in rest {
            let ck = CheckpointDir::new(other);
            let mut own = ck.read_spec()?;
            // Each fold z-scores with its own training patients; the rest must be equal.
            let normalization = own.normalization.take();
            if own
                != (ModelSpec {
                    normalization: None,
                    ..spec.clone()
                })
                || normalization.is_some() != spec.normalization.is_some()
            {
                bail!(
                    "{}: its model (genes, pathways or sizes) differs from {}'s; a fold ensemble's models must be the same model trained on other folds",
                    other.display(),
                    dir.display()
                );
            }
            let p = ck.path(weight_file);
            more.push((WeightMap::read_safetensors(&p)?, p, normalization));
        }
        // A fold's best checkpoint sits at <run>/fold_k/best; the run's metrics.json
        // (with the pooled out-of-fold per-gene r) is two levels up.
        let mpath = match &args.metrics {
            Some(p) => Some(p.clone()),
            None => [dir.join(METRICS_FILE), dir.join("../..").join(METRICS_FILE)]
                .into_iter()
                .find(|p| p.is_file()),
        };
        let metrics = match mpath {
            Some(p) => Some(TrainingMetrics::read(&p)?),
            None => None,
        };
        let cpath = match &args.calibration {
            Some(p) => Some(p.clone()),
            None if args.no_calibration => None,
            None => Some(dir.join("..").join(CALIBRATION_FILE)).filter(|p| p.is_file()),
        };
        calibration = match cpath {
            Some(p) => {
                let cals = rnafm_runtime::calibration::read_file(&p)?;
                rnafm_runtime::anchor_refit::check_calibration(dir, &cals, &p)?;
                Some(cals)
            }
            None => None,
        };
        (spec, w, wpath, metrics)
    } else {
        bail!(
            "give a checkpoint folder (--onnx DIR) or official weights (--weights, --pathways, and usually --genes)"
        );
    };
    tracing::info!(
        "model: hidden {}, depth {}, {} pathways, {} genes",
        spec.config.hidden,
        spec.config.depth,
        spec.pathways.len(),
        spec.config.genes
    );
    let start = std::time::Instant::now();
    let bar = ProgressBar::new(5 * (1 + more.len() as u64));
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}").expect("template"));
    let mut models = Vec::with_capacity(1 + more.len());
    for (w, p) in std::iter::once((&weights, &wpath)).chain(more.iter().map(|(w, p, _)| (w, p))) {
        let mut g = graphs::build(&spec, w, p, |name| {
            bar.set_message(name.to_string());
            bar.inc(1);
        })?;
        if args.int8 {
            bar.set_message("int8 graphs");
            g.add_int8(&spec, w, p)?;
        }
        models.push(g);
    }
    bar.finish_and_clear();
    let anchors = read_anchors(&spec, args.onnx.as_slice(), official.is_some())?;
    let info = ExportInfo {
        encoder: args.encoder.clone(),
        microns_per_pixel: args.mpp,
        tile_size: args.tile_size,
        metrics,
        feature_stats: match &args.training_features {
            Some(d) => Some(rnafm_exporter::bundle_export::feature_stats_of_dir(d)?),
            None => None,
        },
        calibration,
        self_test: !args.no_self_test,
        anchors,
    };
    let others = more
        .into_iter()
        .map(|(_, _, normalization)| EnsembleModel { normalization })
        .collect();
    let w = bundle_ensemble(&spec, &models, others, &info, &wpath)?;
    w.write(&args.output)?;
    let size = std::fs::metadata(&args.output)
        .map(|m| m.len())
        .unwrap_or(0);
    eprintln!(
        "wrote {} ({:.1} MB, {}{} float32 weights) in {:.1}s",
        args.output.display(),
        size as f64 / 1e6,
        if models.len() > 1 {
            format!("{} models × ", models.len())
        } else {
            String::new()
        },
        weights.total_params(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
