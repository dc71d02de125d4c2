//! `rnafm-run`: predicts bulk RNA-seq for whole-slide images from their tile features with an
//! exported `.rnafm` model, on ONNX Runtime (CPU or CUDA).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rnafm_runtime::limits::{MAX_SAMPLES, MAX_THREADS};
use rnafm_runtime::ort_env::{Device, DeviceChoice, SessionFactory, SessionOptions};
use rnafm_runtime::run::maps::{MapMethod, MapSettings};
use rnafm_runtime::run::model::{Precision, RunModel};
use rnafm_runtime::run::outputs::{RunReport, SlideRecord};
use rnafm_runtime::run::pipeline::{Progress, RunSettings, SlidePipeline, collect_slides};
use rnafm_runtime::sampler::SampleParams;
use rnafm_runtime::slide::encoder::TileEncoder;
use rnafm_runtime::slide::options::{TileOptions, check_encoder_path, is_slide_image};

#[path = "shared/tile_args.rs"]
mod tile_args;
use tile_args::TileArgs;
const ABOUT: &str = "Predict bulk RNA-seq (log2(FPKM-UQ+1) of ~20k genes) for whole-slide images.";

const LONG_ABOUT: &str = "\
Predict bulk RNA-seq (log2(FPKM-UQ+1) of ~20k genes) for whole-slide images.

Each input is one slide's tile features from the pathology encoder the model was trained with
(a .npy or .npz float matrix, or a TRIDENT/CLAM .h5 file with datasets `features` and
`coords`): either K x D cluster means (K and D as the model says, see `rnafm-run inspect
MODEL`) or N x D tile features, which are first grouped into K clusters with seeded k-means++
(seed --seed; rnafm-train clusters tile files the same way with the default seed). A folder
stands for every .npy/.npz/.h5 file in it.

A whole-slide image (.svs, .tif, .tiff) is also accepted with --encoder ENCODER.onnx: it is
tiled and encoded as rnafm-features does (tile size and microns per pixel from the model's
manifest unless --tile / --tile-mpp say otherwise, K clusters as the model needs), then run.

The model is generative: it draws --samples plausible expression profiles per slide. For each
slide the output folder gets
  <slide>.genes.tsv     per gene: mean, sd, median, 5/25/75/95% quantiles over the samples
                        (log2(FPKM-UQ+1), or FPKM-UQ with --fpkm), and cv_r, the model's
                        cross-validated correlation for that gene when the model has one
                        (low cv_r = the gene is not predictable from histology; don't trust it)
  <slide>.pathways.tsv  per pathway: score = mean z-score of its genes, mean/sd/5-95% interval
  <slide>.samples.npy   with --save-samples: every sample [samples x genes], same unit
and run.json records the model's sha256, seed, device and timings. Same model + seed + inputs
give the same numbers on CPU whatever --batch and --threads are.

MAPS (--maps, for inputs with tile coordinates: TRIDENT/CLAM .h5, whole-slide images): which
regions drive a prediction. With --map-method include (default) every cluster row is set to
the slide's average cluster and then one cluster at a time gets its own row back; its effect
on a target is prediction with it minus prediction of the average slide. With occlude, each
cluster is replaced by the mean of the others; its effect is prediction minus prediction
without it. Every version is sampled with the same --map-draws noise draws (effect = mean
over draws, with its sd), and every tile of a cluster carries the cluster's effect.
Positive = the region raises the prediction. Targets: the --map-top pathways with the largest predicted |score| (effect in
z units) and --map-genes (log2 units). Written beside the tables:
  <slide>.map.clusters.tsv  target, kind, unit, cluster, tiles, effect, sd, se
  <slide>.map.tiles.tsv     one row per tile: x, y, size (level-0 px), cluster, effects
  <slide>.map.geojson       one square per tile with the effects as QuPath measurements
                            (QuPath: File > Import objects)
  <slide>.map.<target>.png  the effect painted on the slide thumbnail (whole slides) or the
                            tile grid: red raises, blue lowers, full colour = largest |effect|

A slide that cannot be read (wrong feature dimension, NaN/Inf, fewer tiles than clusters,
more than 500,000 tiles or 268,435,456 values, a file shorter or longer than its header says)
or whose draws come out non-finite is reported on one line and writes nothing; the exit code
is then 1. Usage errors exit with 2.";

#[derive(Parser, Debug)]
#[command(
    allow_negative_numbers = true,
    name = "rnafm-run",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Describe a model bundle in words (genes, pathways, slide features it expects, training).
    Inspect {
        model: PathBuf,
        /// Print the manifest as JSON instead.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Slide feature files (.npy/.npz/.h5) or folders of them; whole-slide images
    /// (.svs/.tif/.tiff) with --encoder.
    #[arg(value_name = "SLIDE")]
    slides: Vec<PathBuf>,
    /// ONNX tile encoder (N x 3 x H x W pixels -> N x D) for whole-slide image inputs; it must
    /// be the encoder the model was trained with.
    #[arg(long, value_name = "ENCODER.onnx")]
    encoder: Option<PathBuf>,
    #[command(flatten)]
    tiles: TileArgs,
    /// Tiles per encoder call (whole-slide image inputs).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    tile_batch: u32,
    /// The exported model: a .rnafm bundle (or an unpacked model folder).
    #[arg(short, long, value_name = "MODEL.rnafm", required = true)]
    model: Option<PathBuf>,
    /// Expression profiles drawn per slide (more = tighter intervals, proportionally slower;
    /// 1 to 10,000).
    #[arg(short = 'n', long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=MAX_SAMPLES as i64))]
    samples: u32,
    /// Time points of the flow integration (steps = T − 1); default: the model's (20).
    #[arg(long, value_parser = clap::value_parser!(u32).range(2..))]
    steps: Option<u32>,
    /// Guidance scale (1 = no guidance; higher follows the slide more); default: the model's (2.0).
    #[arg(long, value_parser = parse_cfg)]
    cfg: Option<f32>,
    /// Random seed: the same seed gives the same samples.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where the model runs.
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    device: DeviceChoice,
    /// Arithmetic of the per-step graphs: fp32, or int8 (the backbone's linear layers
    /// dynamically quantised: faster on CPUs with VNNI, slightly less accurate; needs
    /// rnafm-export --int8). run.json's cpu_features says whether this CPU has VNNI.
    #[arg(long, default_value = "fp32", value_parser = parse_precision)]
    precision: Precision,
    /// CPU threads for ONNX Runtime (default: all cores; at most 256).
    #[arg(long, default_value_t = 0, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=MAX_THREADS as u64))]
    threads: usize,
    /// Samples integrated at once (bounds memory; does not change results; 1 to 10,000).
    /// At the paper size, 100 draws peaked at 1.7 GB with 10 and 2.0 GB with 16, and 16
    /// sampled no faster on 2 CPU threads (scripts/bench-run); a GPU may want more. When
    /// --samples is smaller, the draws of several slides share a batch.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=MAX_SAMPLES as i64))]
    batch: u32,
    /// Output folder (created if needed).
    #[arg(short, long, default_value = "rnafm-out")]
    out: PathBuf,
    /// Report FPKM-UQ instead of log2(FPKM-UQ+1).
    #[arg(long)]
    fpkm: bool,
    /// Also write every sample as <slide>.samples.npy.
    #[arg(long)]
    save_samples: bool,
    /// Redo slides whose outputs already exist (default: skip them).
    #[arg(long)]
    overwrite: bool,
    /// Process only part i of n of the slides (0-based i, e.g. 0/4 … 3/4), for job arrays.
    #[arg(long, value_name = "i/n", value_parser = parse_shard)]
    shard: Option<(usize, usize)>,
    /// Summary on stdout as text or JSON (the run.json content).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Run the model's built-in self-test (a fixed input with a known output) and exit.
    #[arg(long)]
    self_test: bool,
    /// More log output (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// No progress bar.
    #[arg(short, long)]
    quiet: bool,
    /// Spatial maps for slides whose tiles have coordinates (TRIDENT/CLAM .h5, whole-slide
    /// images): each cluster's effect on the top pathways and --map-genes, found by
    /// occluding the cluster (see MAPS below). Costs (K+1) x --map-draws short draws per slide.
    #[arg(long)]
    maps: bool,
    /// Draws per occluded slide for --maps (1 to 1,000).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
    map_draws: u32,
    /// Time points of the --maps sampler (2 = one step from the noise to the network's
    /// conditional mean).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(2..=1000))]
    map_steps: u32,
    /// --maps maps the pathways with the largest predicted |score|, this many (0 to 1,000).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=1000))]
    map_top: u32,
    /// How --maps finds a cluster's effect: include (the cluster alone on the slide's
    /// average; finds regions split over several clusters) or occlude (the slide without
    /// the cluster).
    #[arg(long, default_value = "include")]
    map_method: MapMethod,
    /// Genes --maps maps besides (comma-separated symbols of the model's gene list).
    #[arg(long, value_delimiter = ',', value_name = "GENE,...")]
    map_genes: Vec<String>,
    /// Report the raw spread of the draws: do not apply the model's interval calibration
    /// (by default the draws are stretched around each gene's median so that intervals
    /// cover at their nominal rate on validation slides; see README).
    #[arg(long)]
    no_calibration: bool,
}

fn parse_device(s: &str) -> Result<DeviceChoice, String> {
    s.parse()
}

/// A finite guidance scale.
fn parse_cfg(s: &str) -> Result<f32, String> {
    let v: f32 = s
        .parse()
        .map_err(|e| format!("`{s}` is not a number: {e}"))?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(format!("{v} is not a finite guidance scale"))
    }
}

fn parse_precision(s: &str) -> Result<Precision, String> {
    s.parse()
}

fn parse_shard(s: &str) -> Result<(usize, usize), String> {
    let bad = || format!("`{s}` is not i/n with 0 <= i < n (e.g. 0/4)");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let i: usize = i.trim().parse().map_err(|_| bad())?;
    let n: usize = n.trim().parse().map_err(|_| bad())?;
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

/// A usage error (exit 2) as opposed to a failure (exit 1).
#[derive(Debug)]
struct Usage(String);
impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Usage {}

fn main() -> ExitCode {
    rnafm_runtime::sigpipe::default_on_broken_pipe();
    let cli = Cli::parse();
    rnafm_runtime::logging::init(cli.run.verbose);
    let result = match &cli.command {
        Some(Command::Inspect { model, format }) => inspect(model, *format),
        None => run(&cli.run),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rnafm-run: {}", one_line(&e));
            if e.downcast_ref::<Usage>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in e.chain() {
        let s = c.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ").replace('\n', " ")
}

fn model_path(args: &RunArgs) -> anyhow::Result<&Path> {
    args.model
        .as_deref()
        .ok_or_else(|| Usage("--model MODEL.rnafm is required".into()).into())
}

fn session_options(args: &RunArgs) -> SessionOptions {
    SessionOptions {
        device: args.device,
        threads: args.threads,
    }
}

fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let model_path = model_path(args)?;
    if args.self_test {
        return self_test(model_path, args);
    }
    let slides = collect_slides(&args.slides, args.encoder.is_some(), args.shard)
        .map_err(usage_or_failure)?;
    let tiles = TileOptions::from(args.tiles.clone());
    let norm = tiles.normalization().map_err(Usage)?;
    if let Some(e) = &args.encoder {
        check_encoder_path(e)?;
    }
    let t0 = Instant::now();
    let model = RunModel::open_with(model_path, session_options(args), args.precision)?;
    // Loaded only when a whole-slide image is among the inputs.
    let encoder = match &args.encoder {
        Some(e) if slides.iter().any(|p| is_slide_image(p)) => {
            let mut factory = SessionFactory::new(session_options(args))?;
            Some(TileEncoder::load(e, &mut factory, norm)?)
        }
        _ => None,
    };
    let load_seconds = t0.elapsed().as_secs_f64();
    let models = model.graphs.len();
    eprintln!(
        "rnafm-run: {} on {} ({} threads, {}{}), {} slide(s)",
        model_path.display(),
        model.device,
        model.threads,
        model.precision,
        if models > 1 {
            format!(", fold ensemble of {models}")
        } else {
            String::new()
        },
        slides.len()
    );
    if model.precision == Precision::Int8
        && model.device == Device::Cpu
        && !rnafm_runtime::cpu::has_vnni()
    {
        tracing::warn!(
            "--precision int8: this CPU has no VNNI instructions, so int8 products gain little over fp32 here"
        );
    }
    if (args.samples as usize) < models {
        tracing::warn!(
            "--samples {} is fewer than the bundle's {models} models: only the first {} contribute",
            args.samples,
            args.samples
        );
    }
    let params = SampleParams {
        samples: args.samples as usize,
        steps: args.steps.map_or(model.default_steps, |s| s as usize),
        cfg: args.cfg.unwrap_or(model.default_cfg),
        seed: args.seed,
        batch: args.batch as usize,
    };
    let maps = args.maps.then(|| MapSettings {
        draws: args.map_draws as usize,
        steps: args.map_steps as usize,
        top_pathways: args.map_top as usize,
        genes: args.map_genes.clone(),
        method: args.map_method,
    });
    if let Some(m) = &maps {
        m.check(&model).map_err(|e| Usage(e.to_string()))?;
    } else if !args.map_genes.is_empty() {
        return Err(Usage("--map-genes needs --maps".into()).into());
    }
    let settings = RunSettings {
        fpkm: args.fpkm,
        save_samples: args.save_samples,
        overwrite: args.overwrite,
        no_calibration: args.no_calibration,
        tiles,
        tile_batch: args.tile_batch as usize,
        encoder_path: args.encoder.clone(),
        maps: maps.clone(),
    };
    let mut pipeline = SlidePipeline::new(model, encoder, params, settings);
    let model = &pipeline.model;
    let mut report = RunReport {
        rnafm_version: env!("CARGO_PKG_VERSION").into(),
        onnxruntime_library: rnafm_runtime::ort_env::library_path()
            .map(|p| p.display().to_string()),
        model: std::fs::canonicalize(model_path).unwrap_or_else(|_| model_path.to_path_buf()),
        model_id: model.sha256.clone(),
        device: model.device.to_string(),
        threads: model.threads,
        precision: model.precision.to_string(),
        cpu_features: rnafm_runtime::cpu::int8_features()
            .into_iter()
            .map(String::from)
            .collect(),
        models: model.graphs.len(),
        samples: pipeline.params.samples,
        steps: pipeline.params.steps,
        cfg: pipeline.params.cfg,
        seed: pipeline.params.seed,
        batch: pipeline.params.batch,
        unit: pipeline.unit().into(),
        calibration: pipeline.calibration.clone(),
        load_seconds,
        load: Some(model.load.clone()),
        total_seconds: 0.0,
        maps,
        slides: Vec::new(),
    };
    // Finished slides are skipped; that is only right if they were made the same way, or
    // run.json (rewritten below) would describe files it did not make.
    let run_json = args.out.join("run.json");
    if !args.overwrite && run_json.is_file() {
        let before = RunReport::read(&run_json)?;
        if before.output_settings() != report.output_settings() {
            return Err(Usage(format!(
                "{}: the outputs there were made with {}; this run would make {} (pass --overwrite to redo them, or use another --out)",
                run_json.display(),
                before.output_settings(),
                report.output_settings()
            ))
            .into());
        }
    }
    // An unusable --out is one error before any slide runs, not one per slide and again for
    // run.json.
    std::fs::create_dir_all(&args.out).map_err(|e| rnafm_runtime::Error::io(&args.out, e))?;
    rnafm_runtime::atomic::remove_stale_temp_files(&args.out);

    let bar = ProgressBar::new((pipeline.steps_per_slide() * slides.len()) as u64);
    if args.quiet || args.format == Format::Json {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{msg:20!} [{bar:30}] {percent:>3}% {elapsed} / ~{duration}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    report.slides = pipeline.run_all(&slides, &args.out, &Bar(&bar));
    bar.finish_and_clear();
    let failed = report.slides.iter().filter(|r| r.error.is_some()).count();
    report.total_seconds = t0.elapsed().as_secs_f64();
    report.write(&args.out.join("run.json"))?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Text => {
            for r in &report.slides {
                let secs = r.seconds.map_or(String::new(), |s| format!("{s:.2}s"));
                println!("{}\t{}\t{}", r.slide, r.status, secs);
            }
        }
    }
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The progress bar as the pipeline's progress display.
struct Bar<'a>(&'a ProgressBar);

impl Progress for Bar<'_> {
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
    fn message(&self, text: &str) {
        self.0.set_message(text.to_string());
    }
    fn warn(&self, text: &str) {
        self.0.suspend(|| tracing::warn!("{text}"));
    }
    fn slide_done(&self, record: &SlideRecord) {
        if let Some(e) = &record.error {
            self.0.suspend(|| eprintln!("rnafm-run: {e}"));
        }
    }
}

/// The runtime's usage errors exit with 2 like clap's, the rest with 1.
fn usage_or_failure(e: rnafm_runtime::Error) -> anyhow::Error {
    match e {
        rnafm_runtime::Error::Usage(m) => Usage(m).into(),
        e => e.into(),
    }
}

fn self_test(model_path: &Path, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let mut model = RunModel::open(model_path, session_options(args))?;
    let outcome = model.self_test()?;
    let verdict = if outcome.passed { "PASS" } else { "FAIL" };
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::json!({
                "model": model_path,
                "device": model.device.as_str(),
                "passed": outcome.passed,
                "max_abs_diff": outcome.max_abs_diff,
                "tolerance": outcome.tolerance,
            })
        ),
        Format::Text => println!(
            "self-test {verdict}: {} on {}, max |diff| {:.3e} (tolerance {:.1e})",
            model_path.display(),
            model.device,
            outcome.max_abs_diff,
            outcome.tolerance
        ),
    }
    Ok(if outcome.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn inspect(model: &Path, format: Format) -> anyhow::Result<ExitCode> {
    let text = rnafm_runtime::run::model::describe(model, format == Format::Json)?;
    println!("{text}");
    Ok(ExitCode::SUCCESS)
}
