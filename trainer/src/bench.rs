//! Timing of training steps at a given model size on synthetic inputs (the data never
//! matters for speed): forward, backward, global-norm clip, AdamW and EMA update.
//!
//! The inputs are drawn on the host from a seeded generator, so the same `seed` feeds every
//! backend the same batches: a CPU run and a CUDA run can then be compared step by step
//! (losses) and at the end (weights), which is how `scripts/gpu-check` tests CUDA.

use std::time::Instant;

use crate::fused::TrainBackend;
use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal, Uniform};
use rnafm_runtime::Result;
use rnafm_runtime::model_spec::ModelSpec;
use rnafm_runtime::weights::WeightMap;

use crate::ema::{ema_decay, ema_update, renumber_params};
use crate::grad_clip::clip_global_norm;
use crate::init::init_weights;
use crate::velocity_net::VelocityNet;

#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    pub backend: String,
    pub batch: usize,
    pub genes: usize,
    pub pathways: usize,
    pub clusters: usize,
    pub feat_dim: usize,
    pub hidden: usize,
    pub depth: usize,
    pub heads: usize,
    pub parameters: usize,
    pub warmup_steps: usize,
    pub timed_steps: usize,
    /// Median over the timed steps (as the PyTorch reference timing).
    pub seconds_per_step: f64,
    pub steps_per_second: f64,
    /// Every timed step, in order.
    pub step_seconds: Vec<f64>,
    /// Mean seconds per timed step in forward + backward, in clipping + AdamW, and in
    /// the EMA update.
    pub forward_backward_s: f64,
    pub optimizer_s: f64,
    pub ema_s: f64,
    pub peak_rss_mib: Option<f64>,
    pub build_seconds: f64,
    /// Seed of the weights and of the inputs.
    pub seed: u64,
    /// The loss of every step, warm-up included.
    pub losses: Vec<f64>,
}

/// What [`bench_steps`] runs.
#[derive(Debug, Clone, Copy)]
pub struct BenchPlan {
    pub batch: usize,
    pub warmup: usize,
    pub steps: usize,
    /// Seeds the initial weights and every step's inputs.
    pub seed: u64,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Peak resident set size of this process (Linux `VmHWM`), MiB.
pub fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// One step's inputs, drawn on the host: x_t, target velocity [batch, genes], t [batch],
/// cluster features [batch, clusters, feat_dim].
fn host_inputs(rng: &mut ChaCha8Rng, batch: usize, genes: usize, features: usize) -> [Vec<f32>; 4] {
    let mut normal =
        |n: usize| -> Vec<f32> { (0..n).map(|_| StandardNormal.sample(rng)).collect() };
    let xt = normal(batch * genes);
    let target = normal(batch * genes);
    let y = normal(batch * features);
    let unit = Uniform::new(0.0f32, 1.0).expect("valid range");
    let t = (0..batch).map(|_| unit.sample(rng)).collect();
    [xt, target, t, y]
}

/// Runs `plan.warmup + plan.steps` training steps; returns the timing report and the raw
/// weights after the last step.
pub fn bench_steps<B: TrainBackend>(
    spec: &ModelSpec,
    plan: BenchPlan,
    device: &B::Device,
    backend: &str,
) -> Result<(BenchReport, WeightMap)> {
    let BenchPlan {
        batch,
        warmup,
        steps,
        seed,
    } = plan;
    let t0 = Instant::now();
    let w = init_weights(spec, seed);
    let parameters = w.total_params();
    let mut model = renumber_params(VelocityNet::<B>::from_weights(
        spec,
        &w,
        std::path::Path::new("(init)"),
        device,
    )?);
    drop(w);
    let mut ema = model.valid();
    let mut optim = AdamWConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.99)
        .with_epsilon(1e-8)
        .with_weight_decay(0.01)
        .init::<B, VelocityNet<B>>();
    let build_seconds = t0.elapsed().as_secs_f64();
    let c = &spec.config;
    let mut phases = [0f64; 3];
    let mut step_seconds = Vec::with_capacity(steps);
    let mut losses = Vec::with_capacity(warmup + steps);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for step in 0..warmup + steps {
        if step == warmup {
            B::sync(device).ok();
            phases = [0.0; 3];
        }
        // Drawn before the clock starts: the host generator is not part of a training step.
        let [xt, target, t, y] = host_inputs(&mut rng, batch, c.genes, c.clusters * c.feat_dim);
        let p0 = Instant::now();
        let xt = Tensor::<B, 2>::from_data(TensorData::new(xt, [batch, c.genes]), device);
        let target = Tensor::<B, 2>::from_data(TensorData::new(target, [batch, c.genes]), device);
        let t = Tensor::<B, 1>::from_data(TensorData::new(t, [batch]), device);
        let y =
            Tensor::<B, 3>::from_data(TensorData::new(y, [batch, c.clusters, c.feat_dim]), device);
        let loss = (model.forward(xt, t, y) - target).powf_scalar(2.0).mean();
        losses.push(f64::from(loss.clone().into_scalar().elem::<f32>()));
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        B::sync(device).ok();
        let p1 = Instant::now();
        clip_global_norm(&model, &mut grads, 1.0);
        model = optim.step(1e-4, model, grads);
        B::sync(device).ok();
        let p2 = Instant::now();
        ema = ema_update(ema, &model.valid(), ema_decay(step as u64));
        B::sync(device).ok();
        phases[0] += (p1 - p0).as_secs_f64();
        phases[1] += (p2 - p1).as_secs_f64();
        phases[2] += p2.elapsed().as_secs_f64();
        if step >= warmup {
            step_seconds.push(p0.elapsed().as_secs_f64());
        }
    }
    B::sync(device).ok();
    let sps = median(&step_seconds);
    let weights = model.valid().to_weights();
    let report = BenchReport {
        backend: backend.to_string(),
        batch,
        genes: c.genes,
        pathways: spec.pathways.len(),
        clusters: c.clusters,
        feat_dim: c.feat_dim,
        hidden: c.hidden,
        depth: c.depth,
        heads: c.heads,
        parameters,
        warmup_steps: warmup,
        timed_steps: steps,
        seconds_per_step: sps,
        steps_per_second: 1.0 / sps,
        step_seconds,
        forward_backward_s: phases[0] / steps.max(1) as f64,
        optimizer_s: phases[1] / steps.max(1) as f64,
        ema_s: phases[2] / steps.max(1) as f64,
        peak_rss_mib: peak_rss_mib(),
        build_seconds,
        seed,
        losses,
    };
    Ok((report, weights))
}
