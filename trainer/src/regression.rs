//! The regression baseline: RNA-FM's slide encoder followed by an MLP to every gene,
//! trained with MSE on the z-scored profile. It uses the same patient-level folds, the same
//! inner validation split (early stopping on validation r) and the same output layout as
//! flow-matching training (`fold_N/heldout.txt`, `validation.txt`, `oof_predictions.npy`,
//! `metrics.json`, and the pooled `oof_predictions.npy` in the reference CSV's row order for
//! `rnafm-train evaluate`). It is deterministic: weights,
//! batch order and everything else derive from `--seed`.

use std::path::Path;

use crate::fused::TrainBackend;
use burn::module::AutodiffModule;
use burn::nn::Linear;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::activation::silu;
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{Array2, Axis};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rnafm_runtime::genes::GeneList;
use rnafm_runtime::model_config::{ModelConfig, TokenMode};
use rnafm_runtime::model_spec::ModelSpec;
use rnafm_runtime::normalization::Normalization;
use rnafm_runtime::pathways::PathwaySet;
use rnafm_runtime::weights::{Tensor as HostTensor, WeightMap};
use rnafm_runtime::{Error, Result};

use crate::dataset::Cohort;
use crate::ema::renumber_params;
use crate::fused::FusedOps;
use crate::grad_clip::clip_global_norm;
use crate::init::init_weights;
use crate::slide_encoder::SlideEncoder;
use crate::splits::Splits;
use crate::train::{FoldSetup, TrainOptions};
use crate::weight_io::{Loader, Saver};
use rnafm_eval::cv_metrics::finish_run;
use rnafm_eval::gene_scores::per_gene;
use rnafm_eval::stats::finite_mean;
use rnafm_runtime::checkpoint::{PRED_FILE, REGRESSION_WEIGHTS_FILE as WEIGHTS_FILE};
use rnafm_runtime::training_metrics::TrainingMetrics;

/// Slide encoder → Linear(H, 2H) → SiLU → Linear(2H, G): a z-scored profile per slide.
#[derive(Module, Debug)]
pub struct RegressionNet<B: Backend> {
    pub slide: SlideEncoder<B>,
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
}

impl<B: FusedOps> RegressionNet<B> {
    /// `y` [B, K, D] → z-scored expression [B, G].
    pub fn forward(&self, y: Tensor<B, 3>) -> Tensor<B, 2> {
        self.fc2
            .forward(silu(self.fc1.forward(self.slide.forward(y))))
    }
}

impl<B: Backend> RegressionNet<B> {
    /// Initial weights: the flow model's slide encoder initialisation (same seed rule) and
    /// Xavier-uniform MLP weights, all from `seed`.
    pub fn init(spec: &ModelSpec, seed: u64, device: &B::Device) -> Result<Self> {
        let c = &spec.config;
        let mut w = init_weights(spec, seed);
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_F4E6);
        let mut xavier = |name: &str, d_in: usize, d_out: usize| {
            let a = (6.0 / (d_in + d_out) as f64).sqrt() as f32;
            let data = (0..d_in * d_out).map(|_| rng.random_range(-a..a)).collect();
            w.insert(
                format!("{name}.weight"),
                HostTensor::new(vec![d_out, d_in], data),
            );
            w.insert(
                format!("{name}.bias"),
                HostTensor::new(vec![d_out], vec![0.0; d_out]),
            );
        };
        xavier("head.0", c.hidden, 2 * c.hidden);
        xavier("head.2", 2 * c.hidden, c.genes);
        Ok(renumber_params(Self::from_weights(
            spec,
            &w,
            Path::new("init"),
            device,
        )?))
    }

    pub fn from_weights(
        spec: &ModelSpec,
        w: &WeightMap,
        origin: &Path,
        device: &B::Device,
    ) -> Result<Self> {
        let c = &spec.config;
        let l = Loader::new(w, origin, device);
        Ok(RegressionNet {
            slide: SlideEncoder::load(&l, c.clusters, c.feat_dim, c.hidden, c.heads)?,
            fc1: l.linear("head.0", c.hidden, 2 * c.hidden, true)?,
            fc2: l.linear("head.2", 2 * c.hidden, c.genes, true)?,
        })
    }

    pub fn to_weights(&self) -> WeightMap {
        let mut s = Saver::default();
        self.slide.save(&mut s);
        s.linear("head.0", &self.fc1);
        s.linear("head.2", &self.fc2);
        s.map
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::io(path, e)
}

/// Cross-validated training of the baseline with the options of flow-matching training
/// (folds, seed, epochs, batch, lr, validation schedule, model width); flow-only options
/// (guidance, time points, condition dropout, tokens) are ignored.
pub fn train_baseline<B: TrainBackend>(
    opts: &TrainOptions,
    device: &B::Device,
) -> Result<TrainingMetrics> {
    std::fs::create_dir_all(&opts.out).map_err(io(&opts.out))?;
    let genes = GeneList::read(&opts.genes)?;
    let cohort = opts.load_cohort(&genes)?;
    let config = ModelConfig {
        hidden: opts.hidden,
        depth: opts.depth,
        heads: opts.heads,
        graph_heads: 4,
        clusters: cohort.clusters,
        feat_dim: cohort.feat_dim,
        genes: genes.len(),
        mlp_ratio: 4,
        cond_drop: 0.0,
        graph_attention: false,
        tokens: TokenMode::Alphabetical,
    };
    config.validate(&opts.csv)?;
    // The encoder does not use tokens; a trivial token set keeps ModelSpec valid.
    let spec = ModelSpec {
        config,
        genes: genes.symbols().to_vec(),
        pathways: PathwaySet::alphabetical(&genes, genes.len().max(1)),
        normalization: None,
    };
    let splits_path = opts.out.join("splits.json");
    let splits = match &opts.splits {
        Some(p) => Splits::read(p)?,
        None => Splits::new(&cohort.patients, opts.folds, opts.seed, &opts.csv)?,
    };
    splits.write(&splits_path)?;
    let mut oof = Array2::<f32>::zeros((cohort.len(), genes.len()));
    let mut fold_tests = Vec::new();
    let mut best_epochs = Vec::new();
    for f in 0..splits.folds.len() {
        let (train_idx, test_idx) = splits.slides(&cohort.patients, f, &splits_path)?;
        if train_idx.is_empty() || test_idx.is_empty() {
            return Err(Error::invalid(
                &splits_path,
                format!("fold {f} has no training or no held-out slide"),
            ));
        }
        let (pred, best_epoch) =
            baseline_fold::<B>(opts, &cohort, &spec, f, &train_idx, &test_idx, device)?;
        for (row, &s) in test_idx.iter().enumerate() {
            oof.row_mut(s).assign(&pred.row(row));
        }
        fold_tests.push(test_idx);
        best_epochs.push(best_epoch);
    }
    finish_run(
        &opts.out,
        oof.view(),
        cohort.log2.view(),
        &fold_tests,
        &best_epochs,
        &[],
        genes.symbols(),
    )
}

/// Predictions (log2) of `net` for slides `idx`.
fn predict<B: FusedOps>(
    net: &RegressionNet<B>,
    cohort: &Cohort,
    idx: &[usize],
    norm: &Normalization,
    device: &B::Device,
) -> Array2<f32> {
    let g = norm.mean.len();
    let mut out = Array2::<f32>::zeros((idx.len(), g));
    for (c, chunk) in idx.chunks(64).enumerate() {
        let b = chunk.len();
        let y = Tensor::<B, 3>::from_data(
            TensorData::new(
                cohort.features_of(chunk),
                [b, cohort.clusters, cohort.feat_dim],
            ),
            device,
        );
        let z = crate::weight_io::to_vec(&net.forward(y));
        for r in 0..b {
            for j in 0..g {
                out[[c * 64 + r, j]] = norm.from_z(j, z[r * g + j]);
            }
        }
    }
    out
}

/// Trains fold `f`; returns its held-out predictions and the best validation epoch.
fn baseline_fold<B: TrainBackend>(
    opts: &TrainOptions,
    cohort: &Cohort,
    spec: &ModelSpec,
    f: usize,
    train_all: &[usize],
    test_idx: &[usize],
    device: &B::Device,
) -> Result<(Array2<f32>, Option<usize>)> {
    // The same lists, inner split and normalisation as flow-matching training, so early
    // stopping sees the same slides.
    let FoldSetup {
        dir: fold_dir,
        train_idx,
        val_idx,
        norm,
        z,
    } = FoldSetup::new(opts, cohort, f, train_all, test_idx)?;
    let g = spec.config.genes;
    let mut model = RegressionNet::<B>::init(spec, opts.seed.wrapping_add(f as u64), device)?;
    let mut optim = AdamWConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.99)
        .with_epsilon(1e-8)
        .with_weight_decay(opts.weight_decay)
        .init::<B, RegressionNet<B>>();
    let steps = (opts.epochs * train_idx.len().div_ceil(opts.batch)) as u64;
    let bar = if opts.progress {
        ProgressBar::new(steps)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("baseline fold {prefix} [{bar:30}] {pos}/{len} {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(f.to_string());
    let mut best: Option<(f64, usize, WeightMap)> = None;
    let mut bad = 0usize;
    for epoch in 1..=opts.epochs {
        let mut rng = ChaCha8Rng::seed_from_u64(opts.seed ^ ((f as u64) << 40) ^ epoch as u64);
        let mut order = train_idx.clone();
        order.shuffle(&mut rng);
        for batch in order.chunks(opts.batch) {
            let b = batch.len();
            let target: Vec<f32> = batch.iter().flat_map(|&s| z.row(s).to_vec()).collect();
            let y = Tensor::<B, 3>::from_data(
                TensorData::new(
                    cohort.features_of(batch),
                    [b, cohort.clusters, cohort.feat_dim],
                ),
                device,
            );
            let target = Tensor::<B, 2>::from_data(TensorData::new(target, [b, g]), device);
            let loss = (model.forward(y) - target).powf_scalar(2.0).mean();
            let loss_v = loss.clone().into_scalar().elem::<f64>();
            if !loss_v.is_finite() {
                return Err(Error::invalid(
                    &opts.csv,
                    format!("baseline fold {f}: training loss became {loss_v} in epoch {epoch}"),
                ));
            }
            let mut grads = GradientsParams::from_grads(loss.backward(), &model);
            clip_global_norm(&model, &mut grads, opts.clip);
            model = optim.step(opts.lr, model, grads);
            bar.inc(1);
            bar.set_message(format!("loss {loss_v:.4}"));
        }
        if epoch % opts.val_every.max(1) == 0 || epoch == opts.epochs {
            let net = model.valid();
            let pred = predict(&net, cohort, &val_idx, &norm, device);
            let m = per_gene(pred.view(), cohort.log2.select(Axis(0), &val_idx).view());
            let r = finite_mean(&m.pearson).0;
            tracing::info!(fold = f, epoch, val_r = r, "baseline validation");
            if best.as_ref().is_none_or(|(b, _, _)| r > *b) {
                best = Some((r, epoch, net.to_weights()));
                bad = 0;
            } else {
                bad += 1;
                if bad >= opts.patience.max(1) {
                    tracing::info!(fold = f, epoch, "baseline early stop");
                    break;
                }
            }
        }
    }
    bar.finish_and_clear();
    let (net, best_epoch) = match best {
        Some((_, e, w)) => {
            let wpath = fold_dir.join(WEIGHTS_FILE);
            w.write_safetensors(&wpath)?;
            (
                RegressionNet::<B::InnerBackend>::from_weights(spec, &w, &wpath, device)?,
                Some(e),
            )
        }
        None => (model.valid(), None),
    };
    let pred = predict(&net, cohort, test_idx, &norm, device);
    rnafm_runtime::npy::write_npy(&fold_dir.join(PRED_FILE), &pred.view())?;
    Ok((pred, best_epoch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, Flex};

    type B = Autodiff<Flex>;

    /// A tiny synthetic cohort: the baseline trains, beats chance on held-out slides where
    /// expression follows the features, writes the RNA-FM layout, and repeats exactly.
    #[test]
    fn baseline_trains_on_a_tiny_cohort_deterministically() {
        let dir = tempfile::tempdir().unwrap();
        let cohort_dir = dir.path().join("cohort");
        rnafm_eval::synth::run_synth(&rnafm_eval::synth::SynthOptions {
            patients: 48,
            genes: 60,
            pathways: 4,
            clusters: 4,
            feat_dim: 6,
            seed: 5,
            oracle_draws: 16,
            ..rnafm_eval::synth::SynthOptions::new(&cohort_dir)
        })
        .unwrap();
        let opts = |out: &Path| TrainOptions {
            csv: cohort_dir.join("reference.csv"),
            features: cohort_dir.join("features"),
            clusters: None,
            pathways: None,
            genes: cohort_dir.join("gene_list.csv"),
            norm: None,
            out: out.to_path_buf(),
            folds: 2,
            splits: None,
            epochs: 150,
            batch: 8,
            lr: 3e-3,
            weight_decay: 0.0,
            clip: 1.0,
            val_every: 10,
            patience: 100,
            cfg: 1.0,
            time_points: 2,
            predict_time_points: None,
            init_slide_encoder: None,
            val_draws: 1,
            oof_draws: 1,
            noise_draws: 1,
            aux_weight: 0.0,
            anchor: false,
            ema_decay: None,
            val_fraction: 0.1,
            val_loss: Default::default(),
            seed: 3,
            hidden: 16,
            depth: 1,
            heads: 2,
            cond_drop: 0.0,
            graph_attention: false,
            tokens: TokenMode::Alphabetical,
            genes_per_token: 10,
            resume: false,
            progress: false,
        };
        let a = dir.path().join("a");
        let r = train_baseline::<B>(&opts(&a), &Default::default()).unwrap();
        assert_eq!(r.folds.len(), 2);
        for f in 0..2 {
            let fd = a.join(format!("fold_{f}"));
            for file in ["heldout.txt", "validation.txt", PRED_FILE, WEIGHTS_FILE] {
                assert!(fd.join(file).is_file(), "{file}");
            }
        }
        let pooled = rnafm_runtime::npy::read_float_array(&a.join(PRED_FILE), None).unwrap();
        assert_eq!(pooled.shape(), [48, r.genes.len()]);
        // The synthetic genes depend on the slide features: the top genes are predicted.
        let top20 = r.pooled.iter().find(|s| s.top_k == Some(20)).unwrap();
        assert!(top20.mean_pearson > 0.3, "top-20 r {}", top20.mean_pearson);
        // Deterministic: a second run gives the same predictions.
        let b = dir.path().join("b");
        train_baseline::<B>(&opts(&b), &Default::default()).unwrap();
        let again = rnafm_runtime::npy::read_float_array(&b.join(PRED_FILE), None).unwrap();
        assert_eq!(pooled, again);
    }
}
