//! TRIDENT/CLAM `.h5` tile files written by h5py (PyPI, in `.venv`), not by us: `rnafm-run`
//! gives the same predictions for them as for the same features in `.npy`; and the `.h5`
//! rnafm writes opens in h5py with TRIDENT's layout.

#![cfg(feature = "hdf5")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use ndarray::Array2;

const P: usize = 2;
const H: usize = 4;
const K: usize = 3;

fn venv_python() -> Option<PathBuf> {
    common::venv_python_with("h5py")
}

fn python(py: &Path, script: &str, args: &[&Path]) -> String {
    // Without this, h5py's open can fail with "unable to lock file" (EAGAIN): the tests run
    // in parallel, and a python spawned by one test inherits, while the other test is writing
    // an .h5, HDF5's file descriptor with its flock, holding the lock after that file is
    // closed and renamed (seen once in CI). HDF5_USE_FILE_LOCKING is HDF5's own switch.
    let o = Command::new(py)
        .env("HDF5_USE_FILE_LOCKING", "FALSE")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Writes, with h5py and numpy: a TRIDENT file (float32 features, chunked + gzip + shuffle,
/// int64 coords with TRIDENT's attributes), a CLAM file (float16 features, int32 coords,
/// CLAM's attributes) and each one's features as float32 `.npy`.
const WRITE: &str = r#"
import sys, h5py, numpy as np
d, n = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(7)
f = rng.normal(size=(40, 4)).astype(np.float32)
xy = (np.stack(np.meshgrid(np.arange(8), np.arange(5)), -1).reshape(-1, 2) * 512).astype(np.int64)
with h5py.File(f"{d}/trident.h5", "w") as h:
    h.create_dataset("features", data=f, chunks=(16, 4), compression="gzip", shuffle=True)
    c = h.create_dataset("coords", data=xy)
    c.attrs.update(patch_size=256, patch_size_level0=512, level0_magnification=40.0,
                   target_magnification=20.0, overlap=0, name="trident")
np.save(f"{n}/trident.npy", f)
g = rng.normal(size=(25, 4)).astype(np.float16)
with h5py.File(f"{d}/clam.h5", "w") as h:
    h.create_dataset("features", data=g)
    c = h.create_dataset("coords", data=xy[:25].astype(np.int32))
    c.attrs.update(patch_size=256, patch_level=0, downsample=np.array([2.0, 2.0]),
                   name="clam")
np.save(f"{n}/clam.npy", g.astype(np.float32))
"#;

#[test]
fn h5py_files_predict_exactly_as_npy() {
    let Some(py) = venv_python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    common::write_toy_model_dir(&root.join("model"), P, H, K);
    let slides = root.join("slides");
    let npys = root.join("npy");
    std::fs::create_dir_all(&slides).unwrap();
    std::fs::create_dir_all(&npys).unwrap();
    python(&py, WRITE, &[&slides, &npys]);

    // The reader itself: values, coords and geometry as written.
    let t = rnafm_runtime::features::read_h5_tiles(&slides.join("trident.h5")).unwrap();
    let npy = rnafm_runtime::features::read_features(&npys.join("trident.npy")).unwrap();
    assert_eq!(t.features, npy);
    let coords = t.coords.unwrap();
    assert_eq!(
        (coords.dim(), coords[[9, 0]], coords[[9, 1]]),
        ((40, 2), 512, 512)
    );
    assert_eq!(t.geometry.patch_size_level0, Some(512.0));
    assert_eq!(t.geometry.target_magnification, Some(20.0));
    let c = rnafm_runtime::features::read_h5_tiles(&slides.join("clam.h5")).unwrap();
    assert_eq!(
        c.features,
        rnafm_runtime::features::read_features(&npys.join("clam.npy")).unwrap()
    );
    // CLAM states patch_size at the level read and its downsample
    assert_eq!(c.geometry.patch_size_level0, Some(512.0));
    assert_eq!(c.geometry.patch_level, Some(0));

    // rnafm-run: a folder stands for its .h5 files; each predicts as its .npy.
    let out = root.join("out");
    let o = common::rnafm_run()
        .arg(&slides)
        .args(["--model", root.join("model").to_str().unwrap()])
        .args(["--samples", "6", "--steps", "5", "--threads", "1"])
        .args(["--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for name in ["trident", "clam"] {
        let a = std::fs::read_to_string(out.join(format!("{name}.genes.tsv")));
        assert!(a.is_ok(), "no output for {name}.h5");
    }
    let run_one = |input: &Path, dir: &Path| -> String {
        let o = common::rnafm_run()
            .arg(input)
            .args(["--model", root.join("model").to_str().unwrap()])
            .args(["--samples", "6", "--steps", "5", "--threads", "1"])
            .args(["--out", dir.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let stem = input.file_stem().unwrap().to_str().unwrap();
        std::fs::read_to_string(dir.join(format!("{stem}.genes.tsv"))).unwrap()
    };
    for name in ["trident", "clam"] {
        let h = run_one(&slides.join(format!("{name}.h5")), &root.join("h"));
        let n = run_one(&npys.join(format!("{name}.npy")), &root.join("n"));
        assert_eq!(h, n, "{name}: .h5 and .npy predictions differ");
    }

    // rnafm-features turns the tile file into the K×D means rnafm-run would use.
    let means = root.join("means/trident.npy");
    let o = Command::new(env!("CARGO_BIN_EXE_rnafm-features"))
        .arg(slides.join("trident.h5"))
        .args([
            "--clusters",
            "3",
            "--seed",
            "0",
            "--out",
            means.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want = rnafm_runtime::cluster_means::cluster_means(npy.clone(), 3, 0, &means).unwrap();
    assert_eq!(
        rnafm_runtime::features::read_features(&means).unwrap(),
        want.means
    );
    assert!(root.join("means/trident_tiles.npz").is_file());

    // A file h5py wrote without `features` is one line naming the file and what it holds.
    python(
        &py,
        "import sys,h5py\nwith h5py.File(sys.argv[1],'w') as h: h['feats']=[[1.0]]",
        &[&root.join("bad.h5")],
    );
    let o = common::rnafm_run()
        .arg(root.join("bad.h5"))
        .args(["--model", root.join("model").to_str().unwrap()])
        .args(["--out", root.join("bad").to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bad.h5") && err.contains("no dataset `features`") && err.contains("feats"),
        "{err}"
    );
}

/// What rnafm writes opens in h5py as TRIDENT lays it out.
#[test]
fn our_h5_opens_in_h5py_with_tridents_layout() {
    let Some(py) = venv_python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("ours.h5");
    let f = Array2::from_shape_fn((30, 5), |(i, j)| (i * 5 + j) as f32 * 0.25);
    let c = Array2::from_shape_fn((30, 2), |(i, j)| ((i % 6) * 448 + j * (i / 6) * 448) as i64);
    let g = rnafm_runtime::h5::TileGeometry {
        patch_size: Some(224.0),
        patch_size_level0: Some(448.0),
        patch_level: Some(1),
        level0_magnification: Some(40.0),
        target_magnification: Some(20.0),
        mpp: Some(0.25),
    };
    rnafm_runtime::h5::write_tile_file(&p, f.view(), c.view(), &g, None, "ours").unwrap();
    let got = python(
        &py,
        r#"
import sys, h5py, numpy as np
with h5py.File(sys.argv[1], "r") as h:
    f, c = h["features"], h["coords"]
    a = dict(c.attrs)
    print(sorted(h.keys()), f.dtype, f.shape, c.dtype, c.shape,
          float(f[29, 4]), int(c[7, 0]), int(a["patch_size"]), int(a["patch_size_level0"]),
          float(a["target_magnification"]), int(a["patch_level"]), c.attrs["name"])
"#,
        &[&p],
    );
    assert_eq!(
        got.trim(),
        "['coords', 'features'] float32 (30, 5) int64 (30, 2) 37.25 448 224 448 20.0 1 ours"
    );
}
