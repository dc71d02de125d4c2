//! `rnafm-run` on real exported graphs (the official fixture's, with matrix products and
//! fused attention, unlike the runtime's toy model) writes byte-identical tables and draws
//! whatever --batch and --threads are: one sample's numbers never depend on which other
//! samples (of its slide or, when a batch holds more than a slide's draws, of other slides)
//! share its batch or how many threads split the products.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A workspace binary beside this test's executable (`cargo test --workspace` builds them
/// all; CI runs that, so there a missing one fails).
fn workspace_bin(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.parent()?.join(name);
    if p.is_file() {
        return Some(p);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} missing: CI runs cargo test --workspace, which builds it",
        p.display()
    );
    eprintln!("note: {} not built; skipping", p.display());
    None
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/official-small")
}

#[test]
fn real_graphs_give_the_same_bytes_whatever_batch_and_threads() {
    let (Some(export), Some(run)) = (workspace_bin("rnafm-export"), workspace_bin("rnafm-run"))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let f = fixture();
    let bundle = d.join("small.rnafm");
    let st = Command::new(&export)
        .arg("--weights")
        .arg(f.join("weights.safetensors"))
        .arg("--pathways")
        .arg(f.join("pathways.json"))
        .arg("--genes")
        .arg(f.join("genes.txt"))
        .args(["--heads", "4", "--no-self-test", "-o"])
        .arg(&bundle)
        .status()
        .unwrap();
    assert!(st.success());
    // three slides of 8 × 48 cluster features
    for s in 0..3 {
        let a = ndarray::Array2::from_shape_fn((8, 48), |(i, j)| {
            (((s * 384 + i * 48 + j) as f32) * 0.37).sin()
        });
        rnafm_runtime::npy::write_npy(&d.join(format!("s{s}.npy")), &a).unwrap();
    }
    let ort = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ort/libonnxruntime.so");
    let go = |out: &str, batch: &str, threads: &str| {
        let mut c = Command::new(&run);
        if std::env::var_os("ORT_DYLIB_PATH").is_none() {
            c.env("ORT_DYLIB_PATH", &ort);
        }
        let o = c
            .args(["s0.npy", "s1.npy", "s2.npy", "--model", "small.rnafm"])
            .args([
                "--samples",
                "7",
                "--steps",
                "5",
                "--save-samples",
                "--quiet",
            ])
            .args(["--device", "cpu", "--batch", batch, "--threads", threads])
            .args(["--out", out])
            .current_dir(d)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    go("a", "7", "2");
    go("b", "1", "1");
    go("c", "3", "2");
    // batches larger than a slide's draws: slides share them (two, then all three)
    go("d", "16", "2");
    go("e", "21", "1");
    for s in 0..3 {
        for file in ["genes.tsv", "pathways.tsv", "samples.npy"] {
            let read = |out: &str| std::fs::read(d.join(out).join(format!("s{s}.{file}"))).unwrap();
            let a = read("a");
            assert_eq!(
                a,
                read("b"),
                "s{s}.{file}: batch 7 × 2 threads vs batch 1 × 1 thread"
            );
            assert_eq!(a, read("c"), "s{s}.{file}: batch 7 vs batch 3");
            assert_eq!(a, read("d"), "s{s}.{file}: alone vs two slides per batch");
            assert_eq!(a, read("e"), "s{s}.{file}: alone vs three slides per batch");
        }
    }
    // and the draws are not trivially equal: the slides differ
    assert_ne!(
        std::fs::read(d.join("a/s0.samples.npy")).unwrap(),
        std::fs::read(d.join("a/s1.samples.npy")).unwrap()
    );
}
