//! The mean over cohorts of one model's paired difference against another (`rnafm-eval
//! pool`), with a 95% interval.
//!
//! Each cohort's `evaluate --versus` report carries its bootstrap replicates. A pooled
//! replicate is the mean over cohorts of one replicate of each, so every cohort's slides are
//! resampled on their own: the cohorts are separate samples, not rows of one table (pooling
//! their slides into one bootstrap would let a large cohort outweigh the others). Every
//! cohort is bootstrapped with the same seed, so replicate i resamples the same row positions
//! in each; each cohort's replicates are therefore paired in a seeded random order instead of
//! index by index.

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rnafm_runtime::{Error, Result};

use crate::stats::percentile_interval;
use crate::versus::PairedDifference;

/// One gene set's difference, averaged over cohorts.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PooledDifference {
    /// `None` for all genes, else k of the top-k sets.
    pub top_k: Option<usize>,
    /// Mean over cohorts of each cohort's difference on its slides as they are.
    pub difference: f64,
    /// 2.5% and 97.5% percentiles of the pooled replicates.
    pub ci_low: f64,
    pub ci_high: f64,
    /// Pooled replicates in which every cohort's replicate was defined.
    pub replicates: usize,
    /// Each cohort's own difference, in the order of the inputs.
    pub per_cohort: Vec<f64>,
}

/// `rnafm-eval pool`'s report.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PooledReport {
    /// The evaluation reports pooled, in order.
    pub evaluations: Vec<String>,
    /// What each of them was compared with (its `versus.predictions`).
    pub versus: Vec<String>,
    pub differences: Vec<PooledDifference>,
}

/// Reads `evaluate --versus` reports and pools their differences.
pub fn run_pool(evaluations: &[PathBuf], out: Option<&Path>) -> Result<PooledReport> {
    if evaluations.len() < 2 {
        return Err(Error::Usage(
            "rnafm-eval pool needs at least two evaluation reports (one per cohort)".into(),
        ));
    }
    let mut cohorts = Vec::new();
    let mut versus = Vec::new();
    for p in evaluations {
        let (against, diffs) = read_versus(p)?;
        versus.push(against);
        cohorts.push(diffs);
    }
    let report = PooledReport {
        evaluations: evaluations
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        versus,
        differences: pool(evaluations, &cohorts)?,
    };
    if let Some(p) = out {
        let json = serde_json::to_string_pretty(&report)
            .map_err(|e| Error::Runtime(format!("cannot serialise the report: {e}")))?;
        rnafm_runtime::atomic::write_bytes_atomic(p, json.as_bytes())?;
    }
    Ok(report)
}

/// The `versus` section of one `evaluate` report: what it was compared with, and the
/// differences.
fn read_versus(p: &Path) -> Result<(String, Vec<PairedDifference>)> {
    let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::invalid(p, format!("not an rnafm-eval evaluate report: {e}")))?;
    let section = v.get("versus").ok_or_else(|| {
        Error::invalid(
            p,
            "has no versus section (run rnafm-eval evaluate with --versus)",
        )
    })?;
    let against = section
        .get("predictions")
        .and_then(|x| x.as_str())
        .unwrap_or("")
        .to_string();
    let diffs: Vec<PairedDifference> = section
        .get("differences")
        .cloned()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| Error::invalid(p, format!("versus.differences: {e}")))?
        .unwrap_or_default();
    if diffs.is_empty() || diffs.iter().any(|d| d.replicate_differences.is_empty()) {
        return Err(Error::invalid(
            p,
            "has no bootstrap replicates (written by an older rnafm-eval: run evaluate --versus again)",
        ));
    }
    Ok((against, diffs))
}

/// Pools per-cohort differences (same gene sets, same replicate count in each); `names`
/// label the cohorts in errors.
pub fn pool(names: &[PathBuf], cohorts: &[Vec<PairedDifference>]) -> Result<Vec<PooledDifference>> {
    let first = cohorts
        .first()
        .ok_or_else(|| Error::Usage("no evaluation reports to pool".into()))?;
    let sets: Vec<Option<usize>> = first.iter().map(|d| d.top_k).collect();
    let n_rep = first[0].replicate_differences.len();
    for (name, c) in names.iter().zip(cohorts) {
        let these: Vec<Option<usize>> = c.iter().map(|d| d.top_k).collect();
        if these != sets {
            return Err(Error::invalid(
                name,
                format!("gene sets {these:?} differ from the first report's {sets:?}"),
            ));
        }
        if let Some(d) = c.iter().find(|d| d.replicate_differences.len() != n_rep) {
            return Err(Error::invalid(
                name,
                format!(
                    "{} bootstrap replicates, the first report has {n_rep} (use the same --replicates)",
                    d.replicate_differences.len()
                ),
            ));
        }
    }
    // One seeded order per cohort, shared by its gene sets (they come from the same
    // resamples, so their pairing across gene sets is kept).
    let orders: Vec<Vec<usize>> = (0..cohorts.len())
        .map(|j| {
            let mut o: Vec<usize> = (0..n_rep).collect();
            if j > 0 {
                o.shuffle(&mut ChaCha8Rng::seed_from_u64(0x9001 + j as u64));
            }
            o
        })
        .collect();
    let n = cohorts.len() as f64;
    Ok(sets
        .iter()
        .enumerate()
        .map(|(s, &top_k)| {
            let per_cohort: Vec<f64> = cohorts.iter().map(|c| c[s].difference).collect();
            let reps: Vec<f64> = (0..n_rep)
                .map(|b| {
                    cohorts
                        .iter()
                        .zip(&orders)
                        .map(|(c, o)| c[s].replicate_differences[o[b]])
                        .sum::<Option<f64>>()
                        .map_or(f64::NAN, |sum| sum / n)
                })
                .collect();
            let ci = percentile_interval(&reps);
            PooledDifference {
                top_k,
                difference: per_cohort.iter().sum::<f64>() / n,
                ci_low: ci.low,
                ci_high: ci.high,
                replicates: ci.replicates,
                per_cohort,
            }
        })
        .collect())
}

/// The report as a table, one line per gene set.
pub fn render_table(r: &PooledReport) -> String {
    let mut s = format!(
        "mean over {} cohorts of (model − {}) in mean per-gene r, 95% interval from each cohort's paired bootstrap\n",
        r.evaluations.len(),
        r.versus.first().map_or("the other", String::as_str)
    );
    s.push_str("genes        mean       95% interval          per cohort\n");
    for d in &r.differences {
        let set = d.top_k.map_or("all".to_string(), |k| format!("top {k}"));
        let each: Vec<String> = d.per_cohort.iter().map(|x| format!("{x:+.4}")).collect();
        s.push_str(&format!(
            "{set:<12} {:+.4}    [{:+.4}, {:+.4}]    {}\n",
            d.difference,
            d.ci_low,
            d.ci_high,
            each.join(" ")
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_distr::{Distribution, Normal};

    fn cohort(mean: f64, sd: f64, seed: u64) -> Vec<PairedDifference> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let normal = Normal::new(mean, sd).unwrap();
        [None, Some(100)]
            .into_iter()
            .map(|top_k| PairedDifference {
                top_k,
                difference: mean,
                ci_low: mean - 1.96 * sd,
                ci_high: mean + 1.96 * sd,
                replicates: 2000,
                replicate_differences: (0..2000).map(|_| Some(normal.sample(&mut rng))).collect(),
            })
            .collect()
    }

    fn names(n: usize) -> Vec<PathBuf> {
        (0..n)
            .map(|i| PathBuf::from(format!("c{i}.json")))
            .collect()
    }

    /// The point is the mean of the cohorts' differences; the interval is that of a mean of
    /// independent cohorts (sd / √n), so one cohort below 0 does not pull it across 0 when
    /// the others are clearly above.
    #[test]
    fn pooled_interval_is_that_of_the_mean_of_independent_cohorts() {
        let c = vec![
            cohort(0.15, 0.015, 1),
            cohort(-0.03, 0.015, 2),
            cohort(0.04, 0.015, 3),
        ];
        let p = pool(&names(3), &c).unwrap();
        assert_eq!(p.len(), 2);
        for d in &p {
            assert!((d.difference - 0.16 / 3.0).abs() < 1e-12);
            assert_eq!(d.per_cohort, vec![0.15, -0.03, 0.04]);
            // sd of the mean: 0.015/√3 = 0.00866; 95% half-width ≈ 0.017.
            let half = (d.ci_high - d.ci_low) / 2.0;
            assert!((half - 1.96 * 0.015 / 3f64.sqrt()).abs() < 0.002, "{d:?}");
            assert!(d.ci_low > 0.0 && d.ci_low < d.difference && d.difference < d.ci_high);
            assert_eq!(d.replicates, 2000);
        }
    }

    /// A replicate undefined in any cohort drops out; mismatched reports are refused.
    #[test]
    fn undefined_replicates_drop_out_and_mismatches_are_refused() {
        let mut c = vec![cohort(0.1, 0.01, 1), cohort(0.1, 0.01, 2)];
        c[1][0].replicate_differences[5] = None;
        let p = pool(&names(2), &c).unwrap();
        assert_eq!(p[0].replicates, 1999);
        assert_eq!(p[1].replicates, 2000);

        let mut fewer = c.clone();
        fewer[1][1].replicate_differences.pop();
        let e = pool(&names(2), &fewer).unwrap_err().to_string();
        assert!(
            e.starts_with("c1.json: ") && e.contains("1999 bootstrap replicates"),
            "{e}"
        );

        let mut sets = c.clone();
        sets[1][1].top_k = Some(20);
        let e = pool(&names(2), &sets).unwrap_err().to_string();
        assert!(e.contains("gene sets"), "{e}");
    }

    /// Reports without a versus section or without replicates are named in the error.
    #[test]
    fn reports_without_replicates_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.json");
        std::fs::write(&plain, r#"{"slides": 3}"#).unwrap();
        let old = dir.path().join("old.json");
        std::fs::write(
            &old,
            r#"{"versus": {"predictions": "b.npy", "differences": [{"top_k": null,
               "difference": 0.1, "ci_low": 0.0, "ci_high": 0.2, "replicates": 1000}]}}"#,
        )
        .unwrap();
        let e = run_pool(&[plain.clone(), old.clone()], None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("plain.json") && e.contains("no versus section"),
            "{e}"
        );
        let e = run_pool(&[old.clone(), old.clone()], None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("old.json") && e.contains("no bootstrap replicates"),
            "{e}"
        );
        let e = run_pool(&[old], None).unwrap_err().to_string();
        assert!(e.contains("at least two"), "{e}");
    }
}
