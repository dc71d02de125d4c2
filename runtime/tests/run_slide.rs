//! `rnafm-run SLIDE.svs --encoder ENC.onnx --model M.rnafm` on the real Aperio test slide:
//! one step gives the same predictions as `rnafm-features` followed by `rnafm-run` on its
//! .npy, with the tiling taken from the bundle's manifest; a slide without --encoder and an
//! encoder of the wrong width fail with one-line errors.

mod common;
#[allow(dead_code)]
mod slide_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use slide_support::{test_slide, tiny_encoder};

const P: usize = 2;
const H: usize = 4;
const K: usize = 3;
/// Tiling recorded in the test bundle's manifest (rnafm-features' defaults differ: 256 px).
const TILE: usize = 224;
const MPP: f32 = 0.5;

fn bin(name: &str) -> Command {
    let mut c = Command::new(match name {
        "rnafm-run" => env!("CARGO_BIN_EXE_rnafm-run"),
        _ => env!("CARGO_BIN_EXE_rnafm-features"),
    });
    if std::env::var_os("ORT_DYLIB_PATH").is_none() {
        c.env(
            "ORT_DYLIB_PATH",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ort/libonnxruntime.so"),
        );
    }
    c
}

fn run(name: &str, args: &[&str]) -> Output {
    bin(name).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The toy model (feature width H, K clusters) as a bundle whose manifest says how slides
/// are tiled.
fn write_bundle(root: &Path) -> PathBuf {
    use rnafm_runtime::bundle::BundleWriter;
    use rnafm_runtime::manifest::{Manifest, SCHEMA_VERSION, SamplingDefaults, SlideContract};
    let dir = root.join("model");
    common::write_toy_model_dir(&dir, P, H, K);
    let spec = rnafm_runtime::model_spec::ModelSpec::read(&dir.join("model.json")).unwrap();
    let manifest = Manifest {
        schema_version: SCHEMA_VERSION,
        model: spec,
        slide: SlideContract {
            clusters: K,
            feat_dim: H,
            encoder: "tiny".into(),
            microns_per_pixel: MPP,
            tile_size: TILE,
        },
        sampling: SamplingDefaults::default(),
        feature_stats: None,
        cv_r: None,
        provenance: None,
        calibration: None,
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
        w.add(name, std::fs::read(dir.join(name)).unwrap()).unwrap();
    }
    let path = root.join("toy.rnafm");
    w.write(&path).unwrap();
    path
}

/// rnafm-features with the test bundle's tiling spelled out, on the CPU, into `out`.
fn features_as_manifest(slide: &str, encoder: &str, out: &Path, extra: &[&str]) -> Output {
    let (tile, mpp) = (TILE.to_string(), MPP.to_string());
    let args = [
        slide,
        "--encoder",
        encoder,
        "--tile",
        &tile,
        "--tile-mpp",
        &mpp,
        "--device",
        "cpu",
        "--threads",
        "1",
        "--out",
        out.to_str().unwrap(),
    ];
    run(
        "rnafm-features",
        &args
            .into_iter()
            .chain(extra.iter().copied())
            .collect::<Vec<_>>(),
    )
}

/// A temporary folder with the test bundle and the tiny encoder, and the test slide's path
/// (`None` when the slide is missing outside CI).
struct Setup {
    tmp: tempfile::TempDir,
    slide: String,
    model: String,
    encoder: String,
}

impl Setup {
    /// rnafm-run on the slide with the encoder and the bundle, then `args` and `more`.
    fn run_slide(&self, args: &[&str], more: &[&str]) -> Output {
        let head = [
            self.slide.as_str(),
            "--encoder",
            &self.encoder,
            "--model",
            &self.model,
        ];
        let all: Vec<&str> = head.iter().chain(args).chain(more).copied().collect();
        run("rnafm-run", &all)
    }

    fn new() -> Option<Setup> {
        let slide = test_slide()?;
        let tmp = tempfile::tempdir().unwrap();
        let model = write_bundle(tmp.path());
        let enc = tmp.path().join("enc.onnx");
        std::fs::write(&enc, tiny_encoder(H)).unwrap();
        Some(Setup {
            slide: slide.display().to_string(),
            model: model.display().to_string(),
            encoder: enc.display().to_string(),
            tmp,
        })
    }
}

#[test]
fn slide_image_to_prediction_in_one_step() {
    let Some(t) = Setup::new() else { return };
    let (root, slide_s, model_s, enc_s) = (t.tmp.path(), &t.slide, &t.model, &t.encoder);
    let common = ["--samples", "6", "--device", "cpu", "--threads", "1"];

    // One step.
    let one = root.join("one");
    let o = t.run_slide(&["--out", one.to_str().unwrap(), "--quiet"], &common);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(one.join("run.json")).unwrap()).unwrap();
    let rec = &report["slides"][0];
    assert_eq!(rec["status"], "ok", "{rec}");
    let tiles = rec["tiles"].as_u64().unwrap();
    assert!(tiles > K as u64, "{rec}");

    // Two steps with the manifest's tiling spelled out: the same tiles and the same numbers.
    let feats = root.join("feats/cmu_small_region.npy");
    std::fs::create_dir_all(feats.parent().unwrap()).unwrap();
    let o = features_as_manifest(slide_s, enc_s, &feats, &["--clusters", &K.to_string()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let tiles_npz = root.join("feats/cmu_small_region_tiles.npz");
    let mut npz = ndarray_npy::NpzReader::new(std::fs::File::open(&tiles_npz).unwrap()).unwrap();
    let coords: ndarray::Array2<i64> = npz.by_name("coords").unwrap();
    assert_eq!(coords.nrows() as u64, tiles);
    let two = root.join("two");
    let o = run(
        "rnafm-run",
        &[
            feats.to_str().unwrap(),
            "--model",
            model_s,
            "--out",
            two.to_str().unwrap(),
            "--quiet",
        ]
        .into_iter()
        .chain(common)
        .collect::<Vec<_>>(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for f in [
        "cmu_small_region.genes.tsv",
        "cmu_small_region.pathways.tsv",
    ] {
        let a = std::fs::read_to_string(one.join(f)).unwrap();
        let b = std::fs::read_to_string(two.join(f)).unwrap();
        assert_eq!(a, b, "{f}");
        assert_eq!(
            a.lines().count(),
            if f.contains("genes") { P * H } else { P } + 1
        );
    }

    // The tile size is the manifest's, not rnafm-features' default: 256-px tiles differ.
    let o = t.run_slide(
        &[
            "--tile",
            "256",
            "--out",
            root.join("t256").to_str().unwrap(),
            "--quiet",
        ],
        &common,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let a = std::fs::read_to_string(one.join("cmu_small_region.genes.tsv")).unwrap();
    let b = std::fs::read_to_string(root.join("t256/cmu_small_region.genes.tsv")).unwrap();
    assert_ne!(a, b);
}

/// `--maps` on a whole slide paints the slide's thumbnail; the same tiles as a TRIDENT .h5
/// from rnafm-features give the same maps: tables, GeoJSON, and the PNG on the thumbnail the
/// .h5 carries.
#[cfg(feature = "hdf5")]
#[test]
fn slide_image_maps_match_the_h5_of_its_tiles() {
    let Some(t) = Setup::new() else { return };
    let (root, slide_s, model_s, enc_s) = (t.tmp.path(), &t.slide, &t.model, &t.encoder);
    let maps = [
        "--samples",
        "4",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--quiet",
        "--maps",
        "--map-top",
        "1",
        "--map-draws",
        "2",
        "--map-genes",
        "GENE1",
    ];
    let one = root.join("one");
    let o = t.run_slide(&["--out", one.to_str().unwrap()], &maps);
    assert!(o.status.success(), "{}", stderr(&o));
    let h5 = root.join("feats/cmu_small_region.h5");
    let o = features_as_manifest(slide_s, enc_s, &h5, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let two = root.join("two");
    let o = run(
        "rnafm-run",
        &[
            h5.to_str().unwrap(),
            "--model",
            model_s,
            "--out",
            two.to_str().unwrap(),
        ]
        .into_iter()
        .chain(maps)
        .collect::<Vec<_>>(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for f in [
        "map.tiles.tsv",
        "map.clusters.tsv",
        "map.geojson",
        "genes.tsv",
    ] {
        let name = format!("cmu_small_region.{f}");
        let a = std::fs::read_to_string(one.join(&name)).unwrap();
        let b = std::fs::read_to_string(two.join(&name)).unwrap();
        assert_eq!(a, b, "{name}");
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(one.join("run.json")).unwrap()).unwrap();
    let tiles = report["slides"][0]["tiles"].as_u64().unwrap() as usize;
    let rows = std::fs::read_to_string(one.join("cmu_small_region.map.tiles.tsv"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(rows, 1 + tiles);
    assert_eq!(report["maps"]["draws"], 2);
    // On the thumbnail (the size of rnafm-features' review image), from either input.
    let thumb = image::open(root.join("feats/cmu_small_region_thumbnail.png")).unwrap();
    let png = "cmu_small_region.map.GENE1.png";
    let on_slide = image::open(one.join(png)).unwrap();
    assert_eq!(
        (on_slide.width(), on_slide.height()),
        (thumb.width(), thumb.height())
    );
    assert_eq!(
        std::fs::read(one.join(png)).unwrap(),
        std::fs::read(two.join(png)).unwrap()
    );
}

#[test]
fn slide_image_errors() {
    let Some(slide) = test_slide() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let model = write_bundle(root);
    let slide_s = slide.display().to_string();
    let out = root.join("out");

    // No --encoder: a usage error naming the file and the flag, nothing written.
    let o = run(
        "rnafm-run",
        &[
            &slide_s,
            "--model",
            model.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    assert!(
        e.contains("cmu_small_region.svs") && e.contains("--encoder"),
        "{e}"
    );
    assert!(!out.exists());

    // An encoder whose features are not the model's width: that slide fails, exit 1.
    let enc = root.join("enc5.onnx");
    std::fs::write(&enc, tiny_encoder(H + 1)).unwrap();
    let o = run(
        "rnafm-run",
        &[
            &slide_s,
            "--encoder",
            enc.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--device",
            "cpu",
            "--quiet",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("cmu_small_region.svs") && e.contains(&format!("{}-dimensional", H + 1)),
        "{e}"
    );
    assert!(!out.join("cmu_small_region.genes.tsv").exists());

    // A missing encoder file: named, with the flag.
    let o = run(
        "rnafm-run",
        &[
            &slide_s,
            "--encoder",
            "/nonexistent/enc.onnx",
            "--model",
            model.to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("/nonexistent/enc.onnx") && e.contains("--encoder"),
        "{e}"
    );
}
