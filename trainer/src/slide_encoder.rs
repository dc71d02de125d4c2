//! Slide encoder: cluster features plus a learned cluster-index embedding, a 2-layer
//! transformer (timm attention without pre-norm, bias-free qkv; pre-normed exact-GELU
//! feed-forward), mean over clusters, then Linear, SiLU, Linear to the token width.

use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::activation::{gelu, silu};
use rnafm_runtime::Result;

use crate::fused::FusedOps;
use crate::layers::{AffineNorm, attention, linear_tokens};
use crate::weight_io::{Loader, Saver};

/// Layers of the slide transformer (fixed by the official code).
pub const SLIDE_LAYERS: usize = 2;

#[derive(Module, Debug)]
pub struct SlideLayer<B: Backend> {
    pub qkv: Linear<B>,
    pub proj: Linear<B>,
    pub norm: AffineNorm<B>,
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
}

/// The weight names of the slide encoder (official names, the same in the flow model and
/// the regression baseline): names equal to or starting with one of these.
pub const WEIGHT_PREFIXES: &[&str] = &[
    "transformer.",
    "image_embedder.",
    "cluster_index_emb",
    "empty_cond",
];

#[derive(Module, Debug)]
pub struct SlideEncoder<B: Backend> {
    /// `cluster_index_emb` [K, D].
    pub cluster_emb: Param<Tensor<B, 2>>,
    pub layers: Vec<SlideLayer<B>>,
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
    /// The null condition `empty_cond` [1, K, D] (a buffer: never trained).
    pub empty_cond: Tensor<B, 3>,
    pub heads: usize,
}

impl<B: FusedOps> SlideEncoder<B> {
    /// `y` [B, K, D] → slide embedding [B, H].
    pub fn forward(&self, y: Tensor<B, 3>) -> Tensor<B, 2> {
        let mut y = y + self.cluster_emb.val().unsqueeze::<3>();
        for layer in &self.layers {
            y = linear_tokens(
                &layer.proj,
                attention(linear_tokens(&layer.qkv, y.clone()), self.heads, None),
            ) + y;
            let f = linear_tokens(
                &layer.fc2,
                gelu(linear_tokens(&layer.fc1, layer.norm.forward(y.clone()))),
            );
            y = f + y;
        }
        let [b, _, d] = y.dims();
        let pooled = y.mean_dim(1).reshape([b, d]);
        self.fc2.forward(silu(self.fc1.forward(pooled)))
    }
}

impl<B: Backend> SlideEncoder<B> {
    /// The null condition repeated for a batch of `b`.
    pub fn null_condition(&self, b: usize) -> Tensor<B, 3> {
        self.empty_cond.clone().repeat_dim(0, b)
    }

    pub fn load(
        l: &Loader<B>,
        clusters: usize,
        feat_dim: usize,
        hidden: usize,
        heads: usize,
    ) -> Result<Self> {
        let (k, d, h) = (clusters, feat_dim, hidden);
        let mut layers = Vec::with_capacity(SLIDE_LAYERS);
        for i in 0..SLIDE_LAYERS {
            let pre = format!("transformer.layers.{i}");
            layers.push(SlideLayer {
                qkv: l.linear(&format!("{pre}.0.qkv"), d, 3 * d, false)?,
                proj: l.linear(&format!("{pre}.0.proj"), d, d, true)?,
                norm: l.affine_norm(&format!("{pre}.1.net.0"), d, 1e-5)?,
                fc1: l.linear(&format!("{pre}.1.net.1"), d, 4 * h, true)?,
                fc2: l.linear(&format!("{pre}.1.net.3"), 4 * h, d, true)?,
            });
        }
        Ok(SlideEncoder {
            cluster_emb: l.param("cluster_index_emb", [k, d])?,
            layers,
            fc1: l.linear("image_embedder.0", d, d, true)?,
            fc2: l.linear("image_embedder.2", d, h, true)?,
            empty_cond: l.tensor("empty_cond", [1, k, d])?,
            heads,
        })
    }

    pub fn save(&self, s: &mut Saver) {
        s.tensor("cluster_index_emb", &self.cluster_emb.val());
        for (i, layer) in self.layers.iter().enumerate() {
            let pre = format!("transformer.layers.{i}");
            s.linear(&format!("{pre}.0.qkv"), &layer.qkv);
            s.linear(&format!("{pre}.0.proj"), &layer.proj);
            s.affine_norm(&format!("{pre}.1.net.0"), &layer.norm);
            s.linear(&format!("{pre}.1.net.1"), &layer.fc1);
            s.linear(&format!("{pre}.1.net.3"), &layer.fc2);
        }
        s.linear("image_embedder.0", &self.fc1);
        s.linear("image_embedder.2", &self.fc2);
        s.tensor("empty_cond", &self.empty_cond);
    }
}
