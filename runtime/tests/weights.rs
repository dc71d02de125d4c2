//! Weight maps: safetensors round trip, dtype conversion, the official fixture, and the
//! bad-input cases.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rnafm_runtime::weights::{Tensor, WeightMap};
use safetensors::{Dtype, tensor::TensorView};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/official-small")
}

fn one(dtype: Dtype, shape: Vec<usize>, bytes: &[u8]) -> Vec<u8> {
    let v = TensorView::new(dtype, shape, bytes).unwrap();
    safetensors::serialize([("t", v)], None).unwrap()
}

#[test]
fn roundtrip_through_a_file() {
    let mut w = WeightMap::new();
    w.insert(
        "a.weight",
        Tensor::new(vec![2, 3], vec![1.0, -2.0, 3.5, 0.0, 1e-7, 7.0]),
    );
    w.insert("b", Tensor::new(vec![], vec![0.25]));
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("out/w.safetensors");
    w.write_safetensors(&p).unwrap();
    let r = WeightMap::read_safetensors(&p).unwrap();
    assert_eq!(r, w);
    assert_eq!(r.total_params(), 7);
}

#[test]
fn other_float_dtypes_are_converted() {
    let o = Path::new("t.safetensors");
    let f64s: Vec<u8> = [1.5f64, -0.125]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let w = WeightMap::from_safetensors_bytes(&one(Dtype::F64, vec![2], &f64s), o).unwrap();
    assert_eq!(w.tensors["t"].data, vec![1.5, -0.125]);
    // bf16 is the top half of f32
    let bf: Vec<u8> = [1.5f32, -0.125]
        .iter()
        .flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes())
        .collect();
    let w = WeightMap::from_safetensors_bytes(&one(Dtype::BF16, vec![2], &bf), o).unwrap();
    assert_eq!(w.tensors["t"].data, vec![1.5, -0.125]);
    // f16: 1.0 = 0x3c00, -2.0 = 0xc000, smallest subnormal 2^-24 = 0x0001, 65504 = 0x7bff
    let h: Vec<u8> = [0x3c00u16, 0xc000, 0x0001, 0x7bff]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let w = WeightMap::from_safetensors_bytes(&one(Dtype::F16, vec![4], &h), o).unwrap();
    assert_eq!(
        w.tensors["t"].data,
        vec![1.0, -2.0, 2f32.powi(-24), 65504.0]
    );
}

#[test]
fn integer_tensor_is_rejected() {
    let b: Vec<u8> = [1i32, 2].iter().flat_map(|v| v.to_le_bytes()).collect();
    let e = WeightMap::from_safetensors_bytes(&one(Dtype::I32, vec![2], &b), Path::new("w.st"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("w.st") && e.contains("\"t\"") && e.contains("float"),
        "{e}"
    );
}

#[test]
fn non_finite_value_is_rejected() {
    let b: Vec<u8> = [1f32, f32::NAN, 3.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let e = WeightMap::from_safetensors_bytes(&one(Dtype::F32, vec![3], &b), Path::new("w.st"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("non-finite") && e.contains("element 1"), "{e}");
}

#[test]
fn garbage_and_missing_files() {
    let e = WeightMap::from_safetensors_bytes(b"not safetensors", Path::new("w.st"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("w.st") && e.contains("not a safetensors"), "{e}");
    let e = WeightMap::read_safetensors(Path::new("/nonexistent/w.safetensors")).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/w.safetensors"));
}

#[test]
fn get_checks_name_and_shape() {
    let mut w = WeightMap::new();
    w.insert("x", Tensor::new(vec![2, 2], vec![0.0; 4]));
    let o = Path::new("m.safetensors");
    assert!(w.get("x", &[2, 2], o).is_ok());
    let e = w.get("x", &[4], o).unwrap_err().to_string();
    assert!(
        e.contains("m.safetensors") && e.contains("[2, 2]") && e.contains("[4]"),
        "{e}"
    );
    let e = w.get("y", &[4], o).unwrap_err().to_string();
    assert!(e.contains("missing tensor \"y\""), "{e}");
}

#[test]
fn official_fixture_matches_its_param_list() {
    let w = WeightMap::read_safetensors(&fixture().join("weights.safetensors")).unwrap();
    let list = std::fs::read_to_string(fixture().join("param_names.txt")).unwrap();
    let mut expect: HashMap<String, Vec<usize>> = HashMap::new();
    for line in list.lines().filter(|l| !l.trim().is_empty()) {
        let (name, shape) = line.split_once('\t').unwrap();
        let dims: Vec<usize> = shape
            .trim_matches(|c| c == '[' || c == ']')
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().parse().unwrap())
            .collect();
        expect.insert(name.to_string(), dims);
    }
    assert_eq!(w.tensors.len(), expect.len());
    for (name, t) in &w.tensors {
        assert_eq!(&t.shape, &expect[name], "{name}");
        assert_eq!(t.numel(), t.shape.iter().product::<usize>(), "{name}");
    }
    // Linear weights are [out, in]: the first pathway embedder maps |p_0| genes to 64.
    assert_eq!(
        w.tensors["gene_embedder.gene_count_ebd.0.0.weight"].shape[0],
        64
    );
}
