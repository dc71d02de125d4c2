//! `rnafm-eval` as a user runs it: the commands are there with --help and --version, an
//! evaluation from the command line scores what it should, the `rnafm-train` aliases print
//! the same, and a bad input is one line naming the file.

use std::path::Path;
use std::process::Command;

use rnafm_runtime::reference_csv::ReferenceCohort;

fn eval_cmd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rnafm-eval"))
}

fn synth(dir: &Path) {
    let o = eval_cmd()
        .args([
            "synth",
            "--patients",
            "12",
            "--genes",
            "30",
            "--pathways",
            "3",
        ])
        .args([
            "--clusters",
            "4",
            "--feat-dim",
            "6",
            "--oracle-draws",
            "16",
            "--seed",
            "4",
        ])
        .arg("--out")
        .arg(dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let line = String::from_utf8_lossy(&o.stdout);
    assert!(
        line.starts_with("synthetic cohort: 12 slides of 12 patients, 30 genes"),
        "{line}"
    );
}

#[test]
fn help_lists_the_commands_and_version_prints() {
    let o = eval_cmd().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&o.stdout);
    for c in ["evaluate", "calibrate", "report", "synth", "ridge", "pool"] {
        assert!(help.contains(c), "{help}");
    }
    let v = eval_cmd().arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("rnafm-eval "));
}

/// Perfect predictions score r = 1 over all genes, the oracle scores below that, and the
/// table is printed; the JSON report is written.
#[test]
fn evaluate_scores_perfect_predictions_and_the_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("cohort");
    synth(&c);
    let truth = ReferenceCohort::read(&c.join("reference.csv")).unwrap();
    let pred = dir.path().join("perfect.npy");
    rnafm_runtime::npy::write_npy(&pred, &truth.log2).unwrap();
    let out = dir.path().join("eval.json");
    // evaluate's arguments, with the JSON report written to `to`
    let evaluate = |to: &Path| -> Vec<std::ffi::OsString> {
        let mut v: Vec<std::ffi::OsString> = vec!["evaluate".into(), "--pred".into()];
        v.push(pred.clone().into());
        v.push("--truth".into());
        v.push(c.join("reference.csv").into());
        v.push("--oracle".into());
        v.push(c.join("oracle.npz").into());
        v.push("--out".into());
        v.push(to.into());
        v
    };
    let o = eval_cmd().args(evaluate(&out)).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.contains("12 slides × 30 genes"), "{table}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let r_all = report["accuracy"][0]["mean_pearson"].as_f64().unwrap();
    assert!((r_all - 1.0).abs() < 1e-6, "{r_all}");
    let ceiling = report["oracle"]["oracle_mean_pearson"].as_f64().unwrap();
    assert!(ceiling < 1.0 && ceiling > 0.0, "{ceiling}");

    // The same command through the rnafm-train alias prints the same.
    // (`cargo test --workspace` builds it; a run of this crate alone may not have, but CI must.)
    let train = Path::new(env!("CARGO_BIN_EXE_rnafm-eval")).with_file_name("rnafm-train");
    assert!(
        train.exists() || std::env::var_os("CI").is_none(),
        "{} missing in CI",
        train.display()
    );
    if train.exists() {
        let a = Command::new(&train)
            .args(evaluate(&dir.path().join("eval2.json")))
            .output()
            .unwrap();
        assert!(a.status.success());
        assert_eq!(String::from_utf8_lossy(&a.stdout), table);
    }
}

#[test]
fn a_missing_prediction_file_is_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("cohort");
    synth(&c);
    let o = eval_cmd()
        .arg("evaluate")
        .arg("--pred")
        .arg(dir.path().join("nope.npy"))
        .arg("--truth")
        .arg(c.join("reference.csv"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("nope.npy") && err.trim().lines().count() == 1,
        "{err}"
    );
}

/// The ridge baseline from the command line on a synthetic cohort with external patients:
/// it predicts the external slides from the training CSV alone, informatively (well above
/// zero r, below the oracle), and a slide without features is one line naming it.
#[test]
fn ridge_predicts_external_slides() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let o = eval_cmd()
        .args(["synth", "--patients", "80", "--external-patients", "20"])
        .args(["--genes", "60", "--pathways", "6", "--clusters", "6"])
        .args(["--feat-dim", "8", "--oracle-draws", "64", "--seed", "9"])
        .arg("--out")
        .arg(d)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // rnafm-eval ridge on the training slides, predicting the slides listed in `slides`.
    let ridge = |slides: &str, out: &str| {
        eval_cmd()
            .current_dir(d)
            .args(["ridge", "--train", "training.csv", "--features", "features"])
            .args(["--genes", "gene_list.csv", "--slides", slides, "-o", out])
            .output()
            .unwrap()
    };
    let o = ridge("external.txt", "ridge.npy");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let pred = rnafm_runtime::npy::read_float_array(&d.join("ridge.npy"), None).unwrap();
    assert_eq!(pred.shape(), &[20, 60]);
    let o = eval_cmd()
        .current_dir(d)
        .args([
            "evaluate",
            "--pred",
            "ridge.npy",
            "--truth",
            "reference.csv",
        ])
        .args(["--slides", "external.txt", "--oracle", "oracle.npz"])
        .args(["--rank-by", "oracle_training_r.npy", "--out", "eval.json"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let e: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("eval.json")).unwrap()).unwrap();
    let r = e["accuracy"][0]["mean_pearson"].as_f64().unwrap();
    let oracle = e["oracle"]["oracle_mean_pearson"].as_f64().unwrap();
    assert!(r > 0.2 && r < oracle, "ridge r {r}, oracle {oracle}");
    std::fs::write(d.join("bad.txt"), "NOPE.svs\n").unwrap();
    let o = ridge("bad.txt", "bad.npy");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("NOPE.svs") && err.trim().lines().count() == 1,
        "{err}"
    );
    assert!(!d.join("bad.npy").exists());
}

/// `pool` on two cohorts' `evaluate --versus` reports: perfect predictions against the
/// truth with noise added beat it in both, and the pooled line says so with an interval
/// above 0; the JSON holds the mean of the two differences. A report without --versus is
/// one line naming it.
#[test]
fn pool_averages_two_cohorts_differences() {
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};
    let dir = tempfile::tempdir().unwrap();
    let mut reports = Vec::new();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    for k in 0..2 {
        let c = dir.path().join(format!("cohort{k}"));
        synth(&c);
        let truth = ReferenceCohort::read(&c.join("reference.csv")).unwrap();
        let good = dir.path().join(format!("good{k}.npy"));
        rnafm_runtime::npy::write_npy(&good, &truth.log2).unwrap();
        let noise = Normal::new(0.0f32, 1.0).unwrap();
        let bad = truth.log2.mapv(|v| v + noise.sample(&mut rng));
        let badp = dir.path().join(format!("bad{k}.npy"));
        rnafm_runtime::npy::write_npy(&badp, &bad).unwrap();
        let out = dir.path().join(format!("eval{k}.json"));
        let o = eval_cmd()
            .arg("evaluate")
            .arg("--pred")
            .arg(&good)
            .arg("--truth")
            .arg(c.join("reference.csv"))
            .arg("--versus")
            .arg(&badp)
            .args(["--replicates", "200", "--out"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        reports.push(out);
    }
    let pooled = dir.path().join("pool.json");
    let o = eval_cmd()
        .arg("pool")
        .args(&reports)
        .arg("-o")
        .arg(&pooled)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(table.starts_with("mean over 2 cohorts"), "{table}");
    let p: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&pooled).unwrap()).unwrap();
    let each: Vec<f64> = reports
        .iter()
        .map(|r| {
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(r).unwrap()).unwrap();
            v["versus"]["differences"][0]["difference"]
                .as_f64()
                .unwrap()
        })
        .collect();
    let all = &p["differences"][0];
    assert!(all["top_k"].is_null());
    let d = all["difference"].as_f64().unwrap();
    assert!((d - (each[0] + each[1]) / 2.0).abs() < 1e-12, "{all}");
    assert!(all["ci_low"].as_f64().unwrap() > 0.0, "{all}");

    let o = eval_cmd()
        .arg("pool")
        .arg(&reports[0])
        .arg(dir.path().join("cohort0/synth.json"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("synth.json") && err.trim().lines().count() == 1,
        "{err}"
    );
}
