//! Training from the command line on a small synthetic cohort: 2-fold patient-level CV,
//! checkpoints in the exporter's contract, metrics, splits reuse and resume.

use std::path::Path;
use std::process::Command;

use ndarray::Array2;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rnafm_runtime::features::write_features;
use rnafm_runtime::model_spec::ModelSpec;
use rnafm_runtime::reference_csv::write_reference_csv;
use rnafm_trainer::splits::Splits;

const GENES: usize = 24;
const SLIDES: usize = 16;

/// 8 patients × 2 slides; expression follows the features so there is signal to learn.
fn cohort(dir: &Path) {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let genes: Vec<String> = (0..GENES).map(|i| format!("G{i:02}")).collect();
    std::fs::write(dir.join("genes.txt"), genes.join("\n")).unwrap();
    let pathways = r#"{"p0": [0,1,2,3,4,5], "p1": [4,5,6,7,8,9,10], "p2": [11,12,13,14,15], "p3": [15,16,17,18], "UNMAPPED": [19,20,21,22,23]}"#;
    std::fs::write(dir.join("pathways.json"), pathways).unwrap();
    let feats = dir.join("features");
    std::fs::create_dir_all(&feats).unwrap();
    let mut slides = Vec::new();
    let mut patients = Vec::new();
    let mut log2 = Array2::<f32>::zeros((SLIDES, GENES));
    for s in 0..SLIDES {
        let name = format!("slide{s:02}.svs");
        let f = Array2::from_shape_fn((4, 8), |_| rng.random_range(-1.0f32..1.0));
        let signal = f.sum() / 8.0;
        for g in 0..GENES {
            log2[[s, g]] = 3.0 + signal * (g % 3) as f32 + rng.random_range(0.0f32..0.3);
        }
        write_features(&feats.join(format!("slide{s:02}.npy")), &f).unwrap();
        slides.push(name);
        patients.push(format!("P{}", s / 2));
    }
    write_reference_csv(
        &dir.join("ref.csv"),
        &slides,
        &patients,
        None,
        &genes,
        &log2,
    )
    .unwrap();
}

/// The CSV row of a test-cohort slide name (`slide07.svs` → 7).
fn slide_index(name: &str) -> usize {
    name.trim_start_matches("slide")
        .trim_end_matches(".svs")
        .parse()
        .unwrap()
}

/// `rnafm-train train` on the test cohort with the small test model, on the paper recipe's
/// schedule (so that each test below turns on the one option it tests; the default recipe
/// has its own test).
fn base_command(dir: &Path, out: &str) -> Command {
    command_on(dir, out, "features")
}

/// [`base_command`] with the slide features from another folder.
fn command_on(dir: &Path, out: &str, features: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rnafm-train"));
    c.current_dir(dir).args([
        "train",
        "--csv",
        "ref.csv",
        "--features",
        features,
        "--pathways",
        "pathways.json",
        "--genes",
        "genes.txt",
        "--out",
        out,
        "--folds",
        "2",
        "--batch",
        "4",
        "--hidden",
        "16",
        "--depth",
        "1",
        "--heads",
        "2",
        "--time-points",
        "4",
        "--recipe",
        "paper",
    ]);
    c
}

fn train(dir: &Path, out: &str, extra: &[&str]) -> std::process::Output {
    let out = base_command(dir, out)
        .args(["--val-every", "1"])
        .args(extra)
        .output()
        .expect("run rnafm-train");
    assert!(
        out.status.success(),
        "rnafm-train failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn two_fold_training_writes_checkpoints_metrics_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    cohort(dir);
    let out = train(dir, "run", &["--epochs", "2"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(stdout.contains("pooled"), "table printed: {stdout}");

    // Folds are patient-disjoint and cover every patient once.
    let splits = Splits::read(&dir.join("run/splits.json")).unwrap();
    assert_eq!(splits.folds.len(), 2);
    let mut all: Vec<&String> = splits.folds.iter().flatten().collect();
    all.sort();
    let n = all.len();
    all.dedup();
    assert_eq!((n, all.len()), (8, 8));

    // Each fold has a best checkpoint in the exporter's contract.
    for f in 0..2 {
        let best = dir.join(format!("run/fold_{f}/best"));
        let spec = ModelSpec::read(&best.join("model.json")).unwrap();
        assert_eq!(spec.config.genes, GENES);
        assert!(spec.normalization.is_some());
        // heldout.txt lists exactly the slides of this fold's held-out patients.
        let held = std::fs::read_to_string(dir.join(format!("run/fold_{f}/heldout.txt"))).unwrap();
        let held: Vec<&str> = held.lines().collect();
        assert_eq!(held.len(), 2 * splits.folds[f].len());
        for s in &held {
            let idx = slide_index(s);
            assert!(
                splits.folds[f].contains(&format!("P{}", idx / 2)),
                "{s} not held out in fold {f}"
            );
        }
        for file in ["model.safetensors", "ema.safetensors"] {
            let w = rnafm_runtime::weights::WeightMap::read_safetensors(&best.join(file)).unwrap();
            assert!(w.tensors.contains_key("blocks.0.attn.qkv.weight"));
        }
        let state: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("run/fold_{f}/last/train_state.json")))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(state["epoch"], 2);
    }
    let metrics =
        rnafm_runtime::training_metrics::TrainingMetrics::read(&dir.join("run/metrics.json"))
            .unwrap();
    assert_eq!(metrics.folds.len(), 2);
    assert_eq!(metrics.genes.len(), GENES);
    let r = metrics.pooled[0].mean_pearson;
    assert!(r.is_finite() && (-1.0..=1.0).contains(&r));
    // `evaluate` scores the same out-of-fold predictions with the same r (one convention).
    let e = rnafm_eval::evaluate::run_evaluate(&rnafm_eval::evaluate::EvaluateOptions {
        pred: dir.join("run/oof_predictions.npy"),
        truth: dir.join("ref.csv"),
        genes: Some(dir.join("genes.txt")),
        rank_by: Some(dir.join("run/metrics.json")),
        rank_excluding_fold: None,
        oracle: None,
        out: Some(dir.join("eval.json")),
        present_only: false,
        slides: None,
        versus: None,
        versus_rank_by: None,
        replicates: 1,
        model: None,
    })
    .unwrap();
    assert_eq!(
        e.accuracy, metrics.pooled,
        "metrics.json and evaluate agree"
    );
    // The pooled out-of-fold means: every slide in CSV row order, each fold's rows as that
    // fold wrote them.
    let pooled =
        rnafm_runtime::npy::read_float_array(&dir.join("run/oof_predictions.npy"), None).unwrap();
    assert_eq!(pooled.shape(), &[SLIDES, GENES]);
    for f in 0..2 {
        let fold = rnafm_runtime::npy::read_float_array(
            &dir.join(format!("run/fold_{f}/oof_predictions.npy")),
            None,
        )
        .unwrap();
        let held = std::fs::read_to_string(dir.join(format!("run/fold_{f}/heldout.txt"))).unwrap();
        for (row, s) in held.lines().enumerate() {
            let idx = slide_index(s);
            for g in 0..GENES {
                assert_eq!(
                    pooled[[idx, g]],
                    fold[[row, g]],
                    "fold {f} slide {s} gene {g}"
                );
            }
        }
    }

    // Reusing the splits, a 1-epoch run continued with --resume reaches epoch 2 and the
    // step count carries on rather than restarting.
    let splits_arg = dir.join("run/splits.json");
    let splits_arg = splits_arg.to_str().unwrap();
    train(dir, "again", &["--epochs", "1", "--splits", splits_arg]);
    std::fs::remove_file(dir.join("again/fold_0/done")).unwrap();
    std::fs::remove_file(dir.join("again/fold_1/done")).unwrap();
    let read_step = |f: usize| -> u64 {
        let s: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("again/fold_{f}/last/train_state.json")))
                .unwrap(),
        )
        .unwrap();
        s["step"].as_u64().unwrap()
    };
    let one = read_step(0);
    assert!(one > 0);
    train(
        dir,
        "again",
        &["--epochs", "2", "--resume", "--splits", splits_arg],
    );
    assert_eq!(read_step(0), 2 * one);
    assert_eq!(
        Splits::read(&dir.join("again/splits.json")).unwrap(),
        splits,
        "the given splits are kept"
    );
}

#[test]
fn bad_input_is_one_line_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    cohort(dir);
    std::fs::write(dir.join("pathways.json"), "{\"p0\": [0, 999]}").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rnafm-train"))
        .current_dir(dir)
        .args([
            "train",
            "--csv",
            "ref.csv",
            "--features",
            "features",
            "--pathways",
            "pathways.json",
            "--genes",
            "genes.txt",
            "--out",
            "run",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pathways.json") && err.contains("999"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");

    // A feature file whose header claims 10^12 tiles (and holds no data): one line naming
    // it, before any allocation (this aborted the process before).
    std::fs::write(dir.join("pathways.json"), "{\"p0\": [0, 1]}").unwrap();
    let mut header = b"\x93NUMPY\x01\x00".to_vec();
    let mut dict =
        b"{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000, 8), }".to_vec();
    while !(10 + dict.len() + 1).is_multiple_of(64) {
        dict.push(b' ');
    }
    dict.push(b'\n');
    header.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    header.extend_from_slice(&dict);
    std::fs::write(dir.join("features/slide03.npy"), header).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rnafm-train"))
        .current_dir(dir)
        .args(["train", "--csv", "ref.csv", "--features", "features"])
        .args([
            "--pathways",
            "pathways.json",
            "--genes",
            "genes.txt",
            "--out",
            "run2",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("slide03.npy") && err.contains("larger than"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// As [`train`], validating rarely, as a command with its output discarded.
fn train_command(dir: &Path, out: &str, extra: &[&str]) -> Command {
    let mut c = base_command(dir, out);
    c.args(["--val-every", "40", "--patience", "1000"])
        .args(extra)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    c
}

fn epoch_of(state: &Path) -> Option<u64> {
    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(state).ok()?).ok()?;
    s["epoch"].as_u64()
}

/// A run killed with SIGKILL mid-training and continued with --resume ends with exactly the
/// weights, EMA and step count of a run that was never interrupted: no finished epoch is
/// repeated or lost (each epoch's shuffling and noise are seeded by the epoch number).
#[test]
fn kill_9_then_resume_matches_an_uninterrupted_run() {
    const EPOCHS: &str = "160";
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    cohort(dir);
    let full = train_command(dir, "full", &["--epochs", EPOCHS])
        .status()
        .unwrap();
    assert!(full.success());
    let splits = dir.join("full/splits.json");
    let splits = splits.to_str().unwrap();

    let mut child = train_command(dir, "killed", &["--epochs", EPOCHS, "--splits", splits])
        .spawn()
        .unwrap();
    let state = dir.join("killed/fold_0/last/train_state.json");
    let started = std::time::Instant::now();
    let killed_at = loop {
        if let Some(e) = epoch_of(&state)
            && e >= 20
        {
            break e;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "training finished before it could be killed; raise EPOCHS"
        );
        assert!(started.elapsed().as_secs() < 300, "no checkpoint appeared");
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    assert!(
        !dir.join("killed/fold_0/done").exists(),
        "killed at epoch {killed_at} after fold 0 had finished; raise EPOCHS"
    );
    let last = epoch_of(&state)
        .or_else(|| epoch_of(&dir.join("killed/fold_0/last.old/train_state.json")))
        .expect("a complete checkpoint survives the kill");
    assert!(last < 160, "killed at epoch {last}");
    eprintln!("killed in fold 0 at epoch {last}");

    let resumed = train_command(
        dir,
        "killed",
        &["--epochs", EPOCHS, "--splits", splits, "--resume", "-v"],
    )
    .stderr(std::process::Stdio::piped())
    .output()
    .unwrap();
    let log = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "{log}");
    // The resumed run started from the checkpoint (not from scratch, which seeded epochs
    // would also bring to the same end) and ran only the epochs after it.
    let field = |line: &str, key: &str| -> Option<u64> {
        let rest = &line[line.find(&format!(" {key}="))? + key.len() + 2..];
        rest.split_whitespace().next()?.parse().ok()
    };
    let fold0 = |what: &str| -> Vec<&str> {
        log.lines()
            .filter(|l| l.contains(what) && l.contains(" fold=0 "))
            .collect()
    };
    let resumed_at = fold0("resumed");
    assert_eq!(resumed_at.len(), 1, "{log}");
    assert_eq!(field(resumed_at[0], "epoch"), Some(last), "{log}");
    let epochs: Vec<u64> = fold0("epoch done")
        .iter()
        .filter_map(|l| field(l, "epoch"))
        .collect();
    let want: Vec<u64> = (last + 1..=EPOCHS.parse().unwrap()).collect();
    assert_eq!(
        epochs, want,
        "fold 0 ran epochs {epochs:?} after resuming at {last}"
    );
    for f in 0..2 {
        let state = |run: &str| -> serde_json::Value {
            serde_json::from_str(
                &std::fs::read_to_string(dir.join(format!("{run}/fold_{f}/last/train_state.json")))
                    .unwrap(),
            )
            .unwrap()
        };
        let (a, b) = (state("full"), state("killed"));
        assert_eq!(a["step"], b["step"], "fold {f}: optimiser steps");
        assert_eq!(a["epoch"], b["epoch"], "fold {f}: epochs");
        for file in ["model.safetensors", "ema.safetensors"] {
            let read = |run: &str| {
                rnafm_runtime::weights::WeightMap::read_safetensors(
                    &dir.join(format!("{run}/fold_{f}/last/{file}")),
                )
                .unwrap()
            };
            let (a, b) = (read("full"), read("killed"));
            assert_eq!(a.tensors.len(), b.tensors.len());
            for (name, t) in &a.tensors {
                let u = &b.tensors[name];
                let d = t
                    .data
                    .iter()
                    .zip(&u.data)
                    .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
                assert!(d <= 1e-6, "fold {f} {file} {name}: max |diff| {d}");
            }
        }
    }
}

/// (epoch, val_loss, val_r) of fold 0's validations, from the info log.
fn validations(stderr: &str) -> Vec<(u64, f64, f64)> {
    let field = |line: &str, key: &str| -> Option<String> {
        let rest = &line[line.find(&format!(" {key}="))? + key.len() + 2..];
        Some(rest.split_whitespace().next()?.to_string())
    };
    stderr
        .lines()
        .filter(|l| l.contains("validation") && l.contains(" fold=0 "))
        .filter_map(|l| {
            Some((
                field(l, "epoch")?.parse().ok()?,
                field(l, "val_loss")?.parse().ok()?,
                field(l, "val_r")?.parse().ok()?,
            ))
        })
        .collect()
}

/// `--val-loss r` (the default) minimises 1 − r, `--val-loss flow` something else, and the
/// best checkpoint is the epoch of the lowest validation loss.
#[test]
fn best_checkpoint_follows_the_validation_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    cohort(dir);
    for (kind, is_one_minus_r) in [("r", true), ("flow", false)] {
        let out = base_command(dir, kind)
            .args(["--val-every", "1", "--epochs", "4", "--patience", "10"])
            .args(["--val-loss", kind])
            .env("RUST_LOG", "info")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let v = validations(&stderr);
        assert_eq!(v.len(), 4, "{stderr}");
        for &(_, loss, r) in &v {
            assert_eq!(
                (loss - (1.0 - r)).abs() < 1e-12,
                is_one_minus_r,
                "{kind}: {v:?}"
            );
        }
        let best = v.iter().min_by(|a, b| a.1.total_cmp(&b.1)).unwrap().0;
        let state: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("{kind}/fold_0/last/train_state.json")))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(state["best_epoch"], best, "{kind}: {v:?}");
    }
}

/// --noise-draws, --ema-decay and --aux-weight change training (not ignored) but not its
/// step count.
#[test]
fn noise_draws_and_ema_decay_take_effect() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    cohort(dir);
    train(dir, "plain", &["--epochs", "3"]);
    let splits = dir.join("plain/splits.json");
    let splits = splits.to_str().unwrap();
    train(
        dir,
        "draws",
        &["--epochs", "3", "--splits", splits, "--noise-draws", "3"],
    );
    train(
        dir,
        "ema",
        &["--epochs", "3", "--splits", splits, "--ema-decay", "0.99"],
    );
    let state = |run: &str| -> serde_json::Value {
        serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("{run}/fold_0/last/train_state.json")))
                .unwrap(),
        )
        .unwrap()
    };
    let read = |run: &str, file: &str| {
        rnafm_runtime::weights::WeightMap::read_safetensors(
            &dir.join(format!("{run}/fold_0/last/{file}")),
        )
        .unwrap()
    };
    let max_diff = |a: &rnafm_runtime::weights::WeightMap,
                    b: &rnafm_runtime::weights::WeightMap| {
        a.tensors.iter().fold(0f32, |m, (name, t)| {
            t.data
                .iter()
                .zip(&b.tensors[name].data)
                .fold(m, |m, (x, y)| m.max((x - y).abs()))
        })
    };
    let plain = read("plain", "model.safetensors");
    assert_eq!(state("plain")["step"], state("draws")["step"]);
    assert!(max_diff(&plain, &read("draws", "model.safetensors")) > 1e-4);
    // Same raw weights (the EMA does not feed back into training), another average.
    assert_eq!(max_diff(&plain, &read("ema", "model.safetensors")), 0.0);
    assert!(
        max_diff(
            &read("plain", "ema.safetensors"),
            &read("ema", "ema.safetensors")
        ) > 1e-5
    );
    // --aux-weight: the checkpoint carries the training-only head, and the encoder trained
    // differently; metrics.json says where each fold's time went.
    train(
        dir,
        "aux",
        &["--epochs", "3", "--splits", splits, "--aux-weight", "1"],
    );
    let aux = read("aux", "model.safetensors");
    assert!(aux.tensors.contains_key("rnafm_aux_head.weight"));
    assert!(!plain.tensors.contains_key("rnafm_aux_head.weight"));
    assert!(max_diff(&plain, &aux) > 1e-4);
    let m = rnafm_runtime::training_metrics::TrainingMetrics::read(&dir.join("aux/metrics.json"))
        .unwrap();
    for f in &m.folds {
        let t = f.seconds.expect("fold timings");
        assert_eq!(t.epochs, 3);
        assert!(
            t.training > 0.0 && t.out_of_fold > 0.0 && t.validations >= 1,
            "{t:?}"
        );
    }
    let bad = base_command(dir, "bad")
        .args(["--aux-weight", "-1"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--aux-weight"));
    let bad = base_command(dir, "bad")
        .args(["--ema-decay", "1.5"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--ema-decay"));
}

/// `--device cuda` without a usable GPU (or in a build without CUDA) fails at once in one
/// line saying why, and writes nothing; `--device auto` trains on the CPU instead.
/// `rnafm-train bench` on the test cohort's genes and pathways (written by `cohort`).
fn bench_command(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rnafm-train"));
    c.current_dir(dir).args([
        "bench",
        "--genes",
        "genes.txt",
        "--pathways",
        "pathways.json",
    ]);
    c
}

#[test]
fn device_cuda_fails_in_one_line_without_a_gpu() {
    use rnafm_trainer::device::{Backend, TrainDevice, resolve};
    if resolve(TrainDevice::Cuda).is_ok() {
        eprintln!("a usable GPU is present: nothing to refuse");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    cohort(dir);
    let out = base_command(dir, "run")
        .args(["--device", "cuda"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--device cuda: "), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!dir.join("run").exists(), "nothing written");
    // The step benchmark takes the same flag the same way.
    let out = bench_command(dir)
        .args(["--device", "cuda", "--json", "bench.json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!dir.join("bench.json").exists());
    assert_eq!(resolve(TrainDevice::Auto).unwrap(), Backend::Cpu);
    train(dir, "auto", &["--device", "auto", "--epochs", "1"]);
    assert!(dir.join("auto/metrics.json").is_file());
}

/// The step benchmark draws its inputs from the seed: two runs with one seed give the same
/// losses and weights (what lets a CUDA run be compared with a CPU run), another seed not.
#[test]
fn bench_is_reproducible_from_its_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    cohort(dir);
    let bench = |seed: &str, name: &str| {
        let out = bench_command(dir)
            .args([
                "--clusters",
                "4",
                "--feat-dim",
                "8",
                "--hidden",
                "16",
                "--depth",
                "1",
            ])
            .args([
                "--heads", "2", "--batch", "3", "--warmup", "1", "--steps", "3",
            ])
            .args(["--device", "cpu", "--seed", seed])
            .args(["--json", &format!("{name}.json")])
            .args(["--weights-out", &format!("{name}.safetensors")])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.json"))).unwrap())
                .unwrap();
        let losses: Vec<f64> = serde_json::from_value(report["losses"].clone()).unwrap();
        let weights = std::fs::read(dir.join(format!("{name}.safetensors"))).unwrap();
        (losses, weights)
    };
    let (l1, w1) = bench("5", "a");
    let (l2, w2) = bench("5", "b");
    let (l3, w3) = bench("6", "c");
    assert_eq!(l1.len(), 4);
    assert!(l1.iter().all(|l| l.is_finite() && *l > 0.0), "{l1:?}");
    assert_eq!(l1, l2);
    assert!(w1 == w2, "same seed, same weights");
    assert_ne!(l1, l3);
    assert!(w1 != w3);
}

/// `--init-slide-encoder`: a flow run starts from the slide encoder of a baseline run on
/// the same folds; a baseline run on other folds is refused in one line, before training.
#[test]
fn slide_encoder_from_a_baseline_run() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    cohort(dir);
    train(dir, "base", &["--model", "regression", "--epochs", "2"]);
    assert!(dir.join("base/fold_0/regression.safetensors").is_file());
    let out = train(
        dir,
        "warm",
        &["--epochs", "1", "--init-slide-encoder", "base", "-v"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("slide encoder from base"), "{err}");
    // Other folds (another seed): the encoder has seen this fold's held-out slides.
    train(
        dir,
        "base7",
        &["--model", "regression", "--epochs", "1", "--seed", "7"],
    );
    let out = base_command(dir, "cold")
        .args(["--epochs", "1", "--init-slide-encoder", "base7"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("holds out other slides"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// Tile files (N×D, `.npy` and TRIDENT `.h5`) train exactly the model that the K×D means
/// `rnafm-run` computes for them train: the same k-means, the same seed rule. The means
/// are cached, and a second run from the cache trains the same model again.
#[test]
fn tile_files_train_the_model_of_their_cluster_means() {
    use rnafm_runtime::cluster_means::{DEFAULT_SEED, cluster_means};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    cohort(dir);
    let (tiles, means) = (dir.join("tiles"), dir.join("means"));
    std::fs::create_dir_all(&tiles).unwrap();
    std::fs::create_dir_all(&means).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for s in 0..SLIDES {
        let n = 20 + s;
        let t = Array2::from_shape_fn((n, 8), |_| rng.random_range(-1.0f32..1.0));
        let stem = format!("slide{s:02}");
        if s % 2 == 0 {
            let coords = Array2::from_shape_fn((n, 2), |(i, j)| (i * 256 * (1 - j)) as i64);
            let h = tiles.join(format!("{stem}.h5"));
            let g = rnafm_runtime::h5::TileGeometry::default();
            rnafm_runtime::h5::write_tile_file(&h, t.view(), coords.view(), &g, None, &stem)
                .unwrap();
        } else {
            write_features(&tiles.join(format!("{stem}.npy")), &t).unwrap();
        }
        let m = cluster_means(t, 4, DEFAULT_SEED, Path::new(&stem)).unwrap();
        write_features(&means.join(format!("{stem}.npy")), &m.means).unwrap();
    }
    let cache = dir.join("cache");
    let run = |features: &str, out: &str, extra: &[&str]| {
        let o = command_on(dir, out, features)
            .env("RNAFM_CACHE_DIR", &cache)
            .args(["--epochs", "6", "--val-every", "3"])
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    run("means", "from_means", &[]);
    let splits = dir.join("from_means/splits.json");
    let splits = splits.to_str().unwrap();
    run(
        "tiles",
        "from_tiles",
        &["--clusters", "4", "--splits", splits],
    );
    let cached = std::fs::read_dir(cache.join("clusters")).unwrap().count();
    assert_eq!(cached, 2 * SLIDES, "means and tile count per slide");
    run(
        "tiles",
        "from_cache",
        &["--clusters", "4", "--splits", splits],
    );
    for f in 0..2 {
        let read = |run: &str| {
            rnafm_runtime::weights::WeightMap::read_safetensors(
                &dir.join(format!("{run}/fold_{f}/best/ema.safetensors")),
            )
            .unwrap()
        };
        let a = read("from_means");
        for other in ["from_tiles", "from_cache"] {
            let b = read(other);
            assert_eq!(a.tensors.len(), b.tensors.len());
            for (name, t) in &a.tensors {
                assert_eq!(t.data, b.tensors[name].data, "fold {f} {other} {name}");
            }
        }
    }
    // Without --clusters, tile files of differing row counts are refused with the hint.
    let o = command_on(dir, "no_k", "tiles")
        .args(["--epochs", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--clusters K"), "{err}");
}

/// Per-gene Pearson r of pooled out-of-fold predictions against the test cohort's truth,
/// for genes `g` with `g % 3 == 2` (the ones that follow the features most).
fn oof_r_of_signal_genes(dir: &Path, run: &str) -> Vec<f64> {
    let pred =
        rnafm_runtime::npy::read_float_array(&dir.join(run).join("oof_predictions.npy"), None)
            .unwrap()
            .into_dimensionality::<ndarray::Ix2>()
            .unwrap();
    let truth = rnafm_runtime::reference_csv::ReferenceCohort::read(&dir.join("ref.csv"))
        .unwrap()
        .aligned(&rnafm_runtime::genes::GeneList::read(&dir.join("genes.txt")).unwrap())
        .unwrap();
    (0..GENES)
        .filter(|g| g % 3 == 2)
        .map(|g| {
            let p: Vec<f64> = pred.column(g).iter().map(|&v| f64::from(v)).collect();
            let t: Vec<f64> = truth.column(g).iter().map(|&v| f64::from(v)).collect();
            rnafm_eval::stats::pearson(&p, &t)
        })
        .collect()
}

/// `--anchor`: every checkpoint carries the fold's mean anchor, and the out-of-fold
/// predictions get it added, so after two epochs (a flow that has learned next to nothing)
/// they already follow the slides, if weakly (each fold's ridge sees 6 slides); without it
/// they do not (r about −0.3 here). The regression baseline takes no anchor (one line).
#[test]
fn anchor_travels_with_checkpoints_and_carries_the_mean() {
    use rnafm_runtime::anchor::{ANCHOR_FILE, Anchor};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    cohort(dir);
    let extra = ["--epochs", "2", "--val-fraction", "0.25", "--cfg", "1"];
    train(dir, "anchored", &[&extra[..], &["--anchor"]].concat());
    train(dir, "plain", &extra);
    for f in 0..2 {
        for ck in ["best", "last"] {
            let p = dir
                .join(format!("anchored/fold_{f}/{ck}"))
                .join(ANCHOR_FILE);
            Anchor::read(&p, 8, GENES).unwrap();
            assert!(
                !dir.join(format!("plain/fold_{f}/{ck}"))
                    .join(ANCHOR_FILE)
                    .exists()
            );
        }
    }
    let (with, without) = (
        oof_r_of_signal_genes(dir, "anchored"),
        oof_r_of_signal_genes(dir, "plain"),
    );
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!(
        mean(&with) > 0.15 && mean(&with) > mean(&without) + 0.3,
        "anchored {with:?}, plain {without:?}"
    );

    // `rnafm-train sample` adds the checkpoint's anchor too: moving gene 0's bias by 10 z
    // moves every draw of gene 0 by 10 × its sd, and nothing else.
    let ck = dir.join("anchored/fold_0/best");
    let moved = dir.join("moved");
    std::fs::create_dir_all(&moved).unwrap();
    for f in ["model.json", "ema.safetensors"] {
        std::fs::copy(ck.join(f), moved.join(f)).unwrap();
    }
    let mut a = Anchor::read(&ck.join(ANCHOR_FILE), 8, GENES).unwrap();
    a.bias[0] += 10.0;
    a.write(&moved.join(ANCHOR_FILE)).unwrap();
    let sample = |ck: &Path, out: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_rnafm-train"))
            .current_dir(dir)
            .args([
                "sample",
                "--samples",
                "3",
                "--time-points",
                "3",
                "--out",
                out,
            ])
            .arg("--checkpoint")
            .arg(ck)
            .arg("features/slide00.npy")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        rnafm_runtime::npy::read_float_array(&dir.join(out).join("slide00.samples.npy"), None)
            .unwrap()
    };
    let diff = sample(&moved, "s_moved") - sample(&ck, "s_orig");
    let sd0 = ModelSpec::read(&ck.join("model.json"))
        .unwrap()
        .normalization
        .unwrap()
        .sd[0];
    for (i, d) in diff.indexed_iter() {
        let want = if i[1] == 0 { 10.0 * sd0 } else { 0.0 };
        assert!(
            (d - want).abs() < 1e-3,
            "draw {i:?}: moved {d}, want {want}"
        );
    }

    let out = base_command(dir, "reg")
        .args(["--model", "regression", "--anchor", "--epochs", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--anchor") && err.trim().lines().count() == 1,
        "{err}"
    );
    assert!(!dir.join("reg").exists(), "{err}");
}

/// `refit-anchor`: the flow's files are kept byte for byte, the anchor is refitted on every
/// slide of the CSV (so it fits the fold's held-out slides better than the fold's anchor,
/// which never saw them), each slide's leave-one-out shift is written, and bad inputs are
/// one line naming the file, with nothing written.
#[test]
fn refit_anchor_keeps_the_flow_and_refits_on_every_slide() {
    use rnafm_runtime::anchor::{ANCHOR_FILE, Anchor};
    use rnafm_runtime::anchor_refit::LooShift;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    cohort(dir);
    train(
        dir,
        "run",
        &[
            "--epochs",
            "2",
            "--val-fraction",
            "0.25",
            "--cfg",
            "1",
            "--anchor",
        ],
    );
    let refit = |out: &str, ck: &str| {
        Command::new(env!("CARGO_BIN_EXE_rnafm-train"))
            .current_dir(dir)
            .args(["refit-anchor", "--checkpoint", ck, "--csv", "ref.csv"])
            .args(["--features", "features", "--out", out])
            .output()
            .unwrap()
    };
    let o = refit("refit", "run/fold_0/best");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("anchor refitted on 16 slides"));
    let (old, new) = (dir.join("run/fold_0/best"), dir.join("refit/best"));
    for f in ["model.json", "ema.safetensors", "model.safetensors"] {
        assert_eq!(
            std::fs::read(old.join(f)).unwrap(),
            std::fs::read(new.join(f)).unwrap(),
            "{f}"
        );
    }
    // the run's metrics (per-gene cross-validated r for the manifest) travel with it
    assert!(new.join("metrics.json").is_file());
    let spec = ModelSpec::read(&old.join("model.json")).unwrap();
    let norm = spec.normalization.unwrap();
    let cohort = rnafm_runtime::reference_csv::ReferenceCohort::read(&dir.join("ref.csv")).unwrap();
    let feats = |s: &str| {
        let stem = s.trim_end_matches(".svs");
        rnafm_runtime::features::read_features(&dir.join(format!("features/{stem}.npy"))).unwrap()
    };
    let sq_err = |a: &Anchor, slides: &[String]| -> f64 {
        slides
            .iter()
            .map(|s| {
                let i = cohort.slides.iter().position(|x| x == s).unwrap();
                let z = a.predict(feats(s).view());
                (0..GENES)
                    .map(|g| f64::from(norm.from_z(g, z[g]) - cohort.log2[[i, g]]).powi(2))
                    .sum::<f64>()
            })
            .sum()
    };
    let (fold_a, new_a) = (
        Anchor::read(&old.join(ANCHOR_FILE), 8, GENES).unwrap(),
        Anchor::read(&new.join(ANCHOR_FILE), 8, GENES).unwrap(),
    );
    let held: Vec<String> = std::fs::read_to_string(dir.join("run/fold_0/heldout.txt"))
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert!(sq_err(&new_a, &held) < sq_err(&fold_a, &held));
    // leave-one-out = refitted − shift, and it fits each slide worse than the refit does
    let shift = LooShift::read(&dir.join("refit"), GENES).unwrap();
    assert_eq!(shift.slides, cohort.slides);
    let (mut in_sample, mut loo) = (0.0, 0.0);
    for (i, s) in cohort.slides.iter().enumerate() {
        let z = new_a.predict(feats(s).view());
        for g in 0..GENES {
            let full = norm.from_z(g, z[g]);
            in_sample += f64::from(full - cohort.log2[[i, g]]).powi(2);
            loo += f64::from(full - shift.shift[[i, g]] - cohort.log2[[i, g]]).powi(2);
        }
    }
    assert!(
        loo > in_sample,
        "leave-one-out {loo} vs in-sample {in_sample}"
    );
    // run again: replaced
    assert!(refit("refit", "run/fold_0/best").status.success());
    // an existing folder that is not a refit, and a checkpoint without an anchor: one line
    // naming the path, nothing written
    std::fs::create_dir_all(dir.join("other")).unwrap();
    let o = refit("other", "run/fold_0/best");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("other") && err.trim().lines().count() == 1,
        "{err}"
    );
    assert_eq!(std::fs::read_dir(dir.join("other")).unwrap().count(), 0);
    train(dir, "plain", &["--epochs", "1", "--val-fraction", "0.25"]);
    let o = refit("refit2", "plain/fold_0/best");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("anchor.safetensors"),
        "{err}"
    );
    assert!(!dir.join("refit2").exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".refit-anchor-")
        })
        .collect();
    assert!(leftovers.is_empty());
}

/// Without size or schedule flags the trainer uses the default recipe (the one
/// `scripts/bench-accuracy` measured): small network, lr 6e-3, EMA 0.99, one-step means,
/// the auxiliary loss and the mean anchor, guidance 1. `--recipe paper` gives the paper's,
/// flags override either, `--no-anchor` drops the anchor (and guidance returns to 2), and
/// the regression baseline gets its own learning rate and no anchor.
#[test]
fn the_default_recipe_fills_what_flags_leave_out() {
    use rnafm_runtime::anchor::ANCHOR_FILE;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    cohort(dir);
    let run = |out: &str, extra: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_rnafm-train"))
            .current_dir(dir)
            .args(["train", "--csv", "ref.csv", "--features", "features"])
            .args(["--pathways", "pathways.json", "--genes", "genes.txt"])
            .args(["--folds", "2", "--epochs", "1", "--time-points", "4", "-v"])
            .args(["--out", out])
            .args(extra)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(o.status.success(), "{err}");
        let settings = err
            .lines()
            .find(|l| l.contains("training settings"))
            .unwrap_or_else(|| panic!("no settings logged: {err}"))
            .to_string();
        let best = dir.join(out).join("fold_0/best");
        let anchored = best.join(ANCHOR_FILE).exists();
        // The regression baseline writes no RNA-FM model.json.
        let size = ModelSpec::read(&best.join("model.json"))
            .map(|s| (s.config.hidden, s.config.depth, s.config.heads))
            .ok();
        (size, anchored, settings)
    };
    let has = |settings: &str, want: &[&str]| {
        for w in want {
            assert!(settings.contains(w), "{w} not in: {settings}");
        }
    };

    let (size, anchored, s) = run("default", &[]);
    assert_eq!(size, Some((64, 2, 4)));
    assert!(anchored, "{s}");
    has(
        &s,
        &[
            "recipe=Default",
            "batch=16",
            "lr=0.006",
            "val_fraction=0.25",
            "val_every=25",
            "patience=4",
            "ema_decay=Some(0.99)",
            "predict_time_points=Some(2)",
            "aux_weight=1",
            "anchor=true",
            "cfg=1",
            "val_loss=Flow",
        ],
    );

    let (_, anchored, s) = run("plain", &["--no-anchor", "--ema-decay", "official"]);
    assert!(!anchored, "{s}");
    has(
        &s,
        &[
            "anchor=false",
            "cfg=2",
            "ema_decay=None",
            "lr=0.006",
            "val_loss=R",
        ],
    );

    let (size, anchored, s) = run("paper", &["--recipe", "paper", "--depth", "1"]);
    assert_eq!(size, Some((256, 1, 8)));
    assert!(!anchored, "{s}");
    has(
        &s,
        &[
            "recipe=Paper",
            "lr=0.0001",
            "val_fraction=0.1",
            "ema_decay=None",
            "predict_time_points=None",
            "aux_weight=0",
            "cfg=2",
            "val_loss=R",
        ],
    );

    let (_, anchored, s) = run("reg", &["--model", "regression", "--hidden", "16"]);
    assert!(!anchored, "{s}");
    has(&s, &["lr=0.003", "anchor=false", "hidden=16"]);

    let bad = Command::new(env!("CARGO_BIN_EXE_rnafm-train"))
        .current_dir(dir)
        .args(["train", "--csv", "ref.csv", "--features", "features"])
        .args([
            "--genes",
            "genes.txt",
            "--out",
            "both",
            "--anchor",
            "--no-anchor",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(!dir.join("both").exists());
}
