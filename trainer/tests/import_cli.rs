//! `rnafm-train import-official` on the official fixture.

use std::path::{Path, PathBuf};
use std::process::Command;

use rnafm_runtime::model_spec::ModelSpec;
use rnafm_runtime::weights::WeightMap;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/official-small")
}

#[test]
fn imports_the_official_fixture() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("ck");
    let f = fixture();
    let run = Command::new(env!("CARGO_BIN_EXE_rnafm-train"))
        .arg("import-official")
        .arg(f.join("weights.safetensors"))
        .arg("--pathways")
        .arg(f.join("pathways.json"))
        .arg("--genes")
        .arg(f.join("genes.txt"))
        .args(["--heads", "4", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let spec = ModelSpec::read(&out.join("model.json")).unwrap();
    assert_eq!(
        (spec.config.hidden, spec.config.depth, spec.config.heads),
        (64, 2, 4)
    );
    assert_eq!(spec.genes.len(), 600);
    let official = WeightMap::read_safetensors(&f.join("weights.safetensors")).unwrap();
    for file in ["model.safetensors", "ema.safetensors"] {
        let w = WeightMap::read_safetensors(&out.join(file)).unwrap();
        let a = &official.tensors["blocks.1.attn.qkv.weight"];
        assert_eq!(&w.tensors["blocks.1.attn.qkv.weight"], a);
        assert_eq!(w.tensors.len(), official.tensors.len());
    }
}

#[test]
fn wrong_pathway_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let pw = tmp.path().join("pw.json");
    std::fs::write(&pw, r#"{"a": [0, 1], "b": [2, 3]}"#).unwrap();
    let f = fixture();
    let run = Command::new(env!("CARGO_BIN_EXE_rnafm-train"))
        .arg("import-official")
        .arg(f.join("weights.safetensors"))
        .arg("--pathways")
        .arg(&pw)
        .arg("--genes")
        .arg(f.join("genes.txt"))
        .arg("-o")
        .arg(tmp.path().join("ck"))
        .output()
        .unwrap();
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("24 pathway tokens") && err.contains("lists 2"),
        "{err}"
    );
}
