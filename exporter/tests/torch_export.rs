//! `rnafm-export` straight from an official PyTorch checkpoint (the fixture's `model.pt`):
//! ONNX Runtime on the bundle's graphs reproduces the official guided velocity and the
//! 19-step guided Euler sample.

use std::path::{Path, PathBuf};
use std::process::Command;

use ndarray::{Array2, ArrayD, Axis, Ix2, Ix3};
use ndarray_npy::read_npy;
use rnafm_runtime::bundle::Bundle;
use rnafm_runtime::ort_env::{DeviceChoice, SessionOptions};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/official-small")
}

fn npy(name: &str) -> ArrayD<f32> {
    read_npy(fixture().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn export(args: &[&str], weights_flag: &str, out: &Path) -> std::process::Output {
    let f = fixture();
    Command::new(env!("CARGO_BIN_EXE_rnafm-export"))
        .arg(weights_flag)
        .arg(f.join("model.pt"))
        .arg("--pathways")
        .arg(f.join("pathways.json"))
        .arg("--genes")
        .arg(f.join("genes.txt"))
        .args(["--heads", "4"])
        .args(args)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn bundle_from_model_pt_reproduces_official_outputs_in_onnx_runtime() {
    let dir = tempfile::tempdir().unwrap();
    // --weights and --onnx FILE are the same path into the trainer's import.
    for flag in ["--weights", "--onnx"] {
        let out = dir.path().join(format!("{}.rnafm", &flag[2..]));
        let o = export(&["--no-self-test"], flag, &out);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let b = Bundle::open(&out).unwrap();
        let (mut flow, _, _) = rnafm_runtime::run::model::load_graphs(
            Path::new("bundle"),
            SessionOptions {
                device: DeviceChoice::Cpu,
                threads: 1,
            },
            |n| b.member(n),
        )
        .unwrap();
        let x = npy("x.npy").into_dimensionality::<Ix2>().unwrap();
        let t = npy("t.npy");
        let y = npy("y.npy").into_dimensionality::<Ix3>().unwrap();
        let z = npy("z.npy").into_dimensionality::<Ix2>().unwrap();
        let v_want = npy("v_cfg.npy").into_dimensionality::<Ix2>().unwrap();
        let s_want = npy("sample.npy").into_dimensionality::<Ix2>().unwrap();
        let mut v_got = Array2::<f32>::zeros(v_want.raw_dim());
        let mut s_got = Array2::<f32>::zeros(s_want.raw_dim());
        // Each fixture row has its own slide and time; the runtime takes one of each per call.
        for i in 0..x.nrows() {
            let emb = flow.slide_embedding(y.index_axis(Axis(0), i)).unwrap();
            let xi = x.slice(ndarray::s![i..i + 1, ..]);
            let v = flow.velocity(xi, t[[i]], &emb, 2.0).unwrap();
            v_got.row_mut(i).assign(&v.row(0));
            let zi = z.slice(ndarray::s![i..i + 1, ..]).to_owned();
            let s = flow.integrate(zi, &emb, 20, 2.0, &mut || {}).unwrap();
            s_got.row_mut(i).assign(&s.row(0));
        }
        let diff = |a: &Array2<f32>, b: &Array2<f32>| {
            a.iter()
                .zip(b)
                .map(|(p, q)| (p - q).abs())
                .fold(0f32, f32::max)
        };
        let (dv, ds) = (diff(&v_got, &v_want), diff(&s_got, &s_want));
        eprintln!("{flag} model.pt: v_cfg max|diff| {dv:e}, 19-step sample max|diff| {ds:e}");
        assert!(dv <= 1e-4, "v_cfg max|diff| {dv}");
        assert!(ds <= 1e-3, "sample max|diff| {ds}");
    }
}

#[test]
fn a_bad_pt_is_named_in_a_one_line_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pt");
    std::fs::write(&junk, "not a checkpoint").unwrap();
    let out = dir.path().join("x.rnafm");
    let f = fixture();
    let o = Command::new(env!("CARGO_BIN_EXE_rnafm-export"))
        .env("RUST_BACKTRACE", "0")
        .arg("--weights")
        .arg(&junk)
        .arg("--pathways")
        .arg(f.join("pathways.json"))
        .arg("--genes")
        .arg(f.join("genes.txt"))
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("junk.pt") && err.contains("not a readable PyTorch checkpoint"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!out.exists());
}
