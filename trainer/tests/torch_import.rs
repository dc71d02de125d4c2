//! Importing official PyTorch checkpoints (`torch.save` files) with burn-store's reader:
//! the fixture's real `model.pt`, a training-checkpoint layout with `model`/`ema`, and bad
//! files.

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::backend::Flex;
use burn::prelude::*;
use ndarray::ArrayD;
use ndarray_npy::read_npy;
use rnafm_official::{WeightSet, read_official_weights};
use rnafm_runtime::checkpoint::CheckpointDir;
use rnafm_runtime::weights::WeightMap;
use rnafm_trainer::velocity_net::VelocityNet;
use rnafm_trainer::weight_io::to_vec;

type B = Flex;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/official-small")
}

fn official() -> WeightMap {
    WeightMap::read_safetensors(&fixture().join("weights.safetensors")).unwrap()
}

fn tensor<const D: usize>(a: &ArrayD<f32>) -> Tensor<B, D> {
    let shape: [usize; D] = a.shape().try_into().expect("rank");
    let data: Vec<f32> = a.iter().copied().collect();
    Tensor::from_data(TensorData::new(data, shape), &Default::default())
}

fn npy(name: &str) -> ArrayD<f32> {
    read_npy(fixture().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// `rnafm-train import-official FILE ... -o DIR` with extra flags; (success, stderr).
fn import(file: &Path, pathways: &Path, out: &Path, extra: &[&str]) -> (bool, String) {
    let f = fixture();
    let run = Command::new(env!("CARGO_BIN_EXE_rnafm-train"))
        .env("RUST_BACKTRACE", "0")
        .arg("import-official")
        .arg(file)
        .arg("--pathways")
        .arg(pathways)
        .arg("--genes")
        .arg(f.join("genes.txt"))
        .args(["--heads", "4"])
        .args(extra)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap();
    (
        run.status.success(),
        String::from_utf8_lossy(&run.stderr).into_owned(),
    )
}

/// The nested `{"model": 2×parameters, "ema": weights, "epoch", "args"}` checkpoint, written
/// in torch.save's layout by scripts/torch-nested-checkpoint.py (stdlib Python only).
fn nested_checkpoint(dir: &Path) -> PathBuf {
    checkpoint_as(dir, "nested", "val_best.pt")
}

/// The fixture's model.pt rewritten in another torch.save layout (see the script's MODE).
fn checkpoint_as(dir: &Path, mode: &str, name: &str) -> PathBuf {
    let out = dir.join(name);
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/torch-nested-checkpoint.py");
    let st = Command::new("python3")
        .arg(script)
        .arg(fixture().join("model.pt"))
        .arg(&out)
        .arg(mode)
        .status()
        .expect("python3 is needed to write the checkpoint");
    assert!(st.success());
    out
}

/// Every tensor of `got` is the official one, and nothing is missing or extra.
fn assert_official(got: &WeightMap, what: &str) {
    let want = official();
    assert_eq!(
        got.tensors.keys().collect::<Vec<_>>(),
        want.tensors.keys().collect::<Vec<_>>(),
        "{what}"
    );
    for (name, t) in &want.tensors {
        assert_eq!(&got.tensors[name], t, "{what}: {name}");
    }
}

/// The layouts the README promises to read give exactly the official weights: a
/// DataParallel `module.` prefix, a `state_dict` key, an `ema`-only checkpoint, and files
/// whose extension says nothing (told apart by their first bytes).
#[test]
fn documented_layouts_give_the_official_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    for mode in ["module", "state_dict", "ema-only"] {
        let pt = checkpoint_as(d, mode, &format!("{mode}.pt"));
        assert_official(&read_official_weights(&pt, WeightSet::Ema).unwrap(), mode);
    }
    let sniffed_torch = d.join("weights.unknown");
    std::fs::copy(fixture().join("model.pt"), &sniffed_torch).unwrap();
    assert_official(
        &read_official_weights(&sniffed_torch, WeightSet::Ema).unwrap(),
        "torch.save under another extension",
    );
    let sniffed_st = d.join("weights.dat");
    std::fs::copy(fixture().join("weights.safetensors"), &sniffed_st).unwrap();
    assert_official(
        &read_official_weights(&sniffed_st, WeightSet::Ema).unwrap(),
        "safetensors under another extension",
    );
}

/// The refusals the README promises, each one line naming the file: `--raw` on an
/// `ema`-only checkpoint, a big-endian torch.save, and a graph mask that differs from the
/// one the pathway file gives (the pathway file's order changed).
#[test]
fn documented_refusals_are_one_line_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let f = fixture();
    let ema_only = checkpoint_as(d, "ema-only", "ema_only.pt");
    let big = checkpoint_as(d, "big-endian", "big.pt");
    // two pathways of the fixture swapped: same token count, another graph mask
    let text = std::fs::read_to_string(f.join("pathways.json")).unwrap();
    let v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    let mut entries: Vec<(String, serde_json::Value)> = v.into_iter().collect();
    let (a, b) = (
        entries.iter().position(|(k, _)| k != "UNMAPPED").unwrap(),
        entries.iter().rposition(|(k, _)| k != "UNMAPPED").unwrap(),
    );
    entries.swap(a, b);
    let swapped = d.join("swapped.json");
    std::fs::write(
        &swapped,
        serde_json::to_string(&entries.into_iter().collect::<serde_json::Map<_, _>>()).unwrap(),
    )
    .unwrap();
    let pathways = f.join("pathways.json");
    for (file, pw, extra, name, what) in [
        (
            &ema_only,
            &pathways,
            &["--raw"][..],
            "ema_only.pt",
            "only `ema`",
        ),
        (&big, &pathways, &[][..], "big.pt", "big-endian"),
        (
            &f.join("model.pt"),
            &swapped,
            &[][..],
            "model.pt",
            "add_mask differs",
        ),
    ] {
        let out = d.join("ck");
        let (ok, err) = import(file, pw, &out, extra);
        assert!(!ok, "{name} {extra:?} was accepted");
        assert!(err.contains(name) && err.contains(what), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(!out.exists());
    }
}

#[test]
fn model_pt_gives_exactly_the_safetensors_weights() {
    let got = read_official_weights(&fixture().join("model.pt"), WeightSet::Ema).unwrap();
    let want = official();
    assert_eq!(
        got.tensors.keys().collect::<Vec<_>>(),
        want.tensors.keys().collect::<Vec<_>>()
    );
    for (name, t) in &want.tensors {
        assert_eq!(&got.tensors[name], t, "{name}");
    }
}

#[test]
fn imported_model_pt_reproduces_the_official_guided_velocity() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("ck");
    let f = fixture();
    let (ok, err) = import(&f.join("model.pt"), &f.join("pathways.json"), &out, &[]);
    assert!(ok, "{err}");
    let ck = CheckpointDir::new(&out);
    let spec = ck.read_spec().unwrap();
    let w = ck.read_weights("ema.safetensors").unwrap();
    let origin = out.join("ema.safetensors");
    let net = VelocityNet::<B>::from_weights(&spec, &w, &origin, &Default::default()).unwrap();
    let v = net.forward_cfg(
        tensor::<2>(&npy("x.npy")),
        tensor::<1>(&npy("t.npy")),
        tensor::<3>(&npy("y.npy")),
        2.0,
    );
    let want = npy("v_cfg.npy");
    let got = to_vec(&v);
    assert_eq!(got.len(), want.len());
    let d = got
        .iter()
        .zip(want.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!("model.pt → v_cfg max |diff| {d:e}");
    assert!(d <= 1e-4, "v_cfg max |diff| {d}");
}

#[test]
fn training_checkpoint_prefers_ema_and_raw_takes_model() {
    let tmp = tempfile::tempdir().unwrap();
    let pt = nested_checkpoint(tmp.path());
    let want = official();
    let ema = read_official_weights(&pt, WeightSet::Ema).unwrap();
    let raw = read_official_weights(&pt, WeightSet::Raw).unwrap();
    assert_eq!(ema.tensors.len(), want.tensors.len());
    assert_eq!(raw.tensors.len(), want.tensors.len());
    for (name, t) in &want.tensors {
        assert_eq!(&ema.tensors[name], t, "{name}");
        // The script doubles parameters, not buffers (null condition, graph masks).
        let k = if name == "empty_cond" || name.ends_with("mask") {
            1.0
        } else {
            2.0
        };
        let doubled: Vec<f32> = t.data.iter().map(|v| k * v).collect();
        assert_eq!(raw.tensors[name].shape, t.shape, "{name}");
        assert_eq!(raw.tensors[name].data, doubled, "{name}");
    }
    // And through the CLI, --raw included.
    let f = fixture();
    for (flags, scale) in [(&[][..], 1.0f32), (&["--raw"][..], 2.0)] {
        let out = tmp.path().join(format!("ck{scale}"));
        let (ok, err) = import(&pt, &f.join("pathways.json"), &out, flags);
        assert!(ok, "{err}");
        let w = CheckpointDir::new(&out)
            .read_weights("model.safetensors")
            .unwrap();
        let name = "blocks.1.attn.qkv.weight";
        let expect: Vec<f32> = want.tensors[name].data.iter().map(|v| scale * v).collect();
        assert_eq!(w.tensors[name].data, expect);
    }
}

#[test]
fn bad_checkpoints_get_a_one_line_error_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let f = fixture();
    let pathways = f.join("pathways.json");
    // Not a zip or pickle.
    let junk = tmp.path().join("junk.pt");
    std::fs::write(&junk, "this is not a checkpoint\n").unwrap();
    // A valid pickle (an empty dict, legacy torch.save layout) holding no tensors.
    let empty = tmp.path().join("empty.pt");
    std::fs::write(&empty, b"\x80\x02}q\x00.").unwrap();
    // Real tensors, but the pathway file gives other pathway sizes: wrong shapes.
    let text = std::fs::read_to_string(&pathways).unwrap();
    let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    let first = v.keys().find(|k| *k != "UNMAPPED").unwrap().clone();
    v[&first].as_array_mut().unwrap().pop();
    let shifted = tmp.path().join("shifted.json");
    std::fs::write(&shifted, serde_json::to_string(&v).unwrap()).unwrap();
    let model_pt = f.join("model.pt");
    for (file, pw, what) in [
        (&junk, &pathways, "not a readable PyTorch checkpoint"),
        (&empty, &pathways, "no tensors"),
        (&model_pt, &shifted, "shape"),
    ] {
        let out = tmp.path().join("ck");
        let (ok, err) = import(file, pw, &out, &[]);
        assert!(!ok, "{} was accepted", file.display());
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(err.contains(name) && err.contains(what), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(!out.exists(), "partial output for {}", file.display());
    }
}
