//! Assembles a `.rnafm` bundle: graphs, null embedding, manifest and a self-test whose
//! expected output comes from running the exported graphs through ONNX Runtime with the
//! runtime's own sampler (so an installation that reproduces it runs the model correctly).

use std::collections::BTreeMap;
use std::path::Path;

use ndarray::Array2;
use rnafm_runtime::Result;
use rnafm_runtime::bundle::BundleWriter;
use rnafm_runtime::bundle_members::{MAX_ENSEMBLE, ensemble_member};
use rnafm_runtime::ensemble::{Ensemble, ToFirst};
use rnafm_runtime::manifest::{
    EnsembleModel, Manifest, Provenance, SCHEMA_VERSION, SamplingDefaults, SelfTest, SlideContract,
};
use rnafm_runtime::model_spec::ModelSpec;
use rnafm_runtime::ort_env::{DeviceChoice, SessionOptions};
use rnafm_runtime::sampler::{SampleParams, noise};

use rnafm_runtime::training_metrics::TrainingMetrics;

use crate::graphs::{Graphs, NULL_SLIDE_EMB, npy_bytes};
use rnafm_runtime::anchor::{ANCHOR_FILE, Anchor, AnchorKind};

pub const SELF_TEST_FEATURES: &str = "self_test/features.npy";
pub const SELF_TEST_EXPECTED: &str = "self_test/expected.npy";

/// What the manifest says besides the model.
pub struct ExportInfo {
    pub encoder: String,
    pub microns_per_pixel: f32,
    pub tile_size: usize,
    /// The training run's metrics (its per-gene r becomes the `cv_r` column).
    pub metrics: Option<TrainingMetrics>,
    /// Per-dimension mean/sd of the training slides' cluster features (input-shift check).
    pub feature_stats: Option<rnafm_runtime::manifest::FeatureStats>,
    /// Interval calibrations (rnafm-eval calibrate's calibration.json), one per sampling setting.
    pub calibration: Option<Vec<rnafm_runtime::calibration::Calibration>>,
    /// Skip the self-test (no ONNX Runtime at export).
    pub self_test: bool,
    /// An anchored model's mean anchors, one per model (`anchor.rs`); empty otherwise.
    pub anchors: Vec<Anchor>,
}

impl Default for ExportInfo {
    fn default() -> Self {
        ExportInfo {
            encoder: "UNI".into(),
            microns_per_pixel: 0.5,
            tile_size: 224,
            metrics: None,
            feature_stats: None,
            calibration: None,
            self_test: true,
            anchors: Vec::new(),
        }
    }
}

/// Per-dimension mean and sd over every row of the `.npy`/`.npz`/`.h5` feature files in
/// `dir` (the training slides), for rnafm-run's input-shift warning. Rows are cluster means,
/// or tiles for tile files (whose spread is wider, so the warning is then more lenient).
pub fn feature_stats_of_dir(
    dir: &std::path::Path,
) -> rnafm_runtime::Result<rnafm_runtime::manifest::FeatureStats> {
    use rnafm_runtime::Error;
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let mut files: Vec<std::path::PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(p.extension().and_then(|e| e.to_str()), Some("npy" | "npz"))
                || rnafm_runtime::features::is_h5_path(p)
        })
        .collect();
    files.sort();
    let (mut sum, mut sq, mut n) = (Vec::<f64>::new(), Vec::<f64>::new(), 0usize);
    for f in &files {
        let a = rnafm_runtime::features::read_features(f)?;
        if sum.is_empty() {
            sum = vec![0.0; a.ncols()];
            sq = vec![0.0; a.ncols()];
        } else if a.ncols() != sum.len() {
            return Err(Error::invalid(
                f,
                format!(
                    "{} feature dims, other slides have {}",
                    a.ncols(),
                    sum.len()
                ),
            ));
        }
        for row in a.rows() {
            for (j, &v) in row.iter().enumerate() {
                sum[j] += f64::from(v);
                sq[j] += f64::from(v) * f64::from(v);
            }
        }
        n += a.nrows();
    }
    if n == 0 {
        return Err(Error::invalid(dir, "no .npy/.npz/.h5 slide features found"));
    }
    let mean: Vec<f32> = sum.iter().map(|s| (s / n as f64) as f32).collect();
    let sd = sq
        .iter()
        .zip(&sum)
        .map(|(q, s)| {
            let m = s / n as f64;
            ((q / n as f64 - m * m).max(0.0).sqrt()) as f32
        })
        .collect();
    Ok(rnafm_runtime::manifest::FeatureStats { mean, sd })
}

/// Per-gene cross-validated r from rnafm-train's metrics, when they cover exactly the
/// model's genes in order. A gene whose r is undefined (constant in the truth or the
/// predictions) gets 0 in the bundle's reliability column: no evidence it is predictable.
fn cv_r_from_metrics(m: &TrainingMetrics, genes: &[String]) -> Option<Vec<f32>> {
    if m.genes != genes || m.pooled_gene_r.len() != genes.len() {
        tracing::warn!("metrics.json genes differ from the model's; no reliability column");
        return None;
    }
    Some(
        m.pooled_gene_r
            .iter()
            .map(|&r| if r.is_finite() { r as f32 } else { 0.0 })
            .collect(),
    )
}

/// Self-test parameters: short, deterministic, guided.
const SELF_TEST: SampleParams = SampleParams {
    samples: 2,
    steps: 4,
    cfg: 2.0,
    seed: 0,
    batch: 2,
};

fn self_test_run(
    models: &[Graphs],
    maps: Vec<Option<ToFirst>>,
    anchors: &[Anchor],
    features: &Array2<f32>,
    genes: usize,
    origin: &Path,
) -> Result<Array2<f32>> {
    let opts = SessionOptions {
        device: DeviceChoice::Cpu,
        threads: 1,
    };
    let mut flows = Vec::with_capacity(models.len());
    for g in models {
        let null = npy_bytes(&[1, g.null_slide_emb.len()], &g.null_slide_emb);
        let (flow, _, _) = rnafm_runtime::run::model::load_graphs(origin, opts, |name| {
            Ok(match name {
                NULL_SLIDE_EMB => null.as_slice(),
                _ => g
                    .members()
                    .into_iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, b)| b)
                    .unwrap_or(&[]),
            })
        })?;
        flows.push(flow);
    }
    let mut ensemble = Ensemble::new(flows, maps);
    if !anchors.is_empty() {
        ensemble = ensemble.with_anchors(anchors.to_vec());
    }
    ensemble.sample(features.view(), genes, &SELF_TEST, &mut || {})
}

/// The bundle's default sampling: the paper's (20 time points, guidance 2), except that an
/// anchored model samples without guidance (1): its flow models what the anchor leaves, and
/// guidance only amplifies the conditional part's noise there (README, "Accuracy at a
/// realistic scale": the ridge-residual trial).
fn sampling_defaults(anchored: bool) -> SamplingDefaults {
    let d = SamplingDefaults::default();
    if anchored {
        SamplingDefaults { cfg: 1.0, ..d }
    } else {
        d
    }
}

/// A one-model bundle.
pub fn bundle(
    spec: &ModelSpec,
    g: &Graphs,
    info: &ExportInfo,
    origin: &Path,
) -> Result<BundleWriter> {
    bundle_ensemble(spec, std::slice::from_ref(g), Vec::new(), info, origin)
}

/// A bundle of one model or of a fold ensemble: `models[0]` is `spec`'s, `others` describe
/// `models[1..]` (the same genes, pathways and sizes; their own normalisation). Model k's
/// members go under `ensemble/k/` (`ensemble_member`).
pub fn bundle_ensemble(
    spec: &ModelSpec,
    models: &[Graphs],
    others: Vec<EnsembleModel>,
    info: &ExportInfo,
    origin: &Path,
) -> Result<BundleWriter> {
    if models.is_empty() || models.len() > MAX_ENSEMBLE || others.len() + 1 != models.len() {
        return Err(rnafm_runtime::Error::invalid(
            origin,
            format!(
                "a bundle holds 1 to {MAX_ENSEMBLE} models, not {}",
                models.len()
            ),
        ));
    }
    if !info.anchors.is_empty() && info.anchors.len() != models.len() {
        return Err(rnafm_runtime::Error::invalid(
            origin,
            format!(
                "{} models but {} mean anchors; an anchored bundle needs one per model",
                models.len(),
                info.anchors.len()
            ),
        ));
    }
    let cfg = &spec.config;
    let manifest = Manifest {
        schema_version: SCHEMA_VERSION,
        model: spec.clone(),
        slide: SlideContract {
            clusters: cfg.clusters,
            feat_dim: cfg.feat_dim,
            encoder: info.encoder.clone(),
            microns_per_pixel: info.microns_per_pixel,
            tile_size: info.tile_size,
        },
        sampling: sampling_defaults(!info.anchors.is_empty()),
        feature_stats: info.feature_stats.clone(),
        cv_r: info
            .metrics
            .as_ref()
            .and_then(|m| cv_r_from_metrics(m, &spec.genes)),
        provenance: Some(Provenance {
            metrics: info
                .metrics
                .as_ref()
                .and_then(|m| serde_json::to_value(m).ok()),
            folds: info.metrics.as_ref().map(|m| m.folds.len()),
            exported_at: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .ok(),
            rnafm_version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        }),
        calibration: info.calibration.clone(),
        members: BTreeMap::new(),
        self_test: None,
        ensemble: others,
        anchor: (!info.anchors.is_empty()).then_some(AnchorKind::RidgeClusterMean),
    };
    let mut w = BundleWriter::new(manifest);
    for (k, g) in models.iter().enumerate() {
        for (name, bytes) in g.members().into_iter().chain(g.int8_members()) {
            w.add(&ensemble_member(k, name), bytes.to_vec())?;
        }
        w.add(
            &ensemble_member(k, NULL_SLIDE_EMB),
            npy_bytes(&[1, g.null_slide_emb.len()], &g.null_slide_emb),
        )?;
        if let Some(a) = info.anchors.get(k) {
            w.add(&ensemble_member(k, ANCHOR_FILE), a.to_bytes())?;
        }
    }
    if info.self_test {
        // Fixed pseudo-random slide features (noise stream of seed 0).
        let features = noise(0, 0, cfg.clusters, cfg.feat_dim);
        let maps = ToFirst::for_models(spec.normalization.as_ref(), &w.manifest_mut().ensemble);
        let expected = self_test_run(models, maps, &info.anchors, &features, cfg.genes, origin)?;
        w.add(
            SELF_TEST_FEATURES,
            npy_bytes(
                &[cfg.clusters, cfg.feat_dim],
                features.as_slice().unwrap_or(&[]),
            ),
        )?;
        let exp: Vec<f32> = expected.iter().copied().collect();
        w.add(
            SELF_TEST_EXPECTED,
            npy_bytes(&[SELF_TEST.samples, cfg.genes], &exp),
        )?;
        w.manifest_mut().self_test = Some(SelfTest {
            features: SELF_TEST_FEATURES.into(),
            seed: SELF_TEST.seed,
            samples: SELF_TEST.samples,
            steps: SELF_TEST.steps,
            cfg: SELF_TEST.cfg,
            expected: SELF_TEST_EXPECTED.into(),
            tolerance: 1e-3,
        });
    }
    Ok(w)
}
