//! `rnafm-train`: import official RNA-FM checkpoints and train RNA-FM models with
//! flow matching and patient-level cross-validation.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use rnafm_runtime::training_metrics::TrainingMetrics;
use rnafm_trainer::bench::{BenchReport, bench_steps};
use rnafm_trainer::burn_sample::SampleOptions;
use rnafm_trainer::device::{BackendJob, TrainDevice, resolve, run_on};
use rnafm_trainer::fused::TrainBackend;
use rnafm_trainer::recipe::{ModelKind, Recipe, RecipeName};
use rnafm_trainer::train::TrainOptions;

// Large tensor buffers come and go every step; see `rnafm_trainer::allocator`.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "rnafm-train",
    version,
    about = "Train RNA-FM (pathway-aware flow matching from slide features to bulk RNA-seq)",
    long_about = "Train RNA-FM: a flow-matching model that predicts bulk RNA-seq expression \
                  (log2(FPKM-UQ+1)) from a whole-slide image's cluster features, with one \
                  token per pathway. Checkpoint directories hold model.json, \
                  model.safetensors and ema.safetensors (official PyTorch tensor names) and \
                  are what rnafm-export reads."
)]
struct Cli {
    /// More log output (-v info, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Convert official RNA-FM weights (safetensors, or a PyTorch .pt/.pth) into a
    /// checkpoint directory.
    ImportOfficial {
        /// The official weights: a safetensors state_dict with official tensor names, or a
        /// `torch.save` file holding a state_dict or a training checkpoint with `ema`/`model`.
        weights: PathBuf,
        /// From a training checkpoint (`val_best.pt`) take `model`, not the `ema` weights.
        #[arg(long)]
        raw: bool,
        /// Pathway file the model was trained with (RNA-FM JSON index, or GMT with --genes).
        #[arg(long)]
        pathways: PathBuf,
        /// Gene list in output order; without it genes are named by index and counted
        /// from the pathway file.
        #[arg(long)]
        genes: Option<PathBuf>,
        /// Attention heads (not recoverable from tensor shapes; the paper model uses 8).
        #[arg(long, default_value_t = 8)]
        heads: usize,
        /// Output checkpoint directory.
        #[arg(short, long)]
        out: PathBuf,
    },
    /// Train with patient-level k-fold cross-validation; writes per-fold checkpoints,
    /// splits.json, metrics.json and metrics.txt under --out.
    #[command(allow_negative_numbers = true)]
    Train(Box<TrainArgs>),
    /// Time training steps (forward, backward, clip, AdamW, EMA) at a model size on
    /// synthetic inputs; prints a table and writes JSON.
    #[command(allow_negative_numbers = true)]
    Bench(BenchArgs),
    /// Same as `rnafm-eval synth` (kept for one release).
    #[command(hide = true, disable_help_flag = true)]
    Synth(EvalAlias),
    /// Same as `rnafm-eval evaluate` (kept for one release).
    #[command(hide = true, disable_help_flag = true)]
    Evaluate(EvalAlias),
    /// Same as `rnafm-eval calibrate` (kept for one release).
    #[command(hide = true, disable_help_flag = true)]
    Calibrate(EvalAlias),
    /// Same as `rnafm-eval report` (kept for one release).
    #[command(hide = true, disable_help_flag = true)]
    Report(EvalAlias),
    /// Draw expression profiles from a checkpoint with the burn sampler (CPU), written as
    /// rnafm-run writes them; for models the ONNX exporter cannot take.
    #[command(allow_negative_numbers = true)]
    Sample(SampleArgs),
    /// For the model you deploy: refit a fold checkpoint's mean anchor on every slide of a
    /// reference CSV (normally all the patients the run trained on), keeping its flow.
    #[command(
        long_about = "For the model you deploy: refit a fold checkpoint's mean anchor \
        on every slide of a reference CSV (normally every patient the run trained on; never \
        slides you will score the model on), keeping its flow. A fold's anchor sees only the fold's training patients, so that \
        its validation and held-out patients stay unseen; the deployed model can use all of \
        them, and the anchor gives the predicted mean. Writes OUT/best (a checkpoint to \
        export) and each slide's leave-one-out shift: calibrate the refitted model with \
        `rnafm-eval calibrate --anchor-loo OUT -o OUT/calibration.json` on its draws for \
        slides the fold's model never trained on, then `rnafm-export --onnx OUT/best` (it \
        takes OUT/calibration.json). README, \"Typical use on real data\", step 3b."
    )]
    RefitAnchor(RefitArgs),
}

/// Flags of `rnafm-train refit-anchor`.
#[derive(clap::Args)]
struct RefitArgs {
    /// The checkpoint whose flow is kept, e.g. <run>/fold_0/best.
    #[arg(long)]
    checkpoint: PathBuf,
    // The anchor is refitted on every slide of --csv (the long help says which).
    #[command(flatten)]
    cohort: CohortArgs,
    /// Output folder (OUT/best is the checkpoint); an earlier refit there is replaced.
    #[arg(short, long)]
    out: PathBuf,
}

/// Flags of `rnafm-train sample`.
#[derive(clap::Args)]
struct SampleArgs {
    /// Checkpoint folder (model.json, ema.safetensors), e.g. <run>/fold_0/best.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Slide feature files (K×D cluster means, .npy).
    #[arg(required = true)]
    slides: Vec<PathBuf>,
    /// Draws per slide.
    #[arg(short = 'n', long, default_value_t = 100)]
    samples: usize,
    /// Guidance scale (1 = none).
    #[arg(long, default_value_t = 2.0)]
    cfg: f32,
    /// Time points of the Euler grid.
    #[arg(long, default_value_t = 20)]
    time_points: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Calibration file (rnafm-eval calibrate); its entry for this cfg and time points is
    /// applied to the draws as rnafm-run applies a bundle's.
    #[arg(long)]
    calibration: Option<PathBuf>,
    /// Output folder.
    #[arg(short, long)]
    out: PathBuf,
}

impl From<SampleArgs> for SampleOptions {
    fn from(a: SampleArgs) -> Self {
        SampleOptions {
            checkpoint: a.checkpoint,
            slides: a.slides,
            samples: a.samples,
            cfg: a.cfg,
            time_points: a.time_points,
            seed: a.seed,
            calibration: a.calibration,
            out: a.out,
        }
    }
}

/// The arguments of an old `rnafm-train` evaluation command, passed on to `rnafm-eval`.
#[derive(clap::Args)]
struct EvalAlias {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<std::ffi::OsString>,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Gene list (its length is G).
    #[arg(long)]
    genes: PathBuf,
    /// Pathway file giving the tokens.
    #[arg(long)]
    pathways: PathBuf,
    #[arg(long, default_value_t = 100)]
    clusters: usize,
    #[arg(long, default_value_t = 1024)]
    feat_dim: usize,
    #[arg(long, default_value_t = 256)]
    hidden: usize,
    #[arg(long, default_value_t = 7)]
    depth: usize,
    #[arg(long, default_value_t = 8)]
    heads: usize,
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Timed steps (the median is reported, as the PyTorch reference: 5 after 2 warm-ups).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Write the report as JSON here (it holds every step's loss).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Seed of the initial weights and of every step's inputs (drawn on the host, so two
    /// backends given the same seed train on the same batches).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write the weights after the last step here (safetensors), to compare backends.
    #[arg(long, value_name = "FILE")]
    weights_out: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
}

/// The slides a command learns from: measured expression and slide features (`train`,
/// `refit-anchor`).
#[derive(clap::Args)]
struct CohortArgs {
    /// Reference CSV: wsi_file_name, patient_id, rna_<GENE> columns of FPKM-UQ.
    #[arg(long)]
    csv: PathBuf,
    /// Directory of per-slide features (<slide>.npy, .npz or .h5): K×D cluster means, or
    /// N×D tile features (TRIDENT/CLAM .h5 too) when --clusters is given.
    #[arg(long)]
    features: PathBuf,
    /// Cluster count K for feature files that hold tiles: a file with K rows is taken as
    /// cluster means, one with more is clustered with rnafm-run's seeded k-means (seed 0,
    /// rnafm-run's default), its means cached. Default: every file holds the same K rows.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=4096))]
    clusters: Option<usize>,
}

#[derive(clap::Args)]
struct TrainArgs {
    #[command(flatten)]
    cohort: CohortArgs,
    /// Pathway file (RNA-FM JSON index, or GMT); one token per pathway.
    #[arg(long)]
    pathways: Option<PathBuf>,
    /// Gene list: the model's output genes, in order.
    #[arg(long)]
    genes: PathBuf,
    /// Per-gene mean and sd .npy of log2(FPKM-UQ+1); default: from each fold's training slides.
    #[arg(long, num_args = 2, value_names = ["MEAN", "SD"])]
    norm: Option<Vec<PathBuf>>,
    /// Output directory.
    #[arg(short, long)]
    out: PathBuf,
    /// Cross-validation folds (patient-level).
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// Reuse the folds of a splits.json.
    #[arg(long)]
    splits: Option<PathBuf>,
    /// Which set of defaults fills every size and schedule flag left out (each flag's help
    /// names its default): `default`, measured on 128-patient cohorts with ~1,000 genes and
    /// ~350 GO-MF tokens (README, "Accuracy at a realistic scale"); `paper`, the official
    /// code's size and schedule. Flags given here, and --preset, take precedence.
    #[arg(long, value_enum, default_value = "default")]
    recipe: RecipeName,
    /// Maximum epochs per fold [recipe: 400; paper 200].
    #[arg(long)]
    epochs: Option<usize>,
    /// Slides per batch [recipe: 16; paper 32].
    #[arg(long)]
    batch: Option<usize>,
    /// AdamW learning rate [recipe: 6e-3, regression baseline 3e-3; paper 1e-4].
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long, default_value_t = 0.01)]
    weight_decay: f32,
    /// Global gradient-norm clip.
    #[arg(long, default_value_t = 1.0)]
    clip: f64,
    /// Share of each fold's training patients held out as validation patients (early
    /// stopping; `rnafm-eval calibrate` fits interval widths on them and, unless they are
    /// the slides it is judged on, the fold's held-out patients) [recipe: 0.25; paper 0.1].
    #[arg(long, value_parser = parse_fraction)]
    val_fraction: Option<f64>,
    /// Validate (sample with EMA weights) every N epochs [recipe: 25, regression baseline 5;
    /// paper 5].
    #[arg(long)]
    val_every: Option<usize>,
    /// Stop a fold after this many validations without a lower validation loss (see
    /// --val-loss) [recipe: 4; paper 5].
    #[arg(long)]
    patience: Option<usize>,
    /// Validation loss of early stopping and of the best checkpoint: `r` = 1 − the mean
    /// per-gene Pearson r of the EMA model's mean prediction for the validation slides (what
    /// the evaluation scores; the regression baseline stops on it too); `sample` = that
    /// mean's squared error (z units); `flow` = the flow-matching objective of the EMA
    /// weights on the validation slides (how well the flow fits what the anchor leaves).
    /// Default: `flow` for an anchored model (its mean is the anchor's), else `r`.
    #[arg(long, value_enum)]
    val_loss: Option<ValLossArg>,
    /// Guidance scale for validation and prediction (1 = no guidance). Default: 1 for an
    /// anchored model (as its bundle then samples), else 2.
    #[arg(long)]
    cfg: Option<f64>,
    /// Time points of the Euler grid (steps + 1).
    #[arg(long, default_value_t = 20)]
    time_points: usize,
    /// Initialise each fold's slide encoder from that fold of a regression-baseline run
    /// (`--model regression` on the same folds): the flow model starts with an encoder
    /// that already reads the slides.
    #[arg(long, value_name = "BASELINE_RUN")]
    init_slide_encoder: Option<PathBuf>,
    /// Time points for the validation and out-of-fold means only (default: --time-points).
    /// 2 = one Euler step from noise, which lands on the network's estimate of the
    /// conditional mean at about a tenth of the cost [recipe: 2; paper: --time-points].
    #[arg(long, value_parser = clap::value_parser!(u64).range(2..=1000))]
    predict_time_points: Option<u64>,
    /// Draws per validation slide: (time, noise) pairs of the validation loss, and guided
    /// samples averaged into the validation predictions whose r is logged.
    #[arg(long, default_value_t = 10)]
    val_draws: usize,
    /// Guided samples averaged into each held-out slide's out-of-fold prediction, as
    /// rnafm-run's `mean` column averages its samples. Its per-gene r ranks the genes (top-k)
    /// and goes into the bundle; with few draws, sampling noise lowers it for genes with a
    /// wide conditional spread (1 = one draw).
    #[arg(long, default_value_t = 50)]
    oof_draws: usize,
    /// (time, noise) pairs per training slide in each batch (rows = --batch × this). More
    /// pairs lower the variance of the flow-matching gradient, which the Gaussian noise
    /// dominates when slides are few; each step costs that many times more.
    #[arg(long, default_value_t = 1)]
    noise_draws: usize,
    /// Weight of the auxiliary loss that trains the slide encoder directly: a linear head
    /// from the slide embedding predicts the z-scored profile, its squared error added to
    /// the flow-matching loss. It helps the encoder find the slide's signal when slides are
    /// few and nuisance variation (scanner or site effects) is strong. The head is not
    /// exported. 0 = off [recipe: 1; paper 0].
    #[arg(long, value_parser = parse_nonneg)]
    aux_weight: Option<f64>,
    /// Anchor the model on a ridge regression: a per-gene ridge on each slide's mean cluster
    /// feature (penalties by leave-one-out error, fitted in seconds) gives the mean, and the
    /// flow learns what it leaves on slides it did not see (its leave-one-out residuals).
    /// The anchor travels in the checkpoint and the bundle; every draw gets it added. With
    /// ~100 slides this is far more accurate than the flow's own slide encoder (README,
    /// "Accuracy at a realistic scale"); its bundle samples at guidance 1 by default
    /// [recipe: on for RNA-FM; paper off].
    #[arg(long, conflicts_with = "no_anchor")]
    anchor: bool,
    /// Train without the mean anchor: the flow's own slide encoder gives the mean.
    #[arg(long)]
    no_anchor: bool,
    /// EMA decay of the weights used for validation and prediction, reached after a warm-up
    /// ((1+step)/(10+step) until then), or `official`: the official ramp, 0.85 → 0.999 over
    /// 10,000 steps, which in a run of a few hundred steps averages only the last ~10
    /// [recipe: 0.99; paper official].
    #[arg(long, value_name = "DECAY|official", value_parser = parse_ema)]
    ema_decay: Option<Ema>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Width of the tokens [recipe: 64; paper 256].
    #[arg(long)]
    hidden: Option<usize>,
    /// DiT blocks [recipe: 2; paper 7].
    #[arg(long)]
    depth: Option<usize>,
    /// Attention heads [recipe: 4; paper 8].
    #[arg(long)]
    heads: Option<usize>,
    /// Probability of training a batch on the null condition.
    #[arg(long, default_value_t = 0.1)]
    cond_drop: f64,
    /// Ablation: no pathway graph attention block.
    #[arg(long)]
    no_graph_attention: bool,
    /// Gene tokens: one per pathway, or alphabetical patches (ablation).
    #[arg(long, value_enum, default_value = "pathways")]
    tokens: Tokens,
    /// Genes per alphabetical token.
    #[arg(long, default_value_t = 10)]
    genes_per_token: usize,
    /// Architecture preset (models/presets/*.json): hidden, depth, heads, condition dropout
    /// and graph attention over the recipe's (--hidden, --depth, --heads given here still
    /// win; --cond-drop and --no-graph-attention are replaced).
    #[arg(long)]
    preset: Option<PathBuf>,
    /// Continue an interrupted run in --out.
    #[arg(long)]
    resume: bool,
    /// Where to train.
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceArg,
    /// What to train: RNA-FM (flow matching) or the regression baseline (same slide
    /// encoder, MLP to all genes, MSE; same folds and output layout, no resume).
    #[arg(long, value_enum, default_value = "rnafm")]
    model: ModelKind,
}

/// `--val-loss` (see `rnafm_trainer::train::ValLoss`).
#[derive(Clone, Copy, clap::ValueEnum)]
enum ValLossArg {
    R,
    Sample,
    Flow,
}

impl From<ValLossArg> for rnafm_trainer::train::ValLoss {
    fn from(v: ValLossArg) -> Self {
        match v {
            ValLossArg::R => Self::R,
            ValLossArg::Sample => Self::Sample,
            ValLossArg::Flow => Self::Flow,
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Tokens {
    Pathways,
    Alphabetical,
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum DeviceArg {
    Auto,
    Cpu,
    Cuda,
}

fn main() {
    rnafm_runtime::sigpipe::default_on_broken_pipe();
    rnafm_trainer::allocator::keep_freed_memory();
    let cli = Cli::parse();
    rnafm_runtime::logging::init(cli.verbose);
    if let Err(e) = run(cli.cmd) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::ImportOfficial {
            weights,
            raw,
            pathways,
            genes,
            heads,
            out,
        } => {
            let set = if raw {
                rnafm_official::WeightSet::Raw
            } else {
                rnafm_official::WeightSet::Ema
            };
            let spec = rnafm_trainer::import::import_official(
                &weights,
                &pathways,
                genes.as_deref(),
                heads,
                set,
                &out,
            )?;
            let c = &spec.config;
            println!(
                "imported {}: hidden {}, depth {}, heads {}, {} pathways, {} genes, {} clusters × {} → {}",
                weights.display(),
                c.hidden,
                c.depth,
                c.heads,
                spec.pathways.len(),
                c.genes,
                c.clusters,
                c.feat_dim,
                out.display()
            );
            Ok(())
        }
        Command::Train(a) => train(*a),
        Command::Bench(a) => bench(a),
        Command::Synth(a) => forward_to_eval("synth", a),
        Command::Evaluate(a) => forward_to_eval("evaluate", a),
        Command::Calibrate(a) => forward_to_eval("calibrate", a),
        Command::Sample(a) => {
            let a = SampleOptions::from(a);
            let used = rnafm_trainer::burn_sample::run_sample::<burn::backend::Flex>(
                &a,
                &Default::default(),
            )?;
            println!(
                "{} slide(s) → {} (calibration {})",
                a.slides.len(),
                a.out.display(),
                if used.applied {
                    "applied"
                } else {
                    "not applied"
                }
            );
            Ok(())
        }
        Command::Report(a) => forward_to_eval("report", a),
        Command::RefitAnchor(a) => {
            let o = rnafm_trainer::anchor_refit::RefitOptions {
                checkpoint: a.checkpoint,
                csv: a.cohort.csv,
                features: a.cohort.features,
                clusters: a.cohort.clusters,
                out: a.out,
            };
            let r = rnafm_trainer::anchor_refit::run_refit(&o)?;
            println!(
                "anchor refitted on {} slides (median λ {:.3} × mean eigenvalue), flow of {} → {}",
                r.slides,
                r.median_relative_lambda,
                o.checkpoint.display(),
                o.out.join("best").display()
            );
            Ok(())
        }
    }
}

/// `rnafm-train <command> …` as `rnafm-eval <command> …`: the `rnafm-eval` next to this
/// executable takes over the process (its output and exit status are the command's).
fn forward_to_eval(command: &str, a: EvalAlias) -> Result<()> {
    let exe = std::env::current_exe()?.with_file_name("rnafm-eval");
    if !exe.is_file() {
        anyhow::bail!(
            "`rnafm-train {command}` is now `rnafm-eval {command}`, and {} is missing (build the workspace: cargo build --bins)",
            exe.display()
        );
    }
    let mut cmd = std::process::Command::new(&exe);
    cmd.arg(command).args(&a.args);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let e = cmd.exec();
        Err(anyhow::anyhow!("{}: {e}", exe.display()))
    }
    #[cfg(not(unix))]
    {
        let status = cmd.status()?;
        std::process::exit(status.code().unwrap_or(1));
    }
}

fn train(a: TrainArgs) -> Result<()> {
    use rnafm_runtime::model_config::TokenMode;
    use std::io::IsTerminal;
    // Settle the device first: `--device cuda` without a GPU fails before any work.
    let backend = resolve(a.device.into())?;
    let norm = a.norm.clone().map(|v| (v[0].clone(), v[1].clone()));
    let mut a = a;
    let recipe = Recipe::of(a.recipe, a.model);
    let (mut hidden, mut depth, mut heads) = (recipe.hidden, recipe.depth, recipe.heads);
    if let Some(p) = &a.preset {
        let p = rnafm_trainer::preset::Preset::read(p)?;
        (hidden, depth, heads) = (p.hidden, p.depth, p.heads);
        a.cond_drop = p.cond_drop;
        a.no_graph_attention = !p.graph_attention;
    }
    if a.model == ModelKind::Regression && a.anchor {
        anyhow::bail!("--anchor anchors the flow model; the regression baseline takes no anchor");
    }
    let anchor = a.anchor || (recipe.anchor && !a.no_anchor);
    let ema_decay = match a.ema_decay {
        Some(Ema::Official) => None,
        Some(Ema::Decay(d)) => Some(d),
        None => recipe.ema_decay,
    };
    let predict_time_points = a
        .predict_time_points
        .map(|n| n as usize)
        .or(recipe.predict_time_points);
    let opts = TrainOptions {
        csv: a.cohort.csv,
        features: a.cohort.features,
        clusters: a.cohort.clusters,
        pathways: a.pathways,
        genes: a.genes,
        norm,
        out: a.out,
        folds: a.folds,
        splits: a.splits,
        epochs: a.epochs.unwrap_or(recipe.epochs),
        batch: a.batch.unwrap_or(recipe.batch).max(1),
        lr: a.lr.unwrap_or(recipe.lr),
        weight_decay: a.weight_decay,
        clip: a.clip,
        val_every: a.val_every.unwrap_or(recipe.val_every),
        patience: a.patience.unwrap_or(recipe.patience).max(1),
        cfg: a.cfg.unwrap_or(Recipe::default_cfg(anchor)),
        time_points: a.time_points.max(2),
        predict_time_points,
        init_slide_encoder: a.init_slide_encoder.clone(),
        val_draws: a.val_draws.max(1),
        oof_draws: a.oof_draws.max(1),
        noise_draws: a.noise_draws.max(1),
        aux_weight: a.aux_weight.unwrap_or(recipe.aux_weight),
        anchor,
        ema_decay,
        val_fraction: a.val_fraction.unwrap_or(recipe.val_fraction),
        val_loss: a
            .val_loss
            .map_or_else(|| Recipe::default_val_loss(anchor), Into::into),
        seed: a.seed,
        hidden: a.hidden.unwrap_or(hidden),
        depth: a.depth.unwrap_or(depth),
        heads: a.heads.unwrap_or(heads),
        cond_drop: a.cond_drop,
        graph_attention: !a.no_graph_attention,
        tokens: match a.tokens {
            Tokens::Pathways => TokenMode::Pathways,
            Tokens::Alphabetical => TokenMode::Alphabetical,
        },
        genes_per_token: a.genes_per_token,
        resume: a.resume,
        progress: std::io::stderr().is_terminal(),
    };
    tracing::info!(
        recipe = ?a.recipe,
        hidden = opts.hidden,
        depth = opts.depth,
        heads = opts.heads,
        epochs = opts.epochs,
        batch = opts.batch,
        lr = opts.lr,
        val_fraction = opts.val_fraction,
        val_every = opts.val_every,
        patience = opts.patience,
        ema_decay = ?opts.ema_decay,
        predict_time_points = ?opts.predict_time_points,
        aux_weight = opts.aux_weight,
        anchor = opts.anchor,
        cfg = opts.cfg,
        val_loss = ?opts.val_loss,
        "training settings"
    );
    let report = if a.model == ModelKind::Regression {
        run_on(backend, BaselineTraining(&opts))?
    } else {
        run_on(backend, FlowTraining(&opts))?
    };
    print!("{}", rnafm_eval::cv_metrics::metrics_table(&report));
    println!(
        "metrics: {}",
        opts.out
            .join(rnafm_runtime::checkpoint::METRICS_FILE)
            .display()
    );
    Ok(())
}

fn bench(a: BenchArgs) -> Result<()> {
    let backend = resolve(a.device.into())?;
    use rnafm_runtime::genes::GeneList;
    use rnafm_runtime::model_config::ModelConfig;
    use rnafm_runtime::model_spec::ModelSpec;
    use rnafm_runtime::pathways::PathwaySet;
    let genes = GeneList::read(&a.genes)?;
    let pathways = PathwaySet::read(&a.pathways, Some(&genes), genes.len())?;
    let mut config = ModelConfig::paper(genes.len(), a.clusters, a.feat_dim);
    config.hidden = a.hidden;
    config.depth = a.depth;
    config.heads = a.heads;
    let spec = ModelSpec {
        config,
        genes: genes.symbols().to_vec(),
        pathways,
        normalization: None,
    };
    spec.validate(&a.pathways)?;
    let plan = rnafm_trainer::bench::BenchPlan {
        batch: a.batch,
        warmup: a.warmup,
        steps: a.steps,
        seed: a.seed,
    };
    let (r, weights) = run_on(backend, StepBench { spec: &spec, plan })?;
    println!("{:<22} {}", "backend", r.backend);
    println!(
        "{:<22} {} genes, {} pathways, {}×{} clusters",
        "data", r.genes, r.pathways, r.clusters, r.feat_dim
    );
    println!(
        "{:<22} hidden {}, depth {}, heads {}, {} parameters",
        "model", r.hidden, r.depth, r.heads, r.parameters
    );
    println!("{:<22} {}", "batch", r.batch);
    let each: Vec<String> = r.step_seconds.iter().map(|s| format!("{s:.2}")).collect();
    println!(
        "{:<22} {:.3} (median of {}: {})",
        "seconds / step",
        r.seconds_per_step,
        each.len(),
        each.join(", ")
    );
    println!("{:<22} {:.4}", "steps / second", r.steps_per_second);
    println!(
        "{:<22} forward+backward {:.3}, clip+AdamW {:.3}, EMA {:.3} (means)",
        "seconds by phase", r.forward_backward_s, r.optimizer_s, r.ema_s
    );
    if let Some(m) = r.peak_rss_mib {
        println!("{:<22} {:.0} MiB", "peak RSS", m);
    }
    if let Some(p) = &a.json {
        let text = serde_json::to_string_pretty(&r)?;
        rnafm_runtime::atomic::write_bytes_atomic(p, text.as_bytes())?;
    }
    if let Some(p) = &a.weights_out {
        weights.write_safetensors(p)?;
    }
    Ok(())
}

impl From<DeviceArg> for TrainDevice {
    fn from(d: DeviceArg) -> Self {
        match d {
            DeviceArg::Auto => TrainDevice::Auto,
            DeviceArg::Cpu => TrainDevice::Cpu,
            DeviceArg::Cuda => TrainDevice::Cuda,
        }
    }
}

/// RNA-FM flow-matching training with cross-validation.
struct FlowTraining<'a>(&'a TrainOptions);

impl BackendJob for FlowTraining<'_> {
    type Output = rnafm_runtime::Result<TrainingMetrics>;
    fn run<B: TrainBackend>(self, device: &B::Device, _: &'static str) -> Self::Output {
        rnafm_trainer::train::train::<B>(self.0, device)
    }
}

/// The regression baseline on the same folds.
struct BaselineTraining<'a>(&'a TrainOptions);

impl BackendJob for BaselineTraining<'_> {
    type Output = rnafm_runtime::Result<TrainingMetrics>;
    fn run<B: TrainBackend>(self, device: &B::Device, _: &'static str) -> Self::Output {
        rnafm_trainer::regression::train_baseline::<B>(self.0, device)
    }
}

/// Timed training steps.
struct StepBench<'a> {
    spec: &'a rnafm_runtime::model_spec::ModelSpec,
    plan: rnafm_trainer::bench::BenchPlan,
}

impl BackendJob for StepBench<'_> {
    type Output = rnafm_runtime::Result<(BenchReport, rnafm_runtime::weights::WeightMap)>;
    fn run<B: TrainBackend>(self, device: &B::Device, backend: &'static str) -> Self::Output {
        bench_steps::<B>(self.spec, self.plan, device, backend)
    }
}

/// A share strictly between 0 and 1.
fn parse_fraction(s: &str) -> std::result::Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|e| format!("`{s}` is not a number: {e}"))?;
    if v > 0.0 && v < 1.0 {
        Ok(v)
    } else {
        Err(format!("{v} is not between 0 and 1"))
    }
}

/// `--ema-decay`: a decay target, or the official ramp.
#[derive(Clone, Copy)]
enum Ema {
    Official,
    Decay(f64),
}

fn parse_ema(s: &str) -> std::result::Result<Ema, String> {
    if s == "official" {
        Ok(Ema::Official)
    } else {
        parse_fraction(s).map(Ema::Decay)
    }
}

/// A finite number ≥ 0.
fn parse_nonneg(s: &str) -> std::result::Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|e| format!("`{s}` is not a number: {e}"))?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(format!("{v} is not a finite number ≥ 0"))
    }
}
