//! `rnafm-train sample`: draws from a trainer checkpoint with the burn sampler, written in
//! `rnafm-run`'s layout (`<slide>.samples.npy` in log2(FPKM-UQ+1), `run.json` with cfg,
//! steps and calibration use). For models the ONNX exporter cannot take (the alphabetical
//! token ablation has no background token) and for checks against `rnafm-run`; the
//! sampler is the same Euler scheme (burn and ONNX agree to ~1e-6), but slower.

use std::path::PathBuf;

use burn::prelude::*;
use ndarray::{Array2, Ix2};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rnafm_runtime::anchor::{ANCHOR_FILE, Anchor};
use rnafm_runtime::calibration::{self, CalibrationUse};
use rnafm_runtime::{Error, Result};

use crate::fused::FusedOps;
use crate::sampler::sample;
use crate::velocity_net::VelocityNet;
use rnafm_runtime::checkpoint::{CheckpointDir, EMA_FILE};
use rnafm_runtime::slide_names::output_name;

/// What to sample (the flags of `rnafm-train sample`).
#[derive(Debug, Clone)]
pub struct SampleOptions {
    /// Checkpoint folder (model.json, ema.safetensors), e.g. <run>/fold_0/best.
    pub checkpoint: PathBuf,
    /// Slide feature files (K×D cluster means, .npy).
    pub slides: Vec<PathBuf>,
    /// Draws per slide.
    pub samples: usize,
    /// Guidance scale (1 = none).
    pub cfg: f32,
    /// Time points of the Euler grid.
    pub time_points: usize,
    pub seed: u64,
    /// Calibration file (rnafm-eval calibrate); its entry for this cfg and time points is
    /// applied to the draws as rnafm-run applies a bundle's.
    pub calibration: Option<PathBuf>,
    /// Output folder.
    pub out: PathBuf,
}

/// Samples every slide; returns what was done about calibration.
pub fn run_sample<B: FusedOps>(args: &SampleOptions, device: &B::Device) -> Result<CalibrationUse> {
    let ck = CheckpointDir::new(&args.checkpoint);
    let spec = ck.read_spec()?;
    let norm = spec.normalization.clone().ok_or_else(|| {
        Error::invalid(ck.path("model.json"), "the checkpoint has no normalisation")
    })?;
    let net = VelocityNet::<B>::from_weights(
        &spec,
        &ck.read_weights(EMA_FILE)?,
        &ck.path(EMA_FILE),
        device,
    )?;
    // A model trained with --anchor samples residuals; its anchor gives the mean.
    let apath = ck.path(ANCHOR_FILE);
    let anchor = if apath.is_file() {
        Some(Anchor::read(
            &apath,
            spec.config.feat_dim,
            spec.config.genes,
        )?)
    } else {
        None
    };
    let cals = match &args.calibration {
        Some(p) => calibration::read_file(p)?,
        None => Vec::new(),
    };
    let points = args.time_points.max(2);
    let used = CalibrationUse::choose(&cals, args.cfg, points, args.samples.max(1), false);
    let (k, d, g) = (
        spec.config.clusters,
        spec.config.feat_dim,
        spec.config.genes,
    );
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(&args.out, e))?;
    let n = args.samples.max(1);
    for (si, path) in args.slides.iter().enumerate() {
        let f = rnafm_runtime::npy::read_float_array(path, None)?
            .into_dimensionality::<Ix2>()
            .map_err(|_| Error::invalid(path, "features must be 2-d [K, D]"))?;
        if f.dim() != (k, d) {
            return Err(Error::invalid(
                path,
                format!("features are {:?}; the model takes [{k}, {d}]", f.dim()),
            ));
        }
        let feats: Vec<f32> = f.iter().copied().collect();
        let mut rng = ChaCha8Rng::seed_from_u64(args.seed ^ ((si as u64) << 32));
        let mut z = Array2::<f32>::zeros((n, g));
        for start in (0..n).step_by(50) {
            let b = (n - start).min(50);
            let noise: Vec<f32> = (0..b * g)
                .map(|_| StandardNormal.sample(&mut rng))
                .collect();
            let noise = Tensor::<B, 2>::from_data(TensorData::new(noise, [b, g]), device);
            let y: Vec<f32> = (0..b).flat_map(|_| feats.iter().copied()).collect();
            let y = Tensor::<B, 3>::from_data(TensorData::new(y, [b, k, d]), device);
            let cfg = (args.cfg != 1.0).then_some(f64::from(args.cfg));
            let s = crate::weight_io::to_vec(&sample(&net, noise, y, points, cfg));
            for r in 0..b {
                for j in 0..g {
                    z[[start + r, j]] = s[r * g + j];
                }
            }
        }
        if let Some(a) = &anchor {
            a.add_to(f.view(), &mut z);
        }
        if let Some(c) = &used.calibration {
            c.apply(z.view_mut(), &spec.pathways.pathway_counts());
        }
        for mut row in z.rows_mut() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = norm.from_z(j, *v);
            }
        }
        let name = output_name(path);
        rnafm_runtime::npy::write_npy(&args.out.join(format!("{name}.samples.npy")), &z.view())?;
        tracing::info!(slide = name, "sampled");
    }
    let run = serde_json::json!({
        "sampler": "burn (rnafm-train sample)",
        "checkpoint": args.checkpoint,
        "samples": n,
        "steps": points,
        "cfg": args.cfg,
        "seed": args.seed,
        "unit": "log2(FPKM-UQ+1)",
        "calibration": used,
    });
    let text = serde_json::to_string_pretty(&run).expect("run record serialises");
    rnafm_runtime::atomic::write_bytes_atomic(&args.out.join("run.json"), text.as_bytes())?;
    Ok(used)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use rnafm_runtime::calibration::{Calibration, LevelFactor};
    use rnafm_runtime::genes::GeneList;
    use rnafm_runtime::model_config::{ModelConfig, TokenMode};
    use rnafm_runtime::model_spec::ModelSpec;
    use rnafm_runtime::normalization::Normalization;
    use rnafm_runtime::pathways::PathwaySet;

    /// A random alphabetical-token checkpoint (no background token) samples; its draws are
    /// seeded, and a matching calibration scales their spread by its factor.
    #[test]
    fn samples_an_alphabetical_checkpoint_and_applies_calibration() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let g = 12;
        let genes = GeneList::new((0..g).map(|i| format!("G{i:02}")).collect(), d).unwrap();
        let spec = ModelSpec {
            config: ModelConfig {
                hidden: 8,
                depth: 1,
                heads: 2,
                graph_heads: 2,
                clusters: 3,
                feat_dim: 4,
                genes: g,
                mlp_ratio: 2,
                cond_drop: 0.1,
                graph_attention: true,
                tokens: TokenMode::Alphabetical,
            },
            genes: genes.symbols().to_vec(),
            pathways: PathwaySet::alphabetical(&genes, 4),
            normalization: Some(Normalization {
                mean: vec![5.0; g],
                sd: vec![2.0; g],
            }),
        };
        let w = crate::init::init_weights(&spec, 1);
        let ck = d.join("ck");
        CheckpointDir::new(&ck).write(&spec, &w, &w).unwrap();
        let slide = d.join("s.npy");
        let f = Array2::from_shape_fn((3, 4), |(k, j)| (k as f32 - j as f32) * 0.4);
        rnafm_runtime::npy::write_npy(&slide, &f).unwrap();
        let cal = d.join("cal.json");
        let levels = [0.5, 0.9].map(|level| LevelFactor {
            level,
            factor: 3.0,
            coverage_before: 0.5,
        });
        calibration::write_file(
            &cal,
            &[Calibration {
                cfg: 2.0,
                steps: 5,
                levels: levels.to_vec(),
                slides: 1,
                values: 1,
                fitted_on: None,
                draws: None,
                groups: Vec::new(),
                anchor_loo: false,
            }],
        )
        .unwrap();
        let args = |out: &str, calibration: Option<PathBuf>| SampleOptions {
            checkpoint: ck.clone(),
            slides: vec![slide.clone()],
            samples: 21,
            cfg: 2.0,
            time_points: 5,
            seed: 4,
            calibration,
            out: d.join(out),
        };
        let dev = Default::default();
        assert!(
            !run_sample::<Flex>(&args("raw", None), &dev)
                .unwrap()
                .applied
        );
        assert!(
            run_sample::<Flex>(&args("cal", Some(cal)), &dev)
                .unwrap()
                .applied
        );
        let read = |o: &str| {
            rnafm_runtime::npy::read_float_array(&d.join(o).join("s.samples.npy"), None)
                .unwrap()
                .into_dimensionality::<Ix2>()
                .unwrap()
        };
        let (raw, calibrated) = (read("raw"), read("cal"));
        assert_eq!(raw.dim(), (21, g));
        let run: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(d.join("cal/run.json")).unwrap())
                .unwrap();
        assert_eq!(run["calibration"]["applied"], true);
        for j in 0..g {
            let range = |a: &Array2<f32>| {
                let c = a.column(j);
                let (lo, hi) = c
                    .iter()
                    .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
                hi - lo
            };
            let r = range(&raw);
            assert!(r > 0.0);
            assert!((range(&calibrated) / r - 3.0).abs() < 1e-3, "gene {j}");
        }
    }
}
