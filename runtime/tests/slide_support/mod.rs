//! Helpers of the slide tests: a tiny ONNX tile encoder written with tract-onnx's protobuf
//! types, and the paths of the test slide.

use std::path::{Path, PathBuf};

use prost::Message;
use tract_onnx::pb::tensor_shape_proto::{Dimension, dimension};
use tract_onnx::pb::type_proto::{Tensor, Value};
use tract_onnx::pb::{
    GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto,
    TypeProto, ValueInfoProto,
};

/// The real Aperio slide fetched by scripts/fetch-test-slide, if present.
pub fn test_slide() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.testdata/cmu_small_region.svs");
    if p.is_file() {
        Some(p)
    } else {
        missing(&format!("{} (run scripts/fetch-test-slide)", p.display()));
        None
    }
}

/// A test input that a developer may lack narrows the test locally (a note), but CI's test
/// command makes every one of them: there a missing one fails the test.
pub fn missing(what: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{what} is missing; CI runs scripts/test.sh, which makes it"
    );
    eprintln!("note: {what} absent; skipping");
}

const FLOAT: i32 = 1;

fn value_info(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .enumerate()
        .map(|(i, d)| Dimension {
            value: Some(match d {
                Some(v) => dimension::Value::DimValue(*v),
                None => dimension::Value::DimParam(format!("d{i}")),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(Value::TensorType(Tensor {
                elem_type: FLOAT,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], output: &str) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        name: output.into(),
        ..Default::default()
    }
}

/// The weight matrix of the tiny encoder: [6, d], fixed.
pub fn tiny_weights(d: usize) -> Vec<f32> {
    (0..6 * d)
        .map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0)
        .collect()
}

/// pixels [N,3,H,W] → features [N,d] = concat(mean over H,W of x, mean of x²) · W.
pub fn tiny_encoder(d: usize) -> Vec<u8> {
    let w = TensorProto {
        name: "w".into(),
        dims: vec![6, d as i64],
        data_type: FLOAT,
        float_data: tiny_weights(d),
        ..Default::default()
    };
    let shape = TensorProto {
        name: "shape".into(),
        dims: vec![2],
        data_type: 7, // int64
        int64_data: vec![0, 6],
        ..Default::default()
    };
    let mut concat = node("Concat", &["m1", "m2"], "m");
    concat.attribute.push(tract_onnx::pb::AttributeProto {
        name: "axis".into(),
        r#type: 2, // INT
        i: 1,
        ..Default::default()
    });
    let graph = GraphProto {
        name: "tiny_encoder".into(),
        node: vec![
            node("GlobalAveragePool", &["pixels"], "m1"),
            node("Mul", &["pixels", "pixels"], "sq"),
            node("GlobalAveragePool", &["sq"], "m2"),
            concat,
            node("Reshape", &["m", "shape"], "flat"),
            node("MatMul", &["flat", "w"], "features"),
        ],
        initializer: vec![w, shape],
        input: vec![value_info("pixels", &[None, Some(3), None, None])],
        output: vec![value_info("features", &[None, Some(d as i64)])],
        ..Default::default()
    };
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        producer_name: "rnafm-tests".into(),
        graph: Some(graph),
        ..Default::default()
    }
    .encode_to_vec()
}
