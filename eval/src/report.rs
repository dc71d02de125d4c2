//! `rnafm-train report`: puts the evaluations of several models (RNA-FM, the regression
//! baseline, ablations) and the oracle into one markdown table with the issue's "must
//! hold" checks, and draws the plots: mean r by top-k gene set, the calibration curve, and
//! predicted against true values for the top genes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ndarray::Axis;
use rnafm_runtime::reference_csv::ReferenceCohort;
use rnafm_runtime::{Error, Result, genes::GeneList};
use serde_json::Value;

use crate::evaluate::{read_predictions, read_rank_by};
use crate::gene_scores::{TOP_KS, per_gene};
use crate::plots::{self, GenePanel, Series};
use crate::stats::quantile_sorted;

#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// A table row: LABEL=EVALUATION.json (from `rnafm-train evaluate --out`; split at the
    /// last `=`), in table
    /// order. The first is the model the checks are about; the oracle row comes from the
    /// first evaluation that has one.
    pub entries: Vec<String>,
    /// Label of the regression baseline among the entries (default: the first label
    /// containing "baseline").
    pub baseline: Option<String>,
    /// The model's rnafm-run output folder (with --save-samples) for the plot of predicted
    /// against true values; needs --truth.
    pub scatter: Option<PathBuf>,
    /// Reference CSV (truth) for --scatter.
    pub truth: Option<PathBuf>,
    /// Gene list of the predictions (default: the CSV's gene columns).
    pub genes: Option<PathBuf>,
    /// Slides of --scatter to plot (one a line; default: all with draws there).
    pub slides: Option<PathBuf>,
    /// Ranking that picks the top genes of the scatter plot (metrics.json or .npy).
    pub rank_by: Option<PathBuf>,
    /// A line describing the run, written under the title of summary.md.
    pub title: Option<String>,
    /// Output folder: summary.md and the PNG plots.
    pub out: PathBuf,
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub label: String,
    /// (gene set label, mean r) in table order: "all", "top 1000", …
    pub r: Vec<(String, Option<f64>)>,
    /// Coverage at 50, 80, 90%.
    pub coverage: [Option<f64>; 3],
    pub nll: Option<f64>,
    pub spearman: Option<f64>,
    pub crps: Option<f64>,
    /// (nominal, empirical) coverage at the curve levels.
    pub curve: Vec<(f64, f64)>,
    /// From `evaluate --versus`: (difference, 95% interval low, high) of mean r at top 100
    /// against the other model.
    pub versus_top100: Option<(f64, f64, f64)>,
}

fn set_label(top_k: Option<usize>) -> String {
    top_k.map_or("all".into(), |k| format!("top {k}"))
}

/// Mean r per gene set from an `accuracy`-like list.
fn r_of(list: Option<&Value>) -> Vec<(String, Option<f64>)> {
    let mut out: Vec<(String, Option<f64>)> = std::iter::once(None)
        .chain(TOP_KS.iter().map(|&k| Some(k)))
        .map(|k| (set_label(k), None))
        .collect();
    for a in list.and_then(Value::as_array).into_iter().flatten() {
        let k = a.get("top_k").and_then(Value::as_u64).map(|k| k as usize);
        if let Some(slot) = out.iter_mut().find(|(l, _)| *l == set_label(k)) {
            slot.1 = a.get("mean_pearson").and_then(Value::as_f64);
        }
    }
    out
}

fn coverage_at(list: Option<&Value>, level: f64) -> Option<f64> {
    list?
        .as_array()?
        .iter()
        .find(|c| {
            c.get("level")
                .and_then(Value::as_f64)
                .is_some_and(|l| (l - level).abs() < 1e-9)
        })?
        .get("covered")?
        .as_f64()
}

const LEVELS: [f64; 3] = [0.5, 0.8, 0.9];

/// A row from an evaluation report.
pub fn row_of(label: &str, eval: &Value) -> Row {
    let u = eval.get("uncertainty").filter(|u| !u.is_null());
    let cov = u.and_then(|u| u.get("coverage"));
    Row {
        label: label.into(),
        r: r_of(eval.get("accuracy")),
        coverage: LEVELS.map(|l| coverage_at(cov, l)),
        nll: u.and_then(|u| u.get("gaussian_nll")?.as_f64()),
        spearman: u.and_then(|u| u.get("spearman_var_abs_err")?.as_f64()),
        crps: u.and_then(|u| u.get("crps")?.as_f64()),
        curve: u
            .and_then(|u| u.get("curve")?.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|c| Some((c.get("level")?.as_f64()?, c.get("covered")?.as_f64()?)))
            .collect(),
        versus_top100: versus_at(eval, 100),
    }
}

/// (difference, ci_low, ci_high) at top k from an evaluation's `versus` section.
fn versus_at(eval: &Value, k: u64) -> Option<(f64, f64, f64)> {
    let d = eval
        .get("versus")?
        .get("differences")?
        .as_array()?
        .iter()
        .find(|d| d.get("top_k").and_then(Value::as_u64) == Some(k))?;
    Some((
        d.get("difference")?.as_f64()?,
        d.get("ci_low")?.as_f64()?,
        d.get("ci_high")?.as_f64()?,
    ))
}

/// The oracle's row from an evaluation with an oracle section.
pub fn oracle_row(eval: &Value) -> Option<Row> {
    let o = eval.get("oracle").filter(|o| !o.is_null())?;
    let cov = o.get("oracle_coverage");
    Some(Row {
        label: "oracle (true conditional mean)".into(),
        r: r_of(o.get("oracle_accuracy")),
        coverage: LEVELS.map(|l| coverage_at(cov, l)),
        nll: None,
        spearman: None,
        crps: None,
        curve: Vec::new(),
        versus_top100: None,
    })
}

fn fmt(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.digits$}"),
        _ => "n/a".into(),
    }
}

fn pct(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{:.1}%", x * 100.0),
        _ => "n/a".into(),
    }
}

/// The markdown table; gene sets no row has (larger than the gene count) are left out.
pub fn table(rows: &[Row]) -> String {
    let sets: Vec<&str> = rows
        .first()
        .map(|r| {
            r.r.iter()
                .filter(|(l, _)| {
                    rows.iter()
                        .any(|row| row.r.iter().any(|(m, v)| m == l && v.is_some()))
                })
                .map(|(l, _)| l.as_str())
                .collect()
        })
        .unwrap_or_default();
    let mut s = String::new();
    let _ = write!(s, "| model |");
    for l in &sets {
        let _ = write!(s, " r {l} |");
    }
    let _ = writeln!(
        s,
        " cov 50% | cov 80% | cov 90% | NLL | Spearman(var, \\|err\\|) | CRPS |"
    );
    let _ = writeln!(s, "|---|{}", "---:|".repeat(sets.len() + 6));
    for row in rows {
        let _ = write!(s, "| {} |", row.label);
        for l in &sets {
            let v = row.r.iter().find(|(m, _)| m == l).and_then(|(_, v)| *v);
            let _ = write!(s, " {} |", fmt(v, 4));
        }
        let _ = writeln!(
            s,
            " {} | {} | {} | {} | {} | {} |",
            pct(row.coverage[0]),
            pct(row.coverage[1]),
            pct(row.coverage[2]),
            fmt(row.nll, 3),
            fmt(row.spearman, 3),
            fmt(row.crps, 4)
        );
    }
    s
}

/// One of the "must hold" statements and whether it holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub statement: String,
    pub holds: bool,
}

fn r_at(row: &Row, set: &str) -> Option<f64> {
    row.r.iter().find(|(l, _)| l == set).and_then(|(_, v)| *v)
}

/// The checks of issue 6 on (model, baseline, oracle) rows.
pub fn checks(model: &Row, baseline: Option<&Row>, oracle: Option<&Row>) -> Vec<Check> {
    let mut out = Vec::new();
    let m100 = r_at(model, "top 100");
    if let Some(b) = baseline {
        let b100 = r_at(b, "top 100");
        let spread = model.versus_top100.map_or(String::new(), |(d, lo, hi)| {
            format!(
                " [difference {d:+.4}, 95% paired bootstrap interval over slides {lo:+.4} to {hi:+.4}]"
            )
        });
        out.push(Check {
            statement: format!(
                "{} mean r at top 100 ({}) ≥ {}'s ({}){spread}",
                model.label,
                fmt(m100, 4),
                b.label,
                fmt(b100, 4)
            ),
            holds: matches!((m100, b100), (Some(m), Some(b)) if m >= b),
        });
    }
    for (i, level) in LEVELS.iter().enumerate() {
        let c = model.coverage[i];
        out.push(Check {
            statement: format!(
                "{} {:.0}% interval coverage {} within ±5 points of nominal",
                model.label,
                level * 100.0,
                pct(c)
            ),
            holds: c.is_some_and(|c| (c - level).abs() <= 0.05),
        });
    }
    if let Some(o) = oracle {
        for set in ["all", "top 100"] {
            let ov = r_at(o, set);
            let others: Vec<&Row> = std::iter::once(model).chain(baseline).collect();
            let best = others
                .iter()
                .filter_map(|r| r_at(r, set))
                .fold(f64::NEG_INFINITY, f64::max);
            out.push(Check {
                statement: format!(
                    "oracle mean r at {set} ({}) above {} ({})",
                    fmt(ov, 4),
                    others
                        .iter()
                        .map(|r| r.label.as_str())
                        .collect::<Vec<_>>()
                        .join(" and "),
                    others
                        .iter()
                        .map(|r| fmt(r_at(r, set), 4))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                holds: ov.is_some_and(|o| o > best),
            });
        }
    }
    out
}

/// Draws a plot into a temporary file beside `path`, then renames it into place.
fn plot_atomic(path: &Path, draw: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = path.with_extension("tmp.png");
    let r = draw(&tmp);
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return r;
    }
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// Panels for the top genes (by `rank_by`, else by the samples' own r): per slide the
/// truth, the mean of the draws and their 5–95% interval.
fn scatter_panels(args: &ReportOptions, pred: &Path) -> Result<(Vec<GenePanel>, usize)> {
    let truth_path = args
        .truth
        .as_ref()
        .ok_or_else(|| Error::invalid(pred, "--scatter needs --truth"))?;
    let cohort = ReferenceCohort::read(truth_path)?;
    let (truth, names) = match &args.genes {
        Some(p) => {
            let g = GeneList::read(p)?;
            (cohort.aligned(&g)?, g.symbols().to_vec())
        }
        None => (cohort.log2.clone(), cohort.genes.clone()),
    };
    let rows: Vec<usize> = match &args.slides {
        Some(list) => {
            let text = std::fs::read_to_string(list).map_err(|e| Error::io(list, e))?;
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .filter_map(|n| cohort.slides.iter().position(|s| s == n))
                .collect()
        }
        None => (0..cohort.len())
            .filter(|&i| {
                pred.join(format!("{}.samples.npy", cohort.slides[i]))
                    .is_file()
            })
            .collect(),
    };
    let slide_names: Vec<String> = rows.iter().map(|&i| cohort.slides[i].clone()).collect();
    let (mean, samples) = read_predictions(pred, &slide_names, &rows, cohort.len(), names.len())?;
    let samples = samples.ok_or_else(|| Error::invalid(pred, "no draws to plot"))?;
    let truth = truth.select(Axis(0), &rows);
    let key = match &args.rank_by {
        Some(p) => read_rank_by(p, names.len(), None)?,
        None => per_gene(mean.view(), truth.view()).pearson,
    };
    let mut order: Vec<usize> = (0..names.len()).filter(|&g| key[g].is_finite()).collect();
    order.sort_by(|&a, &b| key[b].total_cmp(&key[a]));
    let own = per_gene(mean.view(), truth.view());
    let panels = order
        .iter()
        .take(4)
        .map(|&g| {
            let points = (0..rows.len())
                .map(|i| {
                    let mut d: Vec<f64> = samples
                        .slice(ndarray::s![.., i, g])
                        .iter()
                        .map(|&v| f64::from(v))
                        .collect();
                    d.sort_by(f64::total_cmp);
                    (
                        f64::from(truth[[i, g]]),
                        f64::from(mean[[i, g]]),
                        quantile_sorted(&d, 0.05),
                        quantile_sorted(&d, 0.95),
                    )
                })
                .collect();
            GenePanel {
                title: format!("{} (r = {:.2})", names[g], own.pearson[g]),
                points,
            }
        })
        .collect();
    Ok((panels, rows.len()))
}

/// Writes summary.md and the plots; returns the table and the checks as text.
pub fn run_report(args: &ReportOptions) -> Result<String> {
    let mut rows = Vec::new();
    let mut oracle = None;
    for e in &args.entries {
        let (label, path) = e
            .rsplit_once('=')
            .ok_or_else(|| Error::invalid(Path::new(e), "an --entry is LABEL=EVALUATION.json"))?;
        let path = Path::new(path);
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| Error::invalid(path, format!("not JSON: {e}")))?;
        if v.get("accuracy").is_none() {
            return Err(Error::invalid(path, "not an rnafm-train evaluate report"));
        }
        if oracle.is_none() {
            oracle = oracle_row(&v);
        }
        rows.push(row_of(label, &v));
    }
    let model = rows[0].clone();
    let baseline = match &args.baseline {
        Some(b) => Some(
            rows.iter()
                .find(|r| &r.label == b)
                .cloned()
                .ok_or_else(|| Error::invalid(Path::new(b), "no --entry has this label"))?,
        ),
        None => rows
            .iter()
            .find(|r| r.label.to_lowercase().contains("baseline"))
            .cloned(),
    };
    let mut all_rows = rows.clone();
    all_rows.extend(oracle.clone());
    let tbl = table(&all_rows);
    let chk = checks(&model, baseline.as_ref(), oracle.as_ref());

    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(&args.out, e))?;
    // r by top-k: every row with accuracy values.
    let labels: Vec<String> = all_rows[0]
        .r
        .iter()
        .filter(|(l, _)| all_rows.iter().any(|row| r_at(row, l).is_some()))
        .map(|(l, _)| l.clone())
        .collect();
    let series: Vec<Series> = all_rows
        .iter()
        .map(|row| Series {
            name: row.label.clone(),
            points: labels
                .iter()
                .enumerate()
                .map(|(i, l)| (i as f64, r_at(row, l).unwrap_or(f64::NAN)))
                .collect(),
        })
        .collect();
    let mut plots_written = Vec::new();
    plot_atomic(&args.out.join("r_by_top_k.png"), |p| {
        plots::r_by_top_k(p, &labels, &series)
    })?;
    plots_written.push(("Mean r by gene set", "r_by_top_k.png"));
    let curves: Vec<Series> = rows
        .iter()
        .filter(|r| !r.curve.is_empty())
        .map(|r| Series {
            name: r.label.clone(),
            points: r.curve.clone(),
        })
        .collect();
    if !curves.is_empty() {
        plot_atomic(&args.out.join("calibration.png"), |p| {
            plots::calibration_curve(p, &curves)
        })?;
        plots_written.push(("Calibration curve", "calibration.png"));
    }
    if let Some(pred) = &args.scatter {
        let (panels, n) = scatter_panels(args, pred)?;
        plot_atomic(&args.out.join("predicted_vs_true.png"), |p| {
            plots::predicted_vs_true(
                p,
                &format!(
                    "{}: mean and 5–95% interval of the draws, {n} held-out slides",
                    model.label
                ),
                &panels,
            )
        })?;
        plots_written.push(("Predicted against true, top genes", "predicted_vs_true.png"));
    }

    let mut md = String::from("# rnafm evaluation report\n\n");
    if let Some(t) = &args.title {
        let _ = writeln!(md, "{t}\n");
    }
    md.push_str(&tbl);
    md.push_str(
        "\nr: mean per-gene Pearson r over the evaluated slides (top-k sets as ranked by the \
         ranking each evaluation was given). cov: share of true values inside the central \
         interval of the draws. NLL: Gaussian negative log-likelihood with the draws' mean and \
         variance. CRPS: continuous ranked probability score of the draws. n/a: point \
         predictions have no uncertainty; the oracle row has intervals (its true conditional \
         quantiles) but no draws.\n\n## Must hold (issue 6)\n\n",
    );
    let mut checks_text = String::new();
    for c in &chk {
        let _ = writeln!(
            checks_text,
            "- [{}] {} — {}",
            if c.holds { "x" } else { " " },
            c.statement,
            if c.holds { "holds" } else { "does NOT hold" }
        );
    }
    md.push_str(&checks_text);
    md.push_str("\n## Plots\n\n");
    for (title, file) in &plots_written {
        let _ = writeln!(md, "![{title}]({file})\n");
    }
    rnafm_runtime::atomic::write_bytes_atomic(&args.out.join("summary.md"), md.as_bytes())?;
    Ok(format!("{tbl}\n{checks_text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(r_all: f64, r100: f64, cov: [f64; 3], with_unc: bool) -> Value {
        let mut v = serde_json::json!({
            "accuracy": [
                {"top_k": null, "mean_pearson": r_all},
                {"top_k": 100, "mean_pearson": r100},
                {"top_k": 20, "mean_pearson": r100 + 0.1},
            ],
            "uncertainty": null,
            "oracle": {
                "oracle_accuracy": [
                    {"top_k": null, "mean_pearson": 0.6},
                    {"top_k": 100, "mean_pearson": 0.8},
                ],
                "oracle_coverage": [{"level": 0.9, "covered": 0.9}],
            },
        });
        if with_unc {
            v["uncertainty"] = serde_json::json!({
                "coverage": [
                    {"level": 0.5, "covered": cov[0]},
                    {"level": 0.8, "covered": cov[1]},
                    {"level": 0.9, "covered": cov[2]},
                ],
                "curve": [{"level": 0.5, "covered": cov[0]}],
                "gaussian_nll": 1.5,
                "spearman_var_abs_err": 0.3,
                "crps": 0.5,
            });
        }
        v
    }

    #[test]
    fn rows_table_and_checks() {
        let m = row_of("RNA-FM", &eval(0.3, 0.62, [0.52, 0.77, 0.93], true));
        let b = row_of("baseline", &eval(0.35, 0.6, [0.0; 3], false));
        let o = oracle_row(&eval(0.3, 0.62, [0.5; 3], true)).unwrap();
        assert_eq!(b.coverage, [None, None, None]);
        assert_eq!(r_at(&m, "top 100"), Some(0.62));
        let t = table(&[m.clone(), b.clone(), o.clone()]);
        // top 1000/500/200/50 are in no row: left out; n/a where a row lacks a value
        assert!(t.contains("r top 100") && !t.contains("top 1000"), "{t}");
        assert!(
            t.contains("| baseline | 0.3500 | 0.6000 | 0.7000 | n/a |"),
            "{t}"
        );
        let c = checks(&m, Some(&b), Some(&o));
        assert_eq!(c.len(), 6);
        assert!(c[0].holds, "0.62 ≥ 0.60");
        assert!(c[1].holds && c[2].holds && c[3].holds);
        // oracle at all genes (0.6) is above both (0.3, 0.35); at top 100 0.8 > 0.62
        assert!(c[4].holds && c[5].holds);
        assert!(!c[0].statement.contains("bootstrap"));
        let mut with_ci = eval(0.3, 0.62, [0.52, 0.77, 0.93], true);
        with_ci["versus"] = serde_json::json!({"predictions": "b.npy", "differences": [
            {"top_k": null, "difference": -0.05, "ci_low": -0.1, "ci_high": 0.0},
            {"top_k": 100, "difference": 0.02, "ci_low": -0.03, "ci_high": 0.07},
        ]});
        let c = checks(&row_of("RNA-FM", &with_ci), Some(&b), Some(&o));
        assert!(
            c[0].statement.contains("difference +0.0200")
                && c[0].statement.contains("-0.0300 to +0.0700"),
            "{}",
            c[0].statement
        );
        let worse = row_of("RNA-FM", &eval(0.3, 0.5, [0.3, 0.52, 0.63], true));
        let c = checks(&worse, Some(&b), Some(&o));
        assert!(!c[0].holds && !c[1].holds && !c[3].holds);
    }
}
