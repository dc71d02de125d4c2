//! Evaluation of predicted expression against measured (or synthetic) truth, all in
//! log2(FPKM-UQ+1): per-gene Pearson r and RMSE (means over all genes and over the top-k
//! genes ranked by a given cross-validated r, as the RNA-FM/SEQUOIA papers report),
//! uncertainty metrics from samples (interval coverage, Gaussian NLL, Spearman of predicted
//! variance against |error|, CRPS), and comparisons with a synthetic cohort's oracle.

use std::path::{Path, PathBuf};

use crate::paired_bootstrap::{PairedDifference, Scored, paired_bootstrap};
use ndarray::{Array2, Array3, ArrayView2, ArrayView3, Axis, Ix2, Ix3};
use rnafm_runtime::{Error, Result, genes::GeneList, npy, reference_csv::ReferenceCohort};

/// Top-k gene sets reported besides "all genes".
pub const TOP_KS: [usize; 6] = [1000, 500, 200, 100, 50, 20];
/// Central interval levels whose coverage is reported.
pub const INTERVAL_LEVELS: [f64; 3] = [0.5, 0.8, 0.9];
/// Levels of the calibration curve (nominal vs empirical coverage) in the report.
pub const CURVE_LEVELS: [f64; 10] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95];
/// Smallest variance in the Gaussian NLL: a gene whose samples all agree would give +inf.
pub const MIN_VAR: f64 = 1e-6;

// ---------------------------------------------------------------- scalar statistics

/// Pearson correlation; NaN when fewer than two values or either side is constant.
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    if n < 2 {
        return f64::NAN;
    }
    let ma = a[..n].iter().sum::<f64>() / n as f64;
    let mb = b[..n].iter().sum::<f64>() / n as f64;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a[..n].iter().zip(&b[..n]) {
        let (dx, dy) = (x - ma, y - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    if saa <= 0.0 || sbb <= 0.0 {
        return f64::NAN;
    }
    sab / (saa * sbb).sqrt()
}

/// Root mean squared difference.
pub fn rmse(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    if n == 0 {
        return f64::NAN;
    }
    (a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>() / n as f64).sqrt()
}

/// Ranks 1..n, ties given their average rank (as `scipy.stats.rankdata`).
pub fn ranks(a: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..a.len()).collect();
    idx.sort_by(|&i, &j| a[i].total_cmp(&a[j]));
    let mut r = vec![0.0; a.len()];
    let mut s = 0;
    while s < idx.len() {
        let mut e = s + 1;
        while e < idx.len() && a[idx[e]] == a[idx[s]] {
            e += 1;
        }
        let avg = (s + e + 1) as f64 / 2.0; // mean of ranks s+1..=e
        for &i in &idx[s..e] {
            r[i] = avg;
        }
        s = e;
    }
    r
}

/// Spearman rank correlation (Pearson of average ranks).
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    pearson(&ranks(a), &ranks(b))
}

/// Quantile of sorted values with linear interpolation (numpy's default method).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = (lo + 1).min(n - 1);
            sorted[lo] + (pos - lo as f64) * (sorted[hi] - sorted[lo])
        }
    }
}

/// CRPS of an ensemble (sorted ascending) for outcome `y`:
/// E|X − y| − ½E|X − X′|, with E|X − X′| = (2/m²) Σᵢ (2i − m − 1) x₍ᵢ₎ for 1-based i.
pub fn crps_sorted(sorted: &[f64], y: f64) -> f64 {
    let m = sorted.len() as f64;
    if sorted.is_empty() {
        return f64::NAN;
    }
    let abs_err = sorted.iter().map(|x| (x - y).abs()).sum::<f64>() / m;
    let spread = sorted
        .iter()
        .enumerate()
        .map(|(i, x)| (2.0 * (i + 1) as f64 - m - 1.0) * x)
        .sum::<f64>()
        / (m * m);
    abs_err - spread
}

/// Negative log-likelihood of `y` under N(mean, var) (variance floored at [`MIN_VAR`]).
pub fn gaussian_nll(mean: f64, var: f64, y: f64) -> f64 {
    let v = var.max(MIN_VAR);
    0.5 * ((2.0 * std::f64::consts::PI * v).ln() + (y - mean).powi(2) / v)
}

/// Mean of the finite values and how many were not finite.
fn finite_mean(v: &[f64]) -> (f64, usize) {
    let finite: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    let mean = if finite.is_empty() {
        f64::NAN
    } else {
        finite.iter().sum::<f64>() / finite.len() as f64
    };
    (mean, v.len() - finite.len())
}

// ---------------------------------------------------------------- per-gene accuracy

/// Per-gene scores over slides.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GeneScores {
    /// Pearson r across slides per gene (NaN where truth or prediction is constant).
    pub pearson: Vec<f64>,
    pub rmse: Vec<f64>,
}

/// Per-gene Pearson r and RMSE of `pred` against `truth` (both slides × genes).
pub fn per_gene(pred: ArrayView2<'_, f32>, truth: ArrayView2<'_, f32>) -> GeneScores {
    assert_eq!(
        pred.dim(),
        truth.dim(),
        "prediction and truth shapes differ"
    );
    let mut pearson_r = Vec::with_capacity(pred.ncols());
    let mut rmse_g = Vec::with_capacity(pred.ncols());
    for (p, t) in pred.columns().into_iter().zip(truth.columns()) {
        let p: Vec<f64> = p.iter().map(|&v| f64::from(v)).collect();
        let t: Vec<f64> = t.iter().map(|&v| f64::from(v)).collect();
        pearson_r.push(pearson(&p, &t));
        rmse_g.push(rmse(&p, &t));
    }
    GeneScores {
        pearson: pearson_r,
        rmse: rmse_g,
    }
}

/// Means over a gene set.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GeneSetSummary {
    /// `None` for all genes, else the k of the top-k set.
    pub top_k: Option<usize>,
    pub genes: usize,
    pub mean_pearson: f64,
    pub mean_rmse: f64,
    /// Genes of the set whose r is undefined (constant truth or prediction), left out of
    /// the mean r.
    pub undefined_r: usize,
}

/// Means over all genes and over the top-k genes ranked by `rank_by` (e.g. each gene's
/// cross-validated r; NaN ranks last). Without `rank_by`, genes are ranked by their own
/// r here, which flatters the top-k means (the sets are chosen on the test data). Sets
/// larger than the gene count are skipped.
pub fn summarize(
    scores: &GeneScores,
    rank_by: Option<&[f64]>,
    ks: &[usize],
) -> Vec<GeneSetSummary> {
    let g = scores.pearson.len();
    let key = rank_by.unwrap_or(&scores.pearson);
    let mut order: Vec<usize> = (0..g).collect();
    // descending, NaN last, ties by index for a stable choice
    order.sort_by(|&a, &b| {
        let (x, y) = (key[a], key[b]);
        match (x.is_nan(), y.is_nan()) {
            (true, true) => a.cmp(&b),
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            _ => y.total_cmp(&x).then(a.cmp(&b)),
        }
    });
    let set = |top_k: Option<usize>, idx: &[usize]| {
        let r: Vec<f64> = idx.iter().map(|&i| scores.pearson[i]).collect();
        let e: Vec<f64> = idx.iter().map(|&i| scores.rmse[i]).collect();
        let (mean_pearson, undefined_r) = finite_mean(&r);
        GeneSetSummary {
            top_k,
            genes: idx.len(),
            mean_pearson,
            mean_rmse: finite_mean(&e).0,
            undefined_r,
        }
    };
    let mut out = vec![set(None, &order)];
    for &k in ks.iter().filter(|&&k| k <= g) {
        out.push(set(Some(k), &order[..k]));
    }
    out
}

// ---------------------------------------------------------------- uncertainty

/// Coverage of one central interval.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Coverage {
    pub level: f64,
    /// Fraction of (slide, gene) truths inside the interval; `level` when calibrated.
    pub covered: f64,
}

/// Uncertainty metrics of a sample ensemble, over all (slide, gene) entries.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct UncertaintyScores {
    pub coverage: Vec<Coverage>,
    /// Coverage at every level of [`CURVE_LEVELS`] (the calibration curve).
    pub curve: Vec<Coverage>,
    /// Mean Gaussian NLL with the samples' mean and variance.
    pub gaussian_nll: f64,
    /// Spearman correlation of predicted variance with |mean − truth|: > 0 when the model
    /// is less certain where it is more wrong.
    pub spearman_var_abs_err: f64,
    pub crps: f64,
}

/// Uncertainty metrics from `samples` [n, slides, genes] against `truth` [slides, genes].
pub fn uncertainty(samples: ArrayView3<'_, f32>, truth: ArrayView2<'_, f32>) -> UncertaintyScores {
    let (n, s, g) = samples.dim();
    assert_eq!((s, g), truth.dim(), "samples and truth shapes differ");
    let mut inside = vec![0usize; INTERVAL_LEVELS.len()];
    let mut inside_curve = vec![0usize; CURVE_LEVELS.len()];
    let (mut nll, mut crps) = (0.0, 0.0);
    let mut vars = Vec::with_capacity(s * g);
    let mut errs = Vec::with_capacity(s * g);
    let mut buf = vec![0f64; n];
    for i in 0..s {
        for j in 0..g {
            for (b, &v) in buf.iter_mut().zip(samples.slice(ndarray::s![.., i, j])) {
                *b = f64::from(v);
            }
            buf.sort_by(f64::total_cmp);
            let y = f64::from(truth[[i, j]]);
            let mean = buf.iter().sum::<f64>() / n as f64;
            let var = buf.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
            let within = |level: f64| {
                let lo = quantile_sorted(&buf, (1.0 - level) / 2.0);
                let hi = quantile_sorted(&buf, (1.0 + level) / 2.0);
                lo <= y && y <= hi
            };
            for (c, &level) in inside.iter_mut().zip(&INTERVAL_LEVELS) {
                *c += usize::from(within(level));
            }
            for (c, &level) in inside_curve.iter_mut().zip(&CURVE_LEVELS) {
                *c += usize::from(within(level));
            }
            nll += gaussian_nll(mean, var, y);
            crps += crps_sorted(&buf, y);
            vars.push(var);
            errs.push((mean - y).abs());
        }
    }
    let total = (s * g).max(1) as f64;
    let cov = |levels: &[f64], counts: &[usize]| -> Vec<Coverage> {
        levels
            .iter()
            .zip(counts)
            .map(|(&level, &c)| Coverage {
                level,
                covered: c as f64 / total,
            })
            .collect()
    };
    UncertaintyScores {
        coverage: cov(&INTERVAL_LEVELS, &inside),
        curve: cov(&CURVE_LEVELS, &inside_curve),
        gaussian_nll: nll / total,
        spearman_var_abs_err: spearman(&vars, &errs),
        crps: crps / total,
    }
}

// ---------------------------------------------------------------- oracle

/// A synthetic cohort's oracle: the true conditional mean and quantiles of every gene given
/// what the slide shows (see `synth`).
#[derive(Debug, Clone, PartialEq)]
pub struct Oracle {
    pub mean: Array2<f32>,
    /// (level, slides × genes) in ascending level.
    pub quantiles: Vec<(f64, Array2<f32>)>,
}

/// How a prediction compares with the oracle.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OracleComparison {
    /// Mean per-gene r of the oracle mean with the truth: the ceiling of any predictor.
    pub oracle_mean_pearson: f64,
    /// The oracle mean's accuracy over all genes and the top-k sets of the same ranking as
    /// the prediction's.
    pub oracle_accuracy: Vec<GeneSetSummary>,
    /// Mean per-gene r of the prediction with the truth, divided by the ceiling.
    pub fraction_of_ceiling: f64,
    /// Mean per-gene r of the prediction with the oracle mean.
    pub pearson_to_oracle_mean: f64,
    /// RMSE of the prediction to the oracle mean over all entries.
    pub rmse_to_oracle_mean: f64,
    /// Coverage of the oracle's own central intervals (a check of the oracle).
    pub oracle_coverage: Vec<Coverage>,
    /// Mean |predicted quantile − oracle quantile| per oracle level, when samples are given.
    pub quantile_abs_error: Vec<(f64, f64)>,
}

/// Compares a mean prediction (and optionally samples [n, slides, genes]) with the oracle.
pub fn compare_with_oracle(
    pred_mean: ArrayView2<'_, f32>,
    samples: Option<ArrayView3<'_, f32>>,
    truth: ArrayView2<'_, f32>,
    oracle: &Oracle,
    rank_by: Option<&[f64]>,
) -> OracleComparison {
    let oracle_scores = per_gene(oracle.mean.view(), truth);
    let ceiling = finite_mean(&oracle_scores.pearson).0;
    // Without a given ranking the prediction's own r ranks the genes (as in `summarize`).
    let own_r;
    let rank_by = match rank_by {
        Some(r) => r,
        None => {
            own_r = per_gene(pred_mean, truth).pearson;
            &own_r
        }
    };
    let oracle_accuracy = summarize(&oracle_scores, Some(rank_by), &TOP_KS);
    let pred_r = finite_mean(&per_gene(pred_mean, truth).pearson).0;
    let to_oracle = per_gene(pred_mean, oracle.mean.view());
    let flat_p: Vec<f64> = pred_mean.iter().map(|&v| f64::from(v)).collect();
    let flat_o: Vec<f64> = oracle.mean.iter().map(|&v| f64::from(v)).collect();
    let level_of = |q: f64| oracle.quantiles.iter().find(|(l, _)| (l - q).abs() < 1e-9);
    let oracle_coverage = INTERVAL_LEVELS
        .iter()
        .filter_map(|&level| {
            let (_, lo) = level_of((1.0 - level) / 2.0)?;
            let (_, hi) = level_of((1.0 + level) / 2.0)?;
            let inside = ndarray::Zip::from(lo)
                .and(hi)
                .and(truth)
                .fold(0usize, |c, &l, &h, &y| c + usize::from(l <= y && y <= h));
            Some(Coverage {
                level,
                covered: inside as f64 / truth.len().max(1) as f64,
            })
        })
        .collect();
    let quantile_abs_error = match samples {
        Some(smp) => oracle
            .quantiles
            .iter()
            .map(|(level, oq)| {
                let mut err = 0.0;
                let mut buf = vec![0f64; smp.len_of(Axis(0))];
                for ((i, j), &o) in oq.indexed_iter() {
                    for (b, &v) in buf.iter_mut().zip(smp.slice(ndarray::s![.., i, j])) {
                        *b = f64::from(v);
                    }
                    buf.sort_by(f64::total_cmp);
                    err += (quantile_sorted(&buf, *level) - f64::from(o)).abs();
                }
                (*level, err / oq.len().max(1) as f64)
            })
            .collect(),
        None => Vec::new(),
    };
    OracleComparison {
        oracle_mean_pearson: ceiling,
        oracle_accuracy,
        fraction_of_ceiling: pred_r / ceiling,
        pearson_to_oracle_mean: finite_mean(&to_oracle.pearson).0,
        rmse_to_oracle_mean: rmse(&flat_p, &flat_o),
        oracle_coverage,
        quantile_abs_error,
    }
}

/// Reads an oracle written by `synth` (`oracle.npz`: `mean` and `q05`…`q95`).
pub fn read_oracle(path: &Path) -> Result<Oracle> {
    let mat = |key: &str| -> Result<Array2<f32>> {
        npy::read_float_array(path, Some(key))?
            .into_dimensionality::<Ix2>()
            .map_err(|_| Error::invalid(path, format!("oracle array {key:?} is not 2-d")))
    };
    let mean = mat("mean")?;
    let mut quantiles = Vec::new();
    for &level in &crate::synth::ORACLE_LEVELS {
        let q = mat(&crate::synth::quantile_key(level))?;
        if q.dim() != mean.dim() {
            return Err(Error::invalid(
                path,
                "oracle quantiles and mean differ in shape",
            ));
        }
        quantiles.push((level, q));
    }
    Ok(Oracle { mean, quantiles })
}

// ---------------------------------------------------------------- the evaluate command

/// Arguments of `evaluate`.
#[derive(Debug, Clone, clap::Args)]
pub struct EvaluateArgs {
    /// Predictions in log2(FPKM-UQ+1): a folder of `<slide>.samples.npy` [n, genes] (as
    /// `rnafm-run` writes), or one `.npy` of means [slides, genes] or samples
    /// [n, slides, genes] in the reference CSV's row order.
    #[arg(long)]
    pub pred: PathBuf,
    /// Reference CSV with the measured FPKM-UQ values.
    #[arg(long)]
    pub truth: PathBuf,
    /// Gene list in the predictions' column order (default: the CSV's gene columns).
    #[arg(long)]
    pub genes: Option<PathBuf>,
    /// Per-gene cross-validated r to rank the top-k sets by: a `.npy` (one value per gene)
    /// or rnafm-train's metrics.json (its pooled out-of-fold r).
    #[arg(long)]
    pub rank_by: Option<PathBuf>,
    /// With a --rank-by metrics.json: rank by the r of the other folds' out-of-fold
    /// predictions instead of the pooled r, for evaluating fold K's held-out slides. The
    /// pooled r includes the evaluated slides, which makes top-k means optimistic, most of
    /// all for a deterministic model whose evaluated predictions are the ranked ones.
    #[arg(long, requires = "rank_by")]
    pub rank_excluding_fold: Option<usize>,
    /// Oracle of a synthetic cohort (`oracle.npz`).
    #[arg(long)]
    pub oracle: Option<PathBuf>,
    /// Where to write the JSON report (printed to stdout when absent).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// With a --pred folder: score only the CSV's slides that have a samples file there
    /// (e.g. the held-out fold of a cross-validation), instead of requiring all.
    #[arg(long)]
    pub present_only: bool,
    /// Score only these slides (one name a line, e.g. a fold's heldout.txt); a `.npy` of
    /// every CSV row is then cut to them.
    #[arg(long, value_name = "LIST")]
    pub slides: Option<PathBuf>,
    /// Another model's predictions on the same slides (e.g. the regression baseline's
    /// oof_predictions.npy): adds the difference in mean r (this model − that one) with a
    /// 95% paired bootstrap interval over slides, per gene set.
    #[arg(long, value_name = "PRED")]
    pub versus: Option<PathBuf>,
    /// Ranking of the --versus model's top-k genes (as --rank-by; --rank-excluding-fold
    /// applies to it too).
    #[arg(long, requires = "versus")]
    pub versus_rank_by: Option<PathBuf>,
    /// Bootstrap replicates for --versus.
    #[arg(long, default_value_t = 1000)]
    pub replicates: usize,
}

/// Everything `evaluate` reports.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EvalReport {
    pub slides: usize,
    pub genes: usize,
    pub samples_per_slide: Option<usize>,
    pub accuracy: Vec<GeneSetSummary>,
    pub ranked_by: String,
    pub uncertainty: Option<UncertaintyScores>,
    pub oracle: Option<OracleComparison>,
    /// Against the --versus predictions: difference in mean r per gene set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub versus: Option<Versus>,
}

/// `evaluate --versus`: this model's mean r minus another's, with bootstrap intervals.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Versus {
    pub predictions: String,
    pub differences: Vec<PairedDifference>,
}

/// Runs the evaluation described by `args` and writes/prints the report.
pub fn run_evaluate(args: &EvaluateArgs) -> Result<EvalReport> {
    let cohort = ReferenceCohort::read(&args.truth)?;
    let (truth, n_genes) = match &args.genes {
        Some(p) => {
            let g = GeneList::read(p)?;
            (cohort.aligned(&g)?, g.len())
        }
        None => (cohort.log2.clone(), cohort.genes.len()),
    };
    let rows = evaluated_rows(args, &cohort.slides)?;
    let truth = truth.select(Axis(0), &rows);
    let slide_names: Vec<String> = rows.iter().map(|&i| cohort.slides[i].clone()).collect();
    let s = rows.len();
    let (mean, samples) = read_predictions(&args.pred, &slide_names, &rows, cohort.len(), n_genes)?;
    let rank_by = match &args.rank_by {
        Some(p) => Some(read_rank_by(p, n_genes, args.rank_excluding_fold)?),
        None => None,
    };
    let scores = per_gene(mean.view(), truth.view());
    let oracle = match &args.oracle {
        Some(p) => {
            let mut o = read_oracle(p)?;
            if o.mean.dim() == (cohort.len(), n_genes) {
                o.mean = o.mean.select(Axis(0), &rows);
                for (_, q) in &mut o.quantiles {
                    *q = q.select(Axis(0), &rows);
                }
            }
            if o.mean.dim() != (s, n_genes) {
                return Err(Error::invalid(
                    p,
                    format!(
                        "oracle is {:?}, the evaluation is {:?}",
                        o.mean.dim(),
                        (s, n_genes)
                    ),
                ));
            }
            Some(compare_with_oracle(
                mean.view(),
                samples.as_ref().map(|a| a.view()),
                truth.view(),
                &o,
                rank_by.as_deref(),
            ))
        }
        None => None,
    };
    let versus = match &args.versus {
        Some(p) => {
            let (other, _) = read_predictions(p, &slide_names, &rows, cohort.len(), n_genes)?;
            let other_rank = match &args.versus_rank_by {
                Some(r) => Some(read_rank_by(r, n_genes, args.rank_excluding_fold)?),
                None => None,
            };
            Some(Versus {
                predictions: p.display().to_string(),
                differences: paired_bootstrap(
                    Scored {
                        pred: mean.view(),
                        rank: rank_by.as_deref(),
                    },
                    Scored {
                        pred: other.view(),
                        rank: other_rank.as_deref(),
                    },
                    truth.view(),
                    &TOP_KS,
                    args.replicates.max(1),
                    0xB007,
                ),
            })
        }
        None => None,
    };
    let report = EvalReport {
        versus,
        slides: s,
        genes: n_genes,
        samples_per_slide: samples.as_ref().map(|a| a.len_of(Axis(0))),
        accuracy: summarize(&scores, rank_by.as_deref(), &TOP_KS),
        ranked_by: match (&args.rank_by, args.rank_excluding_fold) {
            (Some(p), Some(k)) => format!("{} without fold {k}", p.display()),
            (Some(p), None) => p.display().to_string(),
            (None, _) => "the evaluated r itself (optimistic)".into(),
        },
        uncertainty: samples
            .as_ref()
            .map(|a| uncertainty(a.view(), truth.view())),
        oracle,
    };
    let json = serde_json::to_string_pretty(&report)
        .map_err(|e| Error::Runtime(format!("cannot serialise the report: {e}")))?;
    match &args.out {
        Some(p) => rnafm_runtime::atomic::write_bytes_atomic(p, json.as_bytes())?,
        None => println!("{json}"),
    }
    Ok(report)
}

/// Rows of the reference CSV to score: those of `--slides`, else those with a samples
/// file (`--present-only`), else all.
fn evaluated_rows(args: &EvaluateArgs, slides: &[String]) -> Result<Vec<usize>> {
    let rows: Vec<usize> = if let Some(list) = &args.slides {
        let text = std::fs::read_to_string(list).map_err(|e| Error::io(list, e))?;
        let mut rows = Vec::new();
        for name in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let i = slides.iter().position(|s| s == name).ok_or_else(|| {
                Error::invalid(
                    list,
                    format!("slide {name} is not in {}", args.truth.display()),
                )
            })?;
            rows.push(i);
        }
        rows
    } else if args.present_only && args.pred.is_dir() {
        (0..slides.len())
            .filter(|&i| {
                args.pred
                    .join(format!("{}.samples.npy", slides[i]))
                    .exists()
            })
            .collect()
    } else {
        (0..slides.len()).collect()
    };
    if rows.is_empty() {
        return Err(Error::invalid(
            &args.pred,
            "no slide of the reference CSV to evaluate",
        ));
    }
    Ok(rows)
}

/// Per-gene ranking values: a `.npy` of one value per gene, or rnafm-train's
/// `metrics.json`: its pooled out-of-fold r (`pooled_gene_r`), or with `excluding_fold` = k
/// the r of the other folds' out-of-fold predictions (`gene_r_without_fold[k]`).
pub fn read_rank_by(p: &Path, n_genes: usize, excluding_fold: Option<usize>) -> Result<Vec<f64>> {
    let is_json = p.extension().is_some_and(|e| e == "json");
    let v: Vec<f64> = if is_json {
        let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
        let m: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::invalid(p, format!("not JSON: {e}")))?;
        let list = match excluding_fold {
            None => m.get("pooled_gene_r").ok_or_else(|| {
                Error::invalid(p, "no pooled_gene_r list (not rnafm-train metrics)")
            })?,
            Some(k) => {
                let per_fold = m
                    .get("gene_r_without_fold")
                    .and_then(|r| r.as_array())
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| {
                        Error::invalid(
                            p,
                            "no gene_r_without_fold lists (metrics from an older rnafm-train)",
                        )
                    })?;
                per_fold.get(k).ok_or_else(|| {
                    Error::invalid(
                        p,
                        format!("fold {k} asked for, the run has {} folds", per_fold.len()),
                    )
                })?
            }
        };
        list.as_array()
            .ok_or_else(|| Error::invalid(p, "per-gene r is not a list"))?
            .iter()
            .map(|x| x.as_f64().unwrap_or(f64::NAN))
            .collect()
    } else {
        if excluding_fold.is_some() {
            return Err(Error::invalid(
                p,
                "--rank-excluding-fold needs rnafm-train's metrics.json, not a .npy",
            ));
        }
        npy::read_float_array(p, None)?
            .iter()
            .map(|&x| f64::from(x))
            .collect()
    };
    if v.len() != n_genes {
        return Err(Error::invalid(
            p,
            format!("expected {n_genes} per-gene values, found {}", v.len()),
        ));
    }
    Ok(v)
}

/// Reads predictions for the CSV rows `rows` (named `slides`; the CSV has `all_rows`) as
/// (mean [slides, genes], optional samples [n, slides, genes]). A `.npy` holds either just
/// those slides or every CSV row (then the rows are picked).
pub fn read_predictions(
    path: &Path,
    slides: &[String],
    rows: &[usize],
    all_rows: usize,
    genes: usize,
) -> Result<(Array2<f32>, Option<Array3<f32>>)> {
    let s = slides.len();
    if path.is_dir() {
        let mut all: Option<Array3<f32>> = None;
        for (i, slide) in slides.iter().enumerate() {
            let p = path.join(format!("{slide}.samples.npy"));
            let a = npy::read_float_array(&p, None)?
                .into_dimensionality::<Ix2>()
                .map_err(|_| Error::invalid(&p, "samples must be 2-d [n, genes]"))?;
            let arr = all.get_or_insert_with(|| Array3::zeros((a.nrows(), s, genes)));
            if a.dim() != (arr.len_of(Axis(0)), genes) {
                return Err(Error::invalid(
                    &p,
                    format!(
                        "samples are {:?}, expected [{}, {genes}]",
                        a.dim(),
                        arr.len_of(Axis(0))
                    ),
                ));
            }
            arr.slice_mut(ndarray::s![.., i, ..]).assign(&a);
        }
        let all = all.ok_or_else(|| Error::invalid(path, "no slides to evaluate"))?;
        let mean = all
            .mean_axis(Axis(0))
            .ok_or_else(|| Error::invalid(path, "no samples"))?;
        return Ok((mean, Some(all)));
    }
    let a = npy::read_float_array(path, None)?;
    let shape = a.shape().to_vec();
    let bad = || {
        Error::invalid(
            path,
            format!("predictions are {shape:?}; expected [{s}, {genes}] or [n, {s}, {genes}]"),
        )
    };
    match shape.len() {
        2 => {
            let mut m = a.into_dimensionality::<Ix2>().map_err(|_| bad())?;
            if m.dim() == (all_rows, genes) && all_rows != s {
                m = m.select(Axis(0), rows);
            }
            if m.dim() != (s, genes) {
                return Err(bad());
            }
            Ok((m, None))
        }
        3 => {
            let mut smp = a.into_dimensionality::<Ix3>().map_err(|_| bad())?;
            if (smp.len_of(Axis(1)), smp.len_of(Axis(2))) == (all_rows, genes) && all_rows != s {
                smp = smp.select(Axis(1), rows);
            }
            if (smp.len_of(Axis(1)), smp.len_of(Axis(2))) != (s, genes) || smp.is_empty() {
                return Err(bad());
            }
            let mean = smp.mean_axis(Axis(0)).ok_or_else(bad)?;
            Ok((mean, Some(smp)))
        }
        _ => Err(bad()),
    }
}

/// The report as a readable table (what `rnafm-train evaluate --out` prints).
pub fn render_table(r: &EvalReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} slides × {} genes; top-k ranked by {}",
        r.slides, r.genes, r.ranked_by
    );
    let _ = writeln!(
        s,
        "{:<10} {:>7} {:>10} {:>10}",
        "genes", "n", "mean r", "mean RMSE"
    );
    for a in &r.accuracy {
        let name = a.top_k.map_or("all".to_string(), |k| format!("top {k}"));
        let _ = writeln!(
            s,
            "{:<10} {:>7} {:>10.4} {:>10.4}",
            name, a.genes, a.mean_pearson, a.mean_rmse
        );
    }
    if r.uncertainty.is_none() {
        let _ = writeln!(
            s,
            "interval coverage, NLL, CRPS, Spearman(var, |err|): n/a (point predictions)"
        );
    }
    if let Some(u) = &r.uncertainty {
        let cov: Vec<String> = u
            .coverage
            .iter()
            .map(|c| format!("{:.0}%: {:.1}%", c.level * 100.0, c.covered * 100.0))
            .collect();
        let _ = writeln!(s, "interval coverage  {}", cov.join("  "));
        let _ = writeln!(
            s,
            "Gaussian NLL {:.4}   CRPS {:.4}   Spearman(var, |err|) {:.4}",
            u.gaussian_nll, u.crps, u.spearman_var_abs_err
        );
    }
    if let Some(o) = &r.oracle {
        let _ = writeln!(
            s,
            "oracle mean r {:.4}   model/oracle r {:.3}   r to oracle mean {:.4}",
            o.oracle_mean_pearson, o.fraction_of_ceiling, o.pearson_to_oracle_mean
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn pearson_and_rmse_by_hand() {
        let a = [1.0, 2.0, 3.0, 4.0];
        let b = [2.0, 4.0, 5.0, 9.0];
        // r = cov / (sd_a sd_b), computed from deviations
        let (ma, mb) = (2.5, 5.0);
        let cov: f64 = a.iter().zip(&b).map(|(x, y)| (x - ma) * (y - mb)).sum();
        let va: f64 = a.iter().map(|x| (x - ma) * (x - ma)).sum();
        let vb: f64 = b.iter().map(|y| (y - mb) * (y - mb)).sum();
        assert!(close(pearson(&a, &b), cov / (va * vb).sqrt(), 1e-12));
        assert!(close(pearson(&a, &a.map(|x| -3.0 * x + 1.0)), -1.0, 1e-12));
        assert!(pearson(&a, &[1.0; 4]).is_nan());
        let d2: f64 = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum();
        assert!(close(rmse(&a, &b), (d2 / 4.0).sqrt(), 1e-12));
    }

    #[test]
    fn ranks_average_ties_and_spearman_is_monotone_invariant() {
        assert_eq!(ranks(&[10.0, 20.0, 10.0, 5.0]), vec![2.5, 4.0, 2.5, 1.0]);
        let a = [0.1, 0.5, 0.2, 0.9, 0.3];
        let b: Vec<f64> = a.iter().map(|x: &f64| x.exp() * 7.0).collect();
        assert!(close(spearman(&a, &b), 1.0, 1e-12));
        let c: Vec<f64> = a.iter().map(|x| -x * x).collect();
        assert!(close(spearman(&a, &c), -1.0, 1e-12));
    }

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let v = [1.0, 2.0, 4.0, 8.0];
        assert_eq!(quantile_sorted(&v, 0.0), 1.0);
        assert_eq!(quantile_sorted(&v, 1.0), 8.0);
        // position 0.5 * 3 = 1.5: halfway between 2 and 4
        assert_eq!(quantile_sorted(&v, 0.5), 3.0);
    }

    #[test]
    fn crps_matches_the_pairwise_definition() {
        let x = [0.3f64, -1.0, 2.5, 0.7, 1.1];
        let y = 0.4f64;
        let m = x.len() as f64;
        let e1: f64 = x.iter().map(|v| (v - y).abs()).sum::<f64>() / m;
        let mut e2 = 0.0;
        for a in &x {
            for b in &x {
                e2 += (a - b).abs();
            }
        }
        let expect = e1 - 0.5 * e2 / (m * m);
        let mut sorted = x.to_vec();
        sorted.sort_by(f64::total_cmp);
        assert!(close(crps_sorted(&sorted, y), expect, 1e-12));
        // a point forecast's CRPS is its absolute error
        assert!(close(crps_sorted(&[2.0], 5.0), 3.0, 1e-12));
    }

    #[test]
    fn gaussian_nll_by_hand() {
        let (m, v, y) = (1.0, 4.0, 3.0);
        let expect = 0.5 * (2.0 * std::f64::consts::PI * v).ln() + (y - m) * (y - m) / (2.0 * v);
        assert!(close(gaussian_nll(m, v, y), expect, 1e-12));
        assert!(gaussian_nll(0.0, 0.0, 1.0).is_finite());
    }

    #[test]
    fn per_gene_and_top_k_ranking() {
        // gene 0 predicted perfectly, gene 1 anti-correlated, gene 2 constant truth
        let truth = array![[1.0f32, 1.0, 5.0], [2.0, 2.0, 5.0], [3.0, 3.0, 5.0]];
        let pred = array![[1.0f32, 3.0, 4.0], [2.0, 2.0, 5.0], [3.0, 1.0, 6.0]];
        let s = per_gene(pred.view(), truth.view());
        assert!(close(s.pearson[0], 1.0, 1e-12) && close(s.pearson[1], -1.0, 1e-12));
        assert!(s.pearson[2].is_nan());
        assert!(close(s.rmse[1], (8.0f64 / 3.0).sqrt(), 1e-6));
        let sum = summarize(&s, Some(&[0.1, 0.9, 0.5]), &[1, 2, 5]);
        assert_eq!(sum.len(), 3); // all, top 1, top 2 (5 > 3 genes is skipped)
        assert_eq!((sum[0].genes, sum[0].undefined_r), (3, 1));
        assert!(close(sum[0].mean_pearson, 0.0, 1e-12));
        // ranked by the given r: gene 1 first, then gene 2 (r undefined)
        assert_eq!(sum[1].top_k, Some(1));
        assert!(close(sum[1].mean_pearson, -1.0, 1e-12));
        assert_eq!(sum[2].undefined_r, 1);
        // ranked by its own r, top 1 is gene 0
        let own = summarize(&s, None, &[1]);
        assert!(close(own[1].mean_pearson, 1.0, 1e-12));
    }

    #[test]
    fn uncertainty_on_a_known_ensemble() {
        // 5 samples of one slide × 2 genes; truth inside the 50% interval for gene 0 only
        let mut smp = Array3::<f32>::zeros((5, 1, 2));
        for k in 0..5 {
            smp[[k, 0, 0]] = k as f32; // 0..4: 25%..75% quantiles = 1..3
            smp[[k, 0, 1]] = 10.0 + 2.0 * k as f32; // 10..18, wider
        }
        let truth = array![[2.0f32, 30.0]];
        let u = uncertainty(smp.view(), truth.view());
        let cov: Vec<f64> = u.coverage.iter().map(|c| c.covered).collect();
        assert_eq!(cov, vec![0.5, 0.5, 0.5]);
        // mean NLL from hand-computed population variances (2 and 8)
        let expect = (gaussian_nll(2.0, 2.0, 2.0) + gaussian_nll(14.0, 8.0, 30.0)) / 2.0;
        assert!(close(u.gaussian_nll, expect, 1e-9));
        // the wider gene has the larger error: rank correlation +1
        assert!(close(u.spearman_var_abs_err, 1.0, 1e-12));
        let c0 = crps_sorted(&[0.0, 1.0, 2.0, 3.0, 4.0], 2.0);
        let c1 = crps_sorted(&[10.0, 12.0, 14.0, 16.0, 18.0], 30.0);
        assert!(close(u.crps, (c0 + c1) / 2.0, 1e-9));
    }

    #[test]
    fn oracle_comparison_of_the_oracle_itself() {
        let truth = array![[1.0f32, 4.0], [2.0, 1.0], [3.5, 2.0], [0.5, 3.0]];
        let om = array![[1.2f32, 3.5], [1.8, 1.5], [3.0, 2.5], [0.7, 2.5]];
        let lo = &om - 1.0;
        let hi = &om + 1.0;
        let oracle = Oracle {
            mean: om.clone(),
            quantiles: vec![(0.05, lo), (0.95, hi)],
        };
        let c = compare_with_oracle(om.view(), None, truth.view(), &oracle, None);
        assert!(close(c.fraction_of_ceiling, 1.0, 1e-12));
        assert!(close(c.pearson_to_oracle_mean, 1.0, 1e-12));
        assert_eq!(c.rmse_to_oracle_mean, 0.0);
        // 90% interval = mean ± 1 and every |truth − mean| ≤ 0.5: all covered
        assert_eq!(c.oracle_coverage.len(), 1);
        assert_eq!(c.oracle_coverage[0].covered, 1.0);
        let r0 = pearson(&[1.2, 1.8, 3.0, 0.7], &[1.0, 2.0, 3.5, 0.5]);
        let r1 = pearson(&[3.5, 1.5, 2.5, 2.5], &[4.0, 1.0, 2.0, 3.0]);
        assert!(close(c.oracle_mean_pearson, (r0 + r1) / 2.0, 1e-6));
    }

    #[test]
    fn per_slide_sample_files_are_read_in_csv_order() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("ref.csv");
        // log2(x+1) of 1, 3, 7, 15 = 1, 2, 3, 4
        std::fs::write(
            &csv,
            "wsi_file_name,patient_id,rna_A,rna_B\ns1,p1,1,3\ns2,p2,7,15\n",
        )
        .unwrap();
        let pred = dir.path().join("pred");
        // s1: samples around the truth; s2: samples far off
        let s1 = array![[0.5f32, 2.5], [1.5, 1.5], [1.0, 2.0]];
        let s2 = array![[9.0f32, 9.0], [10.0, 10.0], [11.0, 11.0]];
        rnafm_runtime::npy::write_npy(&pred.join("s1.samples.npy"), &s1).unwrap();
        rnafm_runtime::npy::write_npy(&pred.join("s2.samples.npy"), &s2).unwrap();
        let args = EvaluateArgs {
            pred: pred.clone(),
            truth: csv,
            genes: None,
            rank_by: None,
            rank_excluding_fold: None,
            versus: None,
            versus_rank_by: None,
            replicates: 1000,
            oracle: None,
            out: Some(dir.path().join("r.json")),
            present_only: false,
            slides: None,
        };
        let r = run_evaluate(&args).unwrap();
        assert_eq!((r.slides, r.genes, r.samples_per_slide), (2, 2, Some(3)));
        let u = r.uncertainty.unwrap();
        // s1's truths (1, 2) are the sample medians, inside every interval; s2's are not
        assert!(
            u.coverage.iter().all(|c| c.covered == 0.5),
            "{:?}",
            u.coverage
        );
        let back: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("r.json")).unwrap()).unwrap();
        assert_eq!(back["slides"], 2);
        // a missing slide file is named
        std::fs::remove_file(pred.join("s2.samples.npy")).unwrap();
        let e = run_evaluate(&args).unwrap_err().to_string();
        assert!(e.contains("s2.samples.npy"), "{e}");
        // unless only the slides with predictions are asked for
        let only = run_evaluate(&EvaluateArgs {
            present_only: true,
            ..args.clone()
        })
        .unwrap();
        assert_eq!(only.slides, 1);
    }

    /// Point predictions for every CSV row cut to a slide list, ranked by a metrics.json:
    /// accuracy only, uncertainty n/a.
    #[test]
    fn slide_list_cuts_full_point_predictions() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("ref.csv");
        // log2(x+1): A = 1, 2, 3; B = 2, 1, 3
        std::fs::write(
            &csv,
            "wsi_file_name,patient_id,rna_A,rna_B\ns1,p1,1,3\ns2,p2,3,1\ns3,p3,7,7\n",
        )
        .unwrap();
        let pred = dir.path().join("oof.npy");
        // s1 and s3 predicted exactly for A and anti-correlated for B; s2 far off
        let p = array![[1.0f32, 3.0], [9.0, -9.0], [3.0, 1.0]];
        rnafm_runtime::npy::write_npy(&pred, &p).unwrap();
        let list = dir.path().join("heldout.txt");
        std::fs::write(&list, "s1\ns3\n").unwrap();
        let metrics = dir.path().join("metrics.json");
        std::fs::write(&metrics, r#"{"pooled_gene_r": [0.1, 0.9]}"#).unwrap();
        let args = EvaluateArgs {
            pred,
            truth: csv,
            genes: None,
            rank_by: Some(metrics),
            rank_excluding_fold: None,
            versus: None,
            versus_rank_by: None,
            replicates: 1000,
            oracle: None,
            out: Some(dir.path().join("r.json")),
            present_only: false,
            slides: Some(list.clone()),
        };
        let r = run_evaluate(&args).unwrap();
        assert_eq!((r.slides, r.samples_per_slide), (2, None));
        assert!(r.uncertainty.is_none());
        assert!(render_table(&r).contains("n/a (point predictions)"));
        // all genes: A with r = 1, B with r = −1 (the metrics.json ranking was read)
        assert_eq!(r.accuracy[0].mean_pearson, 0.0);
        assert!(r.versus.is_none());
        // Against itself: a difference of exactly 0 in every replicate.
        let me = EvaluateArgs {
            versus: Some(args.pred.clone()),
            replicates: 50,
            ..args.clone()
        };
        let v = run_evaluate(&me).unwrap().versus.unwrap();
        assert_eq!(v.differences[0].top_k, None);
        for d in &v.differences {
            assert_eq!(
                (d.difference, d.ci_low, d.ci_high),
                (0.0, 0.0, 0.0),
                "{d:?}"
            );
        }
        std::fs::write(&list, "s1\nnope\n").unwrap();
        let e = run_evaluate(&args).unwrap_err().to_string();
        assert!(e.contains("heldout.txt") && e.contains("nope"), "{e}");
    }

    /// `--rank-excluding-fold k` reads the other folds' r for fold k; bad requests name the
    /// file.
    #[test]
    fn ranking_without_a_fold_reads_that_folds_list() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = dir.path().join("metrics.json");
        std::fs::write(
            &metrics,
            r#"{"pooled_gene_r": [0.5, 0.5], "gene_r_without_fold": [[0.9, 0.1], [0.2, 0.8]]}"#,
        )
        .unwrap();
        assert_eq!(read_rank_by(&metrics, 2, None).unwrap(), vec![0.5, 0.5]);
        assert_eq!(read_rank_by(&metrics, 2, Some(1)).unwrap(), vec![0.2, 0.8]);
        let e = read_rank_by(&metrics, 2, Some(2)).unwrap_err().to_string();
        assert!(e.contains("metrics.json") && e.contains("2 folds"), "{e}");
        std::fs::write(&metrics, r#"{"pooled_gene_r": [0.5, 0.5]}"#).unwrap();
        let e = read_rank_by(&metrics, 2, Some(0)).unwrap_err().to_string();
        assert!(e.contains("older rnafm-train"), "{e}");
        let npy = dir.path().join("r.npy");
        rnafm_runtime::npy::write_npy(&npy, &ndarray::arr1(&[0.1f32, 0.2])).unwrap();
        let e = read_rank_by(&npy, 2, Some(0)).unwrap_err().to_string();
        assert!(e.contains("r.npy") && e.contains("metrics.json"), "{e}");
    }

    #[test]
    fn prediction_shape_mismatch_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("ref.csv");
        std::fs::write(&csv, "wsi_file_name,patient_id,rna_A\ns1,p1,1\n").unwrap();
        let pred = dir.path().join("p.npy");
        rnafm_runtime::npy::write_npy(&pred, &Array2::<f32>::zeros((3, 1))).unwrap();
        let e = run_evaluate(&EvaluateArgs {
            pred,
            truth: csv,
            genes: None,
            rank_by: None,
            rank_excluding_fold: None,
            versus: None,
            versus_rank_by: None,
            replicates: 1000,
            oracle: None,
            out: Some(dir.path().join("r.json")),
            present_only: false,
            slides: None,
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("p.npy") && e.contains("[3, 1]") && e.contains("[1, 1]"),
            "{e}"
        );
    }
}
