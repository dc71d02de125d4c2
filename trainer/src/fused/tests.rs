//! Each fused op against its reference decomposition: the CPU kernels' outputs, the
//! gradients of the custom backward passes against burn's autodiff through the reference
//! forward, and the reference backward functions (the CUDA path) against the same.

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::ops::FloatTensor;
use rand::RngExt;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{FusedOps, from_prim, prim, reference};

type AD = Autodiff<Flex>;

fn values(n: usize, scale: f32, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| (rng.random::<f32>() * 2.0 - 1.0) * scale)
        .collect()
}

fn flex<const D: usize>(v: &[f32], shape: [usize; D]) -> Tensor<Flex, D> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), &Default::default())
}

fn ad<const D: usize>(v: &[f32], shape: [usize; D]) -> Tensor<AD, D> {
    Tensor::from_data(TensorData::new(v.to_vec(), shape), &Default::default()).require_grad()
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

#[track_caller]
fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
        .fold(0f32, f32::max);
    assert!(
        worst <= tol,
        "{what}: max scaled |diff| {worst:e} > {tol:e}"
    );
}

/// Gradients of Σ out·r with respect to `inputs`, for out = `f(inputs)` on autodiff.
fn grads<const D: usize, const N: usize>(
    inputs: [(&[f32], Vec<usize>); N],
    r: &[f32],
    out_shape: [usize; D],
    f: impl Fn(&[FloatTensor<AD>]) -> FloatTensor<AD>,
) -> Vec<Vec<f32>> {
    let ts: Vec<Tensor<AD, 1>> = inputs.iter().map(|(v, _)| ad(v, [v.len()])).collect();
    let shaped: Vec<FloatTensor<AD>> = ts
        .iter()
        .zip(&inputs)
        .map(|(t, (_, s))| {
            let p = prim(t.clone());
            reshape_prim::<AD>(p, s)
        })
        .collect();
    let out = from_prim::<AD, D>(f(&shaped));
    let loss = (out * ad(r, out_shape).detach()).sum();
    let g = loss.backward();
    // An input the output does not depend on has no gradient: zeros.
    ts.iter()
        .map(|t| {
            t.grad(&g)
                .map(host)
                .unwrap_or_else(|| vec![0.0; t.dims()[0]])
        })
        .collect()
}

fn reshape_prim<B: Backend>(p: FloatTensor<B>, shape: &[usize]) -> FloatTensor<B> {
    B::float_reshape(p, burn::tensor::Shape::from(shape.to_vec()))
}

#[test]
fn gelu_tanh_matches_reference_forward_and_gradient() {
    let n = 3001;
    let x = values(n, 6.0, 1);
    let r = values(n, 1.0, 2);
    let fused = host(from_prim::<Flex, 1>(Flex::fused_gelu_tanh(prim(flex(
        &x,
        [n],
    )))));
    let want = host(from_prim::<Flex, 1>(reference::gelu_tanh::<Flex>(prim(
        flex(&x, [n]),
    ))));
    assert_close(&fused, &want, 1e-6, "gelu forward");
    let gf = grads([(&x, vec![n])], &r, [n], |t| {
        AD::fused_gelu_tanh(t[0].clone())
    });
    let gr = grads([(&x, vec![n])], &r, [n], |t| {
        reference::gelu_tanh::<AD>(t[0].clone())
    });
    assert_close(&gf[0], &gr[0], 1e-5, "gelu gradient");
    let rb = host(from_prim::<Flex, 1>(reference::gelu_tanh_backward::<Flex>(
        prim(flex(&x, [n])),
        prim(flex(&r, [n])),
    )));
    assert_close(&rb, &gr[0], 1e-5, "reference gelu backward");
}

#[test]
fn layer_norm_matches_reference_forward_and_gradient() {
    let (rows, h) = (37, 64);
    let x: Vec<f32> = values(rows * h, 3.0, 3)
        .iter()
        .enumerate()
        .map(|(i, v)| v + (i / h) as f32) // rows with different means
        .collect();
    let r = values(rows * h, 1.0, 4);
    let (y, rstd) = Flex::fused_layer_norm_with_rstd(prim(flex(&x, [rows, h])), 1e-6);
    let (ry, rr) = reference::layer_norm_with_rstd::<Flex>(prim(flex(&x, [rows, h])), 1e-6);
    assert_close(
        &host(from_prim::<Flex, 2>(y)),
        &host(from_prim::<Flex, 2>(ry.clone())),
        1e-5,
        "layer norm forward",
    );
    assert_close(
        &host(from_prim::<Flex, 2>(rstd)),
        &host(from_prim::<Flex, 2>(rr.clone())),
        1e-5,
        "layer norm rstd",
    );
    let f = |t: &[FloatTensor<AD>]| AD::fused_layer_norm(t[0].clone(), 1e-6);
    let gf = grads([(&x, vec![rows, h])], &r, [rows, h], f);
    let gr = grads([(&x, vec![rows, h])], &r, [rows, h], |t| {
        reference::layer_norm_with_rstd::<AD>(t[0].clone(), 1e-6).0
    });
    assert_close(&gf[0], &gr[0], 1e-4, "layer norm gradient");
    let rb = reference::layer_norm_backward::<Flex>(ry, rr, prim(flex(&r, [rows, h])));
    assert_close(
        &host(from_prim::<Flex, 2>(rb)),
        &gr[0],
        1e-4,
        "reference layer norm backward",
    );
}

#[test]
fn scale_shift_matches_reference_forward_and_gradient() {
    let (b, n, h) = (3, 5, 8);
    let x = values(b * n * h, 2.0, 5);
    let m = values(b * h, 1.5, 6);
    let a = values(b * h, 1.0, 7);
    let r = values(b * n * h, 1.0, 8);
    for with_a in [true, false] {
        let fa = with_a.then(|| prim(flex(&a, [b, h])));
        let ra = with_a.then(|| prim(flex(&a, [b, h])));
        let y = Flex::fused_scale_shift(prim(flex(&x, [b, n, h])), prim(flex(&m, [b, h])), fa);
        let want =
            reference::scale_shift::<Flex>(prim(flex(&x, [b, n, h])), prim(flex(&m, [b, h])), ra);
        assert_close(
            &host(from_prim::<Flex, 3>(y)),
            &host(from_prim::<Flex, 3>(want)),
            1e-6,
            "scale_shift forward",
        );
        let inputs = || {
            [
                (&x[..], vec![b, n, h]),
                (&m[..], vec![b, h]),
                (&a[..], vec![b, h]),
            ]
        };
        let gf = grads(inputs(), &r, [b, n, h], |t| {
            AD::fused_scale_shift(t[0].clone(), t[1].clone(), with_a.then(|| t[2].clone()))
        });
        let gr = grads(inputs(), &r, [b, n, h], |t| {
            reference::scale_shift::<AD>(t[0].clone(), t[1].clone(), with_a.then(|| t[2].clone()))
        });
        // Without `a`, its gradient is zero in both (it only enters through a detached path).
        let parts = if with_a { 3 } else { 2 };
        for i in 0..parts {
            assert_close(&gf[i], &gr[i], 1e-5, &format!("scale_shift gradient {i}"));
        }
        let (dx, dm, da) = reference::scale_shift_backward::<Flex>(
            prim(flex(&x, [b, n, h])),
            prim(flex(&m, [b, h])),
            prim(flex(&r, [b, n, h])),
        );
        assert_close(
            &host(from_prim::<Flex, 3>(dx)),
            &gr[0],
            1e-5,
            "reference dx",
        );
        assert_close(
            &host(from_prim::<Flex, 2>(dm)),
            &gr[1],
            1e-5,
            "reference dm",
        );
        if with_a {
            assert_close(
                &host(from_prim::<Flex, 2>(da)),
                &gr[2],
                1e-5,
                "reference da",
            );
        }
    }
}

#[test]
fn attention_matches_reference_forward_and_gradient() {
    let (b, n, heads, dh) = (2, 7, 3, 4);
    let c = heads * dh;
    let qkv = values(b * n * 3 * c, 2.0, 9);
    let r = values(b * n * c, 1.0, 10);
    // A graph-style mask: 0 where linked, −1e4 where not; every token sees itself.
    let mask: Vec<f32> = (0..n * n)
        .map(|i| {
            if (i / n + i % n) % 3 == 0 || i / n == i % n {
                0.0
            } else {
                -1e4
            }
        })
        .collect();
    for masked in [false, true] {
        let mk = || masked.then(|| prim(flex(&mask, [n, n])));
        let (out, probs) =
            Flex::fused_attention_with_probs(prim(flex(&qkv, [b, n, 3 * c])), heads, mk());
        let (ro, rp) =
            reference::attention_with_probs::<Flex>(prim(flex(&qkv, [b, n, 3 * c])), heads, mk());
        assert_close(
            &host(from_prim::<Flex, 3>(out)),
            &host(from_prim::<Flex, 3>(ro)),
            1e-5,
            "attention forward",
        );
        assert_close(
            &host(from_prim::<Flex, 4>(probs)),
            &host(from_prim::<Flex, 4>(rp.clone())),
            1e-5,
            "attention probabilities",
        );
        let ad_mask = || masked.then(|| prim(ad(&mask, [n, n]).detach()));
        let gf = grads([(&qkv, vec![b, n, 3 * c])], &r, [b, n, c], |t| {
            AD::fused_attention(t[0].clone(), heads, ad_mask())
        });
        let gr = grads([(&qkv, vec![b, n, 3 * c])], &r, [b, n, c], |t| {
            reference::attention_with_probs::<AD>(t[0].clone(), heads, ad_mask()).0
        });
        assert_close(&gf[0], &gr[0], 1e-4, "attention gradient");
        let rb = reference::attention_backward::<Flex>(
            prim(flex(&qkv, [b, n, 3 * c])),
            rp,
            prim(flex(&r, [b, n, c])),
            heads,
        );
        assert_close(
            &host(from_prim::<Flex, 3>(rb)),
            &gr[0],
            1e-4,
            "reference attention backward",
        );
    }
}

#[test]
fn segment_linear_matches_reference_forward_and_gradient() {
    let (b, h) = (3, 6);
    let sizes = [2usize, 5, 1, 3];
    let (p, s) = (sizes.len(), sizes.iter().sum::<usize>());
    let x = values(b * p * h, 1.0, 11);
    let w = values(s * h, 1.0, 12);
    let bias = values(s, 1.0, 13);
    let r = values(b * s, 1.0, 14);
    let z = Flex::fused_segment_linear(
        prim(flex(&x, [b, p, h])),
        prim(flex(&w, [s, h])),
        prim(flex(&bias, [s])),
        &sizes,
    );
    let want = reference::segment_linear::<Flex>(
        prim(flex(&x, [b, p, h])),
        prim(flex(&w, [s, h])),
        prim(flex(&bias, [s])),
        &sizes,
    );
    assert_close(
        &host(from_prim::<Flex, 2>(z)),
        &host(from_prim::<Flex, 2>(want)),
        1e-5,
        "segment forward",
    );
    let inputs = || {
        [
            (&x[..], vec![b, p, h]),
            (&w[..], vec![s, h]),
            (&bias[..], vec![s]),
        ]
    };
    let gf = grads(inputs(), &r, [b, s], |t| {
        AD::fused_segment_linear(t[0].clone(), t[1].clone(), t[2].clone(), &sizes)
    });
    let gr = grads(inputs(), &r, [b, s], |t| {
        reference::segment_linear::<AD>(t[0].clone(), t[1].clone(), t[2].clone(), &sizes)
    });
    for i in 0..3 {
        assert_close(&gf[i], &gr[i], 1e-5, &format!("segment gradient {i}"));
    }
    let (dx, dw, db) = reference::segment_linear_backward::<Flex>(
        prim(flex(&x, [b, p, h])),
        prim(flex(&w, [s, h])),
        prim(flex(&r, [b, s])),
        &sizes,
    );
    assert_close(
        &host(from_prim::<Flex, 3>(dx)),
        &gr[0],
        1e-5,
        "reference segment dx",
    );
    assert_close(
        &host(from_prim::<Flex, 2>(dw)),
        &gr[1],
        1e-5,
        "reference segment dw",
    );
    assert_close(
        &host(from_prim::<Flex, 1>(db)),
        &gr[2],
        1e-5,
        "reference segment db",
    );
}
