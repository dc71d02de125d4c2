//! Fused operations for the training hot path, with their own backward passes.
//!
//! burn 0.21's autodiff differentiates tanh-GELU, LayerNorm, softmax attention and
//! per-batch broadcasts as chains of small element-wise ops, and on the CPU backend several
//! of those chains fall onto a scalar strided path; one paper-size training step spent most
//! of its time there rather than in matrix products. Each op here is one node in the graph
//! with a hand-derived gradient:
//!
//! - `gelu_tanh`: GELU with the tanh approximation (DiT's MLP);
//! - `layer_norm`: LayerNorm over the last axis without affine parameters;
//! - `scale_shift`: `x·m + a` with per-sample `m`, `a` [B, H] broadcast over tokens
//!   (adaLN modulation and gates);
//! - `attention`: multi-head softmax attention from a fused `qkv` projection, with an
//!   optional additive mask (the mask is a constant: it gets no gradient);
//! - `segment_linear`: one linear map per pathway token onto that pathway's genes (the
//!   output heads), as one op instead of P slices whose gradients would each be full-size.
//!
//! [`FusedOps`] is implemented for burn's CPU backend (`Flex`) with native kernels, for
//! `Autodiff<B>` over any `B: FusedOps` (the custom backward passes), and for CUDA with the
//! reference decompositions in [`reference`] (the trait's default methods).

mod autodiff;
mod flex;
pub mod reference;
#[cfg(test)]
mod tests;

use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::FloatTensor;

/// Backend extension with the fused ops. Shapes are fixed per method (callers reshape):
/// `gelu_tanh` on [n]; `layer_norm` on [rows, h] with `rstd` [rows, 1]; `scale_shift` on
/// x [B, N, H] with m, a [B, H]; `attention` on qkv [B, N, 3C] laid out (3, heads, C/heads)
/// with mask [N, N], giving [B, N, C] and the probabilities [B, heads, N, N];
/// `segment_linear` on tokens [B, P, H], weights [S, H] (PyTorch rows of all P heads
/// stacked), bias [S], giving [B, S] with pathway p owning `sizes[p]` consecutive outputs.
pub trait FusedOps: Backend {
    fn fused_gelu_tanh(x: FloatTensor<Self>) -> FloatTensor<Self> {
        reference::gelu_tanh::<Self>(x)
    }
    fn fused_gelu_tanh_backward(x: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self> {
        reference::gelu_tanh_backward::<Self>(x, dy)
    }

    fn fused_layer_norm(x: FloatTensor<Self>, eps: f64) -> FloatTensor<Self> {
        Self::fused_layer_norm_with_rstd(x, eps).0
    }
    /// The normalised rows and 1/sqrt(var + eps) per row, [rows, 1].
    fn fused_layer_norm_with_rstd(
        x: FloatTensor<Self>,
        eps: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        reference::layer_norm_with_rstd::<Self>(x, eps)
    }
    /// Input gradient from the normalised output `y` and `rstd`.
    fn fused_layer_norm_backward(
        y: FloatTensor<Self>,
        rstd: FloatTensor<Self>,
        dy: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        reference::layer_norm_backward::<Self>(y, rstd, dy)
    }

    fn fused_scale_shift(
        x: FloatTensor<Self>,
        m: FloatTensor<Self>,
        a: Option<FloatTensor<Self>>,
    ) -> FloatTensor<Self> {
        reference::scale_shift::<Self>(x, m, a)
    }
    /// Gradients (x, m, a) of `scale_shift`.
    fn fused_scale_shift_backward(
        x: FloatTensor<Self>,
        m: FloatTensor<Self>,
        dy: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        reference::scale_shift_backward::<Self>(x, m, dy)
    }

    fn fused_attention(
        qkv: FloatTensor<Self>,
        heads: usize,
        mask: Option<FloatTensor<Self>>,
    ) -> FloatTensor<Self> {
        Self::fused_attention_with_probs(qkv, heads, mask).0
    }
    fn fused_attention_with_probs(
        qkv: FloatTensor<Self>,
        heads: usize,
        mask: Option<FloatTensor<Self>>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        reference::attention_with_probs::<Self>(qkv, heads, mask)
    }
    /// Gradient of `qkv` from the saved probabilities and the output gradient.
    fn fused_attention_backward(
        qkv: FloatTensor<Self>,
        probs: FloatTensor<Self>,
        dout: FloatTensor<Self>,
        heads: usize,
    ) -> FloatTensor<Self> {
        reference::attention_backward::<Self>(qkv, probs, dout, heads)
    }

    fn fused_segment_linear(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
        sizes: &[usize],
    ) -> FloatTensor<Self> {
        reference::segment_linear::<Self>(x, w, b, sizes)
    }
    /// Gradients (x, w, b) of `segment_linear`.
    fn fused_segment_linear_backward(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        dz: FloatTensor<Self>,
        sizes: &[usize],
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        reference::segment_linear_backward::<Self>(x, w, dz, sizes)
    }
}

#[cfg(feature = "cuda")]
impl FusedOps for burn::backend::Cuda {}

/// A backend the trainer can train on: autodiff over an inner backend, both with the
/// fused ops (the inner one runs validation, EMA sampling and prediction).
pub trait TrainBackend: AutodiffBackend<InnerBackend: FusedOps> + FusedOps {}
impl<T: AutodiffBackend<InnerBackend: FusedOps> + FusedOps> TrainBackend for T {}

pub(crate) fn from_prim<B: Backend, const D: usize>(p: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(p))
}

pub(crate) fn prim<B: Backend, const D: usize>(t: Tensor<B, D>) -> FloatTensor<B> {
    t.into_primitive().tensor()
}

/// tanh-approximated GELU, element-wise.
pub fn gelu_tanh<B: FusedOps, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let dims = x.dims();
    let n = dims.iter().product::<usize>();
    from_prim::<B, 1>(B::fused_gelu_tanh(prim(x.reshape([n])))).reshape(dims)
}

/// LayerNorm over the last axis, no affine parameters (biased variance, as PyTorch).
pub fn layer_norm<B: FusedOps, const D: usize>(x: Tensor<B, D>, eps: f64) -> Tensor<B, D> {
    let dims = x.dims();
    let h = dims[D - 1];
    let rows = dims.iter().product::<usize>() / h.max(1);
    from_prim::<B, 2>(B::fused_layer_norm(prim(x.reshape([rows, h])), eps)).reshape(dims)
}

/// `x·m + a` with m, a [B, H] broadcast over the tokens of x [B, N, H].
pub fn scale_shift<B: FusedOps>(
    x: Tensor<B, 3>,
    m: Tensor<B, 2>,
    a: Option<Tensor<B, 2>>,
) -> Tensor<B, 3> {
    from_prim(B::fused_scale_shift(prim(x), prim(m), a.map(prim)))
}

/// Multi-head scaled dot-product attention over fused `qkv` [B, N, 3C] (layout
/// (3, heads, C/heads), as timm `Attention` and `nn.MultiheadAttention`'s `in_proj`), with an
/// optional additive [N, N] mask. Returns [B, N, C] before the output projection.
pub fn attention<B: FusedOps>(
    qkv: Tensor<B, 3>,
    heads: usize,
    mask: Option<&Tensor<B, 2>>,
) -> Tensor<B, 3> {
    from_prim(B::fused_attention(
        prim(qkv),
        heads,
        mask.map(|m| prim(m.clone())),
    ))
}

/// Per-pathway linear heads: tokens [B, P, H] → [B, S], pathway p mapping its token with
/// rows `offset_p..offset_p + sizes[p]` of `w` [S, H] and `b` [S].
pub fn segment_linear<B: FusedOps>(
    x: Tensor<B, 3>,
    w: Tensor<B, 2>,
    b: Tensor<B, 1>,
    sizes: &[usize],
) -> Tensor<B, 2> {
    from_prim(B::fused_segment_linear(prim(x), prim(w), prim(b), sizes))
}
