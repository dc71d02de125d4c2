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

/// The fixture exported to `d/small.rnafm` and three slides `d/s{0,1,2}.npy` of 8 × 48
/// cluster features; the rnafm-run binary, or None where it is not built.
fn bundle_and_slides(d: &Path) -> Option<PathBuf> {
    let (export, run) = (workspace_bin("rnafm-export")?, workspace_bin("rnafm-run")?);
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
    for s in 0..3 {
        let a = ndarray::Array2::from_shape_fn((8, 48), |(i, j)| {
            (((s * 384 + i * 48 + j) as f32) * 0.37).sin()
        });
        rnafm_runtime::npy::write_npy(&d.join(format!("s{s}.npy")), &a).unwrap();
    }
    Some(run)
}

/// rnafm-run on the three slides in `d`, 7 draws of 5 steps, into `out`; `env` is set for it.
fn run_slides(run: &Path, d: &Path, out: &str, args: &[&str], env: &[(&str, &Path)]) -> String {
    let ort = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ort/libonnxruntime.so");
    let mut c = Command::new(run);
    if std::env::var_os("ORT_DYLIB_PATH").is_none() {
        c.env("ORT_DYLIB_PATH", &ort);
    }
    for (k, v) in env {
        c.env(k, v);
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
        .args(["--device", "cpu"])
        .args(args)
        .args(["--out", out])
        .current_dir(d)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stderr).into_owned()
        + if o.status.success() { "" } else { "\n(failed)" }
}

#[test]
fn real_graphs_give_the_same_bytes_whatever_batch_and_threads() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some(run) = bundle_and_slides(d) else {
        return;
    };
    let go = |out: &str, batch: &str, threads: &str| {
        let err = run_slides(&run, d, out, &["--batch", batch, "--threads", threads], &[]);
        assert!(!err.contains("(failed)"), "{err}");
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

/// Which graphs of a run's `load` came from the graph cache's saved copies.
fn saved_graphs(d: &Path, out: &str) -> Vec<String> {
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join(out).join("run.json")).unwrap()).unwrap();
    let members = r["load"]["members"].as_array().unwrap();
    assert!(members.len() >= 5, "{members:?}");
    members
        .iter()
        .filter(|m| m["saved_graph"] == true)
        .map(|m| m["member"].as_str().unwrap().to_string())
        .collect()
}

/// The graph cache (runtime/src/graph_cache.rs): a first run saves each graph in ORT format,
/// later runs use the saved graphs in place and write the same bytes as a run without the
/// cache; a saved graph changed on disk is rebuilt, and an altered bundle is still refused.
#[test]
fn saved_graphs_give_the_same_bytes_and_an_altered_one_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let Some(run) = bundle_and_slides(d) else {
        return;
    };
    let cache = d.join("cache");
    let empty = Path::new("");
    let go = |out: &str, cache: &Path| {
        let err = run_slides(&run, d, out, &[], &[("RNAFM_CACHE_DIR", cache)]);
        assert!(!err.contains("(failed)"), "{err}");
    };
    go("none", empty);
    assert!(saved_graphs(d, "none").is_empty());
    go("first", &cache);
    assert!(saved_graphs(d, "first").is_empty());
    let saved: Vec<PathBuf> = std::fs::read_dir(cache.join("graphs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "ort"))
        .collect();
    assert_eq!(saved.len(), 5, "{saved:?}");
    go("second", &cache);
    let all = [
        "backbone.onnx",
        "condition.onnx",
        "embed.onnx",
        "heads.onnx",
        "modulation.onnx",
    ];
    let mut used = saved_graphs(d, "second");
    used.sort();
    assert_eq!(used, all);
    // one saved graph changed in place, at the same size
    let victim = saved
        .iter()
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(victim, &bytes).unwrap();
    go("third", &cache);
    assert_eq!(saved_graphs(d, "third").len(), 4);
    go("fourth", &cache);
    assert_eq!(saved_graphs(d, "fourth").len(), 5);
    for s in 0..3 {
        for file in ["genes.tsv", "pathways.tsv", "samples.npy"] {
            let read = |out: &str| std::fs::read(d.join(out).join(format!("s{s}.{file}"))).unwrap();
            let a = read("none");
            for out in ["first", "second", "third", "fourth"] {
                assert_eq!(a, read(out), "s{s}.{file}: no cache vs {out}");
            }
        }
    }
    // The bundle altered (one byte of a graph): refused although its graphs are saved.
    let mut zipped = std::fs::read(d.join("small.rnafm")).unwrap();
    let start = {
        let mut z = zip::ZipArchive::new(std::io::Cursor::new(&zipped)).unwrap();
        let f = z.by_name("heads.onnx").unwrap();
        (f.data_start().unwrap() + f.size() / 2) as usize
    };
    zipped[start] ^= 1;
    std::fs::write(d.join("small.rnafm"), zipped).unwrap();
    let err = run_slides(&run, d, "fifth", &[], &[("RNAFM_CACHE_DIR", &cache)]);
    assert!(
        err.contains("(failed)") && err.contains("heads.onnx") && err.contains("corrupt"),
        "{err}"
    );
}
