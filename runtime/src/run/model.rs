//! A bundle made ready to run: its graphs as ONNX Runtime sessions on the chosen device,
//! plus what `rnafm-run` reads from the manifest (genes, pathways, normalisation, defaults,
//! training-feature statistics, reliability table).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use ndarray::{Array1, Ix2};
use sha2::{Digest, Sha256};

use crate::anchor::{ANCHOR_FILE, Anchor};
use crate::bundle::Bundle;
use crate::ensemble::{Ensemble, ToFirst};
use crate::error::{Error, Result};
use crate::graph_cache::{GraphCache, Mapped};
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
    /// The backbone's token-wise linear layers as int8 dynamically quantised products
    /// (VNNI/AMX): faster, at an accuracy cost scripts/bench-run measures.
    Int8,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Int8 => "int8",
        }
    }

    /// The bundle member that holds `graph` at this precision. Only the backbone has an
    /// int8 variant (see the exporter's graphs.rs); older bundles also hold an
    /// `embed.int8.onnx`, which is left unused.
    pub fn member(self, graph: &str) -> &str {
        match (self, graph) {
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
    /// sha256 naming the content: of the bundle's manifest (which lists every member's
    /// sha256), or of a model folder's files (run.json's `model_id`).
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
    /// Where the load's time went.
    pub load: LoadProfile,
}

/// Where loading a model spent its time (run.json's `load`; scripts/bench-run reports it).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LoadProfile {
    /// Mapping the bundle and reading its manifest.
    pub open_s: f64,
    /// Threads that built the sessions.
    pub threads: usize,
    /// Members whose sha256 check an earlier run made on this same file
    /// (`checked_cache`); their `verify_s` is ~0.
    #[serde(default)]
    pub remembered: usize,
    /// Each member loaded: its sha256 check and its ONNX Runtime session (parse, optimise,
    /// pack the weights), in the order they started.
    pub members: Vec<MemberLoad>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MemberLoad {
    pub member: String,
    pub bytes: usize,
    pub verify_s: f64,
    /// 0 for members that are not graphs.
    pub session_s: f64,
    /// The session used this graph's saved ORT-format copy in place
    /// ([`crate::graph_cache`]); false where it was built from ONNX (and saved).
    #[serde(default)]
    pub saved_graph: bool,
}

/// Sessions of every model of a bundle, plus the device and threads they run on.
struct LoadedModels {
    graphs: Vec<FlowGraphs>,
    device: Device,
    threads: usize,
}

/// Builds the sessions of every model in `bundle` at `precision`; each member's sha256 is
/// checked just before its session is built, on the same thread.
fn load_models(
    bundle: &Bundle,
    options: SessionOptions,
    precision: Precision,
    profile: &mut LoadProfile,
) -> Result<LoadedModels> {
    let count = bundle.manifest.models();
    let mut loaded = LoadedModels {
        graphs: Vec::with_capacity(count),
        device: Device::Cpu,
        threads: 1,
    };
    let cache = GraphCache::default_location();
    for k in 0..count {
        let name = |graph: &str| ensemble_member(k, precision.member(graph));
        let sha = |graph: &str| bundle.member_sha256(&name(graph)).map(str::to_string);
        let (graphs, device, threads, members) = load_graphs_timed(
            &bundle.path,
            options,
            |graph| bundle.member(&name(graph)),
            |graph| bundle.drop_pages(&name(graph)),
            cache.as_ref().map(|c| (c, &sha as &MemberSha<'_>)),
        )?;
        let hidden = bundle.manifest.model.config.hidden;
        if graphs.hidden() != hidden {
            return Err(Error::invalid(
                &bundle.path,
                format!(
                    "{} has width {} but the model's hidden size is {hidden}",
                    ensemble_member(k, NULL_SLIDE_EMB),
                    graphs.hidden(),
                ),
            ));
        }
        profile
            .members
            .extend(members.into_iter().map(|m| MemberLoad {
                member: ensemble_member(k, precision.member(&m.member)),
                ..m
            }));
        (loaded.device, loaded.threads) = (device, threads);
        profile.threads = threads.min(BY_SIZE.len());
        loaded.graphs.push(graphs);
    }
    Ok(loaded)
}

/// The mean anchor of every model of an anchored bundle (`anchor.rs`).
fn read_anchors(bundle: &Bundle) -> Result<Vec<Anchor>> {
    let c = &bundle.manifest.model.config;
    (0..bundle.manifest.models())
        .map(|k| {
            let name = ensemble_member(k, ANCHOR_FILE);
            Anchor::from_bytes(
                bundle.member(&name)?,
                c.feat_dim,
                c.genes,
                &bundle.path.join(&name),
            )
        })
        .collect()
}

/// A lane's session: its place in the build order, the session and its timing.
type BuiltGraph = (usize, ort::session::Session, MemberLoad);

/// A graph's bundle member sha256, which names its saved copy in the [`GraphCache`].
type MemberSha<'a> = dyn Fn(&str) -> Option<String> + Sync + 'a;

/// Sessions for the five graphs and the null embedding; `member` returns a member's bytes.
pub fn load_graphs<'a>(
    origin: &Path,
    options: SessionOptions,
    member: impl Fn(&str) -> Result<&'a [u8]> + Sync,
) -> Result<(FlowGraphs, Device, usize)> {
    load_graphs_timed(origin, options, member, |_| {}, None).map(|(g, d, t, _)| (g, d, t))
}

/// The graphs, largest first (at paper size embed is ~370 MB, heads ~270, modulation ~210,
/// condition ~55, backbone ~20), so that the threads building them finish together.
const BY_SIZE: [&str; 5] = [EMBED, HEADS, MODULATION, CONDITION, BACKBONE];

/// As [`load_graphs`], also timing each member; `built` is told each graph whose session is
/// built (its bytes are no longer needed). ONNX Runtime builds a session on one core,
/// and parsing and packing ~1 GB of weights is most of a load, so the graphs are built on as
/// many threads as the run may use, largest first. Where the device is not known yet
/// (`auto` or `cuda`), the condition graph goes first and alone to settle it.
fn load_graphs_timed<'a>(
    origin: &Path,
    options: SessionOptions,
    member: impl Fn(&str) -> Result<&'a [u8]> + Sync,
    built: impl Fn(&str) + Sync,
    cache: Option<(&GraphCache, &MemberSha<'_>)>,
) -> Result<(FlowGraphs, Device, usize, Vec<MemberLoad>)> {
    let mut factory = SessionFactory::new(options)?;
    let timed_member = |name: &str| -> Result<(&'a [u8], MemberLoad)> {
        let t = Instant::now();
        let bytes = member(name)?;
        let load = MemberLoad {
            member: name.to_string(),
            bytes: bytes.len(),
            verify_s: t.elapsed().as_secs_f64(),
            session_s: 0.0,
            saved_graph: false,
        };
        Ok((bytes, load))
    };
    let finish = |s: ort::session::Session, mut load: MemberLoad, t: Instant| {
        load.session_s = t.elapsed().as_secs_f64();
        built(&load.member);
        check_graph_inputs(origin, &load.member, &s)?;
        Ok::<_, Error>((s, load))
    };
    let mut loads = Vec::new();
    let mut settled = None;
    if factory.device().is_none() {
        let (bytes, load) = timed_member(CONDITION)?;
        let t = Instant::now();
        let (s, load) = finish(factory.session(bytes, CONDITION)?, load, t)?;
        settled = Some(s);
        loads.push(load);
    }
    let order: Vec<&str> = BY_SIZE
        .into_iter()
        .filter(|n| settled.is_none() || *n != CONDITION)
        .collect();
    let factory = &factory;
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let lane = || -> Result<(Vec<BuiltGraph>, Mapped)> {
        // Declared first, dropped last: the sessions in `built` may use its maps.
        let mut mapped = Mapped::default();
        let mut built = Vec::new();
        while !failed.load(Ordering::Relaxed) {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(&name) = order.get(i) else {
                break;
            };
            let mut one = || {
                let (bytes, mut load) = timed_member(name)?;
                let t = Instant::now();
                let keyed = cache.and_then(|(c, sha)| sha(name).map(|s| (c, s)));
                let session = match keyed {
                    Some((c, sha)) => {
                        let (s, saved) =
                            factory.cached_session(bytes, name, &sha, c, &mut mapped)?;
                        load.saved_graph = saved;
                        s
                    }
                    None => factory.settled_session(bytes, name)?,
                };
                finish(session, load, t)
            };
            let one = one();
            match one {
                Ok((s, load)) => built.push((i, s, load)),
                Err(e) => {
                    failed.store(true, Ordering::Relaxed);
                    return Err(e);
                }
            }
        }
        Ok((built, mapped))
    };
    let lanes = factory.threads().clamp(1, order.len());
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (1..lanes).map(|_| scope.spawn(lane)).collect();
        let mut results = vec![lane()];
        results.extend(handles.into_iter().map(|h| {
            h.join().unwrap_or_else(|_| {
                Err(Error::Runtime("a session-building thread panicked".into()))
            })
        }));
        results
    });
    // Declared before the sessions, so dropped after them on an early return.
    let mut mapped = Mapped::default();
    let mut sessions: Vec<Option<ort::session::Session>> = order.iter().map(|_| None).collect();
    let mut lane_loads = Vec::new();
    for r in results {
        let (built, lane_mapped) = r?;
        mapped.extend(lane_mapped);
        for (i, s, load) in built {
            sessions[i] = Some(s);
            lane_loads.push((i, load));
        }
    }
    lane_loads.sort_by_key(|(i, _)| *i);
    loads.extend(lane_loads.into_iter().map(|(_, l)| l));
    let mut take = |name: &str| {
        order
            .iter()
            .position(|n| *n == name)
            .and_then(|i| sessions[i].take())
            .ok_or_else(|| Error::Runtime(format!("{name}: no session was built")))
    };
    let condition = match settled {
        Some(s) => s,
        None => take(CONDITION)?,
    };
    let (embed, heads, modulation, backbone) = (
        take(EMBED)?,
        take(HEADS)?,
        take(MODULATION)?,
        take(BACKBONE)?,
    );
    let (bytes, load) = timed_member(NULL_SLIDE_EMB)?;
    loads.push(load);
    let null = crate::npy::parse_float_npy(bytes, origin, Some(NULL_SLIDE_EMB))?;
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
            mapped,
        },
        device,
        factory.threads(),
        loads,
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
        let opened = Instant::now();
        let mut bundle = Bundle::open_any_lazy(path)?;
        let cache = crate::checked_cache::default_dir();
        let mut profile = LoadProfile {
            remembered: cache.as_deref().map_or(0, |c| bundle.recall_checks(c)),
            open_s: opened.elapsed().as_secs_f64(),
            ..LoadProfile::default()
        };
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
        let models = load_models(&bundle, options, precision, &mut profile)?;
        if let Some(c) = &cache {
            bundle.remember_checks(c);
        }
        let (device, threads) = (models.device, models.threads);
        let maps = ToFirst::for_models(
            bundle.manifest.model.normalization.as_ref(),
            &bundle.manifest.ensemble,
        );
        let mut graphs = Ensemble::new(models.graphs, maps);
        if bundle.manifest.anchor.is_some() {
            graphs = graphs.with_anchors(read_anchors(&bundle)?);
        }
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
            sha256: bundle.manifest_sha256.clone(),
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
            load: profile,
        })
    }

    fn open_dir(dir: &Path, options: SessionOptions) -> Result<Self> {
        let opened = Instant::now();
        let spec = ModelSpec::read(&dir.join("model.json"))?;
        let mut members = std::collections::HashMap::new();
        for name in FOLDER_MEMBERS {
            members.insert(name, read_member(dir, name)?);
        }
        let open_s = opened.elapsed().as_secs_f64();
        let member = |name: &str| {
            members
                .get(name)
                .map(|v| v.as_slice())
                .ok_or_else(|| Error::invalid(dir, format!("missing {name}")))
        };
        let (graphs, device, threads, loads) =
            load_graphs_timed(dir, options, member, |_| {}, None)?;
        let load = LoadProfile {
            open_s,
            threads: threads.min(BY_SIZE.len()),
            remembered: 0,
            members: loads,
        };
        let mut graphs = Ensemble::single(graphs);
        // A model folder of an anchored model holds its anchor beside the graphs.
        let anchor = dir.join(ANCHOR_FILE);
        if anchor.is_file() {
            let a = Anchor::read(&anchor, spec.config.feat_dim, spec.config.genes)?;
            graphs = graphs.with_anchors(vec![a]);
        }
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
            load,
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
        if m.anchor.is_some() {
            text.push_str(
                "\n  mean anchor: a ridge regression on the slide's mean cluster feature gives each gene's mean; the flow samples the spread around it",
            );
        }
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
