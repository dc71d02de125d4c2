//! Small building blocks shared by the model parts: LayerNorm with or without affine
//! parameters, adaLN modulation, and multi-head attention in the official layout (the
//! heavy ones are fused ops, see `crate::fused`).

use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;

use crate::fused::{FusedOps, scale_shift};
pub use crate::fused::{attention, layer_norm};

/// `LN(x)·(1+scale)+shift` with `shift`/`scale` of shape [B, H] broadcast over tokens.
pub fn modulate<B: FusedOps>(
    x: Tensor<B, 3>,
    shift: Tensor<B, 2>,
    scale: Tensor<B, 2>,
    eps: f64,
) -> Tensor<B, 3> {
    scale_shift(layer_norm(x, eps), scale + 1.0, Some(shift))
}

/// LayerNorm with a gain and bias (PyTorch `nn.LayerNorm` with affine).
#[derive(Module, Debug)]
pub struct AffineNorm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
    pub bias: Param<Tensor<B, 1>>,
    pub eps: f64,
}

impl<B: FusedOps> AffineNorm<B> {
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

/// `lin` on tokens [B, N, I] as one [B·N, I] product. burn's `Linear` on a 3-D input runs B
/// separate products and, in backward, B weight gradients that are summed afterwards; one
/// 2-D product is one large, well-threaded GEMM each way.
pub fn linear_tokens<B: Backend>(lin: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [b, n, i] = x.dims();
    let y = lin.forward(x.reshape([b * n, i]));
    let o = y.dims()[1];
    y.reshape([b, n, o])
}

/// A `Linear` from burn-layout parameters ([in, out] weight).
pub fn linear_from<B: Backend>(weight: Tensor<B, 2>, bias: Option<Tensor<B, 1>>) -> Linear<B> {
    Linear {
        weight: Param::from_tensor(weight),
        bias: bias.map(Param::from_tensor),
    }
}
