//! `rnafm-eval calibrate`: fits interval calibration factors (see
//! `rnafm_runtime::calibration`) from `rnafm-run` draws of one model on slides it did not
//! train on and that are not the evaluation slides: a fold's validation patients
//! (`fold_N/validation.txt`) and, when the model is judged on other slides (external ones),
//! its held-out patients too (`heldout.txt`). The factors belong to that model: fold models
//! of one run differ in spread (README, "Interval calibration"). The result goes to a
//! calibration file that `rnafm-export` stores in the bundle.

use std::path::{Path, PathBuf};

use ndarray::Axis;
use rnafm_runtime::anchor_refit::LooShift;
use rnafm_runtime::calibration::{self, Calibration};
use rnafm_runtime::reference_csv::ReferenceCohort;
use rnafm_runtime::{Error, Result, genes::GeneList};

use crate::evaluate::read_predictions;
use crate::model_pathways;
use rnafm_runtime::slide_names::samples_file;

#[derive(Debug, Clone)]
pub struct CalibrateOptions {
    /// rnafm-run output folders with `<slide>.samples.npy` draws (--save-samples,
    /// --no-calibration) of the model to calibrate and their run.json, all with the same
    /// guidance, time points and number of draws: e.g. its draws on the fold's validation
    /// patients in one folder and on its held-out patients in another.
    pub pred: Vec<PathBuf>,
    /// Reference CSV with the measured values of those slides.
    pub truth: PathBuf,
    /// Gene list in the draws' column order (default: the CSV's gene columns).
    pub genes: Option<PathBuf>,
    /// Per `pred` folder, in order: fit on these slides only (one name a line, e.g.
    /// fold_0/validation.txt). Empty: every CSV slide with draws in each folder.
    pub slides: Vec<PathBuf>,
    /// Calibration file to write (e.g. <run>/fold_0/calibration.json). Entries of an
    /// existing file for other guidance scales or step counts are kept.
    pub out: PathBuf,
    /// Central interval levels to fit, comma-separated.
    pub levels: Vec<f64>,
    /// What the slides are, recorded with the factors.
    pub fitted_on: String,
    /// An `rnafm-train refit-anchor` folder: the draws are the refitted model's, and each
    /// refitted slide's truth is moved by its leave-one-out shift, so that the fit scores
    /// the draws a model that never saw the slide would make.
    pub anchor_loo: Option<PathBuf>,
    /// Where the genes' pathway counts come from, for factors per gene group.
    pub groups: GeneGroups,
}

/// The source of each gene's pathway count (`calibration::GeneGroup`).
#[derive(Debug, Clone, PartialEq)]
pub enum GeneGroups {
    /// The model named in the first --pred folder's run.json.
    RunModel,
    /// This model: a bundle (file or unpacked) or a checkpoint folder.
    Model(PathBuf),
    /// One set of factors for all genes.
    None,
}

/// Sampling setting of the draws from the run's run.json: (cfg, steps).
fn run_setting(pred: &Path) -> Result<(f32, usize)> {
    let path = pred.join("run.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::invalid(&path, format!("not JSON: {e}")))?;
    let cfg = v.get("cfg").and_then(|x| x.as_f64());
    let steps = v.get("steps").and_then(|x| x.as_u64());
    let (Some(cfg), Some(steps)) = (cfg, steps) else {
        return Err(Error::invalid(
            &path,
            "no cfg/steps (not an rnafm-run run.json)",
        ));
    };
    if v.pointer("/calibration/applied").and_then(|x| x.as_bool()) == Some(true) {
        return Err(Error::invalid(
            &path,
            "these draws were calibrated already; run rnafm-run with --no-calibration",
        ));
    }
    if v.get("unit").and_then(|x| x.as_str()) == Some("FPKM-UQ") {
        return Err(Error::invalid(
            &path,
            "draws are in FPKM-UQ; calibrate on log2(FPKM-UQ+1) draws (run without --fpkm)",
        ));
    }
    Ok((cfg as f32, steps as usize))
}

/// CSV rows of the slides named in `list` (one a line).
fn listed_rows(list: &Path, cohort: &ReferenceCohort, truth: &Path) -> Result<Vec<usize>> {
    let text = std::fs::read_to_string(list).map_err(|e| Error::io(list, e))?;
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|name| {
            cohort.slides.iter().position(|s| s == name).ok_or_else(|| {
                Error::invalid(list, format!("slide {name} is not in {}", truth.display()))
            })
        })
        .collect()
}

/// Fits and writes the calibration; returns the new entry.
pub fn run_calibrate(args: &CalibrateOptions) -> Result<Calibration> {
    let Some(first) = args.pred.first() else {
        return Err(Error::Runtime("calibrate: no --pred folder".into()));
    };
    if !args.slides.is_empty() && args.slides.len() != args.pred.len() {
        return Err(Error::invalid(
            &args.slides[0],
            format!(
                "{} --slides lists for {} --pred folders: give one per folder, in order, or none",
                args.slides.len(),
                args.pred.len()
            ),
        ));
    }
    let (cfg, steps) = run_setting(first)?;
    for p in &args.pred[1..] {
        let other = run_setting(p)?;
        if other != (cfg, steps) {
            return Err(Error::invalid(
                p.join("run.json"),
                format!(
                    "draws with guidance {} and {} time points; {} has guidance {cfg} and {steps}",
                    other.0,
                    other.1,
                    first.display()
                ),
            ));
        }
    }
    let cohort = ReferenceCohort::read(&args.truth)?;
    let (truth, n_genes) = match &args.genes {
        Some(p) => {
            let g = GeneList::read(p)?;
            (cohort.aligned(&g)?, g.len())
        }
        None => (cohort.log2.clone(), cohort.genes.len()),
    };
    let mut all_rows: Vec<usize> = Vec::new();
    let mut parts = Vec::new();
    for (i, pred) in args.pred.iter().enumerate() {
        let rows: Vec<usize> = match args.slides.get(i) {
            Some(list) => listed_rows(list, &cohort, &args.truth)?,
            None => (0..cohort.len())
                .filter(|&r| samples_file(pred, &cohort.slides[r]).is_some())
                .collect(),
        };
        if rows.is_empty() {
            return Err(Error::invalid(
                pred,
                "no <slide>.samples.npy for any slide of the reference CSV",
            ));
        }
        if let Some(&r) = rows.iter().find(|r| all_rows.contains(r)) {
            return Err(Error::invalid(
                pred,
                format!(
                    "slide {} is in two --pred folders; each slide may count once",
                    cohort.slides[r]
                ),
            ));
        }
        let names: Vec<String> = rows.iter().map(|&r| cohort.slides[r].clone()).collect();
        let (_, samples) = read_predictions(pred, &names, &rows, cohort.len(), n_genes)?;
        let samples = samples.ok_or_else(|| Error::invalid(pred, "no draws"))?;
        if let Some(p0) = parts
            .first()
            .map(|a: &ndarray::Array3<f32>| a.len_of(Axis(0)))
            && samples.len_of(Axis(0)) != p0
        {
            return Err(Error::invalid(
                pred,
                format!(
                    "{} draws per slide; {} has {p0}: run all folders with the same --samples",
                    samples.len_of(Axis(0)),
                    first.display()
                ),
            ));
        }
        parts.push(samples);
        all_rows.extend(rows);
    }
    let views: Vec<_> = parts.iter().map(|a| a.view()).collect();
    let samples = ndarray::concatenate(Axis(1), &views)
        .map_err(|e| Error::invalid(first, format!("cannot pool the draws: {e}")))?;
    let mut truth = truth.select(Axis(0), &all_rows);
    if let Some(dir) = &args.anchor_loo {
        let shift = LooShift::read(dir, n_genes)?;
        let mut moved = 0usize;
        for (mut row, &r) in truth.rows_mut().into_iter().zip(&all_rows) {
            if let Some(s) = shift.of(&cohort.slides[r]) {
                row += &s;
                moved += 1;
            }
        }
        if moved == 0 {
            return Err(Error::invalid(
                dir,
                "none of the calibration slides had its anchor refitted; --anchor-loo is for the refitted model's draws on slides of the refit CSV",
            ));
        }
    }
    let counts = match &args.groups {
        GeneGroups::None => None,
        GeneGroups::Model(m) => Some(model_pathways::pathway_counts(m)?),
        GeneGroups::RunModel => Some(model_pathways::counts_for_run(
            first,
            None,
            ", or --no-gene-groups",
        )?),
    };
    let (levels, groups) = match &counts {
        Some(c) => calibration::fit_grouped(samples.view(), truth.view(), &args.levels, c, first)?,
        None => (
            calibration::fit_levels(samples.view(), truth.view(), &args.levels, first)?,
            Vec::new(),
        ),
    };
    let new = Calibration {
        cfg,
        steps,
        levels,
        slides: all_rows.len(),
        values: truth.len(),
        fitted_on: Some(args.fitted_on.clone()),
        draws: Some(samples.len_of(Axis(0))),
        groups,
        anchor_loo: args.anchor_loo.is_some(),
    };
    new.validate(first)?;
    let existing = if args.out.is_file() {
        calibration::read_file(&args.out)?
    } else {
        Vec::new()
    };
    calibration::write_file(&args.out, &calibration::merge(existing, new.clone()))?;
    Ok(new)
}

/// What the command prints: the factor of each level and the coverage before it, over all
/// genes, then a line per gene group.
pub fn describe(c: &Calibration, out: &std::path::Path) -> String {
    let mut text = describe_all(c, out);
    for g in &c.groups {
        let f: Vec<String> = g
            .levels
            .iter()
            .map(|l| {
                format!(
                    "{:.0}%: ×{:.3} ({:.1}% before)",
                    l.level * 100.0,
                    l.factor,
                    l.coverage_before * 100.0
                )
            })
            .collect();
        text.push_str(&format!(
            "\n  {} ({} genes): {}",
            g.label(),
            g.genes,
            f.join(", ")
        ));
    }
    text
}

fn describe_all(c: &Calibration, out: &std::path::Path) -> String {
    let f: Vec<String> = c
        .levels
        .iter()
        .map(|l| {
            format!(
                "{:.0}%: ×{:.3} (coverage before {:.1}%)",
                l.level * 100.0,
                l.factor,
                l.coverage_before * 100.0
            )
        })
        .collect();
    format!(
        "calibration for guidance {} ({} time points, {} draws) from {} slides × {} values: {} → {}",
        c.cfg,
        c.steps,
        c.draws.map_or("?".into(), |d| d.to_string()),
        c.slides,
        c.values / c.slides.max(1),
        f.join(", "),
        out.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, Normal};

    /// Draws in an rnafm-run folder whose spread is half the truth's: the fitted factors
    /// are about 2, merge with an existing entry for another guidance, and calibrated
    /// draws are refused.
    /// `d/ref.csv` and an rnafm-run folder `d/pred` of `n` draws per slide with sd 0.3;
    /// gene g's true log2 value has sd `truth_sd(g)`. Slides are named `s<i><ext>` in the
    /// CSV; rnafm-run writes the draws without the extension.
    fn cohort_with_draws(
        d: &Path,
        (slides, genes, n): (usize, usize, usize),
        seed: u64,
        ext: &str,
        truth_sd: impl Fn(usize) -> f64,
    ) -> PathBuf {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut csv = String::from("wsi_file_name,patient_id");
        for g in 0..genes {
            csv.push_str(&format!(",rna_G{g}"));
        }
        csv.push('\n');
        let pred = d.join("pred");
        std::fs::create_dir_all(&pred).unwrap();
        for s in 0..slides {
            csv.push_str(&format!("s{s}{ext},p{s}"));
            let mut draws = Array2::<f32>::zeros((n, genes));
            for g in 0..genes {
                let mu = 3.0 + (s * 7 + g) as f64 % 5.0;
                let log2 = Normal::new(mu, truth_sd(g)).unwrap().sample(&mut rng);
                csv.push_str(&format!(",{}", log2.exp2() - 1.0));
                let dr = Normal::new(mu, 0.3).unwrap();
                for r in 0..n {
                    draws[[r, g]] = dr.sample(&mut rng) as f32;
                }
            }
            csv.push('\n');
            rnafm_runtime::npy::write_npy(&pred.join(format!("s{s}.samples.npy")), &draws).unwrap();
        }
        std::fs::write(d.join("ref.csv"), csv).unwrap();
        pred
    }

    #[test]
    fn fits_from_an_rnafm_run_folder() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (slides, genes, n) = (30usize, 40usize, 100usize);
        // GDC-style names
        let pred = cohort_with_draws(d, (slides, genes, n), 11, ".svs", |_| 0.6);
        let run_json = |applied: bool| {
            serde_json::json!({"cfg": 2.0, "steps": 20, "unit": "log2(FPKM-UQ+1)",
                "calibration": {"applied": applied}})
            .to_string()
        };
        std::fs::write(pred.join("run.json"), run_json(false)).unwrap();
        let out = d.join("calibration.json");
        let mut other = calibration_entry(3.0);
        other.levels[0].factor = 7.0;
        calibration::write_file(&out, &[other]).unwrap();
        let args = CalibrateOptions {
            pred: vec![pred.clone()],
            truth: d.join("ref.csv"),
            genes: None,
            slides: vec![],
            out: out.clone(),
            levels: calibration::DEFAULT_LEVELS.to_vec(),
            fitted_on: "test".into(),
            anchor_loo: None,
            groups: GeneGroups::None,
        };
        let c = run_calibrate(&args).unwrap();
        assert_eq!((c.slides, c.values, c.steps), (slides, slides * genes, 20));
        // The draw count travels with the factors (rnafm-run warns on another one).
        assert_eq!(c.draws, Some(n));
        assert!(describe(&c, &out).contains("100 draws"));
        for l in &c.levels {
            assert!((l.factor - 2.0).abs() < 0.25, "{l:?}");
        }
        let back = calibration::read_file(&out).unwrap();
        assert_eq!(back.len(), 2);
        assert!(
            back.iter()
                .any(|b| b.cfg == 3.0 && b.levels[0].factor == 7.0)
        );
        // a second fit for guidance 2 replaces the first
        run_calibrate(&args).unwrap();
        assert_eq!(calibration::read_file(&out).unwrap().len(), 2);
        // --anchor-loo: each refitted slide's truth moves by its shift (the even slides
        // here), the others stay; the same fit as on a CSV with those values moved.
        let refit = d.join("refit");
        std::fs::create_dir_all(&refit).unwrap();
        let cohort = ReferenceCohort::read(&d.join("ref.csv")).unwrap();
        let even: Vec<usize> = (0..slides).step_by(2).collect();
        let shift = ndarray::Array2::from_shape_fn((even.len(), genes), |(i, g)| {
            0.5 * ((i + g) % 3) as f32 - 0.4
        });
        LooShift {
            slides: even.iter().map(|&s| format!("s{s}.svs")).collect(),
            shift: shift.clone(),
        }
        .write(&refit)
        .unwrap();
        let mut moved = cohort.log2.clone();
        for (i, &s) in even.iter().enumerate() {
            let mut row = moved.row_mut(s);
            row += &shift.row(i);
        }
        rnafm_runtime::reference_csv::write_reference_csv(
            &d.join("moved.csv"),
            &cohort.slides,
            &cohort.patients,
            None,
            &cohort.genes,
            &moved,
        )
        .unwrap();
        let loo = run_calibrate(&CalibrateOptions {
            anchor_loo: Some(refit.clone()),
            out: d.join("loo.json"),
            ..args.clone()
        })
        .unwrap();
        let by_csv = run_calibrate(&CalibrateOptions {
            truth: d.join("moved.csv"),
            out: d.join("moved.json"),
            ..args.clone()
        })
        .unwrap();
        for (a, b) in loo.levels.iter().zip(&by_csv.levels) {
            assert!((a.factor - b.factor).abs() < 1e-4, "{a:?} {b:?}");
        }
        assert!(
            (loo.levels[0].factor - c.levels[0].factor).abs() > 0.05,
            "{loo:?}"
        );
        // recorded, so that rnafm-export can refuse the other with a refitted checkpoint
        assert!(loo.anchor_loo && !by_csv.anchor_loo);
        // a shift of another model's gene count is refused, naming the file
        LooShift {
            slides: vec!["s0.svs".into()],
            shift: ndarray::Array2::zeros((1, genes + 1)),
        }
        .write(&refit)
        .unwrap();
        let e = run_calibrate(&CalibrateOptions {
            anchor_loo: Some(refit.clone()),
            ..args.clone()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("anchor_loo_shift.npy"), "{e}");
        // Cross-fitting: the same draws split over two folders (as two folds' models on
        // their held-out slides) give the same fit as one folder.
        let halves = [d.join("fold_a"), d.join("fold_b")];
        for (i, h) in halves.iter().enumerate() {
            std::fs::create_dir_all(h).unwrap();
            std::fs::write(h.join("run.json"), run_json(false)).unwrap();
            for s in (i * slides / 2)..((i + 1) * slides / 2) {
                let f = format!("s{s}.samples.npy");
                std::fs::copy(pred.join(&f), h.join(&f)).unwrap();
            }
        }
        let split = CalibrateOptions {
            pred: halves.to_vec(),
            out: d.join("split.json"),
            ..args.clone()
        };
        let c2 = run_calibrate(&split).unwrap();
        assert_eq!((c2.slides, c2.values), (c.slides, c.values));
        for (a, b) in c.levels.iter().zip(&c2.levels) {
            assert!((a.factor - b.factor).abs() < 1e-9, "{a:?} {b:?}");
        }
        // a slide in two folders counts twice: refused
        std::fs::copy(
            pred.join("s0.samples.npy"),
            halves[1].join("s0.samples.npy"),
        )
        .unwrap();
        let e = run_calibrate(&split).unwrap_err().to_string();
        assert!(e.contains("fold_b") && e.contains("s0.svs"), "{e}");
        // one --slides list for two folders: refused
        let e = run_calibrate(&CalibrateOptions {
            slides: vec![d.join("list.txt")],
            ..split.clone()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("one per folder"), "{e}");
        std::fs::write(pred.join("run.json"), run_json(true)).unwrap();
        let e = run_calibrate(&args).unwrap_err().to_string();
        assert!(
            e.contains("run.json") && e.contains("--no-calibration"),
            "{e}"
        );
    }

    /// Genes 0–59 in no pathway drawn as wide as their truth, genes 60–119 in two
    /// pathways drawn half as wide: the groups come from the model (a checkpoint folder,
    /// or the model run.json names) and recover both; a model that cannot be read is
    /// refused on one line that says what to pass.
    #[test]
    fn groups_genes_by_the_models_pathways() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (slides, genes, n) = (30usize, 120usize, 60usize);
        let pred = cohort_with_draws(
            d,
            (slides, genes, n),
            5,
            "",
            |g| {
                if g < 60 { 0.3 } else { 0.6 }
            },
        );
        // a checkpoint folder's model.json: two pathways over genes 60–119, the rest background
        let ck = d.join("ck");
        std::fs::create_dir_all(&ck).unwrap();
        let half: Vec<usize> = (60..genes).collect();
        let spec = serde_json::json!({
            "config": {"hidden": 8, "depth": 1, "heads": 2, "graph_heads": 2, "clusters": 4,
                "feat_dim": 4, "genes": genes, "mlp_ratio": 4, "cond_drop": 0.1,
                "graph_attention": true, "tokens": "pathways"},
            "genes": (0..genes).map(|g| format!("G{g}")).collect::<Vec<_>>(),
            "pathways": {"n_genes": genes, "names": ["A", "B"], "members": [half, half],
                "background": (0..60).collect::<Vec<_>>()},
        });
        std::fs::write(ck.join("model.json"), spec.to_string()).unwrap();
        let run_json = |model: Option<&Path>| {
            let mut v = serde_json::json!({"cfg": 1.0, "steps": 20,
                "unit": "log2(FPKM-UQ+1)", "calibration": {"applied": false}});
            if let Some(m) = model {
                v["model"] = m.display().to_string().into();
            }
            v.to_string()
        };
        std::fs::write(pred.join("run.json"), run_json(Some(&ck))).unwrap();
        let args = CalibrateOptions {
            pred: vec![pred.clone()],
            truth: d.join("ref.csv"),
            genes: None,
            slides: vec![],
            out: d.join("c.json"),
            levels: calibration::DEFAULT_LEVELS.to_vec(),
            fitted_on: "test".into(),
            anchor_loo: None,
            groups: GeneGroups::RunModel,
        };
        let c = run_calibrate(&args).unwrap();
        assert_eq!(c.groups.len(), 2, "{c:?}");
        assert_eq!(c.groups[0].label(), "background genes");
        assert_eq!(c.groups[1].label(), "1+ pathways");
        assert_eq!((c.groups[0].genes, c.groups[1].genes), (60, 60));
        for (g0, g1) in c.groups[0].levels.iter().zip(&c.groups[1].levels) {
            assert!((g0.factor - 1.0).abs() < 0.2, "{g0:?}");
            assert!((g1.factor - 2.0).abs() < 0.35, "{g1:?}");
        }
        let text = describe(&c, &args.out);
        assert!(
            text.contains("\n  background genes (60 genes): 50%: ×"),
            "{text}"
        );
        // the same through --model; one set for all genes with --no-gene-groups
        let by_model = run_calibrate(&CalibrateOptions {
            groups: GeneGroups::Model(ck.clone()),
            ..args.clone()
        })
        .unwrap();
        assert_eq!(by_model.groups, c.groups);
        // rnafm-train sample's run.json names its checkpoint instead
        let burn = serde_json::json!({"cfg": 1.0, "steps": 20, "unit": "log2(FPKM-UQ+1)",
            "checkpoint": ck.display().to_string()});
        std::fs::write(pred.join("run.json"), burn.to_string()).unwrap();
        assert_eq!(run_calibrate(&args).unwrap().groups, c.groups);
        std::fs::write(pred.join("run.json"), run_json(Some(&ck))).unwrap();
        let one = run_calibrate(&CalibrateOptions {
            groups: GeneGroups::None,
            ..args.clone()
        })
        .unwrap();
        assert!(one.groups.is_empty());
        assert_eq!(one.levels, c.levels);
        // run.json naming no model, or a model that is gone
        std::fs::write(pred.join("run.json"), run_json(None)).unwrap();
        let e = run_calibrate(&args).unwrap_err().to_string();
        assert!(
            e.contains("run.json") && e.contains("--no-gene-groups"),
            "{e}"
        );
        std::fs::write(pred.join("run.json"), run_json(Some(&d.join("gone.rnafm")))).unwrap();
        let e = run_calibrate(&args).unwrap_err().to_string();
        assert!(
            e.contains("run.json") && e.contains("gone.rnafm") && e.contains("--model"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }

    fn calibration_entry(cfg: f32) -> Calibration {
        Calibration {
            cfg,
            steps: 20,
            levels: vec![calibration::LevelFactor {
                level: 0.9,
                factor: 1.0,
                coverage_before: 0.9,
            }],
            slides: 1,
            values: 1,
            fitted_on: None,
            draws: None,
            groups: Vec::new(),
            anchor_loo: false,
        }
    }
}
