//! The `evaluate` command: reads predictions (`rnafm-run` sample folders or `.npy` means or
//! samples), the reference CSV, a gene ranking and an oracle, and reports accuracy,
//! uncertainty, the oracle comparison and optionally a paired comparison with another model.

use std::path::{Path, PathBuf};

use ndarray::{Array2, Array3, Axis, Ix2, Ix3};
use rnafm_runtime::slide_names::{expected_samples_file, samples_file};
use rnafm_runtime::training_metrics::TrainingMetrics;
use rnafm_runtime::{Error, Result, genes::GeneList, npy, reference_csv::ReferenceCohort};

use crate::gene_scores::{GeneSetSummary, TOP_KS, per_gene, summarize};
use crate::oracle::{OracleComparison, compare_with_oracle, read_oracle};
use crate::uncertainty::{GroupCoverage, UncertaintyScores, coverage_by_group, uncertainty};
use crate::versus::{PairedDifference, Scored, paired_bootstrap};

/// Arguments of `evaluate`.
#[derive(Debug, Clone)]
pub struct EvaluateOptions {
    /// Predictions in log2(FPKM-UQ+1): a folder of `<slide>.samples.npy` [n, genes] (as
    /// `rnafm-run` writes), or one `.npy` of means [slides, genes] or samples
    /// [n, slides, genes] in the reference CSV's row order.
    pub pred: PathBuf,
    /// Reference CSV with the measured FPKM-UQ values.
    pub truth: PathBuf,
    /// Gene list in the predictions' column order (default: the CSV's gene columns).
    pub genes: Option<PathBuf>,
    /// Per-gene cross-validated r to rank the top-k sets by: a `.npy` (one value per gene)
    /// or rnafm-train's metrics.json (its pooled out-of-fold r).
    pub rank_by: Option<PathBuf>,
    /// With a --rank-by metrics.json: rank by the r of the other folds' out-of-fold
    /// predictions instead of the pooled r, for evaluating fold K's held-out slides. The
    /// pooled r includes the evaluated slides, which makes top-k means optimistic, most of
    /// all for a deterministic model whose evaluated predictions are the ranked ones.
    pub rank_excluding_fold: Option<usize>,
    /// Oracle of a synthetic cohort (`oracle.npz`).
    pub oracle: Option<PathBuf>,
    /// Where to write the JSON report (printed to stdout when absent).
    pub out: Option<PathBuf>,
    /// With a --pred folder: score only the CSV's slides that have a samples file there
    /// (e.g. the held-out fold of a cross-validation), instead of requiring all.
    pub present_only: bool,
    /// Score only these slides (one name a line, e.g. a fold's heldout.txt); a `.npy` of
    /// every CSV row is then cut to them.
    pub slides: Option<PathBuf>,
    /// Another model's predictions on the same slides (e.g. the regression baseline's
    /// oof_predictions.npy): adds the difference in mean r (this model − that one) with a
    /// 95% paired bootstrap interval over slides, per gene set.
    pub versus: Option<PathBuf>,
    /// Ranking of the --versus model's top-k genes (as --rank-by; --rank-excluding-fold
    /// applies to it too).
    pub versus_rank_by: Option<PathBuf>,
    /// Bootstrap replicates for --versus.
    pub replicates: usize,
    /// The model the predictions come from (bundle or checkpoint folder): interval
    /// coverage is also reported per group of genes by pathway count.
    pub model: Option<PathBuf>,
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
    /// With `--model` and draws: coverage per gene group by pathway count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coverage_by_group: Option<Vec<GroupCoverage>>,
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
pub fn run_evaluate(args: &EvaluateOptions) -> Result<EvalReport> {
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
    let coverage_by_group = match (&args.model, &samples) {
        (Some(m), Some(a)) => {
            let counts = crate::model_pathways::pathway_counts(m)?;
            if counts.len() != n_genes {
                return Err(Error::invalid(
                    m,
                    format!(
                        "the model has {} genes, the predictions {n_genes}",
                        counts.len()
                    ),
                ));
            }
            Some(coverage_by_group(a.view(), truth.view(), &counts))
        }
        _ => None,
    };
    let report = EvalReport {
        coverage_by_group,
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
fn evaluated_rows(args: &EvaluateOptions, slides: &[String]) -> Result<Vec<usize>> {
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
            .filter(|&i| samples_file(&args.pred, &slides[i]).is_some())
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
        TrainingMetrics::read(p)?
            .gene_r(excluding_fold, p)?
            .to_vec()
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
            let p = samples_file(path, slide).unwrap_or_else(|| expected_samples_file(path, slide));
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
    for g in r.coverage_by_group.iter().flatten() {
        let cov: Vec<String> = g
            .coverage
            .iter()
            .map(|c| format!("{:.0}%: {:.1}%", c.level * 100.0, c.covered * 100.0))
            .collect();
        let _ = writeln!(s, "  {} ({} genes)  {}", g.group, g.genes, cov.join("  "));
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

    /// rnafm-train metrics of two genes A and B with these per-gene r lists.
    fn metrics_file(
        pooled_gene_r: Vec<f64>,
        gene_r_without_fold: Vec<Vec<f64>>,
    ) -> TrainingMetrics {
        TrainingMetrics {
            folds: vec![],
            pooled: vec![],
            genes: vec!["A".into(), "B".into()],
            pooled_gene_rmse: vec![1.0; pooled_gene_r.len()],
            pooled_gene_r,
            gene_r_without_fold,
        }
    }

    #[test]
    fn per_slide_sample_files_are_read_in_csv_order() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("ref.csv");
        // log2(x+1) of 1, 3, 7, 15 = 1, 2, 3, 4; slide names as GDC manifests give them,
        // draws named as rnafm-run writes them (without .svs)
        std::fs::write(
            &csv,
            "wsi_file_name,patient_id,rna_A,rna_B\ns1.svs,p1,1,3\ns2.svs,p2,7,15\n",
        )
        .unwrap();
        let pred = dir.path().join("pred");
        // s1: samples around the truth; s2: samples far off
        let s1 = array![[0.5f32, 2.5], [1.5, 1.5], [1.0, 2.0]];
        let s2 = array![[9.0f32, 9.0], [10.0, 10.0], [11.0, 11.0]];
        rnafm_runtime::npy::write_npy(&pred.join("s1.samples.npy"), &s1).unwrap();
        rnafm_runtime::npy::write_npy(&pred.join("s2.samples.npy"), &s2).unwrap();
        let args = EvaluateOptions {
            pred: pred.clone(),
            truth: csv,
            genes: None,
            rank_by: None,
            rank_excluding_fold: None,
            versus: None,
            versus_rank_by: None,
            replicates: 1000,
            model: None,
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
        let only = run_evaluate(&EvaluateOptions {
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
        metrics_file(vec![0.1, 0.9], vec![])
            .write(&metrics)
            .unwrap();
        let args = EvaluateOptions {
            pred,
            truth: csv,
            genes: None,
            rank_by: Some(metrics),
            rank_excluding_fold: None,
            versus: None,
            versus_rank_by: None,
            replicates: 1000,
            model: None,
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
        let me = EvaluateOptions {
            versus: Some(args.pred.clone()),
            replicates: 50,
            model: None,
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
        metrics_file(vec![0.5, 0.5], vec![vec![0.9, 0.1], vec![0.2, 0.8]])
            .write(&metrics)
            .unwrap();
        assert_eq!(read_rank_by(&metrics, 2, None).unwrap(), vec![0.5, 0.5]);
        assert_eq!(read_rank_by(&metrics, 2, Some(1)).unwrap(), vec![0.2, 0.8]);
        let e = read_rank_by(&metrics, 2, Some(2)).unwrap_err().to_string();
        assert!(e.contains("metrics.json") && e.contains("2 folds"), "{e}");
        std::fs::write(&metrics, r#"{"pooled_gene_r": [0.5, 0.5]}"#).unwrap();
        let e = read_rank_by(&metrics, 2, Some(0)).unwrap_err().to_string();
        assert!(
            e.contains("metrics.json") && e.contains("older rnafm-train"),
            "{e}"
        );
        metrics_file(vec![0.5, 0.5], vec![])
            .write(&metrics)
            .unwrap();
        let e = read_rank_by(&metrics, 2, Some(0)).unwrap_err().to_string();
        assert!(e.contains("metrics.json") && e.contains("0 folds"), "{e}");
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
        let e = run_evaluate(&EvaluateOptions {
            pred,
            truth: csv,
            genes: None,
            rank_by: None,
            rank_excluding_fold: None,
            versus: None,
            versus_rank_by: None,
            replicates: 1000,
            model: None,
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
