//! Flow-matching training with patient-level k-fold cross-validation: x_t = t·x1+(1−t)·x0,
//! target x1−x0, MSE; condition dropout to the null condition; AdamW; global-norm
//! clipping; EMA weights for validation, early stopping and out-of-fold prediction.
//! Every epoch leaves a resumable checkpoint (`fold_N/last`), swapped in whole.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::fused::FusedOps;
use crate::fused::TrainBackend;
use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{Array2, Axis};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rnafm_runtime::anchor::ANCHOR_FILE;
use rnafm_runtime::genes::GeneList;
use rnafm_runtime::model_config::{ModelConfig, TokenMode};
use rnafm_runtime::model_spec::ModelSpec;
use rnafm_runtime::normalization::Normalization;
use rnafm_runtime::pathways::PathwaySet;
use rnafm_runtime::weights::WeightMap;
use rnafm_runtime::{Error, Result};

use crate::anchor_fit::FoldAnchor;
use crate::dataset::Cohort;
use crate::ema::{ema_decay, ema_decay_capped, ema_update, renumber_params};
use crate::grad_clip::clip_global_norm;
use crate::init::init_weights;
use crate::sampler::sample;
use crate::splits::Splits;
use crate::velocity_net::VelocityNet;
use rnafm_eval::cv_metrics::finish_run;
use rnafm_eval::gene_scores::per_gene;
use rnafm_eval::stats::finite_mean;
use rnafm_runtime::checkpoint::{
    BEST_DIR, CheckpointDir, EMA_FILE, HELDOUT_LIST, LAST_DIR, PRED_FILE, RAW_FILE,
    VALIDATION_LIST, fold_dir,
};
use rnafm_runtime::training_metrics::{FoldSeconds, TrainingMetrics};

#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub csv: PathBuf,
    pub features: PathBuf,
    /// K when the feature files may hold N×D tiles (see `Cohort::load`); `None`: the files'
    /// common row count.
    pub clusters: Option<usize>,
    pub pathways: Option<PathBuf>,
    pub genes: PathBuf,
    pub norm: Option<(PathBuf, PathBuf)>,
    pub out: PathBuf,
    pub folds: usize,
    pub splits: Option<PathBuf>,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    pub weight_decay: f32,
    pub clip: f64,
    pub val_every: usize,
    pub patience: usize,
    pub cfg: f64,
    pub time_points: usize,
    /// Euler time points of the validation and out-of-fold means (None: `time_points`).
    /// 2 is one step from noise, x0 + v(x0, 0, y): for a flow trained to the data, v at
    /// t = 0 is E[x1 | y] − x0, so the step lands on the network's conditional mean at a
    /// 19th of the cost of a 20-point trajectory.
    pub predict_time_points: Option<usize>,
    /// Draws averaged per slide in validation and out-of-fold predictions.
    pub val_draws: usize,
    /// Draws averaged per held-out slide in the out-of-fold predictions (the per-gene r that
    /// ranks genes and goes into the bundle).
    pub oof_draws: usize,
    /// (time, noise) pairs drawn for every training slide in a batch: the batch holds
    /// `batch × noise_draws` rows. More pairs per slide lower the variance of the
    /// flow-matching gradient, which the noise x0 dominates when slides are few.
    pub noise_draws: usize,
    /// Weight of an auxiliary loss that trains the slide encoder directly: a linear head
    /// from the slide embedding predicts the z-scored profile (MSE), added to the
    /// flow-matching loss on conditioned batches. The flow objective alone gives the encoder
    /// a weak, noisy gradient (the noise x0 dominates it), too weak to find the slide's
    /// signal among stronger nuisance variation (site effects) with ~100 slides. The head
    /// is dropped at export. 0: off.
    pub aux_weight: f64,
    /// Train the flow on what a mean anchor leaves (`anchor_fit.rs`) and add the anchor
    /// back to every draw.
    pub anchor: bool,
    /// A regression-baseline run on the same folds (`rnafm-train train --model regression`)
    /// whose fold-k slide encoder initialises fold k's flow model (the rest stays at its
    /// initialisation).
    pub init_slide_encoder: Option<PathBuf>,
    /// EMA decay target with the usual warm-up (`ema_decay_capped`); `None`: the official
    /// ramp (0.85 → 0.999 over 10,000 steps).
    pub ema_decay: Option<f64>,
    /// Share of each fold's training patients held out for validation.
    pub val_fraction: f64,
    /// What early stopping and the best checkpoint minimise.
    pub val_loss: ValLoss,
    pub seed: u64,
    pub hidden: usize,
    pub depth: usize,
    pub heads: usize,
    pub cond_drop: f64,
    pub graph_attention: bool,
    pub tokens: TokenMode,
    pub genes_per_token: usize,
    pub resume: bool,
    pub progress: bool,
}

impl TrainOptions {
    /// The cohort, tile files clustered as `rnafm-run` clusters them, their means cached in
    /// the user's cache (`checked_cache::default_dir`).
    pub fn load_cohort(&self, genes: &GeneList) -> Result<Cohort> {
        let cache = rnafm_runtime::checked_cache::default_dir();
        Cohort::load(
            &self.csv,
            &self.features,
            genes,
            self.clusters,
            cache.as_deref(),
        )
    }
}

/// The validation loss that early stopping and the best checkpoint minimise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ValLoss {
    /// 1 − the mean per-gene Pearson r of the mean of the guided validation samples: what
    /// the out-of-fold evaluation scores, and what the regression baseline stops on.
    #[default]
    R,
    /// Squared error (z units) of the mean of the guided validation samples: the point
    /// prediction `rnafm-run` reports. Guided means overshoot (guidance extrapolates), so
    /// this can favour an early, barely conditioned model.
    Sample,
    /// The flow-matching objective on the validation slides (`validation_flow_loss`).
    Flow,
}

/// Resumable position within a fold (`train_state.json`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TrainState {
    pub fold: usize,
    /// Epochs completed.
    pub epoch: usize,
    /// Optimiser steps taken.
    pub step: u64,
    /// Mean per-gene r of the best validation (logged; not the stopping criterion).
    pub best_r: Option<f64>,
    /// Lowest validation loss so far: flow-matching loss of the EMA weights on the validation
    /// slides, z-scored units.
    #[serde(default)]
    pub best_loss: Option<f64>,
    pub best_epoch: Option<usize>,
    /// Validations since the last improvement.
    pub bad_validations: usize,
    pub stopped_early: bool,
    pub seed: u64,
    pub last_loss: Option<f64>,
    /// Time spent so far (carried over a resume).
    #[serde(default)]
    pub seconds: FoldSeconds,
}

const STATE_FILE: &str = "train_state.json";
/// A finished fold's [`FoldSeconds`], next to its predictions.
const SECONDS_FILE: &str = "seconds.json";
/// Marks a finished fold (its predictions are reused under --resume).
const DONE_FILE: &str = "done";
const OPTIM_FILE: &str = "optimizer";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::io(path, e)
}

/// Runs the whole cross-validation; writes `splits.json`, per-fold checkpoints and
/// predictions, `metrics.json` and `metrics.txt` under `opts.out`.
pub fn train<B: TrainBackend>(opts: &TrainOptions, device: &B::Device) -> Result<TrainingMetrics> {
    std::fs::create_dir_all(&opts.out).map_err(io(&opts.out))?;
    let genes = GeneList::read(&opts.genes)?;
    let pathways = match opts.tokens {
        TokenMode::Alphabetical => PathwaySet::alphabetical(&genes, opts.genes_per_token),
        TokenMode::Pathways => {
            let p = opts.pathways.as_ref().ok_or_else(|| {
                Error::invalid(
                    &opts.genes,
                    "--pathways is required unless --tokens alphabetical",
                )
            })?;
            PathwaySet::read(p, Some(&genes), genes.len())?
        }
    };
    let cohort = opts.load_cohort(&genes)?;
    tracing::info!(
        slides = cohort.len(),
        genes = genes.len(),
        pathways = pathways.len(),
        "cohort loaded"
    );
    let config = ModelConfig {
        hidden: opts.hidden,
        depth: opts.depth,
        heads: opts.heads,
        graph_heads: 4,
        clusters: cohort.clusters,
        feat_dim: cohort.feat_dim,
        genes: genes.len(),
        mlp_ratio: 4,
        cond_drop: opts.cond_drop,
        graph_attention: opts.graph_attention,
        tokens: opts.tokens,
    };
    config.validate(&opts.csv)?;
    let splits_path = opts.out.join("splits.json");
    let splits = match &opts.splits {
        Some(p) => Splits::read(p)?,
        None if opts.resume && splits_path.is_file() => Splits::read(&splits_path)?,
        None => Splits::new(&cohort.patients, opts.folds, opts.seed, &opts.csv)?,
    };
    splits.write(&splits_path)?;

    let n_genes = genes.len();
    let mut oof = Array2::<f32>::zeros((cohort.len(), n_genes));
    let mut fold_tests = Vec::new();
    let mut fold_seconds = Vec::new();
    for f in 0..splits.folds.len() {
        let (train_idx, test_idx) = splits.slides(&cohort.patients, f, &splits_path)?;
        if train_idx.is_empty() || test_idx.is_empty() {
            return Err(Error::invalid(
                &splits_path,
                format!("fold {f} has no training or no held-out slide"),
            ));
        }
        let base = ModelSpec {
            config: config.clone(),
            genes: genes.symbols().to_vec(),
            pathways: pathways.clone(),
            normalization: None,
        };
        let (pred, seconds) = run_fold::<B>(opts, &cohort, base, f, &train_idx, &test_idx, device)?;
        fold_seconds.push(seconds);
        for (row, &s) in test_idx.iter().enumerate() {
            oof.row_mut(s).assign(&pred.row(row));
        }
        fold_tests.push(test_idx);
    }

    // Every slide's out-of-fold mean in CSV row order, as the baseline writes it, so that
    // `rnafm-eval evaluate --pred` scores either model's training the same way.
    let best_epochs: Vec<Option<usize>> = (0..fold_tests.len())
        .map(|f| {
            read_state(&fold_dir(&opts.out, f).join(LAST_DIR).join(STATE_FILE))
                .and_then(|s| s.best_epoch)
        })
        .collect();
    finish_run(
        &opts.out,
        oof.view(),
        cohort.log2.view(),
        &fold_tests,
        &best_epochs,
        &fold_seconds,
        genes.symbols(),
    )
}

fn read_state(path: &Path) -> Option<TrainState> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// What every fold of either model writes and uses first: its held-out and validation
/// slide lists, its training/validation split, and its normalisation (given, else from its
/// training slides) with the whole cohort in z units.
pub(crate) struct FoldSetup {
    pub dir: PathBuf,
    pub train_idx: Vec<usize>,
    pub val_idx: Vec<usize>,
    pub norm: Normalization,
    /// The cohort's log2 expression in this fold's z units.
    pub z: Array2<f32>,
}

impl FoldSetup {
    pub(crate) fn new(
        opts: &TrainOptions,
        cohort: &Cohort,
        f: usize,
        train_all: &[usize],
        test_idx: &[usize],
    ) -> Result<FoldSetup> {
        let dir = fold_dir(&opts.out, f);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        // The held-out slides, so the fold's model can be evaluated (or exported and run)
        // on exactly the slides it never saw.
        write_slide_list(&dir.join(HELDOUT_LIST), cohort, test_idx)?;
        let (train_idx, val_idx) = split_validation(
            &cohort.patients,
            train_all,
            opts.val_fraction,
            opts.seed ^ f as u64,
        );
        // The validation slides: early stopping, and interval calibration on slides that
        // are neither trained on nor held out (`rnafm-eval calibrate`).
        write_slide_list(&dir.join(VALIDATION_LIST), cohort, &val_idx)?;
        let norm = match &opts.norm {
            Some((m, s)) => Normalization::read_npy(m, s)?,
            None => Normalization::from_cohort(
                cohort.log2.select(Axis(0), &train_idx).view(),
                &opts.csv,
            )?,
        };
        let mut z = cohort.log2.clone();
        for mut row in z.rows_mut() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = norm.to_z(j, *v);
            }
        }
        Ok(FoldSetup {
            dir,
            train_idx,
            val_idx,
            norm,
            z,
        })
    }
}

fn write_slide_list(path: &Path, cohort: &Cohort, idx: &[usize]) -> Result<()> {
    let text: String = idx
        .iter()
        .map(|&i| format!("{}\n", cohort.slides[i]))
        .collect();
    rnafm_runtime::atomic::write_bytes_atomic(path, text.as_bytes())
}

/// One fold of flow-matching training: what its steps share.
struct FlowFold<'a, B: TrainBackend> {
    opts: &'a TrainOptions,
    cohort: &'a Cohort,
    spec: ModelSpec,
    f: usize,
    setup: FoldSetup,
    /// The fold's mean anchor (`--anchor`).
    anchor: Option<FoldAnchor>,
    /// With an anchor, what the flow learns, z units, every slide: `setup.z` less the
    /// anchor's out-of-sample prediction (without one the flow learns `setup.z`; `target()`).
    target: Option<Array2<f32>>,
    device: &'a B::Device,
}

/// The raw model, its EMA and where training stands.
struct Progress<B: TrainBackend> {
    model: VelocityNet<B>,
    ema: VelocityNet<B::InnerBackend>,
    state: TrainState,
}

/// Trains fold `f`; returns its held-out predictions (log2, |test| × G).
fn run_fold<B: TrainBackend>(
    opts: &TrainOptions,
    cohort: &Cohort,
    mut spec: ModelSpec,
    f: usize,
    train_all: &[usize],
    test_idx: &[usize],
    device: &B::Device,
) -> Result<(Array2<f32>, Option<FoldSeconds>)> {
    let dir = fold_dir(&opts.out, f);
    let pred_path = dir.join(PRED_FILE);
    let done_path = dir.join(DONE_FILE);
    let seconds_path = dir.join(SECONDS_FILE);
    if opts.resume && done_path.is_file() {
        tracing::info!(fold = f, "fold already finished; reusing its predictions");
        let a = rnafm_runtime::npy::read_float_array(&pred_path, None)?;
        let seconds = std::fs::read_to_string(&seconds_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        return Ok((
            a.into_dimensionality::<ndarray::Ix2>()
                .map_err(|e| Error::invalid(&pred_path, format!("not a 2-D array: {e}")))?,
            seconds,
        ));
    }
    let setup = FoldSetup::new(opts, cohort, f, train_all, test_idx)?;
    spec.normalization = Some(setup.norm.clone());
    let anchor = opts.anchor.then(|| {
        let t0 = Instant::now();
        let a = crate::anchor_fit::fit(cohort, &setup.z, &setup.train_idx);
        tracing::info!(
            fold = f,
            seconds = t0.elapsed().as_secs_f64(),
            median_relative_lambda = a.median_relative_lambda,
            "mean anchor fitted"
        );
        a
    });
    let target = anchor.as_ref().map(|a| a.residuals(&setup.z));
    let fold = FlowFold::<B> {
        opts,
        cohort,
        spec,
        f,
        setup,
        anchor,
        target,
        device,
    };
    let recorder = NamedMpkFileRecorder::<FullPrecisionSettings>::new();
    let optim = AdamWConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.99)
        .with_epsilon(1e-8)
        .with_weight_decay(opts.weight_decay)
        .init::<B, VelocityNet<B>>();
    let (mut p, mut optim) = fold.start_or_resume(optim, &recorder)?;

    let steps_per_epoch = fold.setup.train_idx.len().div_ceil(opts.batch);
    let total = (opts.epochs * steps_per_epoch) as u64;
    let bar = if opts.progress {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("fold {prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(f.to_string());
    bar.set_position(p.state.step.min(total));
    let started = Instant::now();
    let start_step = p.state.step;
    while p.state.epoch < opts.epochs && !p.state.stopped_early {
        let loss_sum;
        let t0 = Instant::now();
        (p, optim, loss_sum) = fold.train_epoch(p, optim, &bar, started, start_step)?;
        p.state.seconds.training += t0.elapsed().as_secs_f64();
        p.state.seconds.epochs += 1;
        p.state.epoch += 1;
        p.state.last_loss = Some(loss_sum / steps_per_epoch as f64);
        tracing::info!(
            fold = f,
            epoch = p.state.epoch,
            loss = p.state.last_loss,
            "epoch done"
        );
        if p.state.epoch % opts.val_every.max(1) == 0 || p.state.epoch == opts.epochs {
            let t0 = Instant::now();
            fold.validate(&mut p)?;
            p.state.seconds.validation += t0.elapsed().as_secs_f64();
            p.state.seconds.validations += 1;
        }
        fold.save_last(&p, &optim, &recorder)?;
    }
    bar.finish_and_clear();

    let mut seconds = p.state.seconds;
    let t0 = Instant::now();
    let pred = fold.predict_heldout(p.ema, test_idx)?;
    seconds.out_of_fold = t0.elapsed().as_secs_f64();
    tracing::info!(
        fold = f,
        seconds_per_epoch = seconds.per_epoch(),
        sampling_share = seconds.sampling_share(),
        "fold timing"
    );
    rnafm_runtime::npy::write_npy(&pred_path, &pred.view())?;
    let text = serde_json::to_string_pretty(&seconds)
        .map_err(|e| Error::Runtime(format!("cannot serialise timings: {e}")))?;
    rnafm_runtime::atomic::write_bytes_atomic(&seconds_path, text.as_bytes())?;
    std::fs::write(&done_path, b"").map_err(io(&done_path))?;
    Ok((pred, Some(seconds)))
}

impl<B: TrainBackend> FlowFold<'_, B> {
    /// What the flow learns (see `target`); no copy of `setup.z` without an anchor.
    fn target(&self) -> &Array2<f32> {
        self.target.as_ref().unwrap_or(&self.setup.z)
    }

    /// The anchor beside a checkpoint's weights (before its spec, which marks it complete).
    fn write_anchor(&self, dir: &Path) -> Result<()> {
        match &self.anchor {
            Some(a) => a.anchor.write(&dir.join(ANCHOR_FILE)),
            None => Ok(()),
        }
    }

    fn last_dir(&self) -> PathBuf {
        self.setup.dir.join(LAST_DIR)
    }

    fn best_dir(&self) -> PathBuf {
        self.setup.dir.join(BEST_DIR)
    }

    /// The latest checkpoint with its optimiser state under --resume, else fresh weights.
    fn start_or_resume<O: Optimizer<VelocityNet<B>, B>>(
        &self,
        optim: O,
        recorder: &NamedMpkFileRecorder<FullPrecisionSettings>,
    ) -> Result<(Progress<B>, O)> {
        let (spec, device, f) = (&self.spec, self.device, self.f);
        let resume_dir = if self.opts.resume {
            find_last(&self.last_dir())
        } else {
            None
        };
        let Some(dir) = resume_dir else {
            let mut w = init_weights(spec, self.opts.seed.wrapping_add(f as u64));
            if self.opts.aux_weight > 0.0 {
                crate::init::add_aux_head(
                    &mut w,
                    spec.config.hidden,
                    spec.config.genes,
                    self.opts.seed.wrapping_add(f as u64),
                );
            }
            if let Some(run) = &self.opts.init_slide_encoder {
                let n = warm_start_slide_encoder(&mut w, run, f, &self.setup.dir)?;
                tracing::info!(
                    fold = f,
                    tensors = n,
                    "slide encoder from {}",
                    run.display()
                );
            }
            let model = renumber_params(VelocityNet::<B>::from_weights(
                spec,
                &w,
                &self.setup.dir,
                device,
            )?);
            let ema = model.valid();
            let state = TrainState {
                fold: f,
                epoch: 0,
                step: 0,
                best_r: None,
                best_loss: None,
                best_epoch: None,
                bad_validations: 0,
                stopped_early: false,
                seed: self.opts.seed,
                last_loss: None,
                seconds: FoldSeconds::default(),
            };
            return Ok((Progress { model, ema, state }, optim));
        };
        let ck = CheckpointDir::new(&dir);
        let state: TrainState = read_state(&dir.join(STATE_FILE))
            .ok_or_else(|| Error::invalid(dir.join(STATE_FILE), "unreadable training state"))?;
        let raw = ck.read_weights(RAW_FILE)?;
        let emaw = ck.read_weights(EMA_FILE)?;
        let model = renumber_params(VelocityNet::<B>::from_weights(
            spec,
            &raw,
            &ck.path(RAW_FILE),
            device,
        )?);
        let ema =
            VelocityNet::<B::InnerBackend>::from_weights(spec, &emaw, &ck.path(EMA_FILE), device)?;
        let rec = recorder
            .load(dir.join(OPTIM_FILE), device)
            .map_err(|e| Error::invalid(dir.join(OPTIM_FILE), format!("optimiser state: {e}")))?;
        tracing::info!(fold = f, epoch = state.epoch, step = state.step, "resumed");
        Ok((Progress { model, ema, state }, optim.load_record(rec)))
    }

    /// One pass over the training slides in a seeded order: flow-matching steps with
    /// condition dropout, clipping, AdamW and the EMA. Returns the summed batch losses.
    fn train_epoch<O: Optimizer<VelocityNet<B>, B>>(
        &self,
        p: Progress<B>,
        mut optim: O,
        bar: &ProgressBar,
        started: Instant,
        start_step: u64,
    ) -> Result<(Progress<B>, O, f64)> {
        let Progress {
            mut model,
            mut ema,
            mut state,
        } = p;
        let (opts, cohort, f, device) = (self.opts, self.cohort, self.f, self.device);
        let g = self.spec.config.genes;
        let kd = cohort.clusters * cohort.feat_dim;
        let mut rng =
            ChaCha8Rng::seed_from_u64(opts.seed ^ ((f as u64) << 40) ^ state.epoch as u64);
        let mut order = self.setup.train_idx.clone();
        order.shuffle(&mut rng);
        let mut loss_sum = 0.0;
        for slides in order.chunks(opts.batch) {
            // Each slide `noise_draws` times in a row, each with its own (t, x0).
            let batch: Vec<usize> = slides
                .iter()
                .flat_map(|&s| std::iter::repeat_n(s, opts.noise_draws.max(1)))
                .collect();
            let b = batch.len();
            let mut xt = Vec::with_capacity(b * g);
            let mut target = Vec::with_capacity(b * g);
            let mut ts = Vec::with_capacity(b);
            for &s in &batch {
                let t: f32 = rng.random();
                ts.push(t);
                for &x1 in self.target().row(s) {
                    let x0: f32 = StandardNormal.sample(&mut rng);
                    xt.push(t * x1 + (1.0 - t) * x0);
                    target.push(x1 - x0);
                }
            }
            let drop = rng.random::<f64>() < opts.cond_drop;
            let y = if drop {
                model.slide.null_condition(b)
            } else {
                Tensor::from_data(
                    TensorData::new(
                        cohort.features_of(&batch),
                        [b, cohort.clusters, cohort.feat_dim],
                    ),
                    device,
                )
            };
            debug_assert_eq!(kd * b, y.shape().num_elements());
            let xt = Tensor::<B, 2>::from_data(TensorData::new(xt, [b, g]), device);
            let target = Tensor::<B, 2>::from_data(TensorData::new(target, [b, g]), device);
            let t = Tensor::<B, 1>::from_data(TensorData::new(ts, [b]), device);
            let (v, slide) = model.forward_with_slide(xt, t, y);
            let mut loss = (v - target).powf_scalar(2.0).mean();
            if let (Some(head), false) = (&model.aux, drop) {
                let x1: Vec<f32> = batch
                    .iter()
                    .flat_map(|&s| self.target().row(s).to_vec())
                    .collect();
                let x1 = Tensor::<B, 2>::from_data(TensorData::new(x1, [b, g]), device);
                let aux = (head.forward(slide) - x1).powf_scalar(2.0).mean();
                loss = loss + aux * opts.aux_weight;
            }
            let loss_v = loss.clone().into_scalar().elem::<f64>();
            if !loss_v.is_finite() {
                return Err(Error::invalid(
                    &opts.csv,
                    format!(
                        "fold {f}: training loss became {loss_v} at step {}",
                        state.step
                    ),
                ));
            }
            loss_sum += loss_v;
            let mut grads = GradientsParams::from_grads(loss.backward(), &model);
            clip_global_norm(&model, &mut grads, opts.clip);
            model = optim.step(opts.lr, model, grads);
            let decay = match opts.ema_decay {
                Some(max) => ema_decay_capped(state.step, max),
                None => ema_decay(state.step),
            };
            ema = ema_update(ema, &model.valid(), decay);
            state.step += 1;
            let rate = (state.step - start_step) as f64 / started.elapsed().as_secs_f64().max(1e-9);
            bar.set_position(state.step);
            bar.set_message(format!("loss {loss_v:.4} {rate:.2} steps/s"));
        }
        Ok((Progress { model, ema, state }, optim, loss_sum))
    }

    /// Samples the validation slides with the EMA weights, scores them by the chosen
    /// validation loss, keeps the best checkpoint and counts validations without improvement.
    fn validate(&self, p: &mut Progress<B>) -> Result<()> {
        let (opts, cohort, f) = (self.opts, self.cohort, self.f);
        let val_idx = &self.setup.val_idx;
        let state = &mut p.state;
        let pred = predict(
            &p.ema,
            cohort,
            val_idx,
            &self.setup.norm,
            self.anchor.as_ref(),
            opts,
            opts.val_draws,
            self.device,
            0xA11 ^ state.epoch as u64,
        );
        let m = per_gene(pred.view(), cohort.log2.select(Axis(0), val_idx).view());
        let r = finite_mean(&m.pearson).0;
        let loss = match opts.val_loss {
            ValLoss::R => 1.0 - r,
            ValLoss::Sample => sample_mse_z(&pred, &self.setup.z, val_idx, &self.setup.norm),
            ValLoss::Flow => validation_flow_loss(
                &p.ema,
                cohort,
                self.target(),
                val_idx,
                opts.val_draws,
                self.device,
                0x5EED ^ f as u64,
            ),
        };
        tracing::info!(
            fold = f,
            epoch = state.epoch,
            val_loss = loss,
            val_r = r,
            "validation"
        );
        if state.best_loss.is_none_or(|b| loss < b) {
            state.best_loss = Some(loss);
            state.best_r = Some(r);
            state.best_epoch = Some(state.epoch);
            state.bad_validations = 0;
            let w = p.ema.to_weights();
            write_dir_swapped(&self.best_dir(), |d| {
                self.write_anchor(d)?;
                CheckpointDir::new(d).write(&self.spec, &p.model.valid().to_weights(), &w)
            })?;
        } else {
            state.bad_validations += 1;
            if state.bad_validations >= opts.patience {
                state.stopped_early = true;
                tracing::info!(fold = f, epoch = state.epoch, "early stop");
            }
        }
        Ok(())
    }

    /// The latest weights, EMA, optimiser state and position, swapped in whole (`--resume`).
    fn save_last<O: Optimizer<VelocityNet<B>, B>>(
        &self,
        p: &Progress<B>,
        optim: &O,
        recorder: &NamedMpkFileRecorder<FullPrecisionSettings>,
    ) -> Result<()> {
        let optim_rec = optim.to_record();
        write_dir_swapped(&self.last_dir(), |d| {
            self.write_anchor(d)?;
            CheckpointDir::new(d).write(
                &self.spec,
                &p.model.valid().to_weights(),
                &p.ema.to_weights(),
            )?;
            recorder
                .record(optim_rec, d.join(OPTIM_FILE))
                .map_err(|e| {
                    Error::invalid(
                        d.join(OPTIM_FILE),
                        format!("cannot write optimiser state: {e}"),
                    )
                })?;
            let text = serde_json::to_string_pretty(&p.state).expect("state serialises");
            std::fs::write(d.join(STATE_FILE), text).map_err(io(&d.join(STATE_FILE)))
        })
    }

    /// Held-out predictions with the best EMA weights (the last ones if no validation ran).
    fn predict_heldout(
        &self,
        last_ema: VelocityNet<B::InnerBackend>,
        test_idx: &[usize],
    ) -> Result<Array2<f32>> {
        let best = self.best_dir();
        let ck = CheckpointDir::new(&best);
        let ema = if CheckpointDir::exists(&best) {
            VelocityNet::<B::InnerBackend>::from_weights(
                &self.spec,
                &ck.read_weights(EMA_FILE)?,
                &ck.path(EMA_FILE),
                self.device,
            )?
        } else {
            last_ema
        };
        Ok(predict(
            &ema,
            self.cohort,
            test_idx,
            &self.setup.norm,
            self.anchor.as_ref(),
            self.opts,
            self.opts.oof_draws,
            self.device,
            0x7E57,
        ))
    }
}

/// Copies fold `f`'s slide encoder of the regression-baseline run `run` into `w`; the two
/// runs must hold out the same slides (else the encoder would have seen this fold's test
/// slides). Returns the number of tensors copied.
fn warm_start_slide_encoder(w: &mut WeightMap, run: &Path, f: usize, fold: &Path) -> Result<usize> {
    let theirs = fold_dir(run, f);
    let ours = std::fs::read_to_string(fold.join(HELDOUT_LIST)).map_err(io(fold))?;
    let held = theirs.join(HELDOUT_LIST);
    let same = std::fs::read_to_string(&held).map_err(io(&held))?;
    if ours != same {
        return Err(Error::invalid(
            &held,
            format!(
                "fold {f} of that run holds out other slides than this run's (train both with the same --folds/--seed or --splits)"
            ),
        ));
    }
    let path = theirs.join(rnafm_runtime::checkpoint::REGRESSION_WEIGHTS_FILE);
    let base = WeightMap::read_safetensors(&path)?;
    let mut n = 0;
    for (name, t) in &base.tensors {
        let encoder = crate::slide_encoder::WEIGHT_PREFIXES
            .iter()
            .any(|p| name.starts_with(p));
        if !encoder {
            continue;
        }
        match w.tensors.get(name) {
            Some(mine) if mine.shape == t.shape => {
                w.insert(name.clone(), t.clone());
                n += 1;
            }
            _ => {
                return Err(Error::invalid(
                    &path,
                    format!(
                        "{name}: not a slide-encoder tensor of this model's shape (train the baseline with the same --hidden and features)"
                    ),
                ));
            }
        }
    }
    if n == 0 {
        return Err(Error::invalid(&path, "holds no slide-encoder weights"));
    }
    Ok(n)
}

/// `last`, or `last.old` when a crash came between the two renames of a swap.
fn find_last(last: &Path) -> Option<PathBuf> {
    let old = last.with_extension("old");
    [last.to_path_buf(), old]
        .into_iter()
        .find(|d| d.join(STATE_FILE).is_file())
}

/// Writes a directory's files into `dir.new`, then swaps it in with renames, so that a
/// kill at any point leaves a complete `dir` or `dir.old`.
fn write_dir_swapped(dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let new = dir.with_extension("new");
    let old = dir.with_extension("old");
    if new.exists() {
        std::fs::remove_dir_all(&new).map_err(io(&new))?;
    }
    std::fs::create_dir_all(&new).map_err(io(&new))?;
    fill(&new)?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(io(dir))?;
    }
    std::fs::rename(&new, dir).map_err(io(dir))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    Ok(())
}

/// Holds out `fraction` of the training patients (rounded up; at least one, and at least one
/// left to train on; none if only one patient) for early stopping and interval calibration.
/// Returns (train, validation) slide indices.
pub fn split_validation(
    patients: &[String],
    train: &[usize],
    fraction: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    let mut uniq: Vec<&str> = train.iter().map(|&s| patients[s].as_str()).collect();
    uniq.sort_unstable();
    uniq.dedup();
    if uniq.len() < 2 {
        return (train.to_vec(), train.to_vec());
    }
    uniq.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let n_val = ((uniq.len() as f64 * fraction).ceil() as usize).clamp(1, uniq.len() - 1);
    let val: std::collections::HashSet<&str> = uniq[..n_val].iter().copied().collect();
    train
        .iter()
        .copied()
        .partition(|&s| !val.contains(patients[s].as_str()))
}

/// Mean squared error in z units of predictions `pred` (log2, rows = slides `idx`) against
/// the z-scored truth `z` (rows = all slides).
fn sample_mse_z(pred: &Array2<f32>, z: &Array2<f32>, idx: &[usize], norm: &Normalization) -> f64 {
    let mut sum = 0f64;
    for (row, &s) in pred.rows().into_iter().zip(idx) {
        for (j, (&p, &t)) in row.iter().zip(z.row(s)).enumerate() {
            let d = f64::from(norm.to_z(j, p) - t);
            sum += d * d;
        }
    }
    sum / (idx.len() * z.ncols()).max(1) as f64
}

/// Flow-matching loss (conditional velocity, z units) of `net` on slides `idx`: the training
/// objective on held-out slides, with `draws` (time, noise) pairs per slide, times stratified
/// over (0, 1) and noise from `seed`, the same at every validation so that validations
/// compare like with like. Unlike the error of sampled predictions it does not reward a
/// model that is still near the mean (shrunken predictions have a low squared error).
fn validation_flow_loss<B: FusedOps>(
    net: &VelocityNet<B>,
    cohort: &Cohort,
    z: &Array2<f32>,
    idx: &[usize],
    draws: usize,
    device: &B::Device,
    seed: u64,
) -> f64 {
    let g = net.n_genes;
    let draws = draws.max(1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let per_chunk = (64 / draws).max(1);
    let (mut sum, mut count) = (0f64, 0usize);
    for chunk in idx.chunks(per_chunk) {
        let rows = chunk.len() * draws;
        let mut xt = Vec::with_capacity(rows * g);
        let mut target = Vec::with_capacity(rows * g);
        let mut ts = Vec::with_capacity(rows);
        for &s in chunk {
            for d in 0..draws {
                let t = (d as f32 + 0.5) / draws as f32;
                ts.push(t);
                for &x1 in z.row(s) {
                    let x0: f32 = StandardNormal.sample(&mut rng);
                    xt.push(t * x1 + (1.0 - t) * x0);
                    target.push(x1 - x0);
                }
            }
        }
        let y = Tensor::<B, 3>::from_data(
            TensorData::new(
                repeat_rows(
                    &cohort.features_of(chunk),
                    cohort.clusters * cohort.feat_dim,
                    draws,
                ),
                [rows, cohort.clusters, cohort.feat_dim],
            ),
            device,
        );
        let xt = Tensor::<B, 2>::from_data(TensorData::new(xt, [rows, g]), device);
        let target = Tensor::<B, 2>::from_data(TensorData::new(target, [rows, g]), device);
        let t = Tensor::<B, 1>::from_data(TensorData::new(ts, [rows]), device);
        let se = (net.forward(xt, t, y) - target).powf_scalar(2.0).sum();
        sum += se.into_scalar().elem::<f64>();
        count += rows * g;
    }
    sum / count.max(1) as f64
}

/// Predictions (log2) for slides `idx`: the mean of `draws` guided samples per slide
/// (guidance `opts.cfg`), from seeded noise, plus the anchor's out-of-sample prediction
/// when the flow learned its residuals.
#[allow(clippy::too_many_arguments)]
fn predict<B: FusedOps>(
    net: &VelocityNet<B>,
    cohort: &Cohort,
    idx: &[usize],
    norm: &Normalization,
    anchor: Option<&FoldAnchor>,
    opts: &TrainOptions,
    draws: usize,
    device: &B::Device,
    seed: u64,
) -> Array2<f32> {
    let g = net.n_genes;
    let draws = draws.max(1);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Array2::<f32>::zeros((idx.len(), g));
    let cfg = (opts.cfg != 1.0).then_some(opts.cfg);
    // About 64 rows (slides × draws) a batch.
    let per_chunk = (64 / draws).max(1);
    for (c, chunk) in idx.chunks(per_chunk).enumerate() {
        let rows = chunk.len() * draws;
        let z: Vec<f32> = (0..rows * g)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        let z = Tensor::<B, 2>::from_data(TensorData::new(z, [rows, g]), device);
        let y = Tensor::<B, 3>::from_data(
            TensorData::new(
                repeat_rows(
                    &cohort.features_of(chunk),
                    cohort.clusters * cohort.feat_dim,
                    draws,
                ),
                [rows, cohort.clusters, cohort.feat_dim],
            ),
            device,
        );
        let points = opts.predict_time_points.unwrap_or(opts.time_points);
        let s = crate::weight_io::to_vec(&sample(net, z, y, points, cfg));
        let mean = mean_of_draws(&s, chunk.len(), draws, g);
        for (r, &slide) in chunk.iter().enumerate() {
            for j in 0..g {
                let a = anchor.map_or(0.0, |a| a.predicted[[slide, j]]);
                out[[c * per_chunk + r, j]] = norm.from_z(j, mean[r * g + j] + a);
            }
        }
    }
    out
}

/// Each `item`-long block of `flat` repeated `n` times in place: [a, b] → [a, a, b, b].
fn repeat_rows(flat: &[f32], item: usize, n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(flat.len() * n);
    for block in flat.chunks(item.max(1)) {
        for _ in 0..n {
            out.extend_from_slice(block);
        }
    }
    out
}

/// Mean over the `n` consecutive draws of each of `b` slides: [b·n, g] → [b, g].
fn mean_of_draws(s: &[f32], b: usize, n: usize, g: usize) -> Vec<f32> {
    let mut out = vec![0f32; b * g];
    for (r, o) in out.chunks_mut(g).enumerate() {
        for d in 0..n {
            let row = &s[(r * n + d) * g..(r * n + d + 1) * g];
            for (acc, v) in o.iter_mut().zip(row) {
                *acc += v;
            }
        }
        for acc in o.iter_mut() {
            *acc /= n as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slides_are_repeated_once_per_draw_and_draws_averaged_per_slide() {
        // Two slides of 3 features each, 2 draws.
        let f = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert_eq!(
            repeat_rows(&f, 3, 2),
            [1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 4.0, 5.0, 6.0]
        );
        assert_eq!(repeat_rows(&f, 3, 1), f);
        // Rows of 2 genes: slide 0 draws (1, 0), (3, 2); slide 1 draws (10, -1), (20, 1).
        let s = [1.0, 0.0, 3.0, 2.0, 10.0, -1.0, 20.0, 1.0];
        assert_eq!(mean_of_draws(&s, 2, 2, 2), [2.0, 1.0, 15.0, 0.0]);
    }
}
