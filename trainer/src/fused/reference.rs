//! The fused ops written with plain burn tensor ops: the default for backends without
//! native kernels (CUDA), and the oracle the native kernels are tested against. Shapes as
//! documented on [`super::FusedOps`].

use burn::prelude::*;
use burn::tensor::activation::softmax;
use burn::tensor::ops::FloatTensor;

use super::{from_prim, prim};

/// sqrt(2/π) and the cubic coefficient of the tanh approximation of GELU.
pub const GELU_K: f64 = 0.797_884_560_802_865_4;
pub const GELU_A: f64 = 0.044_715;

pub fn gelu_tanh<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let x = from_prim::<B, 1>(x);
    let u = (x.clone() + x.clone().powi_scalar(3) * GELU_A) * GELU_K;
    prim(x * 0.5 * (u.tanh() + 1.0))
}

pub fn gelu_tanh_backward<B: Backend>(x: FloatTensor<B>, dy: FloatTensor<B>) -> FloatTensor<B> {
    let x = from_prim::<B, 1>(x);
    let dy = from_prim::<B, 1>(dy);
    let x2 = x.clone().powi_scalar(2);
    let t = ((x2.clone() * GELU_A + 1.0) * x.clone() * GELU_K).tanh();
    let du = (x2 * (3.0 * GELU_A) + 1.0) * GELU_K;
    let one_minus_t2 = -(t.clone().powi_scalar(2)) + 1.0;
    prim(dy * ((t + 1.0) * 0.5 + x * 0.5 * one_minus_t2 * du))
}

pub fn layer_norm_with_rstd<B: Backend>(
    x: FloatTensor<B>,
    eps: f64,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let x = from_prim::<B, 2>(x);
    let (var, mean) = x.clone().var_mean_bias(1);
    let rstd = (var + eps).sqrt().recip();
    (prim((x - mean) * rstd.clone()), prim(rstd))
}

pub fn layer_norm_backward<B: Backend>(
    y: FloatTensor<B>,
    rstd: FloatTensor<B>,
    dy: FloatTensor<B>,
) -> FloatTensor<B> {
    let y = from_prim::<B, 2>(y);
    let rstd = from_prim::<B, 2>(rstd);
    let dy = from_prim::<B, 2>(dy);
    let m1 = dy.clone().mean_dim(1);
    let m2 = (dy.clone() * y.clone()).mean_dim(1);
    prim((dy - m1 - y * m2) * rstd)
}

pub fn scale_shift<B: Backend>(
    x: FloatTensor<B>,
    m: FloatTensor<B>,
    a: Option<FloatTensor<B>>,
) -> FloatTensor<B> {
    let y = from_prim::<B, 3>(x) * from_prim::<B, 2>(m).unsqueeze_dim::<3>(1);
    prim(match a {
        Some(a) => y + from_prim::<B, 2>(a).unsqueeze_dim::<3>(1),
        None => y,
    })
}

pub fn scale_shift_backward<B: Backend>(
    x: FloatTensor<B>,
    m: FloatTensor<B>,
    dy: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let x = from_prim::<B, 3>(x);
    let dy = from_prim::<B, 3>(dy);
    let [b, _, h] = x.dims();
    let dx = dy.clone() * from_prim::<B, 2>(m).unsqueeze_dim::<3>(1);
    let dm = (dy.clone() * x).sum_dim(1).reshape([b, h]);
    let da = dy.sum_dim(1).reshape([b, h]);
    (prim(dx), prim(dm), prim(da))
}

/// q, k, v [B, heads, N, dh] of a fused projection.
fn split_qkv<B: Backend>(
    qkv: Tensor<B, 3>,
    heads: usize,
) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) {
    let [b, n, c3] = qkv.dims();
    let dh = c3 / 3 / heads;
    let qkv = qkv.reshape([b, n, 3, heads, dh]).permute([2, 0, 3, 1, 4]);
    let part = |i| qkv.clone().narrow(0, i, 1).reshape([b, heads, n, dh]);
    (part(0), part(1), part(2))
}

pub fn attention_with_probs<B: Backend>(
    qkv: FloatTensor<B>,
    heads: usize,
    mask: Option<FloatTensor<B>>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let qkv = from_prim::<B, 3>(qkv);
    let [b, n, c3] = qkv.dims();
    let c = c3 / 3;
    let (q, k, v) = split_qkv(qkv, heads);
    let mut scores = q.matmul(k.swap_dims(2, 3)) * (1.0 / ((c / heads) as f64).sqrt());
    if let Some(m) = mask {
        scores = scores + from_prim::<B, 2>(m).unsqueeze::<4>();
    }
    let p = softmax(scores, 3);
    let out = p.clone().matmul(v).swap_dims(1, 2).reshape([b, n, c]);
    (prim(out), prim(p))
}

pub fn attention_backward<B: Backend>(
    qkv: FloatTensor<B>,
    probs: FloatTensor<B>,
    dout: FloatTensor<B>,
    heads: usize,
) -> FloatTensor<B> {
    let qkv = from_prim::<B, 3>(qkv);
    let [b, n, c3] = qkv.dims();
    let dh = c3 / 3 / heads;
    let scale = 1.0 / (dh as f64).sqrt();
    let (q, k, v) = split_qkv(qkv, heads);
    let p = from_prim::<B, 4>(probs);
    let dout = from_prim::<B, 3>(dout)
        .reshape([b, n, heads, dh])
        .swap_dims(1, 2);
    let dv = p.clone().swap_dims(2, 3).matmul(dout.clone());
    let dp = dout.matmul(v.swap_dims(2, 3));
    let ds = p.clone() * (dp.clone() - (dp * p).sum_dim(3)) * scale;
    let dq = ds.clone().matmul(k);
    let dk = ds.swap_dims(2, 3).matmul(q);
    // [3, B, heads, N, dh] → [B, N, 3, heads, dh], the inverse of `split_qkv`'s permutation.
    prim(
        Tensor::stack::<5>(vec![dq, dk, dv], 0)
            .permute([1, 3, 0, 2, 4])
            .reshape([b, n, c3]),
    )
}

pub fn segment_linear<B: Backend>(
    x: FloatTensor<B>,
    w: FloatTensor<B>,
    b: FloatTensor<B>,
    sizes: &[usize],
) -> FloatTensor<B> {
    let x = from_prim::<B, 3>(x);
    let w = from_prim::<B, 2>(w);
    let [bs, _, h] = x.dims();
    let mut off = 0;
    let outs: Vec<Tensor<B, 2>> = sizes
        .iter()
        .enumerate()
        .map(|(p, &n)| {
            let wp = w.clone().narrow(0, off, n);
            off += n;
            x.clone()
                .narrow(1, p, 1)
                .reshape([bs, h])
                .matmul(wp.transpose())
        })
        .collect();
    prim(Tensor::cat(outs, 1) + from_prim::<B, 1>(b).unsqueeze::<2>())
}

pub fn segment_linear_backward<B: Backend>(
    x: FloatTensor<B>,
    w: FloatTensor<B>,
    dz: FloatTensor<B>,
    sizes: &[usize],
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let x = from_prim::<B, 3>(x);
    let w = from_prim::<B, 2>(w);
    let dz = from_prim::<B, 2>(dz);
    let [bs, _, h] = x.dims();
    let mut dx = Vec::with_capacity(sizes.len());
    let mut dw = Vec::with_capacity(sizes.len());
    let mut off = 0;
    for (p, &n) in sizes.iter().enumerate() {
        let dzp = dz.clone().narrow(1, off, n);
        dx.push(dzp.clone().matmul(w.clone().narrow(0, off, n)));
        dw.push(
            dzp.transpose()
                .matmul(x.clone().narrow(1, p, 1).reshape([bs, h])),
        );
        off += n;
    }
    let s = off;
    (
        prim(Tensor::stack::<3>(dx, 1)),
        prim(Tensor::cat(dw, 0)),
        prim(dz.sum_dim(0).reshape([s])),
    )
}
