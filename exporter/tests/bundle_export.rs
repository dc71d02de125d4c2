//! `rnafm-export` on the official fixture: the bundle opens, its manifest describes the
//! model, its self-test output is reproduced from the bundle's own members, and every graph
//! passes the `onnx` checker (when `.venv` has it).

use std::path::{Path, PathBuf};
use std::process::Command;

use ndarray::Ix2;
use rnafm_exporter::bundle_export::{SELF_TEST_EXPECTED, SELF_TEST_FEATURES};
use rnafm_runtime::bundle::Bundle;
use rnafm_runtime::npy::parse_float_npy;
use rnafm_runtime::ort_env::{DeviceChoice, SessionOptions};
use rnafm_runtime::sampler::SampleParams;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fixture() -> PathBuf {
    root().join("../shared/fixtures/official-small")
}

fn cpu_options() -> SessionOptions {
    SessionOptions {
        device: DeviceChoice::Cpu,
        threads: 1,
    }
}

/// Fixed cluster features [8, 48] (the fixture model's slide input), varied by `step`.
fn fixture_slide(step: f32) -> ndarray::Array2<f32> {
    ndarray::Array2::from_shape_fn((8, 48), |(i, j)| ((i * 48 + j) as f32 * step).sin())
}

/// The official fixture's weights and its model spec with `heads` attention heads.
fn fixture_model(
    heads: usize,
) -> (
    rnafm_runtime::weights::WeightMap,
    rnafm_runtime::model_spec::ModelSpec,
) {
    let f = fixture();
    let w = rnafm_runtime::weights::WeightMap::read_safetensors(&f.join("weights.safetensors"))
        .unwrap();
    let spec = rnafm_official::spec_from_official(
        &w,
        &f.join("weights.safetensors"),
        &f.join("pathways.json"),
        Some(&f.join("genes.txt")),
        heads,
    )
    .unwrap();
    (w, spec)
}

fn export(out: &Path) {
    let f = fixture();
    let st = Command::new(env!("CARGO_BIN_EXE_rnafm-export"))
        .arg("--weights")
        .arg(f.join("weights.safetensors"))
        .arg("--pathways")
        .arg(f.join("pathways.json"))
        .arg("--genes")
        .arg(f.join("genes.txt"))
        .args(["--heads", "4", "-o"])
        .arg(out)
        .status()
        .unwrap();
    assert!(st.success());
}

/// Every graph of `bundle` passes `onnx.checker` (when `.venv` has it).
fn check_onnx(bundle: &Path) {
    let venv = root().join(".venv/bin/python");
    if venv.exists() {
        let st = Command::new(root().join("scripts/check-onnx"))
            .arg(bundle)
            .status()
            .unwrap();
        assert!(st.success(), "onnx checker rejected a graph");
    } else {
        // Locally a missing checker only narrows the test; CI must have it.
        assert!(
            std::env::var_os("CI").is_none(),
            "no onnx checker in .venv: CI runs scripts/setup.sh --check-tools first"
        );
        eprintln!("skipping onnx checker: run scripts/setup.sh --check-tools");
    }
}

/// The bundle's manifest.json exactly as written.
fn raw_manifest(bundle: &Path) -> serde_json::Value {
    let file = std::fs::File::open(bundle).unwrap();
    let mut zip = zip::ZipArchive::new(file).unwrap();
    let entry = zip
        .by_name(rnafm_runtime::bundle_members::MANIFEST)
        .unwrap();
    serde_json::from_reader(entry).unwrap()
}

/// `bundle`'s manifest validates against models/bundle.schema.json, and the schema is strict
/// enough to refuse the same manifest with a wrong type, an unknown field or a missing member
/// list (so a passing check means something).
fn check_schema(bundle: &Path) {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("models/bundle.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema itself is valid");
    let m = raw_manifest(bundle);
    let errors: Vec<String> = validator.iter_errors(&m).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{}: {errors:?}", bundle.display());
    let mut wrong_type = m.clone();
    wrong_type["sampling"]["steps"] = serde_json::json!("twenty");
    let mut unknown = m.clone();
    unknown["surprise"] = serde_json::json!(1);
    let mut no_members = m.clone();
    no_members.as_object_mut().unwrap().remove("members");
    // a calibration with gene groups (rnafm-eval calibrate's default) is valid; a group
    // without its factors is not
    let level = serde_json::json!({"level": 0.9, "factor": 1.2, "coverage_before": 0.8});
    let group = |min: usize, max: Option<usize>| {
        let mut g = serde_json::json!({"min_pathways": min, "genes": 10, "values": 40,
            "levels": [level]});
        if let Some(m) = max {
            g["max_pathways"] = m.into();
        }
        g
    };
    let mut grouped = m.clone();
    grouped["calibration"] = serde_json::json!([{"cfg": 1.0, "steps": 20, "slides": 4,
        "values": 80, "draws": 50, "levels": [level],
        "groups": [group(0, Some(3)), group(4, None)]}]);
    let errors: Vec<String> = validator
        .iter_errors(&grouped)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "grouped calibration: {errors:?}");
    let mut no_factors = grouped.clone();
    no_factors["calibration"][0]["groups"][1]
        .as_object_mut()
        .unwrap()
        .remove("levels");
    for bad in [wrong_type, unknown, no_members, no_factors] {
        assert!(!validator.is_valid(&bad));
    }
}

#[test]
fn exported_bundle_opens_and_reproduces_its_self_test() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("small.rnafm");
    export(&out);
    check_schema(&out);
    let b = Bundle::open(&out).unwrap();
    let m = &b.manifest;
    assert_eq!(m.model.config.hidden, 64);
    assert_eq!(m.model.genes.len(), 600);
    assert_eq!(m.model.pathways.len(), 24);
    assert_eq!((m.slide.clusters, m.slide.feat_dim), (8, 48));
    assert_eq!((m.sampling.steps, m.sampling.cfg), (20, 2.0));
    let st = m.self_test.clone().expect("self-test");
    let origin = Path::new("bundle");
    let features = parse_float_npy(b.member(SELF_TEST_FEATURES).unwrap(), origin, None)
        .unwrap()
        .into_dimensionality::<Ix2>()
        .unwrap();
    let expected = parse_float_npy(b.member(SELF_TEST_EXPECTED).unwrap(), origin, None)
        .unwrap()
        .into_dimensionality::<Ix2>()
        .unwrap();
    assert_eq!(expected.shape(), &[st.samples, 600]);
    let (mut flow, _, _) =
        rnafm_runtime::run::model::load_graphs(origin, cpu_options(), |n| b.member(n)).unwrap();
    assert_eq!(flow.hidden(), 64);
    let params = SampleParams {
        samples: st.samples,
        steps: st.steps,
        cfg: st.cfg,
        seed: st.seed,
        batch: st.samples,
    };
    let got = flow
        .sample(features.view(), 600, &params, &mut || {})
        .unwrap();
    let d = got
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(d <= st.tolerance, "self-test max|diff| {d}");
    // The draws moved away from the noise they started from (a zero velocity would leave
    // them there): the sampler starts sample i from noise(seed, i) (runtime/src/sampler.rs).
    let start = rnafm_runtime::sampler::noise(st.seed, 0, st.samples, 600);
    let moved = expected
        .iter()
        .zip(&start)
        .map(|(a, b)| (a - b).abs())
        .sum::<f32>()
        / expected.len() as f32;
    assert!(moved > 0.1, "mean |draw − starting noise| {moved}");

    // The real graphs (feature-major products, fused attention) give each sample the same
    // numbers whatever the batch or thread count.
    let params = SampleParams {
        samples: 5,
        batch: 5,
        ..params
    };
    let whole = flow
        .sample(features.view(), 600, &params, &mut || {})
        .unwrap();
    for batch in [1, 2, 3] {
        let b = flow
            .sample(
                features.view(),
                600,
                &SampleParams { batch, ..params },
                &mut || {},
            )
            .unwrap();
        assert_eq!(whole, b, "batch {batch}");
    }
    let (mut two, _, _) = rnafm_runtime::run::model::load_graphs(
        origin,
        SessionOptions {
            device: DeviceChoice::Cpu,
            threads: 2,
        },
        |n| b.member(n),
    )
    .unwrap();
    let t2 = two
        .sample(features.view(), 600, &params, &mut || {})
        .unwrap();
    assert_eq!(whole, t2, "2 threads");

    check_onnx(&out);
}

#[test]
fn cli_explains_itself_and_names_bad_input() {
    let exe = env!("CARGO_BIN_EXE_rnafm-export");
    let help = Command::new(exe).arg("--help").output().unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--weights"));
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let o = Command::new(exe)
        .arg("--onnx")
        .arg(&missing)
        .arg("-o")
        .arg(dir.path().join("x.rnafm"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("model.json"), "{err}");
    assert!(!dir.path().join("x.rnafm").exists());
}

/// The trainer's checkpoint folder (model.json + ema.safetensors + metrics.json) exports to
/// the same graphs as the official weights, and metrics land in the provenance.
#[test]
fn checkpoint_folder_exports_with_metrics() {
    let (w, spec) = fixture_model(4);
    let dir = tempfile::tempdir().unwrap();
    let ck = dir.path().join("ck");
    std::fs::create_dir(&ck).unwrap();
    spec.write(&ck.join("model.json")).unwrap();
    w.write_safetensors(&ck.join("ema.safetensors")).unwrap();
    // Foreign JSON as metrics: refused in one line naming the file.
    std::fs::write(ck.join("metrics.json"), r#"{"pearson_mean": 0.42}"#).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_rnafm-export"))
        .arg("--onnx")
        .arg(&ck)
        .arg("-o")
        .arg(dir.path().join("bad.rnafm"))
        .arg("--no-self-test")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("metrics.json") && err.lines().count() == 1,
        "{err}"
    );
    assert!(!dir.path().join("bad.rnafm").exists());
    let g = spec.genes.len();
    let mut gene_r: Vec<f64> = (0..g).map(|i| i as f64 / g as f64).collect();
    gene_r[1] = f64::NAN; // a gene constant in training: no evidence it is predictable
    let metrics = rnafm_runtime::training_metrics::TrainingMetrics {
        folds: vec![],
        pooled: vec![],
        genes: spec.genes.clone(),
        pooled_gene_rmse: vec![1.0; g],
        pooled_gene_r: gene_r.clone(),
        gene_r_without_fold: vec![],
    };
    metrics.write(&ck.join("metrics.json")).unwrap();
    let out = dir.path().join("ck.rnafm");
    let st = Command::new(env!("CARGO_BIN_EXE_rnafm-export"))
        .arg("--onnx")
        .arg(&ck)
        .arg("-o")
        .arg(&out)
        .arg("--no-self-test")
        .status()
        .unwrap();
    assert!(st.success());
    let b = Bundle::open(&out).unwrap();
    assert_eq!(b.manifest.model, spec);
    let prov = b.manifest.provenance.clone().unwrap();
    assert_eq!(prov.metrics.unwrap()["genes"].as_array().unwrap().len(), g);
    let cv_r = b.manifest.cv_r.clone().unwrap();
    assert_eq!((cv_r[0], cv_r[1], cv_r[2]), (0.0, 0.0, gene_r[2] as f32));
    assert!(b.manifest.self_test.is_none());
    check_schema(&out);
    // --raw wants model.safetensors, which this checkpoint lacks: one line naming it.
    let o = Command::new(env!("CARGO_BIN_EXE_rnafm-export"))
        .arg("--onnx")
        .arg(&ck)
        .arg("--raw")
        .arg("-o")
        .arg(dir.path().join("raw.rnafm"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("model.safetensors"));
}

/// `rnafm-export --int8` adds an int8 backbone that passes the ONNX checker, opens with
/// `--precision int8`, and give draws close to the fp32 graphs' from the same noise (close,
/// not equal: the weights and activations of the token-wise linears are rounded to 8 bits).
#[test]
fn int8_graphs_check_and_stay_close_to_fp32() {
    use rnafm_runtime::run::model::{Precision, RunModel};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("small-int8.rnafm");
    let f = fixture();
    let st = Command::new(env!("CARGO_BIN_EXE_rnafm-export"))
        .arg("--weights")
        .arg(f.join("weights.safetensors"))
        .arg("--pathways")
        .arg(f.join("pathways.json"))
        .arg("--genes")
        .arg(f.join("genes.txt"))
        .args(["--heads", "4", "--int8", "-o"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(st.success());
    let names: Vec<String> = Bundle::open(&out)
        .unwrap()
        .member_names()
        .map(str::to_string)
        .collect();
    // Only the backbone has an int8 variant: embed's weights stay float and are not stored
    // twice (the int8 bundle is the fp32 one plus backbone.int8.onnx).
    let int8: Vec<&String> = names.iter().filter(|n| n.contains("int8")).collect();
    assert_eq!(int8, ["backbone.int8.onnx"], "{names:?}");
    let mut fp = RunModel::open_with(&out, cpu_options(), Precision::Fp32).unwrap();
    let mut q = RunModel::open_with(&out, cpu_options(), Precision::Int8).unwrap();
    assert_eq!(q.precision, Precision::Int8);
    let features = fixture_slide(0.37);
    let params = SampleParams {
        samples: 8,
        steps: 20,
        cfg: 2.0,
        seed: 5,
        batch: 8,
    };
    let a = fp
        .graphs
        .sample(features.view(), 600, &params, &mut || {})
        .unwrap();
    let b = q
        .graphs
        .sample(features.view(), 600, &params, &mut || {})
        .unwrap();
    let n = a.len() as f32;
    let mad = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum::<f32>() / n;
    let sd = (a.iter().map(|x| x * x).sum::<f32>() / n).sqrt();
    let (ma, mb) = (a.mean().unwrap(), b.mean().unwrap());
    let cov = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - ma) * (y - mb))
        .sum::<f32>();
    let va = a.iter().map(|x| (x - ma).powi(2)).sum::<f32>();
    let vb = b.iter().map(|y| (y - mb).powi(2)).sum::<f32>();
    let corr = cov / (va * vb).sqrt();
    eprintln!("int8 vs fp32: mean |diff| {mad:.3e} (rms of draws {sd:.3}), corr {corr:.6}");
    assert!(
        a != b,
        "int8 graphs gave the fp32 numbers exactly: not quantised?"
    );
    assert!(
        corr > 0.99 && mad < 0.1 * sd,
        "int8 drifts: corr {corr}, mean |diff| {mad}"
    );

    check_onnx(&out);
    check_schema(&out);
}

/// Features near 1e30 (finite in float32) overflow inside the real network: that slide
/// fails with one line and writes nothing, never an "ok" table of NaN.
#[test]
fn overflowing_features_fail_their_slide() {
    use rnafm_runtime::run::model::{Precision, RunModel};
    use rnafm_runtime::run::pipeline::{RunSettings, Silent, SlidePipeline};
    use rnafm_runtime::slide::options::TileOptions;
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("small.rnafm");
    export(&bundle);
    let opts = cpu_options();
    let model = RunModel::open_with(&bundle, opts, Precision::Fp32).unwrap();
    let params = SampleParams {
        samples: 2,
        steps: 4,
        cfg: 2.0,
        seed: 0,
        batch: 2,
    };
    let settings = RunSettings {
        fpkm: false,
        save_samples: true,
        overwrite: false,
        no_calibration: false,
        tiles: TileOptions::default(),
        tile_batch: 32,
        encoder_path: None,
        maps: None,
    };
    let mut pipeline = SlidePipeline::new(model, None, params, settings);
    let out = dir.path().join("out");
    let big = dir.path().join("big.npy");
    rnafm_runtime::npy::write_npy(&big, &ndarray::Array2::<f32>::from_elem((8, 48), 1e30)).unwrap();
    let rec = pipeline.process_slide(&big, &out, &Silent);
    let err = rec.error.clone().unwrap_or_default();
    assert_eq!(rec.status, "failed", "{rec:?}");
    assert!(
        err.contains("big.npy") && err.contains("not finite"),
        "{err}"
    );
    assert!(!out.join("big.genes.tsv").exists() && !out.join("big.samples.npy").exists());
    // the same pipeline still runs an ordinary slide
    let ok = dir.path().join("ok.npy");
    let f = ndarray::Array2::from_shape_fn((8, 48), |(i, j)| ((i * 48 + j) as f32 * 0.37).sin());
    rnafm_runtime::npy::write_npy(&ok, &f).unwrap();
    assert_eq!(pipeline.process_slide(&ok, &out, &Silent).status, "ok");
    assert!(out.join("ok.genes.tsv").is_file());
}

/// A bundle unpacked into a folder (`unzip model.rnafm -d model/`) runs as the bundle does,
/// with its members checked against the manifest: an altered member is refused by name.
#[test]
fn an_unpacked_bundle_runs_and_is_still_checked() {
    use rnafm_runtime::run::model::{Precision, RunModel};
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("small.rnafm");
    export(&bundle);
    let unpacked = dir.path().join("small");
    zip::ZipArchive::new(std::fs::File::open(&bundle).unwrap())
        .unwrap()
        .extract(&unpacked)
        .unwrap();
    let opts = cpu_options;
    let params = SampleParams {
        samples: 3,
        steps: 5,
        cfg: 2.0,
        seed: 1,
        batch: 3,
    };
    let f = ndarray::Array2::from_shape_fn((8, 48), |(i, j)| ((i * 48 + j) as f32 * 0.37).sin());
    let mut draws = Vec::new();
    for p in [&bundle, &unpacked] {
        let mut m = RunModel::open_with(p, opts(), Precision::Fp32).unwrap();
        assert_eq!(m.genes.len(), 600);
        draws.push(m.graphs.sample(f.view(), 600, &params, &mut || {}).unwrap());
    }
    assert_eq!(draws[0], draws[1]);
    assert!(rnafm_runtime::run::model::describe(&unpacked, false).is_ok());
    // one byte of one member changed
    let member = unpacked.join("heads.onnx");
    let mut bytes = std::fs::read(&member).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&member, bytes).unwrap();
    let e = match RunModel::open_with(&unpacked, opts(), Precision::Fp32) {
        Ok(_) => panic!("an altered member was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("heads.onnx") && e.contains("corrupt"), "{e}");
    // The same byte changed inside the zip, where the graphs are read through a memory map
    // and each is hashed when its session is due.
    let start = {
        let mut z = zip::ZipArchive::new(std::fs::File::open(&bundle).unwrap()).unwrap();
        let i = z.index_for_name("heads.onnx").unwrap();
        let f = z.by_index_raw(i).unwrap();
        (f.data_start().unwrap() + f.size() - 1) as usize
    };
    let mut zipped = std::fs::read(&bundle).unwrap();
    zipped[start] ^= 1;
    std::fs::write(&bundle, zipped).unwrap();
    let e = match RunModel::open_with(&bundle, opts(), Precision::Fp32) {
        Ok(_) => panic!("an altered member was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("small.rnafm") && e.contains("heads.onnx") && e.contains("corrupt"),
        "{e}"
    );
}

/// A trainer checkpoint folder of the official fixture's model, every weight scaled by
/// `scale` (1.0: the fixture itself), with `heads` attention heads in its spec and a
/// per-gene normalisation that depends on `scale` (as each fold has its own).
fn fixture_checkpoint(dir: &Path, scale: f32, heads: usize) -> PathBuf {
    let (mut w, spec) = fixture_model(heads);
    for t in w.tensors.values_mut() {
        t.data.iter_mut().for_each(|v| *v *= scale);
    }
    let mut spec = spec;
    let g = spec.genes.len();
    spec.normalization = Some(rnafm_runtime::normalization::Normalization {
        mean: (0..g)
            .map(|i| 3.0 * scale + (i % 11) as f32 * 0.1)
            .collect(),
        sd: (0..g)
            .map(|i| scale * (0.5 + (i % 7) as f32 * 0.2))
            .collect(),
    });
    std::fs::create_dir_all(dir).unwrap();
    spec.write(&dir.join("model.json")).unwrap();
    w.write_safetensors(&dir.join("ema.safetensors")).unwrap();
    dir.to_path_buf()
}

/// A bundle's draws of the fixture's 600 genes for one slide, in log2 units (model 0's
/// normalisation), after its self-test passed.
fn log2_draws(
    path: &Path,
    features: &ndarray::Array2<f32>,
    params: &SampleParams,
) -> ndarray::Array2<f32> {
    let mut m = rnafm_runtime::run::model::RunModel::open(path, cpu_options()).unwrap();
    let st = m.self_test().unwrap();
    assert!(st.passed, "{}: self-test {st:?}", path.display());
    let mut z = m
        .graphs
        .sample(features.view(), 600, params, &mut || {})
        .unwrap();
    let n = m.normalization.clone().unwrap();
    for mut row in z.rows_mut() {
        for (g, v) in row.iter_mut().enumerate() {
            *v = n.from_z(g, *v);
        }
    }
    z
}

/// Exporting `cks` to `out` fails with one line that contains `needle`, and writes nothing.
fn refused_in_one_line(cks: &[&Path], out: &Path, needle: &str) {
    let o = export_checkpoints(cks, out);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.lines().count() == 1 && err.contains(needle),
        "{err}"
    );
    assert!(!out.exists());
}

fn export_checkpoints(cks: &[&Path], out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rnafm-export"))
        .arg("--onnx")
        .args(cks)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap()
}

/// `rnafm-export --onnx A B` puts both models in one bundle; rnafm-run splits a slide's draws
/// between them in blocks of the one noise stream (the first draws are A's own, the rest
/// B's own), the self-test covers both, and models that differ are refused in one line.
#[test]
fn fold_ensemble_splits_draws_between_its_models() {
    let dir = tempfile::tempdir().unwrap();
    let a = fixture_checkpoint(&dir.path().join("a"), 1.0, 4);
    let b = fixture_checkpoint(&dir.path().join("b"), 1.05, 4);
    let (ab, one_a, one_b) = (
        dir.path().join("ab.rnafm"),
        dir.path().join("a.rnafm"),
        dir.path().join("b.rnafm"),
    );
    for (cks, out) in [
        (vec![&*a, &*b], &ab),
        (vec![&*a], &one_a),
        (vec![&*b], &one_b),
    ] {
        let o = export_checkpoints(&cks, out);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let bundle = Bundle::open(&ab).unwrap();
    assert_eq!(bundle.manifest.models(), 2);
    assert!(bundle.member("ensemble/1/backbone.onnx").is_ok());
    assert!(bundle.member("ensemble/1/null_slide_emb.npy").is_ok());
    let b_norm = Bundle::open(&one_b).unwrap().manifest.model.normalization;
    assert_eq!(bundle.manifest.ensemble[0].normalization, b_norm);
    assert_ne!(bundle.manifest.model.normalization, b_norm);
    // A one-model bundle does not mention the field (older runtimes read it unchanged).
    assert!(raw_manifest(&one_a).get("ensemble").is_none());
    check_schema(&ab);

    let features = fixture_slide(0.21);
    let params = SampleParams {
        samples: 5,
        steps: 8,
        cfg: 2.0,
        seed: 3,
        batch: 8,
    };
    // Draws in log2 units: each model's z through its own normalisation (the ensemble's
    // draws are in model 0's z-scale).
    let draw = |path: &Path| log2_draws(path, &features, &params);
    let (e, da, db) = (draw(&ab), draw(&one_a), draw(&one_b));
    let close = |x: ndarray::ArrayView2<f32>, y: ndarray::ArrayView2<f32>| {
        x.iter().zip(y).all(|(p, q)| (p - q).abs() < 1e-4)
    };
    use ndarray::s;
    assert!(close(e.slice(s![..3, ..]), da.slice(s![..3, ..])));
    assert!(close(e.slice(s![3.., ..]), db.slice(s![3.., ..])));
    assert!(
        !close(e.slice(s![3.., ..]), da.slice(s![3.., ..])),
        "model B was not used"
    );

    let text = rnafm_runtime::run::model::describe(&ab, false).unwrap();
    assert!(text.contains("fold ensemble: 2 models"), "{text}");

    // A model with other sizes is not a fold of the same model: one line, no bundle.
    let c = fixture_checkpoint(&dir.path().join("c"), 1.0, 2);
    refused_in_one_line(&[&a, &c], &dir.path().join("bad.rnafm"), "differs");
}

/// A mean anchor for the fixture's model (48 features, 600 genes), varied by `step`.
fn fixture_anchor(step: f32) -> rnafm_runtime::anchor::Anchor {
    use ndarray::{Array1, Array2};
    rnafm_runtime::anchor::Anchor {
        center: Array1::from_shape_fn(48, |j| (j as f32 * step).cos() * 0.1),
        weight: Array2::from_shape_fn((48, 600), |(j, g)| {
            ((j * 600 + g) as f32 * step).sin() * 0.2
        }),
        bias: Array1::from_shape_fn(600, |g| (g as f32 * step).cos()),
    }
}

/// Checkpoints trained with `--anchor` carry `anchor.safetensors`: the exporter puts each
/// model's anchor in the bundle, marks the manifest (so that an older rnafm-run refuses it
/// instead of sampling residuals alone) and makes guidance 1 the default; rnafm-run adds each
/// model's anchor to that model's draws, and nothing else changes. An ensemble that mixes
/// anchored and plain checkpoints is refused in one line.
#[test]
fn anchored_models_add_their_anchor_to_every_draw() {
    use rnafm_runtime::anchor::ANCHOR_FILE;
    let dir = tempfile::tempdir().unwrap();
    let a = fixture_checkpoint(&dir.path().join("a"), 1.0, 4);
    let b = fixture_checkpoint(&dir.path().join("b"), 1.05, 4);
    let (aa, ba) = (dir.path().join("aa"), dir.path().join("ba"));
    for (from, to, step) in [(&a, &aa, 0.37f32), (&b, &ba, 0.53)] {
        std::fs::create_dir_all(to).unwrap();
        for f in ["model.json", "ema.safetensors"] {
            std::fs::copy(from.join(f), to.join(f)).unwrap();
        }
        fixture_anchor(step).write(&to.join(ANCHOR_FILE)).unwrap();
    }
    let (plain, anchored) = (
        dir.path().join("plain.rnafm"),
        dir.path().join("anchored.rnafm"),
    );
    for (cks, out) in [(vec![&*a, &*b], &plain), (vec![&*aa, &*ba], &anchored)] {
        let o = export_checkpoints(&cks, out);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let m = raw_manifest(&anchored);
    assert_eq!(m["anchor"], "ridge-cluster-mean");
    assert_eq!(m["sampling"]["cfg"], 1.0);
    assert!(raw_manifest(&plain).get("anchor").is_none());
    check_schema(&anchored);
    let bundle = Bundle::open(&anchored).unwrap();
    assert!(bundle.member(ANCHOR_FILE).is_ok());
    assert!(bundle.member("ensemble/1/anchor.safetensors").is_ok());

    let features = fixture_slide(0.13);
    let params = SampleParams {
        samples: 4,
        steps: 6,
        cfg: 2.0,
        seed: 5,
        batch: 4,
    };
    let draw = |path: &Path| log2_draws(path, &features, &params);
    let (with, without) = (draw(&anchored), draw(&plain));
    let sd = |ck: &Path| {
        rnafm_runtime::model_spec::ModelSpec::read(&ck.join("model.json"))
            .unwrap()
            .normalization
            .unwrap()
            .sd
    };
    // Draws 0-1 are model A's, 2-3 model B's: each moved by its own anchor (z units × its sd).
    for (rows, step, ck) in [(0..2, 0.37f32, &a), (2..4, 0.53, &b)] {
        let shift = fixture_anchor(step).predict(features.view());
        let sd = sd(ck);
        for r in rows {
            for g in 0..600 {
                let want = shift[g] * sd[g];
                let got = with[[r, g]] - without[[r, g]];
                assert!(
                    (got - want).abs() < 1e-3 * (1.0 + want.abs()),
                    "draw {r} gene {g}: moved {got}, anchor {want}"
                );
            }
        }
    }

    let text = rnafm_runtime::run::model::describe(&anchored, false).unwrap();
    assert!(text.contains("mean anchor"), "{text}");
    assert!(
        !rnafm_runtime::run::model::describe(&plain, false)
            .unwrap()
            .contains("mean anchor")
    );

    refused_in_one_line(&[&aa, &b], &dir.path().join("mixed.rnafm"), "mean anchor");
}
