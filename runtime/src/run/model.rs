//! A bundle made ready to run: its graphs as ONNX Runtime sessions on the chosen device,
//! plus what `rnafm-run` reads from the manifest (genes, pathways, normalisation, defaults,
//! training-feature statistics, reliability table).

use std::path::{Path, PathBuf};

use ndarray::{Array1, Ix2};
use sha2::{Digest, Sha256};

use crate::bundle::Bundle;
use crate::ensemble::{Ensemble, ToFirst};
use crate::error::{Error, Result};
use crate::model_spec::ModelSpec;
use crate::ort_env::{Device, SessionFactory, SessionOptions};
use crate::pathways::PathwaySet;
use crate::sampler::{FlowGraphs, SampleParams};

pub use crate::bundle_members::*;

/// Arithmetic of the per-step graphs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// float32 throughout (the reference).
    #[default]
    Fp32,
    /// The token-wise linear layers of embed and backbone as int8 dynamically quantised
    /// products (VNNI/AMX): faster, at an accuracy cost scripts/bench-run measures.
    Int8,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
        }
    }

    /// The bundle member that holds `graph` at this precision.
    pub fn member(self, graph: &str) -> &str {
        match (self, graph) {
            (Precision::Int8, EMBED) => EMBED_INT8,
            (Precision::Int8, BACKBONE) => BACKBONE_INT8,
            _ => graph,
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "fp32" | "float32" => Ok(Precision::Fp32),
            "int8" => Ok(Precision::Int8),
            other => Err(format!("unknown precision `{other}` (fp32 or int8)")),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

pub struct RunModel {
    pub path: PathBuf,
    /// sha256 of the bundle file.
    pub sha256: String,
    pub clusters: usize,
    pub feat_dim: usize,
    pub genes: Vec<String>,
    pub pathways: PathwaySet,
    pub normalization: Option<crate::normalization::Normalization>,
    pub default_steps: usize,
    pub default_cfg: f32,
    /// Per-dimension mean and sd of the training slides' cluster features.
    pub feature_stats: Option<(Vec<f32>, Vec<f32>)>,
    /// Per-gene cross-validated Pearson r.
    pub cv_r: Option<Vec<f32>>,
    /// Interval calibrations of the bundle, one per sampling setting.
    pub calibration: Vec<crate::calibration::Calibration>,
    /// How the training slides were tiled (bundles only).
    pub slide: Option<crate::manifest::SlideContract>,
    /// The model's graphs: one set, or one per model of a fold ensemble.
    pub graphs: Ensemble,
    pub device: Device,
    pub threads: usize,
    pub precision: Precision,
    /// The bundle, when opened from one (its self-test members live there).
    pub bundle: Option<Bundle>,
}

/// Sessions for the five graphs and the null embedding; `member` returns a member's bytes.
pub fn load_graphs<'a>(
    origin: &Path,
    options: SessionOptions,
    mut member: impl FnMut(&str) -> Result<&'a [u8]>,
) -> Result<(FlowGraphs, Device, usize)> {
    let mut factory = SessionFactory::new(options)?;
    let mut session = |name: &str| -> Result<ort::session::Session> {
        let s = factory.session(member(name)?, name)?;
        check_graph_inputs(origin, name, &s)?;
        Ok(s)
    };
    let condition = session(CONDITION)?;
    let modulation = session(MODULATION)?;
    let embed = session(EMBED)?;
    let backbone = session(BACKBONE)?;
    let heads = session(HEADS)?;
    let null = crate::npy::parse_float_npy(member(NULL_SLIDE_EMB)?, origin, Some(NULL_SLIDE_EMB))?;
    let null = null
        .into_dimensionality::<Ix2>()
        .map_err(|_| Error::invalid(origin, format!("{NULL_SLIDE_EMB} must be [1, H]")))?;
    if null.nrows() != 1 {
        return Err(Error::invalid(
            origin,
            format!("{NULL_SLIDE_EMB} must be [1, H], found {:?}", null.shape()),
        ));
    }
    let null_slide_emb: Array1<f32> = null.row(0).to_owned();
    let device = factory.device().unwrap_or(Device::Cpu);
    Ok((
        FlowGraphs {
            condition,
            modulation,
            embed,
            backbone,
            heads,
            null_slide_emb,
        },
        device,
        factory.threads(),
    ))
}

/// The graph loaded as `name` takes the inputs the contract gives that graph; otherwise the
/// model (not a slide) is at fault, and the error says so once, at load.
fn check_graph_inputs(origin: &Path, name: &str, session: &ort::session::Session) -> Result<()> {
    let want = GRAPH_INPUTS
        .iter()
        .find(|(g, _)| *g == name)
        .map(|(_, inputs)| *inputs)
        .unwrap_or(&[]);
    let mut got: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
    got.sort_unstable();
    let mut sorted = want.to_vec();
    sorted.sort_unstable();
    if got != sorted {
        return Err(Error::invalid(
            origin,
            format!(
                "{name} is not the {} graph (inputs {got:?}, expected {want:?}): the model is damaged or was altered; export it again",
                name.trim_end_matches(".onnx")
            ),
        ));
    }
    Ok(())
}

/// sha256 (hex) of a file.
pub fn file_sha256(path: &Path) -> Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Result of the bundle's self-test.
#[derive(Debug, Clone, Copy)]
pub struct SelfTestOutcome {
    pub passed: bool,
    pub max_abs_diff: f32,
    pub tolerance: f32,
}

/// A float matrix file if present (a 1-d array is read as one row).
fn optional_matrix(path: &Path) -> Result<Option<ndarray::Array2<f32>>> {
    if !path.exists() {
        return Ok(None);
    }
    let a = crate::npy::read_float_array(path, None)?;
    let a = match a.ndim() {
        1 => a.insert_axis(ndarray::Axis(0)),
        _ => a,
    };
    a.into_dimensionality::<Ix2>()
        .map(Some)
        .map_err(|_| Error::invalid(path, "expected a 1-d or 2-d array"))
}

/// Member bytes of an unpacked model folder.
fn read_member(dir: &Path, name: &str) -> Result<Vec<u8>> {
    let p = dir.join(name);
    std::fs::read(&p).map_err(|e| Error::io(&p, e))
}

/// Sampling defaults when the model does not say (the official script's).
pub const DEFAULT_STEPS: usize = 20;
pub const DEFAULT_CFG: f32 = 2.0;

impl RunModel {
    /// Opens a model: an unpacked folder (`model.json` = ModelSpec, the five graphs and
    /// `null_slide_emb.npy`, as the exporter lays them out), or a `.rnafm` bundle.
    pub fn open(path: &Path, options: SessionOptions) -> Result<Self> {
        Self::open_with(path, options, Precision::Fp32)
    }

    /// As [`RunModel::open`], with the per-step graphs at `precision` (int8 needs a bundle
    /// exported with `--int8`).
    pub fn open_with(path: &Path, options: SessionOptions, precision: Precision) -> Result<Self> {
        if path.is_dir() && !Bundle::is_unpacked(path) {
            if precision != Precision::Fp32 {
                return Err(Error::invalid(
                    path,
                    format!(
                        "--precision {precision} needs a .rnafm bundle exported with --{precision}"
                    ),
                ));
            }
            return Self::open_dir(path, options);
        }
        // The whole-file hash (for run.json) is a second pass over ~1 GB at paper size; take
        // it on another thread while the bundle is read and the sessions are built.
        // An unpacked bundle is identified by its manifest, which holds every member's hash.
        let hash = {
            let p = if Bundle::is_unpacked(path) {
                path.join(MANIFEST)
            } else {
                path.to_path_buf()
            };
            std::thread::spawn(move || file_sha256(&p))
        };
        let mut bundle = Bundle::open_any(path)?;
        if bundle.member_names().all(|n| n != MODULATION) {
            // Bundles before the modulation graph computed the adaLN modulations per step.
            return Err(Error::invalid(
                path,
                format!(
                    "the bundle has no {MODULATION}: it was made by an older rnafm-export; export it again"
                ),
            ));
        }
        if bundle
            .member_names()
            .all(|n| n != precision.member(BACKBONE))
        {
            return Err(Error::invalid(
                path,
                format!(
                    "the bundle has no {precision} graphs ({}); export it with rnafm-export --{precision}",
                    precision.member(BACKBONE)
                ),
            ));
        }
        let mut models = Vec::with_capacity(bundle.manifest.models());
        let (mut device, mut threads) = (Device::Cpu, 1);
        for k in 0..bundle.manifest.models() {
            let (graphs, d, t) = load_graphs(path, options, |name| {
                bundle.member(&ensemble_member(k, precision.member(name)))
            })?;
            if graphs.hidden() != bundle.manifest.model.config.hidden {
                return Err(Error::invalid(
                    path,
                    format!(
                        "{} has width {} but the model's hidden size is {}",
                        ensemble_member(k, NULL_SLIDE_EMB),
                        graphs.hidden(),
                        bundle.manifest.model.config.hidden
                    ),
                ));
            }
            (device, threads) = (d, t);
            models.push(graphs);
        }
        let first = bundle.manifest.model.normalization.as_ref();
        let maps = std::iter::once(None)
            .chain(bundle.manifest.ensemble.iter().map(|e| {
                e.normalization
                    .as_ref()
                    .zip(first)
                    .map(|(own, first)| ToFirst::new(own, first))
            }))
            .collect();
        let graphs = Ensemble::new(models, maps);
        // ONNX Runtime has its own copy of the graphs now.
        bundle.release(|name| name.ends_with(".onnx"));
        let m = &bundle.manifest;
        let feature_stats = m
            .feature_stats
            .as_ref()
            .map(|f| (f.mean.clone(), f.sd.clone()));
        let spec = m.model.clone();
        Ok(RunModel {
            path: path.to_path_buf(),
            sha256: hash
                .join()
                .map_err(|_| Error::Runtime("hashing the bundle panicked".into()))??,
            clusters: spec.config.clusters,
            feat_dim: spec.config.feat_dim,
            genes: spec.genes,
            pathways: spec.pathways,
            normalization: spec.normalization,
            default_steps: m.sampling.steps,
            default_cfg: m.sampling.cfg,
            feature_stats,
            cv_r: m.cv_r.clone(),
            calibration: m.calibration.clone().unwrap_or_default(),
            slide: Some(m.slide.clone()),
            graphs,
            device,
            threads,
            precision,
            bundle: Some(bundle),
        })
    }

    fn open_dir(dir: &Path, options: SessionOptions) -> Result<Self> {
        let spec = ModelSpec::read(&dir.join("model.json"))?;
        let mut members = std::collections::HashMap::new();
        for name in FOLDER_MEMBERS {
            members.insert(name, read_member(dir, name)?);
        }
        let (graphs, device, threads) = load_graphs(dir, options, |name| {
            members
                .get(name)
                .map(|v| v.as_slice())
                .ok_or_else(|| Error::invalid(dir, format!("missing {name}")))
        })?;
        let graphs = Ensemble::single(graphs);
        if graphs.hidden() != spec.config.hidden {
            return Err(Error::invalid(
                dir,
                format!(
                    "{NULL_SLIDE_EMB} has width {} but the model's hidden size is {}",
                    graphs.hidden(),
                    spec.config.hidden
                ),
            ));
        }
        let mut h = Sha256::new();
        for name in FOLDER_MEMBERS {
            h.update(&members[name]);
        }
        h.update(std::fs::read(dir.join("model.json")).map_err(|e| Error::io(dir, e))?);
        let feature_stats = match optional_matrix(&dir.join(FEATURE_STATS))? {
            Some(m) if m.dim() == (2, spec.config.feat_dim) => {
                Some((m.row(0).to_vec(), m.row(1).to_vec()))
            }
            Some(m) => {
                return Err(Error::invalid(
                    dir.join(FEATURE_STATS),
                    format!(
                        "expected [2, {}] (mean; sd), found {:?}",
                        spec.config.feat_dim,
                        m.shape()
                    ),
                ));
            }
            None => None,
        };
        let cv_r = match optional_matrix(&dir.join(CV_R))? {
            Some(m) if m.len() == spec.config.genes => Some(m.iter().copied().collect()),
            Some(m) => {
                return Err(Error::invalid(
                    dir.join(CV_R),
                    format!(
                        "expected {} values (one per gene), found {}",
                        spec.config.genes,
                        m.len()
                    ),
                ));
            }
            None => None,
        };
        Ok(RunModel {
            path: dir.to_path_buf(),
            sha256: hex::encode(h.finalize()),
            clusters: spec.config.clusters,
            feat_dim: spec.config.feat_dim,
            genes: spec.genes,
            pathways: spec.pathways,
            normalization: spec.normalization,
            default_steps: DEFAULT_STEPS,
            default_cfg: DEFAULT_CFG,
            feature_stats,
            cv_r,
            calibration: Vec::new(),
            slide: None,
            graphs,
            device,
            threads,
            precision: Precision::Fp32,
            bundle: None,
        })
    }

    /// Runs the bundle's self-test: a short sampling run on stored features whose
    /// expected output was computed at export.
    pub fn self_test(&mut self) -> Result<SelfTestOutcome> {
        let Some(bundle) = &self.bundle else {
            return Err(Error::invalid(
                &self.path,
                "this model carries no self-test (only .rnafm bundles do)",
            ));
        };
        let Some(t) = bundle.manifest.self_test.clone() else {
            return Err(Error::invalid(
                &self.path,
                "the bundle has no self-test block",
            ));
        };
        let matrix = |name: &str| -> Result<ndarray::Array2<f32>> {
            crate::npy::parse_float_npy(bundle.member(name)?, &self.path, Some(name))?
                .into_dimensionality::<Ix2>()
                .map_err(|_| Error::invalid(&self.path, format!("{name} is not a matrix")))
        };
        let features = matrix(&t.features)?;
        let expected = matrix(&t.expected)?;
        let genes = self.genes.len();
        if expected.dim() != (t.samples, genes) {
            return Err(Error::invalid(
                &self.path,
                format!(
                    "{} is {:?}, expected [{}, {genes}]",
                    t.expected,
                    expected.shape(),
                    t.samples
                ),
            ));
        }
        let params = SampleParams {
            samples: t.samples,
            steps: t.steps,
            cfg: t.cfg,
            seed: t.seed,
            batch: t.samples.max(1),
        };
        let got = self
            .graphs
            .sample(features.view(), genes, &params, &mut || {})?;
        let max_abs_diff =
            got.iter()
                .zip(&expected)
                .map(|(a, b)| (a - b).abs())
                .fold(
                    0f32,
                    |m, d| if d.is_nan() { f32::INFINITY } else { m.max(d) },
                );
        Ok(SelfTestOutcome {
            passed: max_abs_diff <= t.tolerance,
            max_abs_diff,
            tolerance: t.tolerance,
        })
    }
}

/// The model in words (or its spec as JSON).
pub fn describe(path: &Path, json: bool) -> Result<String> {
    if !path.is_dir() || Bundle::is_unpacked(path) {
        let bundle = Bundle::open_any(path)?;
        let m = &bundle.manifest;
        if json {
            return Ok(String::from_utf8_lossy(&m.to_json()).into_owned());
        }
        let mut text = describe_spec(path, &m.model, m.sampling.steps, m.sampling.cfg);
        text.push_str(&format!(
            "\n  slide features: encoder {}, {} µm/pixel, {}-pixel tiles",
            m.slide.encoder, m.slide.microns_per_pixel, m.slide.tile_size
        ));
        text.push_str(&format!(
            "\n  input-shift check: {}; per-gene reliability (cv_r): {}; self-test: {}",
            if m.feature_stats.is_some() {
                "yes"
            } else {
                "no (no training feature statistics)"
            },
            if m.cv_r.is_some() { "yes" } else { "no" },
            if m.self_test.is_some() { "yes" } else { "no" },
        ));
        text.push_str(&crate::calibration::describe(
            m.calibration.as_deref().unwrap_or_default(),
        ));
        if m.models() > 1 {
            text.push_str(&format!(
                "\n  fold ensemble: {} models; rnafm-run splits each slide's draws across them",
                m.models()
            ));
        }
        if let Some(p) = &m.provenance {
            text.push_str(&format!(
                "\n  trained on {} ({} folds), exported {} with rnafm {}",
                p.cohort.as_deref().unwrap_or("an unnamed cohort"),
                p.folds.map_or("?".into(), |f| f.to_string()),
                p.exported_at.as_deref().unwrap_or("?"),
                p.rnafm_version
            ));
        }
        return Ok(text);
    }
    let spec_path = path.join("model.json");
    let spec = ModelSpec::read(&spec_path)?;
    if json {
        return serde_json::to_string_pretty(&spec)
            .map_err(|e| Error::invalid(&spec_path, e.to_string()));
    }
    Ok(describe_spec(path, &spec, DEFAULT_STEPS, DEFAULT_CFG))
}

fn describe_spec(path: &Path, spec: &ModelSpec, steps: usize, cfg: f32) -> String {
    let c = &spec.config;
    let sizes = spec.pathways.sizes();
    format!(
        "model {}\n  predicts {} genes (log2(FPKM-UQ+1){})\n  {} pathway tokens (genes per pathway {}–{}), {} background genes\n  slide input: {} cluster means of {}-dimensional tile features (N×{} tiles are clustered first)\n  network: hidden {}, {} DiT blocks, {} heads, pathway graph attention {}\n  sampling defaults: {} time points, guidance {}",
        path.display(),
        c.genes,
        if spec.normalization.is_some() {
            ""
        } else {
            "; no normalisation statistics: outputs are z-scores"
        },
        spec.pathways.len(),
        sizes.iter().min().copied().unwrap_or(0),
        sizes.iter().max().copied().unwrap_or(0),
        spec.pathways.background.len(),
        c.clusters,
        c.feat_dim,
        c.feat_dim,
        c.hidden,
        c.depth,
        c.heads,
        if c.graph_attention { "on" } else { "off" },
        steps,
        cfg,
    )
}
