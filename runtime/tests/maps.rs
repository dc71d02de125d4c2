//! `rnafm-run --maps` on a synthetic slide whose driving region is known: a 10×10 grid of
//! tiles where a 4×4 block has features far from the rest. In the toy model (see `common`)
//! every gene rises with the slide's mean cluster feature, so that block drives GENE0 up; the
//! map must put it first. Criterion: of the 16 tiles with the largest effect on GENE0, at
//! least 15 are the planted ones, and all of those have a positive effect. Also: the files
//! are there and well formed, the GeoJSON validates (Python `geojson`, when `.venv` has it),
//! and a slide without tile coordinates gets a warning and no maps.

#![cfg(feature = "hdf5")]

mod common;

use common::read_tsv;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use ndarray::Array2;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const P: usize = 2;
const H: usize = 4;
const K: usize = 3;
const GRID: usize = 10;
const SIDE: i64 = 256;

fn planted(col: usize, row: usize) -> bool {
    (5..9).contains(&col) && (2..6).contains(&row)
}

#[test]
fn maps_find_the_planted_region() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    common::write_toy_model_dir(&root.join("model"), P, H, K);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let n = GRID * GRID;
    let mut f = Array2::<f32>::zeros((n, H));
    let mut coords = Array2::<i64>::zeros((n, 2));
    let mut truth = Vec::new();
    for i in 0..n {
        let (col, row) = (i % GRID, i / GRID);
        coords[[i, 0]] = col as i64 * SIDE;
        coords[[i, 1]] = row as i64 * SIDE;
        let base = if planted(col, row) {
            3.0
        } else if col < 5 {
            0.0
        } else {
            -0.5
        };
        for d in 0..H {
            f[[i, d]] = base + rng.random_range(-0.1f32..0.1);
        }
        truth.push(planted(col, row));
    }
    let slide = root.join("slide.h5");
    let geometry = rnafm_runtime::h5::TileGeometry {
        patch_size_level0: Some(SIDE as f64),
        ..Default::default()
    };
    rnafm_runtime::h5::write_tile_file(&slide, f.view(), coords.view(), &geometry, None, "slide")
        .unwrap();
    // The same features without coordinates.
    rnafm_runtime::npy::write_npy(&root.join("nocoords.npy"), &f).unwrap();

    let out = root.join("out");
    let o = common::rnafm_run()
        .arg(&slide)
        .arg(root.join("nocoords.npy"))
        .args(["--model", root.join("model").to_str().unwrap()])
        .args(["--samples", "4", "--steps", "5", "--threads", "1"])
        .args(["--maps", "--map-top", "2", "--map-genes", "GENE0,GENE5"])
        .args(["--map-draws", "3", "--map-steps", "3"])
        .args(["--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("nocoords.npy") && err.contains("no tile coordinates"),
        "{err}"
    );
    assert!(out.join("nocoords.genes.tsv").is_file());
    assert!(!out.join("nocoords.map.clusters.tsv").exists());
    // A rerun skips both: the .npy is complete without maps.
    let again = common::rnafm_run()
        .arg(&slide)
        .arg(root.join("nocoords.npy"))
        .args(["--model", root.join("model").to_str().unwrap()])
        .args(["--samples", "4", "--steps", "5", "--threads", "1"])
        .args(["--maps", "--map-top", "2", "--map-genes", "GENE0,GENE5"])
        .args(["--map-draws", "3", "--map-steps", "3", "--format", "json"])
        .args(["--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    let status: Vec<&str> = report["slides"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(status, ["skipped", "skipped"]);

    // Per tile: GENE0's effect; the planted block comes first.
    let tiles = read_tsv(&out.join("slide.map.tiles.tsv"));
    let head = &tiles[0];
    assert_eq!(&head[..5], ["tile", "x", "y", "size", "cluster"]);
    let g0 = head.iter().position(|c| c == "GENE0").unwrap();
    assert_eq!(head.len(), 5 + 2 + 2, "{head:?}");
    assert_eq!(tiles.len(), 1 + n);
    let mut effect: Vec<(f64, usize)> = tiles[1..]
        .iter()
        .map(|r| {
            (
                r[g0].parse::<f64>().unwrap(),
                r[0].parse::<usize>().unwrap(),
            )
        })
        .collect();
    for r in &tiles[1..] {
        let i: usize = r[0].parse().unwrap();
        assert_eq!(r[1].parse::<i64>().unwrap(), coords[[i, 0]]);
        assert_eq!(r[3], "256");
    }
    effect.sort_by(|a, b| b.0.total_cmp(&a.0));
    let top: Vec<usize> = effect[..16].iter().map(|e| e.1).collect();
    let hits = top.iter().filter(|&&i| truth[i]).count();
    eprintln!("planted tiles among the 16 with the largest GENE0 effect: {hits}/16");
    assert!(hits >= 15, "only {hits} of the top 16 tiles are planted");
    assert!(effect[..hits].iter().all(|e| e.0 > 0.0));

    // Cluster table: every target × cluster, sd and se over the draws.
    let clusters = read_tsv(&out.join("slide.map.clusters.tsv"));
    assert_eq!(
        clusters[0],
        [
            "target", "kind", "unit", "cluster", "tiles", "effect", "sd", "se"
        ]
    );
    assert_eq!(clusters.len(), 1 + 4 * K);
    let kinds: HashSet<&str> = clusters[1..].iter().map(|r| r[1].as_str()).collect();
    assert_eq!(kinds, HashSet::from(["gene", "pathway"]));
    let tiles_total: usize = clusters[1..=K]
        .iter()
        .map(|r| r[4].parse::<usize>().unwrap())
        .sum();
    assert_eq!(tiles_total, n);

    // GeoJSON: one closed square per tile, effects as measurements.
    let gj: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("slide.map.geojson")).unwrap())
            .unwrap();
    assert_eq!(gj["type"], "FeatureCollection");
    let feats = gj["features"].as_array().unwrap();
    assert_eq!(feats.len(), n);
    let ring = &feats[0]["geometry"]["coordinates"][0];
    assert_eq!(ring.as_array().unwrap().len(), 5);
    assert_eq!(ring[0], ring[4]);
    assert!(feats[0]["properties"]["measurements"]["GENE0"].is_number());
    validate_geojson(&out.join("slide.map.geojson"));

    // One PNG per target; the planted block is painted red (GENE0 rises there).
    let pngs: Vec<PathBuf> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".png"))
        .collect();
    assert_eq!(pngs.len(), 4, "{pngs:?}");
    let img = image::open(out.join("slide.map.GENE0.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(img.width(), 1024);
    let px = |col: f64, row: f64| {
        let s = 1024.0 / (GRID as f64);
        *img.get_pixel((col * s) as u32, (row * s) as u32)
    };
    let red = px(6.5, 3.5);
    assert!(red[0] > 150 && red[2] < 80, "planted tile colour {red:?}");
}

/// Python's `geojson` package says the file is valid GeoJSON (skipped when `.venv` lacks it,
/// except in CI).
fn validate_geojson(path: &Path) {
    let Some(py) = common::venv_python_with("geojson") else {
        return;
    };
    let o = Command::new(&py)
        .arg("-c")
        .arg(
            "import sys, geojson\nfc = geojson.load(open(sys.argv[1]))\n\
             assert fc.is_valid, fc.errors()\nprint(type(fc).__name__, len(fc['features']))",
        )
        .arg(path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("FeatureCollection {}", GRID * GRID)
    );
}
