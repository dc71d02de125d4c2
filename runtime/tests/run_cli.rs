//! `rnafm-run` end to end on an unpacked toy model (see `common`): output files and their
//! content, determinism across batch size and threads, skipping and overwriting, sharding,
//! and the one-line errors and exit codes for bad slides and bad usage.

mod common;

use common::read_tsv;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ndarray::Array2;

const P: usize = 2;
const H: usize = 4;
const K: usize = 3;

fn bin() -> Command {
    common::rnafm_run()
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    model: String,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    common::write_toy_model_dir(&root.join("model"), P, H, K);
    let slides = root.join("slides");
    std::fs::create_dir_all(&slides).unwrap();
    let a = Array2::from_shape_fn((K, H), |(k, d)| (k as f32 - d as f32) * 0.3);
    rnafm_runtime::npy::write_npy(&slides.join("a.npy"), &a).unwrap();
    // 10 tiles: clustered into K first.
    let tiles = Array2::from_shape_fn((10, H), |(n, d)| ((n * H + d) as f32 * 0.7).sin());
    rnafm_runtime::npy::write_npy(&slides.join("b.npy"), &tiles).unwrap();
    let model = root.join("model").display().to_string();
    Setup {
        _tmp: tmp,
        root,
        model,
    }
}

#[test]
fn writes_parseable_outputs_deterministically() {
    let s = setup();
    let slides = s.root.join("slides").display().to_string();
    let out1 = s.root.join("out1").display().to_string();
    let o = run(&[
        &slides,
        "--model",
        &s.model,
        "--samples",
        "9",
        "--steps",
        "6",
        "--out",
        &out1,
        "--save-samples",
        "--batch",
        "4",
        "--threads",
        "1",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let genes = read_tsv(&Path::new(&out1).join("a.genes.tsv"));
    assert_eq!(
        genes[0][..8],
        ["gene", "mean", "sd", "median", "q05", "q25", "q75", "q95"]
    );
    assert_eq!(genes.len(), 1 + P * H);
    for row in &genes[1..] {
        let v: Vec<f32> = row[1..].iter().map(|x| x.parse().unwrap()).collect();
        assert!(v.iter().all(|x| x.is_finite()));
        // q05 <= q25 <= median <= q75 <= q95, sd > 0 for a generative model.
        assert!(
            v[3] <= v[4] && v[4] <= v[2] && v[2] <= v[5] && v[5] <= v[6],
            "{row:?}"
        );
        assert!(v[1] > 0.0);
    }
    let pw = read_tsv(&Path::new(&out1).join("a.pathways.tsv"));
    assert_eq!(pw.len(), 1 + P);
    assert_eq!(pw[1][0], "PATHWAY_0");
    let samples: Array2<f32> =
        rnafm_runtime::npy::read_float_array(&Path::new(&out1).join("a.samples.npy"), None)
            .unwrap()
            .into_dimensionality()
            .unwrap();
    assert_eq!(samples.dim(), (9, P * H));
    let mean0: f32 = samples.column(0).mean().unwrap();
    assert!((mean0 - genes[1][1].parse::<f32>().unwrap()).abs() < 1e-4);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(&out1).join("run.json")).unwrap())
            .unwrap();
    assert_eq!(report["device"], "cpu");
    // The load's profile: every graph and the null embedding, each hashed (bundles) and
    // given a session.
    let loaded: Vec<&str> = report["load"]["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["member"].as_str().unwrap())
        .collect();
    for g in rnafm_runtime::bundle_members::FOLDER_MEMBERS {
        assert!(loaded.contains(&g), "{g} not in {loaded:?}");
    }
    assert!(report["load"]["members"][0]["session_s"].as_f64().unwrap() > 0.0);
    assert_eq!(report["slides"].as_array().unwrap().len(), 2);
    assert_eq!(report["slides"][1]["tiles"], 10);
    assert_eq!(report["slides"][0]["status"], "ok");

    // Same seed, other batch size and threads: identical files.
    let out2 = s.root.join("out2").display().to_string();
    let o = run(&[
        &slides,
        "--model",
        &s.model,
        "--samples",
        "9",
        "--steps",
        "6",
        "--out",
        &out2,
        "--save-samples",
        "--batch",
        "1",
        "--threads",
        "2",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    for f in [
        "a.genes.tsv",
        "a.pathways.tsv",
        "a.samples.npy",
        "b.genes.tsv",
    ] {
        assert_eq!(
            std::fs::read(Path::new(&out1).join(f)).unwrap(),
            std::fs::read(Path::new(&out2).join(f)).unwrap(),
            "{f}"
        );
    }
    // Another seed changes them; --fpkm reports 2^x − 1.
    let out3 = s.root.join("out3").display().to_string();
    let a = s.root.join("slides/a.npy").display().to_string();
    let o = run(&[
        &a,
        "--model",
        &s.model,
        "--samples",
        "9",
        "--steps",
        "6",
        "--out",
        &out3,
        "--seed",
        "5",
        "--fpkm",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let g3 = read_tsv(&Path::new(&out3).join("a.genes.tsv"));
    assert_ne!(g3[1][3], genes[1][3]);
    let med_log: f32 = genes[1][3].parse().unwrap();
    let med_fpkm: f32 = g3[1][3].parse().unwrap();
    assert!(med_fpkm > 0.0 && (med_fpkm + 1.0).log2() > med_log - 3.0);
}

#[test]
fn skips_existing_unless_overwrite_and_shards() {
    let s = setup();
    let slides = s.root.join("slides").display().to_string();
    let out = s.root.join("out").display().to_string();
    let args = |extra: &[&str]| {
        let mut v = vec![
            slides.clone(),
            "--model".into(),
            s.model.clone(),
            "--samples".into(),
            "3".into(),
            "--steps".into(),
            "3".into(),
            "--out".into(),
            out.clone(),
            "--format".into(),
            "json".into(),
        ];
        v.extend(extra.iter().map(|x| x.to_string()));
        v
    };
    let status_of = |o: &Output| -> Vec<String> {
        let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        r["slides"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["status"].as_str().unwrap().to_string())
            .collect()
    };
    let o = bin().args(args(&["--shard", "1/2"])).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(status_of(&o), ["ok"]);
    assert!(Path::new(&out).join("b.genes.tsv").is_file());
    assert!(!Path::new(&out).join("a.genes.tsv").exists());
    let o = bin().args(args(&[])).output().unwrap();
    assert_eq!(status_of(&o), ["ok", "skipped"]);
    let o = bin().args(args(&["--overwrite"])).output().unwrap();
    assert_eq!(status_of(&o), ["ok", "ok"]);
}

#[test]
fn bad_slides_fail_alone_with_one_line_errors() {
    let s = setup();
    let dir = s.root.join("slides");
    let write = |name: &str, a: Array2<f32>| {
        rnafm_runtime::npy::write_npy(&dir.join(name), &a).unwrap();
        dir.join(name).display().to_string()
    };
    let wrong_dim = write("wrong_dim.npy", Array2::zeros((K, H + 1)));
    let mut nan = Array2::zeros((K, H));
    nan[[1, 2]] = f32::NAN;
    let nan = write("nan.npy", nan);
    let few = write("few.npy", Array2::zeros((K - 1, H)));
    let junk = dir.join("junk.npy");
    std::fs::write(&junk, b"not numpy").unwrap();
    let junk = junk.display().to_string();
    let good = dir.join("a.npy").display().to_string();
    let out = s.root.join("out").display().to_string();
    let o = run(&[
        &wrong_dim,
        &nan,
        &few,
        &junk,
        &good,
        "--model",
        &s.model,
        "--samples",
        "2",
        "--steps",
        "3",
        "--out",
        &out,
        "--quiet",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains(".npy")).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("wrong_dim.npy") && l.contains("dimensional")),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("nan.npy") && l.contains("non-finite")),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("few.npy") && l.contains("fewer")),
        "{err}"
    );
    assert!(lines.iter().any(|l| l.contains("junk.npy")), "{err}");
    assert!(
        Path::new(&out).join("a.genes.tsv").is_file(),
        "the good slide still runs"
    );
    assert!(!Path::new(&out).join("nan.genes.tsv").exists());
}

#[test]
fn usage_and_model_errors() {
    let s = setup();
    let a = s.root.join("slides/a.npy").display().to_string();
    // No slides, bad shard, bad device: usage errors, exit 2.
    assert_eq!(run(&["--model", &s.model]).status.code(), Some(2));
    assert_eq!(
        run(&[&a, "--model", &s.model, "--shard", "2/2"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        run(&[&a, "--model", &s.model, "--device", "tpu"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(run(&[&a]).status.code(), Some(2), "--model is required");
    // Missing model: one line naming it, exit 1.
    let o = run(&[&a, "--model", "/nonexistent/m.rnafm"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("/nonexistent/m.rnafm"),
        "{}",
        stderr(&o)
    );
    assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
    // --device cuda never falls back silently: it runs on CUDA or says why not.
    let out = s.root.join("cuda").display().to_string();
    let o = run(&[
        &a,
        "--model",
        &s.model,
        "--device",
        "cuda",
        "--samples",
        "2",
        "--out",
        &out,
    ]);
    if o.status.success() {
        let r = std::fs::read_to_string(Path::new(&out).join("run.json")).unwrap();
        assert!(r.contains("\"device\": \"cuda\""), "{r}");
    } else {
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("cuda"), "{}", stderr(&o));
        assert_eq!(stderr(&o).trim().lines().count(), 1, "{}", stderr(&o));
        assert!(!Path::new(&out).exists(), "no output for a refused device");
        // …while auto falls back to the CPU: silently without a GPU, with exactly one
        // warning when a GPU is there but this ONNX Runtime cannot use it.
        let out = s.root.join("auto").display().to_string();
        let o = run(&[
            &a,
            "--model",
            &s.model,
            "--device",
            "auto",
            "--samples",
            "2",
            "--out",
            &out,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let r = std::fs::read_to_string(Path::new(&out).join("run.json")).unwrap();
        assert!(r.contains("\"device\": \"cpu\""), "{r}");
        let err = stderr(&o);
        let warnings = err
            .lines()
            .filter(|l| l.contains("WARN") && l.contains("GPU"))
            .count();
        let expected = usize::from(rnafm_runtime::ort_env::nvidia_driver_present());
        assert_eq!(warnings, expected, "{err}");
    }
    // --version, --help and inspect work.
    assert!(run(&["--version"]).status.success());
    let help = run(&["--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("genes.tsv"));
    let o = run(&["inspect", &s.model]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains(&format!("{} genes", P * H)) && text.contains("2 pathway tokens"),
        "{text}"
    );
}

#[test]
fn reliability_column_and_input_shift_warning() {
    let s = setup();
    let model = Path::new(&s.model);
    // Training features centred at 100 with sd 1: the test slides (|x| < 2) are ~100 sd away.
    let stats = Array2::from_shape_fn((2, H), |(r, _)| if r == 0 { 100.0 } else { 1.0 });
    rnafm_runtime::npy::write_npy(&model.join("feature_stats.npy"), &stats).unwrap();
    let cv = ndarray::Array1::from_shape_fn(P * H, |g| g as f32 / 10.0);
    rnafm_runtime::npy::write_npy(&model.join("cv_r.npy"), &cv).unwrap();
    let a = s.root.join("slides/a.npy").display().to_string();
    let out = s.root.join("out").display().to_string();
    let o = run(&[
        &a,
        "--model",
        &s.model,
        "--samples",
        "2",
        "--steps",
        "3",
        "--out",
        &out,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("far from the training slides"),
        "{}",
        stderr(&o)
    );
    let genes = read_tsv(&Path::new(&out).join("a.genes.tsv"));
    assert_eq!(genes[0].last().map(String::as_str), Some("cv_r"));
    assert_eq!(genes[3].last().unwrap().parse::<f32>().unwrap(), 0.2);
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(&out).join("run.json")).unwrap())
            .unwrap();
    assert!(r["slides"][0]["input_shift_mean_abs_z"].as_f64().unwrap() > 90.0);
    // Statistics of the wrong width are rejected with the file named.
    rnafm_runtime::npy::write_npy(
        &model.join("feature_stats.npy"),
        &Array2::<f32>::zeros((2, H + 1)),
    )
    .unwrap();
    let o = run(&[&a, "--model", &s.model, "--out", &out, "--overwrite"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("feature_stats.npy"), "{}", stderr(&o));
}

/// Packs the toy model folder into a `.rnafm` bundle with a self-test whose expected output
/// is `expected_shift` away from what the sampler computes in-process.
fn write_toy_bundle(s: &Setup, path: &Path, expected_shift: f32) {
    write_toy_bundle_without(s, path, expected_shift, None)
}

/// [`write_toy_bundle`] without member `skip` (a bundle from an older exporter, say).
fn write_toy_bundle_without(s: &Setup, path: &Path, expected_shift: f32, skip: Option<&str>) {
    use rnafm_runtime::bundle::BundleWriter;
    use rnafm_runtime::manifest::{
        FeatureStats, Manifest, SCHEMA_VERSION, SamplingDefaults, SelfTest, SlideContract,
    };
    use rnafm_runtime::run::model::RunModel;
    let dir = Path::new(&s.model);
    let spec = rnafm_runtime::model_spec::ModelSpec::read(&dir.join("model.json")).unwrap();
    let features = Array2::from_shape_fn((K, H), |(k, d)| (k + d) as f32 * 0.1);
    let mut model = RunModel::open(dir, Default::default()).unwrap();
    let params = rnafm_runtime::sampler::SampleParams {
        samples: 2,
        steps: 4,
        cfg: 2.0,
        seed: 0,
        batch: 2,
    };
    let expected = model
        .graphs
        .sample(features.view(), P * H, &params, &mut || {})
        .unwrap()
        + expected_shift;
    let npy = |a: &Array2<f32>| {
        let p = s.root.join("tmp.npy");
        rnafm_runtime::npy::write_npy(&p, a).unwrap();
        std::fs::read(&p).unwrap()
    };
    let manifest = Manifest {
        schema_version: SCHEMA_VERSION,
        model: spec,
        slide: SlideContract {
            clusters: K,
            feat_dim: H,
            encoder: "toy".into(),
            microns_per_pixel: 0.5,
            tile_size: 224,
        },
        sampling: SamplingDefaults::default(),
        feature_stats: Some(FeatureStats {
            mean: vec![0.0; H],
            sd: vec![1.0; H],
        }),
        cv_r: None,
        provenance: None,
        calibration: None,
        members: Default::default(),
        self_test: Some(SelfTest {
            features: "self_test/features.npy".into(),
            seed: 0,
            samples: 2,
            steps: 4,
            cfg: 2.0,
            expected: "self_test/expected.npy".into(),
            tolerance: 1e-4,
        }),
        ensemble: Vec::new(),
        anchor: None,
    };
    let mut w = BundleWriter::new(manifest);
    for name in [
        "condition.onnx",
        "modulation.onnx",
        "embed.onnx",
        "backbone.onnx",
        "heads.onnx",
        "null_slide_emb.npy",
    ] {
        if Some(name) != skip {
            w.add(name, std::fs::read(dir.join(name)).unwrap()).unwrap();
        }
    }
    w.add("self_test/features.npy", npy(&features)).unwrap();
    w.add("self_test/expected.npy", npy(&expected)).unwrap();
    w.write(path).unwrap();
}

#[test]
fn bundle_runs_self_tests_and_inspects() {
    let s = setup();
    let good = s.root.join("good.rnafm");
    write_toy_bundle(&s, &good, 0.0);
    let good = good.display().to_string();
    let o = run(&["--self-test", "--model", &good]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("PASS"));
    // A bundle from before the modulation graph: one line saying to export it again.
    let old = s.root.join("old.rnafm");
    write_toy_bundle_without(&s, &old, 0.0, Some("modulation.onnx"));
    let a = s.root.join("slides/a.npy").display().to_string();
    let out_old = s.root.join("o_old");
    let o = run(&[
        &a,
        "--model",
        &old.display().to_string(),
        "--out",
        &out_old.display().to_string(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("old.rnafm") && e.contains("modulation.onnx") && e.contains("export it again"),
        "{e}"
    );
    assert!(!out_old.join("a.genes.tsv").exists());
    let bad = s.root.join("bad.rnafm");
    write_toy_bundle(&s, &bad, 0.01);
    let o = run(&[
        "--self-test",
        "--model",
        &bad.display().to_string(),
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["passed"], false);
    assert!((r["max_abs_diff"].as_f64().unwrap() - 0.01).abs() < 1e-3);
    // The bundle runs slides like the folder does, with the same numbers.
    let a = s.root.join("slides/a.npy").display().to_string();
    let out_b = s.root.join("ob").display().to_string();
    let out_d = s.root.join("od").display().to_string();
    for (m, out) in [(&good, &out_b), (&s.model, &out_d)] {
        let o = run(&[
            &a,
            "--model",
            m,
            "--samples",
            "3",
            "--steps",
            "4",
            "--out",
            out,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert_eq!(
        std::fs::read(Path::new(&out_b).join("a.genes.tsv")).unwrap(),
        std::fs::read(Path::new(&out_d).join("a.genes.tsv")).unwrap()
    );
    let rb = std::fs::read_to_string(Path::new(&out_b).join("run.json")).unwrap();
    assert!(rb.contains("input_shift_mean_abs_z"), "{rb}");
    let o = run(&["inspect", &good]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && text.contains("encoder toy") && text.contains("self-test: yes"),
        "{text}"
    );
    // A corrupt bundle: one line naming it, exit 1.
    let junk = s.root.join("junk.rnafm");
    std::fs::write(&junk, b"PK not really").unwrap();
    let o = run(&[&a, "--model", &junk.display().to_string()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("junk.rnafm"), "{}", stderr(&o));
}
