//! [`FusedOps`] on burn's CPU backend: the tensors' f32 buffers go to the kernels of
//! `rnafm-kernels`. Other float types take the reference decompositions.

use burn::backend::flex::{Flex, FlexTensor};
use burn::tensor::{DType, Shape, TensorData, TensorMetadata};
use rnafm_kernels::attention::{AttentionShape, attention_backward, attention_forward};
use rnafm_kernels::elementwise as ew;
use rnafm_kernels::segment::{SegmentShape, segment_linear, segment_linear_backward};

use super::{FusedOps, reference};

/// The tensors as contiguous f32 buffers, when all of them are f32.
fn f32_all<const N: usize>(ts: [&FlexTensor; N]) -> Option<[FlexTensor; N]> {
    ts.iter()
        .all(|t| t.dtype() == DType::F32)
        .then(|| ts.map(|t| t.to_contiguous()))
}

fn vals(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>()
        .expect("a contiguous f32 tensor (made so by f32_all)")
}

fn tensor(v: Vec<f32>, shape: impl Into<Shape>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(v, shape))
}

fn dims(t: &FlexTensor) -> Vec<usize> {
    let s = t.shape();
    (0..s.num_dims()).map(|i| s[i]).collect()
}

impl FusedOps for Flex {
    fn fused_gelu_tanh(x: FlexTensor) -> FlexTensor {
        match f32_all([&x]) {
            Some([x]) => tensor(ew::gelu_tanh(vals(&x)), dims(&x)),
            None => reference::gelu_tanh::<Flex>(x),
        }
    }

    fn fused_gelu_tanh_backward(x: FlexTensor, dy: FlexTensor) -> FlexTensor {
        match f32_all([&x, &dy]) {
            Some([x, dy]) => tensor(ew::gelu_tanh_backward(vals(&x), vals(&dy)), dims(&x)),
            None => reference::gelu_tanh_backward::<Flex>(x, dy),
        }
    }

    fn fused_layer_norm_with_rstd(x: FlexTensor, eps: f64) -> (FlexTensor, FlexTensor) {
        match f32_all([&x]) {
            Some([x]) => {
                let d = dims(&x);
                let (y, rstd) = ew::layer_norm(vals(&x), d[1], eps as f32);
                (tensor(y, d.clone()), tensor(rstd, [d[0], 1]))
            }
            None => reference::layer_norm_with_rstd::<Flex>(x, eps),
        }
    }

    fn fused_layer_norm_backward(y: FlexTensor, rstd: FlexTensor, dy: FlexTensor) -> FlexTensor {
        match f32_all([&y, &rstd, &dy]) {
            Some([y, rstd, dy]) => {
                let d = dims(&y);
                tensor(
                    ew::layer_norm_backward(vals(&y), vals(&rstd), vals(&dy), d[1]),
                    d,
                )
            }
            None => reference::layer_norm_backward::<Flex>(y, rstd, dy),
        }
    }

    fn fused_scale_shift(x: FlexTensor, m: FlexTensor, a: Option<FlexTensor>) -> FlexTensor {
        let all_f32 = a.as_ref().is_none_or(|a| a.dtype() == DType::F32);
        match (f32_all([&x, &m]), all_f32) {
            (Some([x, m]), true) => {
                let d = dims(&x);
                let a = a.map(|a| a.to_contiguous());
                tensor(
                    ew::scale_shift(vals(&x), vals(&m), a.as_ref().map(vals), d[0], d[2]),
                    d,
                )
            }
            _ => reference::scale_shift::<Flex>(x, m, a),
        }
    }

    fn fused_scale_shift_backward(
        x: FlexTensor,
        m: FlexTensor,
        dy: FlexTensor,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        match f32_all([&x, &m, &dy]) {
            Some([x, m, dy]) => {
                let d = dims(&x);
                let (dx, dm, da) =
                    ew::scale_shift_backward(vals(&x), vals(&m), vals(&dy), d[0], d[2]);
                (
                    tensor(dx, d.clone()),
                    tensor(dm, [d[0], d[2]]),
                    tensor(da, [d[0], d[2]]),
                )
            }
            None => reference::scale_shift_backward::<Flex>(x, m, dy),
        }
    }

    fn fused_attention_with_probs(
        qkv: FlexTensor,
        heads: usize,
        mask: Option<FlexTensor>,
    ) -> (FlexTensor, FlexTensor) {
        let mask_f32 = mask.as_ref().is_none_or(|m| m.dtype() == DType::F32);
        match (f32_all([&qkv]), mask_f32) {
            (Some([qkv]), true) => {
                let d = dims(&qkv);
                let shape = attention_shape(&d, heads);
                let mask = mask.map(|m| m.to_contiguous());
                let (out, probs) = attention_forward(vals(&qkv), shape, mask.as_ref().map(vals));
                (
                    tensor(out, [d[0], d[1], shape.channels]),
                    tensor(probs, [d[0], heads, d[1], d[1]]),
                )
            }
            _ => reference::attention_with_probs::<Flex>(qkv, heads, mask),
        }
    }

    fn fused_attention_backward(
        qkv: FlexTensor,
        probs: FlexTensor,
        dout: FlexTensor,
        heads: usize,
    ) -> FlexTensor {
        match f32_all([&qkv, &probs, &dout]) {
            Some([qkv, probs, dout]) => {
                let d = dims(&qkv);
                let shape = attention_shape(&d, heads);
                tensor(
                    attention_backward(vals(&qkv), vals(&probs), vals(&dout), shape),
                    d,
                )
            }
            None => reference::attention_backward::<Flex>(qkv, probs, dout, heads),
        }
    }

    fn fused_segment_linear(
        x: FlexTensor,
        w: FlexTensor,
        b: FlexTensor,
        sizes: &[usize],
    ) -> FlexTensor {
        match f32_all([&x, &w, &b]) {
            Some([x, w, b]) => {
                let d = dims(&x);
                let shape = SegmentShape {
                    batch: d[0],
                    hidden: d[2],
                    sizes,
                };
                let s = sizes.iter().sum::<usize>();
                tensor(
                    segment_linear(vals(&x), vals(&w), vals(&b), shape),
                    [d[0], s],
                )
            }
            None => reference::segment_linear::<Flex>(x, w, b, sizes),
        }
    }

    fn fused_segment_linear_backward(
        x: FlexTensor,
        w: FlexTensor,
        dz: FlexTensor,
        sizes: &[usize],
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        match f32_all([&x, &w, &dz]) {
            Some([x, w, dz]) => {
                let d = dims(&x);
                let shape = SegmentShape {
                    batch: d[0],
                    hidden: d[2],
                    sizes,
                };
                let s = sizes.iter().sum::<usize>();
                let (dx, dw, db) = segment_linear_backward(vals(&x), vals(&w), vals(&dz), shape);
                (
                    tensor(dx, d.clone()),
                    tensor(dw, [s, d[2]]),
                    tensor(db, [s]),
                )
            }
            None => reference::segment_linear_backward::<Flex>(x, w, dz, sizes),
        }
    }
}

fn attention_shape(d: &[usize], heads: usize) -> AttentionShape {
    AttentionShape {
        batch: d[0],
        tokens: d[1],
        channels: d[2] / 3,
        heads,
    }
}
