//! Tiny hand-encoded ONNX graphs that follow the bundle's graph contract (condition, embed,
//! backbone, heads) with a velocity simple enough to integrate independently:
//!   slide_emb = mean_k features;  tokens = reshape(x·W?, [B,P,H]);  bg = mean_p tokens;
//!   tokens_out = −tokens;  c = slide_emb + t;  v = reshape(tokens_out + c + bg, [B,G]).
#![allow(dead_code)]

/// `rnafm-run` with ONNX Runtime from `.ort/` unless ORT_DYLIB_PATH says otherwise.
pub fn rnafm_run() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_rnafm-run"));
    if std::env::var_os("ORT_DYLIB_PATH").is_none() {
        c.env(
            "ORT_DYLIB_PATH",
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.ort/libonnxruntime.so"),
        );
    }
    c
}

/// `.venv`'s Python when it can import `module` (scripts/setup.sh --check-tools puts it
/// there); else None, so a local run skips the check, but CI, which runs setup first, fails.
pub fn venv_python_with(module: &str) -> Option<std::path::PathBuf> {
    let py = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    let ok = py.exists()
        && std::process::Command::new(&py)
            .args(["-c", &format!("import {module}")])
            .status()
            .is_ok_and(|s| s.success());
    if ok {
        Some(py)
    } else {
        missing_from_venv(module)
    }
}

/// For a test whose tool `what` is not in .venv: fails under CI (which runs setup first),
/// else says the check is skipped and returns None.
pub fn missing_from_venv<T>(what: &str) -> Option<T> {
    assert!(
        std::env::var_os("CI").is_none(),
        "no {what} in .venv: CI runs scripts/setup.sh --check-tools first"
    );
    eprintln!("skipping: no {what} in .venv (scripts/setup.sh --check-tools)");
    None
}

/// A TSV file as rows of fields.
pub fn read_tsv(path: &std::path::Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| l.split('\t').map(String::from).collect())
        .collect()
}

// --- a minimal protobuf writer for the ONNX messages used here ---
pub fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}
pub fn field_varint(out: &mut Vec<u8>, field: u32, v: u64) {
    varint(out, (field as u64) << 3);
    varint(out, v);
}
pub fn field_bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    varint(out, ((field as u64) << 3) | 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

pub enum Attr {
    Ints(&'static str, Vec<i64>),
    Int(&'static str, i64),
}

pub fn node(op: &str, inputs: &[&str], outputs: &[&str], attrs: &[Attr]) -> Vec<u8> {
    let mut n = Vec::new();
    for i in inputs {
        field_bytes(&mut n, 1, i.as_bytes());
    }
    for o in outputs {
        field_bytes(&mut n, 2, o.as_bytes());
    }
    field_bytes(&mut n, 4, op.as_bytes());
    for a in attrs {
        let mut m = Vec::new();
        match a {
            Attr::Ints(name, v) => {
                field_bytes(&mut m, 1, name.as_bytes());
                for x in v {
                    field_varint(&mut m, 8, *x as u64);
                }
                field_varint(&mut m, 20, 7);
            }
            Attr::Int(name, v) => {
                field_bytes(&mut m, 1, name.as_bytes());
                field_varint(&mut m, 3, *v as u64);
                field_varint(&mut m, 20, 2);
            }
        }
        field_bytes(&mut n, 5, &m);
    }
    n
}

pub fn int64_tensor(name: &str, v: &[i64]) -> Vec<u8> {
    let mut t = Vec::new();
    field_varint(&mut t, 1, v.len() as u64);
    field_varint(&mut t, 2, 7);
    field_bytes(&mut t, 8, name.as_bytes());
    let raw: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    field_bytes(&mut t, 9, &raw);
    t
}

pub fn f32_tensor(name: &str, dims: &[usize], v: &[f32]) -> Vec<u8> {
    let mut t = Vec::new();
    for d in dims {
        field_varint(&mut t, 1, *d as u64);
    }
    field_varint(&mut t, 2, 1);
    field_bytes(&mut t, 8, name.as_bytes());
    let raw: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    field_bytes(&mut t, 9, &raw);
    t
}

pub fn value_info(name: &str, rank: usize) -> Vec<u8> {
    let mut shape = Vec::new();
    for d in 0..rank {
        let mut dim = Vec::new();
        field_bytes(&mut dim, 2, format!("{name}_{d}").as_bytes());
        field_bytes(&mut shape, 1, &dim);
    }
    let mut tensor = Vec::new();
    field_varint(&mut tensor, 1, 1);
    field_bytes(&mut tensor, 2, &shape);
    let mut ty = Vec::new();
    field_bytes(&mut ty, 1, &tensor);
    let mut vi = Vec::new();
    field_bytes(&mut vi, 1, name.as_bytes());
    field_bytes(&mut vi, 2, &ty);
    vi
}

pub fn model(
    nodes: &[Vec<u8>],
    inits: &[Vec<u8>],
    inputs: &[(&str, usize)],
    outputs: &[(&str, usize)],
) -> Vec<u8> {
    let mut g = Vec::new();
    for n in nodes {
        field_bytes(&mut g, 1, n);
    }
    field_bytes(&mut g, 2, b"toy");
    for t in inits {
        field_bytes(&mut g, 5, t);
    }
    for (n, r) in inputs {
        field_bytes(&mut g, 11, &value_info(n, *r));
    }
    for (n, r) in outputs {
        field_bytes(&mut g, 12, &value_info(n, *r));
    }
    let mut m = Vec::new();
    field_varint(&mut m, 1, 8);
    let mut opset = Vec::new();
    field_varint(&mut opset, 2, 17);
    field_bytes(&mut m, 8, &opset);
    field_bytes(&mut m, 7, &g);
    m
}

/// The toy graphs with `p` tokens of width `h`; with `mix`, the embedding first multiplies
/// x by a G×G matrix (a real GEMM, whose kernels could depend on batch size or threads).
pub fn toy_graph_bytes(p: usize, h: usize, mix: Option<&[f32]>) -> [Vec<u8>; 5] {
    let g = p * h;
    let condition = model(
        &[node(
            "ReduceMean",
            &["features"],
            &["slide_emb"],
            &[Attr::Ints("axes", vec![1]), Attr::Int("keepdims", 0)],
        )],
        &[],
        &[("features", 3)],
        &[("slide_emb", 2)],
    );
    let (first, mut inits) = match mix {
        Some(w) => (
            vec![
                node("MatMul", &["x", "w"], &["xw"], &[]),
                node("Reshape", &["xw", "shape"], &["tokens"], &[]),
            ],
            vec![f32_tensor("w", &[g, g], w)],
        ),
        None => (
            vec![node("Reshape", &["x", "shape"], &["tokens"], &[])],
            vec![],
        ),
    };
    inits.push(int64_tensor("shape", &[0, p as i64, h as i64]));
    let mut nodes = first;
    nodes.push(node(
        "ReduceMean",
        &["tokens"],
        &["bg_token"],
        &[Attr::Ints("axes", vec![1]), Attr::Int("keepdims", 1)],
    ));
    let embed = model(
        &nodes,
        &inits,
        &[("x", 2)],
        &[("tokens", 3), ("bg_token", 3)],
    );
    // The toy condition c = slide_emb + t rides in all three modulations.
    let modulation = model(
        &[
            node("Reshape", &["t", "col"], &["t2"], &[]),
            node("Add", &["slide_emb", "t2"], &["bg_mod"], &[]),
            node("Reshape", &["bg_mod", "c3"], &["head_mod"], &[]),
            node("Identity", &["head_mod"], &["block_mod"], &[]),
        ],
        &[
            int64_tensor("col", &[-1, 1]),
            int64_tensor("c3", &[0, 1, -1]),
        ],
        &[("t", 1), ("slide_emb", 2)],
        &[("block_mod", 3), ("head_mod", 3), ("bg_mod", 2)],
    );
    let backbone = model(
        &[node("Neg", &["tokens"], &["tokens_out"], &[])],
        &[],
        &[("tokens", 3), ("block_mod", 3)],
        &[("tokens_out", 3)],
    );
    let heads = model(
        &[
            node("Add", &["tokens_out", "head_mod"], &["a"], &[]),
            node("Add", &["a", "bg_token"], &["b"], &[]),
            node("Reshape", &["b", "flat"], &["v"], &[]),
        ],
        &[int64_tensor("flat", &[0, -1])],
        &[
            ("tokens_out", 3),
            ("bg_token", 3),
            ("head_mod", 3),
            ("bg_mod", 2),
        ],
        &[("v", 2)],
    );
    [condition, modulation, embed, backbone, heads]
}

/// Writes an unpacked toy model folder: `p` pathway tokens of width `h` (so G = p·h genes,
/// pathway i = genes i·h..(i+1)·h), K = `clusters` cluster means of width `h`, and a
/// normalisation with mean 5 + g/10, sd 2.
pub fn write_toy_model_dir(dir: &std::path::Path, p: usize, h: usize, clusters: usize) {
    use rnafm_runtime::model_config::{ModelConfig, TokenMode};
    use rnafm_runtime::model_spec::ModelSpec;
    use rnafm_runtime::normalization::Normalization;
    use rnafm_runtime::pathways::PathwaySet;
    let g = p * h;
    std::fs::create_dir_all(dir).unwrap();
    let [c, m, e, b, hd] = toy_graph_bytes(p, h, None);
    for (name, bytes) in [
        ("condition.onnx", c),
        ("modulation.onnx", m),
        ("embed.onnx", e),
        ("backbone.onnx", b),
        ("heads.onnx", hd),
    ] {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let null = ndarray::Array2::from_shape_fn((1, h), |(_, i)| (i as f32 * 0.37).sin());
    rnafm_runtime::npy::write_npy(&dir.join("null_slide_emb.npy"), &null).unwrap();
    let config = ModelConfig {
        hidden: h,
        depth: 1,
        heads: 1,
        graph_heads: 1,
        clusters,
        feat_dim: h,
        genes: g,
        mlp_ratio: 4,
        cond_drop: 0.1,
        graph_attention: true,
        tokens: TokenMode::Pathways,
    };
    let origin = dir.join("model.json");
    let pathways = PathwaySet::new(
        g,
        (0..p).map(|i| format!("PATHWAY_{i}")).collect(),
        (0..p).map(|i| (i * h..(i + 1) * h).collect()).collect(),
        vec![],
        &origin,
    )
    .unwrap();
    let spec = ModelSpec {
        config,
        genes: (0..g).map(|i| format!("GENE{i}")).collect(),
        pathways,
        normalization: Some(
            Normalization::new(
                (0..g).map(|i| 5.0 + i as f32 / 10.0).collect(),
                vec![2.0; g],
                &origin,
            )
            .unwrap(),
        ),
    };
    spec.write(&origin).unwrap();
}
