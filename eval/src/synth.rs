//! Known-truth synthetic cohorts in the real file formats (reference CSV of FPKM-UQ, one
//! feature `.npy` per slide, pathway JSON, gene list), with an oracle: the true conditional
//! distribution of every gene given what the slide shows. Training on such a cohort tells
//! how close a model gets to the best possible prediction, which real data cannot.
//!
//! The generative model, per patient:
//! - visible latent `v ~ N(0, I)` (what morphology shows) and hidden latent `h ~ N(0, I)`;
//! - a subtype `k ∈ {0, 1}`, hidden, with P(k=1) = sigmoid(3·v₀): slides with v₀ near 0
//!   have bimodal conditionals;
//! - pathway programmes `s_p = √ρ_p·a_p·v + √(1−ρ_p)·b_p·h` (unit rows a_p, b_p), mixed
//!   with the subtype ±1 at weight √β on the subtype-affected pathways;
//! - log2 expression `x_g = mean_g + sd_g·(Σ_{p∋g} w_gp·s_p + σ_g·ε_g)`, the loadings and
//!   noise scaled so that the bracket has variance ≈ 1, clipped at 0 (FPKM ≥ 0);
//! - each slide's K×D cluster means are `tanh(W_k·v + c_k)` plus noise, rows in random
//!   order; slides of one patient share `v` and the expression.
//!
//! Harder, more realistic worlds (all off by default, so the demo cohort is unchanged):
//! - `real_genes`: a random subset of the real genes (90% from GO-MF pathways, 10% from the
//!   background), with the pathways cut to the chosen genes (those keeping ≥ 2): about 350
//!   heavily overlapping tokens for 1,100 genes, as at the paper's scale;
//! - `nonlinearity` γ: programmes saturate, `s_p = tanh(γ·latent)/c_γ` (unit variance);
//! - `sites` with `site_shift`: each patient belongs to a site (the CSV's project column)
//!   whose own offset vector is added to every cluster row of its slides: a batch effect
//!   in the features that carries no information about expression;
//! - `noise_by_subtype` r: gene noise variance scaled by (1 + r·k) for subtype k = ±1.
//!
//! The oracle draws `h`, `k` and `ε` many times given `v` and reports the per-gene mean and
//! quantiles ([`ORACLE_LEVELS`], written as `oracle.npz`, read by [`crate::oracle`]).

use std::path::{Path, PathBuf};

use ndarray::{Array1, Array2, Array3};
use ndarray_npy::NpzWriter;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rnafm_runtime::{
    Error, Result, features, genes::GeneList, normalization::Normalization, pathways::PathwaySet,
    reference_csv,
};

use crate::oracle::{ORACLE_LEVELS, quantile_key};

/// Options of the synthetic cohort generator.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SynthOptions {
    /// Output folder (created; existing files of the same names are replaced).
    pub out: PathBuf,
    pub patients: usize,
    pub slides_per_patient: usize,
    /// Number of synthetic genes (ignored with --reference-dir).
    pub genes: usize,
    /// Number of synthetic pathways (ignored with --reference-dir).
    pub pathways: usize,
    pub clusters: usize,
    pub feat_dim: usize,
    pub seed: u64,
    /// Dimensions of the latent state visible in morphology.
    pub visible_dims: usize,
    /// Dimensions of the hidden latent state.
    pub hidden_dims: usize,
    /// Mean share of a programme's variance that is visible (0…1).
    pub visibility: f64,
    /// Fraction of pathways whose programme depends on the hidden subtype.
    pub subtype_fraction: f64,
    /// Share of an affected programme's variance due to the subtype (0…1).
    pub subtype_strength: f64,
    /// Share of a gene's variance that is gene-level noise (0…1).
    pub gene_noise: f64,
    /// SD of the noise added to cluster features.
    pub feature_noise: f64,
    /// Draws of the hidden part per patient for the oracle.
    pub oracle_draws: usize,
    /// Use the real genes, GO-MF pathways and gene statistics of a folder laid out as the
    /// release's reference-cohorts data (gene_list.csv, all_gene_indices_molecular_function.json,
    /// <COHORT>_rna_data_{mean,std}.npy).
    pub reference_dir: Option<PathBuf>,
    /// Cohort whose gene statistics are used with --reference-dir.
    pub cohort: String,
    /// With `reference_dir`: this many real genes instead of all of them.
    pub real_genes: Option<usize>,
    /// Saturation γ of the programmes (0: linear).
    pub nonlinearity: f64,
    /// Number of sites (1: none); each patient's slides carry its site's feature offset.
    pub sites: usize,
    /// SD of each site's feature offset.
    pub site_shift: f64,
    /// Gene noise variance × (1 + r·k) for subtype k = ±1 (0…0.9).
    pub noise_by_subtype: f64,
    /// The last this-many patients are external: listed in `external.txt` and left out of
    /// `training.csv` (`reference.csv` keeps every slide, the truth to score against).
    pub external_patients: usize,
}

impl SynthOptions {
    /// The defaults for `out` (the flags of `rnafm-eval synth` show and use them).
    pub fn new(out: impl Into<PathBuf>) -> Self {
        SynthOptions {
            out: out.into(),
            patients: 64,
            slides_per_patient: 1,
            genes: 400,
            pathways: 16,
            clusters: 8,
            feat_dim: 32,
            seed: 0,
            visible_dims: 6,
            hidden_dims: 4,
            visibility: 0.6,
            subtype_fraction: 0.3,
            subtype_strength: 0.6,
            gene_noise: 0.2,
            feature_noise: 0.1,
            oracle_draws: 256,
            reference_dir: None,
            cohort: "LUAD".into(),
            real_genes: None,
            nonlinearity: 0.0,
            sites: 1,
            site_shift: 0.0,
            noise_by_subtype: 0.0,
            external_patients: 0,
        }
    }
}

/// File names inside the output folder.
pub const REFERENCE_CSV: &str = "reference.csv";
pub const GENE_LIST: &str = "gene_list.csv";
pub const PATHWAYS_JSON: &str = "pathways.json";
pub const FEATURES_DIR: &str = "features";
pub const ORACLE_NPZ: &str = "oracle.npz";
pub const MANIFEST_JSON: &str = "synth.json";
/// With `external_patients`: the training slides' CSV, and the external slides' names.
pub const TRAINING_CSV: &str = "training.csv";
pub const EXTERNAL_LIST: &str = "external.txt";
/// With `external_patients`: per-gene r of the oracle mean on the training slides.
pub const ORACLE_TRAINING_R: &str = "oracle_training_r.npy";

/// What was written.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SynthSummary {
    pub out: PathBuf,
    pub slides: usize,
    pub patients: usize,
    pub genes: usize,
    pub pathways: usize,
    pub background_genes: usize,
    /// Slides whose subtype probability lies in [0.2, 0.8] (clearly bimodal mixtures).
    pub mixed_slides: usize,
    pub subtype_pathways: Vec<String>,
}

impl std::fmt::Display for SynthSummary {
    /// The one line the command prints.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "synthetic cohort: {} slides of {} patients, {} genes, {} pathways ({} background genes), {} mixed-subtype slides → {}",
            self.slides,
            self.patients,
            self.genes,
            self.pathways,
            self.background_genes,
            self.mixed_slides,
            self.out.display()
        )
    }
}

/// The fixed parameters of one synthetic world.
struct World {
    genes: GeneList,
    pathways: PathwaySet,
    mean: Vec<f64>,
    sd: Vec<f64>,
    /// [P, Lv] and [P, Lh] programme loadings (visibility already folded in).
    vis: Array2<f64>,
    hid: Array2<f64>,
    /// Per pathway: weight of the subtype ±1 (0 for unaffected pathways).
    subtype: Vec<f64>,
    /// Per pathway: weight of the base (latent) part, √(1−β) or 1.
    base: Vec<f64>,
    /// Per gene g: (pathway, loading) terms `terms[ptr[g]..ptr[g + 1]]` (flat: the oracle
    /// walks them for every draw), and the noise sd.
    ptr: Vec<usize>,
    terms: Vec<(usize, f64)>,
    noise: Vec<f64>,
    /// Feature map: [K, D, Lv] weights, [K, D] offsets.
    feat_w: Array3<f64>,
    feat_b: Array2<f64>,
    /// Saturation γ and the scale 1/c_γ that keeps a saturated programme at unit variance.
    gamma: f64,
    gamma_scale: f64,
    /// Per site: the [D] offset added to every cluster row.
    site_offsets: Array2<f64>,
    noise_by_subtype: f64,
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    StandardNormal.sample(rng)
}

fn arg_err(flag: &str, msg: &str) -> Error {
    Error::invalid(Path::new(flag), msg)
}

fn check_args(a: &SynthOptions) -> Result<()> {
    let unit = |flag: &str, v: f64| {
        if (0.0..=1.0).contains(&v) {
            Ok(())
        } else {
            Err(arg_err(flag, "must lie in 0…1"))
        }
    };
    for (flag, v) in [
        ("--patients", a.patients),
        ("--slides-per-patient", a.slides_per_patient),
        ("--clusters", a.clusters),
        ("--feat-dim", a.feat_dim),
        ("--visible-dims", a.visible_dims),
    ] {
        if v == 0 {
            return Err(arg_err(flag, "must be at least 1"));
        }
    }
    if a.oracle_draws < 2 {
        return Err(arg_err("--oracle-draws", "must be at least 2"));
    }
    if a.reference_dir.is_none() {
        if a.pathways == 0 {
            return Err(arg_err("--pathways", "must be at least 1"));
        }
        if a.genes < 2 * a.pathways {
            return Err(arg_err("--genes", "must be at least 2 × --pathways"));
        }
    }
    unit("--visibility", a.visibility)?;
    unit("--subtype-fraction", a.subtype_fraction)?;
    unit("--subtype-strength", a.subtype_strength)?;
    unit("--gene-noise", a.gene_noise)?;
    if !(a.feature_noise >= 0.0 && a.feature_noise.is_finite()) {
        return Err(arg_err("--feature-noise", "must be a finite value ≥ 0"));
    }
    for (flag, v) in [
        ("--nonlinearity", a.nonlinearity),
        ("--site-shift", a.site_shift),
    ] {
        if !(v >= 0.0 && v.is_finite()) {
            return Err(arg_err(flag, "must be a finite value ≥ 0"));
        }
    }
    if a.sites == 0 {
        return Err(arg_err("--sites", "must be at least 1"));
    }
    if !(0.0..=0.9).contains(&a.noise_by_subtype) {
        return Err(arg_err("--noise-by-subtype", "must lie in 0…0.9"));
    }
    if a.external_patients >= a.patients {
        return Err(arg_err(
            "--external-patients",
            "must be fewer than --patients",
        ));
    }
    if a.real_genes.is_some() && a.reference_dir.is_none() {
        return Err(arg_err("--real-genes", "needs --reference-dir"));
    }
    if a.real_genes.is_some_and(|n| n < 20) {
        return Err(arg_err("--real-genes", "must be at least 20"));
    }
    Ok(())
}

/// Genes, pathways and per-gene statistics: synthetic, or real from `reference_dir`.
fn gene_universe(
    a: &SynthOptions,
    rng: &mut ChaCha8Rng,
) -> Result<(GeneList, PathwaySet, Vec<f64>, Vec<f64>)> {
    if let Some(dir) = &a.reference_dir {
        let genes = GeneList::read(&dir.join("gene_list.csv"))?;
        let pw = PathwaySet::read_json(
            &dir.join("all_gene_indices_molecular_function.json"),
            genes.len(),
        )?;
        let stats_path = |kind: &str| dir.join(format!("{}_rna_data_{kind}.npy", a.cohort));
        let norm = Normalization::read_npy(&stats_path("mean"), &stats_path("std"))?;
        if norm.len() != genes.len() {
            return Err(Error::invalid(
                stats_path("mean"),
                format!("{} genes, the gene list has {}", norm.len(), genes.len()),
            ));
        }
        let mean: Vec<f64> = norm.mean.iter().map(|&v| f64::from(v)).collect();
        let sd: Vec<f64> = norm.sd.iter().map(|&v| f64::from(v)).collect();
        return match a.real_genes {
            None => Ok((genes, pw, mean, sd)),
            Some(n) => real_subset(&genes, &pw, &mean, &sd, n, rng),
        };
    }
    let (g, p) = (a.genes, a.pathways);
    let genes = GeneList::new(
        (0..g).map(|i| format!("SG{i:05}")).collect(),
        Path::new("synthetic genes"),
    )?;
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); p];
    for gene in 0..g {
        // The first 2P genes seed every pathway with two members; later genes join one
        // pathway (90%) or the background, and 20% of those also join a second pathway,
        // so that pathways overlap and the graph has edges.
        if gene < 2 * p {
            members[gene % p].push(gene);
            continue;
        }
        if rng.random::<f64>() < 0.9 {
            let first = rng.random_range(0..p);
            members[first].push(gene);
            if p > 1 && rng.random::<f64>() < 0.2 {
                let second = (first + 1 + rng.random_range(0..p - 1)) % p;
                members[second].push(gene);
            }
        }
    }
    let names = (0..p).map(|i| format!("SYN_PATHWAY_{i:03}")).collect();
    let pw = PathwaySet::new(
        g,
        names,
        members,
        Vec::new(),
        Path::new("synthetic pathways"),
    )?;
    let mean = (0..g).map(|_| 0.5 + 9.5 * rng.random::<f64>()).collect();
    let sd = (0..g).map(|_| 0.3 + 1.2 * rng.random::<f64>()).collect();
    Ok((genes, pw, mean, sd))
}

/// `n` random real genes, 90% from pathway members and 10% from the background, and the
/// pathways cut to them (keeping those with at least two chosen members).
fn real_subset(
    genes: &GeneList,
    pw: &PathwaySet,
    mean: &[f64],
    sd: &[f64],
    n: usize,
    rng: &mut ChaCha8Rng,
) -> Result<(GeneList, PathwaySet, Vec<f64>, Vec<f64>)> {
    use rand::seq::SliceRandom;
    let mut in_pathway = vec![false; genes.len()];
    for m in &pw.members {
        for &g in m {
            in_pathway[g] = true;
        }
    }
    // Genes with no spread cannot be scored (r is undefined); real data has them, but a
    // benchmark should not spend its genes on them.
    let usable = |g: usize| sd[g] > 0.05;
    let mut members: Vec<usize> = (0..genes.len())
        .filter(|&g| in_pathway[g] && usable(g))
        .collect();
    let mut background: Vec<usize> = (0..genes.len())
        .filter(|&g| !in_pathway[g] && usable(g))
        .collect();
    let n = n.min(members.len() + background.len());
    let n_bg = (n / 10).min(background.len());
    members.shuffle(rng);
    background.shuffle(rng);
    let mut chosen: Vec<usize> = members[..(n - n_bg).min(members.len())]
        .iter()
        .chain(&background[..n_bg])
        .copied()
        .collect();
    chosen.sort_unstable();
    let mut new_index = vec![usize::MAX; genes.len()];
    for (i, &g) in chosen.iter().enumerate() {
        new_index[g] = i;
    }
    let mut names = Vec::new();
    let mut kept = Vec::new();
    for (name, m) in pw.names.iter().zip(&pw.members) {
        let cut: Vec<usize> = m
            .iter()
            .map(|&g| new_index[g])
            .filter(|&i| i != usize::MAX)
            .collect();
        if cut.len() >= 2 {
            names.push(name.clone());
            kept.push(cut);
        }
    }
    let symbols: Vec<String> = chosen.iter().map(|&g| genes.symbols()[g].clone()).collect();
    let sub_genes = GeneList::new(symbols, Path::new("real gene subset"))?;
    let sub_pw = PathwaySet::new(
        chosen.len(),
        names,
        kept,
        Vec::new(),
        Path::new("real pathway subset"),
    )?;
    let pick = |v: &[f64]| chosen.iter().map(|&g| v[g]).collect();
    Ok((sub_genes, sub_pw, pick(mean), pick(sd)))
}

/// c_γ = sqrt(E[tanh(γZ)²]) for Z ~ N(0, 1), by a fixed 2,001-point rule on [-8, 8] (a
/// constant of the world, so no randomness); 1 for the linear world.
fn saturation_scale(gamma: f64) -> f64 {
    if gamma == 0.0 {
        return 1.0;
    }
    let (n, lim) = (2001, 8.0);
    let h = 2.0 * lim / (n - 1) as f64;
    let mut acc = 0.0;
    for i in 0..n {
        let z = -lim + h * i as f64;
        acc += (gamma * z).tanh().powi(2) * (-0.5 * z * z).exp();
    }
    (acc * h / (2.0 * std::f64::consts::PI).sqrt()).sqrt()
}

fn unit_row(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    let v: Vec<f64> = (0..n).map(|_| normal(rng)).collect();
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
    v.into_iter().map(|x| x / norm).collect()
}

fn build_world(a: &SynthOptions, rng: &mut ChaCha8Rng) -> Result<World> {
    let (genes, pathways, mean, sd) = gene_universe(a, rng)?;
    let (p, lv, lh) = (pathways.len(), a.visible_dims, a.hidden_dims);
    let spread = 0.3f64.min(a.visibility).min(1.0 - a.visibility);
    let mut vis = Array2::zeros((p, lv));
    let mut hid = Array2::zeros((p, lh));
    let mut subtype = vec![0.0; p];
    let mut base = vec![1.0; p];
    for (i, (st, b)) in subtype.iter_mut().zip(base.iter_mut()).enumerate() {
        // With no hidden dimensions the whole programme is visible.
        let rho = if lh == 0 {
            1.0
        } else {
            (a.visibility + spread * (2.0 * rng.random::<f64>() - 1.0)).clamp(0.0, 1.0)
        };
        for (d, x) in unit_row(rng, lv).into_iter().enumerate() {
            vis[[i, d]] = rho.sqrt() * x;
        }
        if lh > 0 {
            for (d, x) in unit_row(rng, lh).into_iter().enumerate() {
                hid[[i, d]] = (1.0 - rho).sqrt() * x;
            }
        }
        if rng.random::<f64>() < a.subtype_fraction {
            *st = a.subtype_strength.sqrt();
            *b = (1.0 - a.subtype_strength).sqrt();
        }
    }
    let n = genes.len();
    let mut owners: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, m) in pathways.members.iter().enumerate() {
        for &g in m {
            owners[g].push(i);
        }
    }
    let mut ptr = Vec::with_capacity(n + 1);
    ptr.push(0);
    let mut terms = Vec::new();
    let mut noise = Vec::with_capacity(n);
    for own in &owners {
        if own.is_empty() {
            ptr.push(terms.len());
            noise.push(1.0); // background genes: noise only
            continue;
        }
        // Loadings scaled to carry (1 − gene_noise) of the variance (programmes are ~unit
        // and treated as independent here).
        let w: Vec<f64> = own.iter().map(|_| normal(rng)).collect();
        let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
        let scale = (1.0 - a.gene_noise).sqrt() / norm;
        terms.extend(own.iter().zip(&w).map(|(&pw, &x)| (pw, x * scale)));
        ptr.push(terms.len());
        noise.push(a.gene_noise.sqrt());
    }
    let (k, d) = (a.clusters, a.feat_dim);
    let wscale = 1.5 / (lv as f64).sqrt();
    let feat_w = Array3::from_shape_simple_fn((k, d, lv), || wscale * normal(rng));
    let feat_b = Array2::from_shape_simple_fn((k, d), || 0.5 * normal(rng));
    // Drawn last, and only when asked for, so that the default worlds stay as they were.
    let site_offsets = if a.sites > 1 && a.site_shift > 0.0 {
        Array2::from_shape_simple_fn((a.sites, d), || a.site_shift * normal(rng))
    } else {
        Array2::zeros((a.sites, d))
    };
    Ok(World {
        genes,
        pathways,
        mean,
        sd,
        vis,
        hid,
        subtype,
        base,
        ptr,
        terms,
        noise,
        feat_w,
        feat_b,
        gamma: a.nonlinearity,
        gamma_scale: 1.0 / saturation_scale(a.nonlinearity),
        site_offsets,
        noise_by_subtype: a.noise_by_subtype,
    })
}

impl World {
    fn subtype_prob(v: &[f64]) -> f64 {
        1.0 / (1.0 + (-3.0 * v[0]).exp())
    }

    /// One draw of the expression given the visible state `v`, written into `out`.
    fn draw(&self, v: &[f64], rng: &mut ChaCha8Rng, prog: &mut [f64], out: &mut [f64]) {
        let h: Vec<f64> = (0..self.hid.ncols()).map(|_| normal(rng)).collect();
        let k = if rng.random::<f64>() < Self::subtype_prob(v) {
            1.0
        } else {
            -1.0
        };
        for (i, s) in prog.iter_mut().enumerate() {
            let lat: f64 = self
                .vis
                .row(i)
                .iter()
                .zip(v)
                .map(|(a, b)| a * b)
                .sum::<f64>()
                + self
                    .hid
                    .row(i)
                    .iter()
                    .zip(&h)
                    .map(|(a, b)| a * b)
                    .sum::<f64>();
            let lat = if self.gamma > 0.0 {
                (self.gamma * lat).tanh() * self.gamma_scale
            } else {
                lat
            };
            *s = self.base[i] * lat + self.subtype[i] * k;
        }
        let noise_scale = (1.0 + self.noise_by_subtype * k).sqrt();
        for (g, x) in out.iter_mut().enumerate() {
            let signal: f64 = self.terms[self.ptr[g]..self.ptr[g + 1]]
                .iter()
                .map(|&(p, w)| w * prog[p])
                .sum();
            let z = signal + noise_scale * self.noise[g] * normal(rng);
            *x = (self.mean[g] + self.sd[g] * z).max(0.0);
        }
    }

    /// K×D cluster means of one slide: nonlinear in `v`, noisy, shifted by its site's
    /// offset, rows shuffled.
    fn features(&self, v: &[f64], site: usize, noise: f64, rng: &mut ChaCha8Rng) -> Array2<f32> {
        let (k, d, _) = self.feat_w.dim();
        let mut order: Vec<usize> = (0..k).collect();
        for i in (1..k).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        let mut f = Array2::zeros((k, d));
        for (row, &c) in order.iter().enumerate() {
            for j in 0..d {
                let z: f64 = (0..v.len())
                    .map(|l| self.feat_w[[c, j, l]] * v[l])
                    .sum::<f64>()
                    + self.feat_b[[c, j]];
                f[[row, j]] =
                    (z.tanh() + self.site_offsets[[site, j]] + noise * normal(rng)) as f32;
            }
        }
        f
    }
}

/// Generates a cohort into `args.out`.
pub fn run_synth(args: &SynthOptions) -> Result<SynthSummary> {
    check_args(args)?;
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let world = build_world(args, &mut rng)?;
    let (g, lv) = (world.genes.len(), args.visible_dims);
    let slides = args.patients * args.slides_per_patient;
    let out = &args.out;
    let feat_dir = out.join(FEATURES_DIR);
    std::fs::create_dir_all(&feat_dir).map_err(|e| Error::io(&feat_dir, e))?;

    let mut names = Vec::with_capacity(slides);
    let mut patient_ids = Vec::with_capacity(slides);
    let mut truth = Array2::<f32>::zeros((slides, g));
    let mut o_mean = Array2::<f32>::zeros((slides, g));
    let mut o_q: Vec<Array2<f32>> = ORACLE_LEVELS
        .iter()
        .map(|_| Array2::zeros((slides, g)))
        .collect();
    let mut visible = Array2::<f32>::zeros((slides, lv));
    let mut probs = Array1::<f32>::zeros(slides);
    let mut prog = vec![0.0; world.pathways.len()];
    let mut one = vec![0.0; g];
    // Patients' visible states and truths first (one sequential stream); the oracles after,
    // in parallel, each patient with its own stream so that neither the thread count nor
    // the draw count changes the cohort.
    let mut states = Vec::with_capacity(args.patients);
    let mut truths = Vec::with_capacity(args.patients);
    for _ in 0..args.patients {
        let v: Vec<f64> = (0..lv).map(|_| normal(&mut rng)).collect();
        world.draw(&v, &mut rng, &mut prog, &mut one);
        states.push(v);
        truths.push(one.clone());
    }
    let oracles = oracles(&world, &states, args.seed, args.oracle_draws);
    // Sites from their own stream, so that asking for sites changes nothing else.
    let mut site_rng = ChaCha8Rng::seed_from_u64(args.seed);
    site_rng.set_stream(u64::MAX);
    let mut projects = Vec::with_capacity(slides);
    let mut row = 0;
    for (pt, ((v, one), (mean_g, q_g))) in states.iter().zip(&truths).zip(&oracles).enumerate() {
        let pid = format!("SYN-P{pt:04}");
        let site = if args.sites > 1 {
            site_rng.random_range(0..args.sites)
        } else {
            0
        };
        for sl in 0..args.slides_per_patient {
            // Named as GDC manifests name slides (`….svs`); the features under the stem, as
            // `rnafm-features X.svs --out features/X.npy` writes them.
            let stem = format!("{pid}-S{sl}");
            let name = format!("{stem}.svs");
            let f = world.features(v, site, args.feature_noise, &mut rng);
            features::write_features(&feat_dir.join(format!("{stem}.npy")), &f)?;
            for (gi, (&x, &m)) in one.iter().zip(mean_g).enumerate() {
                truth[[row, gi]] = x as f32;
                o_mean[[row, gi]] = m;
            }
            for (q, qg) in o_q.iter_mut().zip(q_g) {
                q.row_mut(row).assign(&ndarray::ArrayView1::from(&qg[..]));
            }
            for (l, &x) in v.iter().enumerate() {
                visible[[row, l]] = x as f32;
            }
            probs[row] = World::subtype_prob(v) as f32;
            names.push(name);
            patient_ids.push(pid.clone());
            projects.push(if args.sites > 1 {
                format!("SITE-{site}")
            } else {
                "SYNTH".to_string()
            });
            row += 1;
        }
    }

    reference_csv::write_reference_csv(
        &out.join(REFERENCE_CSV),
        &names,
        &patient_ids,
        Some(&projects),
        world.genes.symbols(),
        &truth,
    )?;
    if args.external_patients > 0 {
        let n_train = (args.patients - args.external_patients) * args.slides_per_patient;
        reference_csv::write_reference_csv(
            &out.join(TRAINING_CSV),
            &names[..n_train],
            &patient_ids[..n_train],
            Some(&projects[..n_train]),
            world.genes.symbols(),
            &truth.slice(ndarray::s![..n_train, ..]).to_owned(),
        )?;
        let list: String = names[n_train..].iter().map(|n| format!("{n}\n")).collect();
        rnafm_runtime::atomic::write_bytes_atomic(&out.join(EXTERNAL_LIST), list.as_bytes())?;
        // A ranking of the genes for top-k scores that no model and no external slide
        // takes part in: the oracle's r on the training slides.
        let train_rows = ndarray::s![..n_train, ..];
        let r = crate::gene_scores::per_gene(o_mean.slice(train_rows), truth.slice(train_rows));
        let r = Array1::from_vec(r.pearson);
        rnafm_runtime::npy::write_npy(&out.join(ORACLE_TRAINING_R), &r)?;
    }
    let mut gl = String::from("gene\n");
    for s in world.genes.symbols() {
        gl.push_str(s);
        gl.push('\n');
    }
    rnafm_runtime::atomic::write_bytes_atomic(&out.join(GENE_LIST), gl.as_bytes())?;
    write_pathways_json(&out.join(PATHWAYS_JSON), &world.pathways)?;
    let oracle_path = out.join(ORACLE_NPZ);
    rnafm_runtime::atomic::write_atomic(&oracle_path, |w| {
        let mut npz = NpzWriter::new(w);
        let io = std::io::Error::other;
        npz.add_array("mean", &o_mean).map_err(io)?;
        for (level, q) in ORACLE_LEVELS.iter().zip(&o_q) {
            npz.add_array(quantile_key(*level), q).map_err(io)?;
        }
        npz.add_array("visible", &visible).map_err(io)?;
        npz.add_array("subtype_prob", &probs).map_err(io)?;
        npz.finish().map_err(io)?;
        Ok(())
    })?;

    let subtype_pathways: Vec<String> = world
        .subtype
        .iter()
        .zip(&world.pathways.names)
        .filter(|(w, _)| **w > 0.0)
        .map(|(_, n)| n.clone())
        .collect();
    let summary = SynthSummary {
        out: out.clone(),
        slides,
        patients: args.patients,
        genes: g,
        pathways: world.pathways.len(),
        background_genes: world.pathways.background.len(),
        mixed_slides: probs.iter().filter(|&&p| (0.2..=0.8).contains(&p)).count(),
        subtype_pathways,
    };
    let manifest = serde_json::json!({ "args": args, "summary": &summary,
        "oracle_levels": ORACLE_LEVELS });
    let text = serde_json::to_string_pretty(&manifest)
        .map_err(|e| Error::Runtime(format!("cannot serialise the manifest: {e}")))?;
    rnafm_runtime::atomic::write_bytes_atomic(&out.join(MANIFEST_JSON), text.as_bytes())?;
    Ok(summary)
}

/// Oracle of one patient per visible state: per-gene mean and [`ORACLE_LEVELS`] quantiles
/// over `draws` draws of the hidden part.
type PatientOracle = (Vec<f32>, Vec<Vec<f32>>);

fn oracles(world: &World, states: &[Vec<f64>], seed: u64, draws: usize) -> Vec<PatientOracle> {
    let threads = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(1)
        .clamp(1, states.len().max(1));
    let chunk = states.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = states
            .chunks(chunk)
            .enumerate()
            .map(|(c, part)| {
                scope.spawn(move || {
                    part.iter()
                        .enumerate()
                        .map(|(i, v)| patient_oracle(world, v, seed, c * chunk + i, draws))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("an oracle thread panicked"))
            .collect()
    })
}

fn patient_oracle(
    world: &World,
    v: &[f64],
    seed: u64,
    patient: usize,
    draws: usize,
) -> PatientOracle {
    let g = world.genes.len();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(patient as u64 + 1);
    let mut prog = vec![0.0; world.pathways.len()];
    // draws × genes: each draw writes one contiguous row
    let mut all = Array2::<f64>::zeros((draws, g));
    for mut row in all.rows_mut() {
        let out = row
            .as_slice_mut()
            .expect("rows of a standard-layout array are contiguous");
        world.draw(v, &mut rng, &mut prog, out);
    }
    let mut mean = vec![0f32; g];
    let mut q = vec![vec![0f32; g]; ORACLE_LEVELS.len()];
    let mut col = vec![0f64; draws];
    for (gi, m) in mean.iter_mut().enumerate() {
        for (c, &x) in col.iter_mut().zip(all.column(gi)) {
            *c = x;
        }
        col.sort_by(f64::total_cmp);
        *m = (col.iter().sum::<f64>() / draws as f64) as f32;
        for (qs, &level) in q.iter_mut().zip(&ORACLE_LEVELS) {
            qs[gi] = crate::stats::quantile_sorted(&col, level) as f32;
        }
    }
    (mean, q)
}

/// Writes a pathway set as the RNA-FM JSON index (background genes under `UNMAPPED`).
pub fn write_pathways_json(path: &Path, set: &PathwaySet) -> Result<()> {
    let mut map = serde_json::Map::new();
    for (name, m) in set.names.iter().zip(&set.members) {
        map.insert(name.clone(), serde_json::json!(m));
    }
    if !set.background.is_empty() {
        map.insert("UNMAPPED".into(), serde_json::json!(set.background));
    }
    let text = serde_json::to_string(&map)
        .map_err(|e| Error::Runtime(format!("cannot serialise pathways: {e}")))?;
    rnafm_runtime::atomic::write_bytes_atomic(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::{self, EvaluateOptions};
    use crate::gene_scores::per_gene;
    use crate::oracle::read_oracle;
    use rnafm_runtime::reference_csv::ReferenceCohort;
    use rnafm_runtime::slide_names::{feature_file, slide_stem};

    fn small(out: &Path) -> SynthOptions {
        SynthOptions {
            patients: 40,
            slides_per_patient: 2,
            genes: 120,
            pathways: 8,
            clusters: 4,
            feat_dim: 6,
            seed: 3,
            oracle_draws: 200,
            ..SynthOptions::new(out)
        }
    }

    /// Share of a cohort's truths inside its oracle's 5–95% interval.
    fn oracle_90_coverage(dir: &Path) -> f64 {
        let c = ReferenceCohort::read(&dir.join(REFERENCE_CSV)).unwrap();
        let o = read_oracle(&dir.join(ORACLE_NPZ)).unwrap();
        let (lo, hi) = (&o.quantiles[0].1, &o.quantiles[6].1);
        let inside = ndarray::Zip::from(lo)
            .and(hi)
            .and(&c.log2)
            .fold(0usize, |n, &l, &h, &y| n + usize::from(l <= y && y <= h));
        inside as f64 / c.log2.len() as f64
    }

    #[test]
    fn writes_readable_real_formats() {
        let dir = tempfile::tempdir().unwrap();
        let a = small(dir.path());
        let s = run_synth(&a).unwrap();
        assert_eq!((s.slides, s.genes, s.pathways), (80, 120, 8));
        let genes = GeneList::read(&dir.path().join(GENE_LIST)).unwrap();
        let pw = PathwaySet::read_json(&dir.path().join(PATHWAYS_JSON), genes.len()).unwrap();
        assert_eq!(pw.len(), 8);
        assert_eq!(pw.background.len(), s.background_genes);
        let c = ReferenceCohort::read(&dir.path().join(REFERENCE_CSV)).unwrap();
        assert_eq!(c.len(), 80);
        assert_eq!(c.genes, genes.symbols());
        assert_eq!(c.patients[0], c.patients[1]); // two slides per patient
        assert!(c.log2.iter().all(|&v| v >= 0.0));
        for name in &c.slides {
            // GDC-style names; the features are found as training finds them (by stem)
            assert!(name.ends_with(".svs"), "{name}");
            let file = feature_file(&dir.path().join(FEATURES_DIR), name).unwrap();
            assert_eq!(
                file.file_name().unwrap(),
                format!("{}.npy", slide_stem(name)).as_str()
            );
            assert_eq!(features::read_features(&file).unwrap().dim(), (4, 6));
        }
        let o = read_oracle(&dir.path().join(ORACLE_NPZ)).unwrap();
        assert_eq!(o.mean.dim(), (80, 120));
        // quantiles are ordered
        for w in o.quantiles.windows(2) {
            assert!(ndarray::Zip::from(&w[0].1).and(&w[1].1).all(|a, b| a <= b));
        }
    }

    #[test]
    fn deterministic_for_a_seed() {
        let (d1, d2, d3) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        run_synth(&small(d1.path())).unwrap();
        run_synth(&small(d2.path())).unwrap();
        run_synth(&SynthOptions {
            seed: 4,
            ..small(d3.path())
        })
        .unwrap();
        let read = |d: &Path, f: &str| std::fs::read(d.join(f)).unwrap();
        for f in [REFERENCE_CSV, ORACLE_NPZ, "features/SYN-P0003-S1.npy"] {
            assert_eq!(read(d1.path(), f), read(d2.path(), f), "{f}");
            assert_ne!(read(d1.path(), f), read(d3.path(), f), "{f}");
        }
    }

    #[test]
    fn oracle_is_calibrated_and_informative() {
        let dir = tempfile::tempdir().unwrap();
        let a = SynthOptions {
            slides_per_patient: 1,
            patients: 120,
            ..small(dir.path())
        };
        let s = run_synth(&a).unwrap();
        assert!(
            s.mixed_slides > 0,
            "some slides should have bimodal conditionals"
        );
        let c = ReferenceCohort::read(&dir.path().join(REFERENCE_CSV)).unwrap();
        let o = read_oracle(&dir.path().join(ORACLE_NPZ)).unwrap();
        // each truth is an independent draw from the distribution the oracle describes
        let cov = oracle_90_coverage(dir.path());
        assert!(
            (0.85..=0.95).contains(&cov),
            "90% oracle interval covers {cov}"
        );
        // the visible part explains a real share of the variance
        let r = per_gene(o.mean.view(), c.log2.view());
        let finite: Vec<f64> = r
            .pearson
            .iter()
            .copied()
            .filter(|x| x.is_finite())
            .collect();
        let m = finite.iter().sum::<f64>() / finite.len() as f64;
        assert!(m > 0.3, "oracle mean r {m}");
    }

    #[test]
    fn nothing_hidden_means_the_oracle_is_the_truth() {
        let dir = tempfile::tempdir().unwrap();
        let a = SynthOptions {
            hidden_dims: 0,
            visibility: 1.0,
            subtype_fraction: 0.0,
            gene_noise: 0.0,
            ..small(dir.path())
        };
        run_synth(&a).unwrap();
        let c = ReferenceCohort::read(&dir.path().join(REFERENCE_CSV)).unwrap();
        let o = read_oracle(&dir.path().join(ORACLE_NPZ)).unwrap();
        let pw = PathwaySet::read_json(&dir.path().join(PATHWAYS_JSON), 120).unwrap();
        for (qi, (_, q)) in o.quantiles.iter().enumerate() {
            for ((i, g), &v) in q.indexed_iter() {
                if pw.background.contains(&g) {
                    continue; // background genes are noise only, by construction
                }
                // the CSV keeps ~9 significant digits of FPKM
                assert!(
                    (v - c.log2[[i, g]]).abs() < 1e-3,
                    "q{qi} slide {i} gene {g}"
                );
            }
        }
    }

    #[test]
    fn evaluating_the_oracle_reaches_the_ceiling() {
        let dir = tempfile::tempdir().unwrap();
        run_synth(&small(dir.path())).unwrap();
        let o = read_oracle(&dir.path().join(ORACLE_NPZ)).unwrap();
        let pred = dir.path().join("pred.npy");
        features::write_features(&pred, &o.mean).unwrap();
        let report = evaluate::run_evaluate(&EvaluateOptions {
            pred,
            truth: dir.path().join(REFERENCE_CSV),
            genes: Some(dir.path().join(GENE_LIST)),
            rank_by: None,
            rank_excluding_fold: None,
            versus: None,
            versus_rank_by: None,
            replicates: 1000,
            model: None,
            oracle: Some(dir.path().join(ORACLE_NPZ)),
            out: Some(dir.path().join("report.json")),
            present_only: false,
            slides: None,
        })
        .unwrap();
        let oc = report.oracle.unwrap();
        assert!((oc.fraction_of_ceiling - 1.0).abs() < 1e-9);
        assert!(oc.rmse_to_oracle_mean < 1e-6);
        assert_eq!(report.accuracy.len(), 4); // all + top 100, 50, 20 of 120 genes
        assert!(dir.path().join("report.json").is_file());
    }

    #[test]
    fn bad_options_name_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let e = run_synth(&SynthOptions {
            genes: 10,
            pathways: 8,
            ..small(dir.path())
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("--genes"), "{e}");
        let e = run_synth(&SynthOptions {
            visibility: 1.5,
            ..small(dir.path())
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("--visibility"), "{e}");
    }

    #[test]
    fn real_genes_pathways_and_statistics() {
        let dir = tempfile::tempdir().unwrap();
        let reference =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/reference-cohorts");
        let a = SynthOptions {
            patients: 3,
            oracle_draws: 8,
            reference_dir: Some(reference.clone()),
            ..small(dir.path())
        };
        let s = run_synth(&a).unwrap();
        assert_eq!((s.genes, s.pathways, s.slides), (20_820, 380, 6));
        let genes = GeneList::read(&dir.path().join(GENE_LIST)).unwrap();
        let real = GeneList::read(&reference.join("gene_list.csv")).unwrap();
        assert_eq!(genes, real);
        let pw = PathwaySet::read_json(&dir.path().join(PATHWAYS_JSON), genes.len()).unwrap();
        assert_eq!(pw.len(), 380);
        let c = ReferenceCohort::read(&dir.path().join(REFERENCE_CSV)).unwrap();
        assert_eq!(c.aligned(&real).unwrap().dim(), (6, 20_820));
    }

    /// The harder world: a real gene subset with overlapping real pathways, saturating
    /// programmes, site offsets in the features, subtype-dependent noise and an external
    /// split; the oracle still describes the truth (its 90% interval covers ~90%).
    #[test]
    fn realistic_world_options() {
        let dir = tempfile::tempdir().unwrap();
        let reference =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/reference-cohorts");
        let a = SynthOptions {
            patients: 60,
            slides_per_patient: 1,
            oracle_draws: 200,
            reference_dir: Some(reference),
            real_genes: Some(300),
            nonlinearity: 1.5,
            sites: 3,
            site_shift: 0.5,
            noise_by_subtype: 0.5,
            external_patients: 20,
            ..small(dir.path())
        };
        let s = run_synth(&a).unwrap();
        assert_eq!(s.genes, 300);
        assert!(s.pathways > 50, "{} pathways", s.pathways);
        let genes = GeneList::read(&dir.path().join(GENE_LIST)).unwrap();
        let pw = PathwaySet::read_json(&dir.path().join(PATHWAYS_JSON), 300).unwrap();
        assert!(pw.members.iter().all(|m| m.len() >= 2));
        let c = ReferenceCohort::read(&dir.path().join(REFERENCE_CSV)).unwrap();
        assert_eq!(c.len(), 60);
        let t = ReferenceCohort::read(&dir.path().join(TRAINING_CSV)).unwrap();
        assert_eq!(t.slides, c.slides[..40]);
        assert_eq!(t.genes, genes.symbols());
        let external = std::fs::read_to_string(dir.path().join(EXTERNAL_LIST)).unwrap();
        assert_eq!(
            external.lines().collect::<Vec<_>>(),
            c.slides[40..]
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
        );
        let sites: std::collections::BTreeSet<_> = c
            .projects
            .iter()
            .flatten()
            .collect::<Vec<_>>()
            .into_iter()
            .collect();
        assert_eq!(sites.len(), 3, "{sites:?}");
        let r = rnafm_runtime::npy::read_float_array(&dir.path().join(ORACLE_TRAINING_R), None)
            .unwrap();
        assert_eq!(r.len(), 300);
        let cov = oracle_90_coverage(dir.path());
        assert!(
            (0.85..=0.95).contains(&cov),
            "90% oracle interval covers {cov}"
        );
    }
}
