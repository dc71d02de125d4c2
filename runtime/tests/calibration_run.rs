//! `rnafm-run` with a bundle that carries interval calibration: the matching calibration
//! stretches every interval by its stored factor around the unchanged median, run.json says
//! so, `--no-calibration` and a guidance without calibration leave the draws as they are.

mod common;

use std::path::Path;
use std::process::Command;

use ndarray::Array2;
use rnafm_runtime::calibration::{Calibration, LevelFactor};

const P: usize = 2;
const H: usize = 4;
const K: usize = 3;

fn calibration(cfg: f32, factor: f64) -> Calibration {
    Calibration {
        cfg,
        steps: 20,
        levels: [0.5, 0.8, 0.9]
            .iter()
            .map(|&level| LevelFactor {
                level,
                factor,
                coverage_before: 0.5,
            })
            .collect(),
        slides: 4,
        values: 32,
        fitted_on: Some("test".into()),
        draws: None,
        groups: Vec::new(),
        anchor_loo: false,
    }
}

fn write_bundle(model_dir: &Path, path: &Path, cals: Vec<Calibration>) {
    use rnafm_runtime::bundle::BundleWriter;
    use rnafm_runtime::manifest::{Manifest, SCHEMA_VERSION, SamplingDefaults, SlideContract};
    let spec = rnafm_runtime::model_spec::ModelSpec::read(&model_dir.join("model.json")).unwrap();
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
        feature_stats: None,
        cv_r: None,
        provenance: None,
        calibration: Some(cals),
        members: Default::default(),
        self_test: None,
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
        w.add(name, std::fs::read(model_dir.join(name)).unwrap())
            .unwrap();
    }
    w.write(path).unwrap();
}

/// Per gene (median, q95 − q05, q75 − q25) from a genes.tsv.
fn intervals(path: &Path) -> Vec<(f64, f64, f64)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let col = |n: &str| head.iter().position(|h| *h == n).unwrap();
    let (med, q05, q25, q75, q95) = (
        col("median"),
        col("q05"),
        col("q25"),
        col("q75"),
        col("q95"),
    );
    lines
        .map(|l| {
            let f: Vec<f64> = l.split('\t').skip(1).map(|v| v.parse().unwrap()).collect();
            // columns after the gene name
            let g = |i: usize| f[i - 1];
            (g(med), g(q95) - g(q05), g(q75) - g(q25))
        })
        .collect()
}

/// rnafm-run, with the repository's ONNX Runtime unless ORT_DYLIB_PATH names one.
fn rnafm_run() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rnafm-run"));
    if std::env::var_os("ORT_DYLIB_PATH").is_none() {
        c.env(
            "ORT_DYLIB_PATH",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ort/libonnxruntime.so"),
        );
    }
    c
}

fn run(bundle: &Path, slide: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let o = rnafm_run()
        .arg(slide)
        .arg("--model")
        .arg(bundle)
        .args(["--samples", "41", "--quiet", "--out"])
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap()
}

#[test]
fn calibration_scales_interval_widths_by_the_stored_factor() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    common::write_toy_model_dir(&root.join("model"), P, H, K);
    let bundle = root.join("m.rnafm");
    write_bundle(
        &root.join("model"),
        &bundle,
        vec![
            // fitted on as many draws as run() makes; guidance 3's on more (no record
            // would mean a calibration written before the count was kept)
            Calibration {
                draws: Some(41),
                ..calibration(2.0, 1.5)
            },
            Calibration {
                draws: Some(100),
                ..calibration(3.0, 0.5)
            },
        ],
    );
    let slide = root.join("s.npy");
    let a = Array2::from_shape_fn((K, H), |(k, d)| (k as f32 - d as f32) * 0.3);
    rnafm_runtime::npy::write_npy(&slide, &a).unwrap();

    let cal = run(&bundle, &slide, &root.join("cal"), &[]);
    let raw = run(&bundle, &slide, &root.join("raw"), &["--no-calibration"]);
    assert_eq!(cal["calibration"]["applied"], true);
    assert!(cal["calibration"].get("warning").is_none(), "{cal}");
    assert_eq!(
        cal["calibration"]["calibration"]["levels"][2]["factor"],
        1.5
    );
    assert_eq!(raw["calibration"]["applied"], false);
    assert!(
        raw["calibration"]["reason"]
            .as_str()
            .unwrap()
            .contains("--no-calibration")
    );
    let c = intervals(&root.join("cal/s.genes.tsv"));
    let r = intervals(&root.join("raw/s.genes.tsv"));
    assert_eq!(c.len(), P * H);
    let mut checked = 0;
    for ((cm, c90, c50), (rm, r90, r50)) in c.iter().zip(&r) {
        assert!((cm - rm).abs() < 1e-4, "median moved: {cm} vs {rm}");
        if *r90 > 1e-4 && *r50 > 1e-4 {
            assert!((c90 / r90 - 1.5).abs() < 1e-3, "90%: {c90} / {r90}");
            assert!((c50 / r50 - 1.5).abs() < 1e-3, "50%: {c50} / {r50}");
            checked += 1;
        }
    }
    assert!(checked > 0, "toy draws have no spread");

    // Guidance 3 has its own factor (0.5); guidance 2.5 has none: draws left as they are.
    let c3 = run(&bundle, &slide, &root.join("c3"), &["--cfg", "3"]);
    assert_eq!(c3["calibration"]["calibration"]["cfg"], 3.0);
    // Fitted on 100 draws, applied to 41: said in run.json (and logged).
    let w = c3["calibration"]["warning"].as_str().unwrap();
    assert!(
        w.contains("calibrated on 100 draws per slide and this run makes 41")
            && w.contains("too narrow"),
        "{w}"
    );
    let r3 = run(
        &bundle,
        &slide,
        &root.join("r3"),
        &["--cfg", "3", "--no-calibration"],
    );
    assert_eq!(r3["calibration"]["applied"], false);
    for ((_, c90, _), (_, r90, _)) in intervals(&root.join("c3/s.genes.tsv"))
        .iter()
        .zip(&intervals(&root.join("r3/s.genes.tsv")))
    {
        if *r90 > 1e-4 {
            assert!((c90 / r90 - 0.5).abs() < 1e-3, "{c90} / {r90}");
        }
    }
    let none = run(&bundle, &slide, &root.join("none"), &["--cfg", "2.5"]);
    assert_eq!(none["calibration"]["applied"], false);
    assert!(
        none["calibration"]["reason"]
            .as_str()
            .unwrap()
            .contains("no calibration for guidance 2.5")
    );
}

/// A calibration with gene groups: each gene is stretched by its group's factor, found
/// from the model's own pathways (every toy gene is in one pathway token, so 2.0 applies,
/// not the background group's 3.0 nor the all-genes 1.5).
#[test]
fn grouped_calibration_stretches_each_gene_by_its_groups_factor() {
    use rnafm_runtime::calibration::GeneGroup;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    common::write_toy_model_dir(&root.join("model"), P, H, K);
    let spec = rnafm_runtime::model_spec::ModelSpec::read(&root.join("model/model.json")).unwrap();
    assert!(spec.pathways.pathway_counts().iter().all(|&n| n == 1));
    let group = |min_pathways, max_pathways, factor| GeneGroup {
        min_pathways,
        max_pathways,
        genes: if min_pathways == 0 { 0 } else { P * H },
        values: 4,
        levels: calibration(2.0, factor).levels,
    };
    let bundle = root.join("m.rnafm");
    write_bundle(
        &root.join("model"),
        &bundle,
        vec![Calibration {
            groups: vec![group(0, Some(0), 3.0), group(1, None, 2.0)],
            ..calibration(2.0, 1.5)
        }],
    );
    let slide = root.join("s.npy");
    let a = Array2::from_shape_fn((K, H), |(k, d)| (k as f32 + d as f32) * 0.2);
    rnafm_runtime::npy::write_npy(&slide, &a).unwrap();
    let cal = run(&bundle, &slide, &root.join("cal"), &[]);
    run(&bundle, &slide, &root.join("raw"), &["--no-calibration"]);
    assert_eq!(
        cal["calibration"]["calibration"]["groups"][1]["min_pathways"],
        1
    );
    let mut checked = 0;
    for ((cm, c90, _), (rm, r90, _)) in intervals(&root.join("cal/s.genes.tsv"))
        .iter()
        .zip(&intervals(&root.join("raw/s.genes.tsv")))
    {
        assert!((cm - rm).abs() < 1e-4, "median moved: {cm} vs {rm}");
        if *r90 > 1e-4 {
            assert!((c90 / r90 - 2.0).abs() < 1e-3, "90%: {c90} / {r90}");
            checked += 1;
        }
    }
    assert!(checked > 0, "toy draws have no spread");
    // run.json names the model by its absolute path even when it was given relative, so
    // that `rnafm-eval calibrate` finds it (for the genes' pathways) from any folder
    let o = rnafm_run()
        .current_dir(root)
        .args([
            "s.npy",
            "--model",
            "m.rnafm",
            "--samples",
            "3",
            "--quiet",
            "--out",
            "rel",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rel: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("rel/run.json")).unwrap()).unwrap();
    assert_eq!(
        rel["model"].as_str().map(Path::new),
        Some(bundle.canonicalize().unwrap().as_path())
    );
}
