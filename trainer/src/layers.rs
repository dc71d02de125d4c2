//! Small building blocks shared by the model parts: LayerNorm with or without affine
//! parameters, adaLN modulation, and multi-head attention in the official layout.

use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::activation::softmax;

/// LayerNorm over the last dimension without affine parameters (biased variance, as
/// PyTorch).
pub fn layer_norm<B: Backend, const D: usize>(x: Tensor<B, D>, eps: f64) -> Tensor<B, D> {
    let (var, mean) = x.clone().var_mean_bias(D - 1);
    (x - mean) / (var + eps).sqrt()
}

/// `LN(x)·(1+scale)+shift` with `shift`/`scale` of shape [B, H] broadcast over tokens.
pub fn modulate<B: Backend>(
    x: Tensor<B, 3>,
    shift: Tensor<B, 2>,
    scale: Tensor<B, 2>,
    eps: f64,
) -> Tensor<B, 3> {
    layer_norm(x, eps) * (scale.unsqueeze_dim::<3>(1) + 1.0) + shift.unsqueeze_dim::<3>(1)
}

/// LayerNorm with a gain and bias (PyTorch `nn.LayerNorm` with affine).
#[derive(Module, Debug)]
pub struct AffineNorm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
    pub bias: Param<Tensor<B, 1>>,
    pub eps: f64,
}

impl<B: Backend> AffineNorm<B> {
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dims = x.dims()[D - 1];
        let w = self.weight.val().reshape(bcast::<D>(dims));
        let b = self.bias.val().reshape(bcast::<D>(dims));
        layer_norm(x, self.eps) * w + b
    }
}

/// Shape [1, …, 1, n] for broadcasting a vector over the last dimension.
pub fn bcast<const D: usize>(n: usize) -> [usize; D] {
    let mut s = [1usize; D];
    s[D - 1] = n;
    s
}

/// Scaled dot-product attention over fused `qkv` [B, N, 3C] laid out as (3, heads, C/heads),
/// the layout of timm `Attention` and `nn.MultiheadAttention`'s `in_proj`. `mask` is an
/// additive [N, N] mask. Returns [B, N, C] before the output projection.
pub fn attention<B: Backend>(
    qkv: Tensor<B, 3>,
    heads: usize,
    mask: Option<&Tensor<B, 2>>,
) -> Tensor<B, 3> {
    let [b, n, c3] = qkv.dims();
    let c = c3 / 3;
    let dh = c / heads;
    let qkv = qkv.reshape([b, n, 3, heads, dh]).permute([2, 0, 3, 1, 4]);
    let q: Tensor<B, 4> = qkv.clone().narrow(0, 0, 1).reshape([b, heads, n, dh]);
    let k: Tensor<B, 4> = qkv.clone().narrow(0, 1, 1).reshape([b, heads, n, dh]);
    let v: Tensor<B, 4> = qkv.narrow(0, 2, 1).reshape([b, heads, n, dh]);
    let mut scores = q.matmul(k.swap_dims(2, 3)) * (1.0 / (dh as f64).sqrt());
    if let Some(m) = mask {
        scores = scores + m.clone().unsqueeze::<4>();
    }
    let attn = softmax(scores, 3);
    attn.matmul(v).swap_dims(1, 2).reshape([b, n, c])
}

/// A `Linear` from burn-layout parameters ([in, out] weight).
pub fn linear_from<B: Backend>(weight: Tensor<B, 2>, bias: Option<Tensor<B, 1>>) -> Linear<B> {
    Linear {
        weight: Param::from_tensor(weight),
        bias: bias.map(Param::from_tensor),
    }
}
