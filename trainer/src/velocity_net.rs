//! The whole velocity network v(x, t | slide) (official `RNAFMModel`), built from a
//! `ModelSpec` and a weight map in official names, and saved back to one.

use std::path::Path;

use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::IndexingUpdateOp;
use burn::tensor::activation::silu;
use rnafm_runtime::model_spec::ModelSpec;
use rnafm_runtime::weights::WeightMap;
use rnafm_runtime::{Error, Result};

use crate::dit_block::DitBlock;
use crate::fused::FusedOps;
use crate::gene_embedding::GeneEmbedding;
use crate::heads::{BackgroundHead, PathwayHeads};
use crate::pathway_graph::PathwayGraph;
use crate::slide_encoder::SlideEncoder;
use crate::timestep::TimestepEmbedder;
use crate::weight_io::{Loader, Saver, index_tensor};

#[derive(Module, Debug)]
pub struct VelocityNet<B: Backend> {
    pub genes: GeneEmbedding<B>,
    pub graph: Option<PathwayGraph<B>>,
    pub time: TimestepEmbedder<B>,
    pub slide: SlideEncoder<B>,
    pub blocks: Vec<DitBlock<B>>,
    pub heads: PathwayHeads<B>,
    pub bg_head: Option<BackgroundHead<B>>,
    /// Output gene of every head output: pathway members in order, then background genes.
    pub out_index: Tensor<B, 1, Int>,
    /// 1 / (number of heads predicting each gene), [1, G].
    pub inv_count: Tensor<B, 2>,
    pub n_genes: usize,
    /// Training-only head from the slide embedding to the z-scored profile
    /// ([`AUX_HEAD`]; see `TrainOptions::aux_weight`). Not part of the official model and
    /// not exported: sampling never uses it.
    pub aux: Option<Linear<B>>,
}

/// Weight-name prefix of the training-only auxiliary head.
pub const AUX_HEAD: &str = "rnafm_aux_head";

impl<B: FusedOps> VelocityNet<B> {
    /// Velocity with the slide condition `y`; `x` [B, G], `t` [B], `y` [B, K, D].
    pub fn forward(&self, x: Tensor<B, 2>, t: Tensor<B, 1>, y: Tensor<B, 3>) -> Tensor<B, 2> {
        self.forward_with_slide(x, t, y).0
    }

    /// The velocity and the slide embedding [B, H] it was conditioned on.
    pub fn forward_with_slide(
        &self,
        x: Tensor<B, 2>,
        t: Tensor<B, 1>,
        y: Tensor<B, 3>,
    ) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let [b, _] = x.dims();
        let (mut tok, bg) = self.genes.forward(x.clone());
        if let Some(g) = &self.graph {
            tok = g.forward(tok);
        }
        let slide = self.slide.forward(y);
        let c = self.time.forward(t) + slide.clone();
        let sc = silu(c);
        for blk in &self.blocks {
            tok = blk.forward(tok, sc.clone());
        }
        let mut out = self.heads.forward(tok, sc.clone());
        if let (Some(head), Some(bg)) = (&self.bg_head, bg) {
            out = Tensor::cat(vec![out, head.forward(bg, sc)], 1);
        }
        let v = Tensor::<B, 2>::zeros([b, self.n_genes], &x.device()).select_assign(
            1,
            self.out_index.clone(),
            out,
            IndexingUpdateOp::Add,
        );
        (v * self.inv_count.clone(), slide)
    }

    /// Velocity with the null condition (`empty_cond`).
    pub fn forward_uncond(&self, x: Tensor<B, 2>, t: Tensor<B, 1>) -> Tensor<B, 2> {
        let b = x.dims()[0];
        let y = self.slide.null_condition(b);
        self.forward(x, t, y)
    }

    /// Classifier-free guidance: v_u + s·(v_c − v_u), both branches in one batch.
    pub fn forward_cfg(
        &self,
        x: Tensor<B, 2>,
        t: Tensor<B, 1>,
        y: Tensor<B, 3>,
        scale: f64,
    ) -> Tensor<B, 2> {
        let b = x.dims()[0];
        let null = self.slide.null_condition(b);
        let v = self.forward(
            Tensor::cat(vec![x.clone(), x], 0),
            Tensor::cat(vec![t.clone(), t], 0),
            Tensor::cat(vec![y, null], 0),
        );
        let vc = v.clone().narrow(0, 0, b);
        let vu = v.narrow(0, b, b);
        vu.clone() + (vc - vu) * scale
    }
}

impl<B: Backend> VelocityNet<B> {
    /// Builds the network for `spec` from `weights` (official names); `origin` names the
    /// weight file in errors. Buffers the model recomputes (masks) are not read.
    pub fn from_weights(
        spec: &ModelSpec,
        weights: &WeightMap,
        origin: &Path,
        device: &B::Device,
    ) -> Result<Self> {
        spec.validate(origin)?;
        let cfg = &spec.config;
        let pw = &spec.pathways;
        let l = Loader::new(weights, origin, device);
        let h = cfg.hidden;
        let graph = if cfg.graph_attention {
            Some(PathwayGraph::load(&l, pw, h, cfg.graph_heads)?)
        } else {
            None
        };
        let blocks = (0..cfg.depth)
            .map(|i| DitBlock::load(&l, i, h, cfg.heads, cfg.mlp_ratio))
            .collect::<Result<Vec<_>>>()?;
        let bg_head = if pw.background.is_empty() {
            None
        } else {
            Some(BackgroundHead::load(&l, h, pw.background.len())?)
        };
        let mut out_index: Vec<usize> = pw.members.concat();
        out_index.extend_from_slice(&pw.background);
        let counts = pw.gene_counts();
        if let Some(g) = counts.iter().position(|&c| c == 0) {
            return Err(Error::invalid(
                origin,
                format!("gene {g} is in no pathway and not in the background"),
            ));
        }
        let inv: Vec<f32> = counts.iter().map(|&c| 1.0 / c as f32).collect();
        Ok(VelocityNet {
            genes: GeneEmbedding::load(&l, pw, h)?,
            graph,
            time: TimestepEmbedder::load(&l, h)?,
            slide: SlideEncoder::load(&l, cfg.clusters, cfg.feat_dim, h, cfg.heads)?,
            blocks,
            heads: PathwayHeads::load(&l, pw, h)?,
            bg_head,
            out_index: index_tensor(&out_index, device),
            inv_count: l.from_vec(inv, [1, cfg.genes]),
            n_genes: cfg.genes,
            aux: if weights.tensors.contains_key(&format!("{AUX_HEAD}.weight")) {
                Some(l.linear(AUX_HEAD, h, cfg.genes, true)?)
            } else {
                None
            },
        })
    }

    /// All parameters and buffers in official names.
    pub fn to_weights(&self) -> WeightMap {
        let mut s = Saver::default();
        self.genes.save(&mut s);
        if let Some(g) = &self.graph {
            g.save(&mut s);
        }
        self.time.save(&mut s);
        self.slide.save(&mut s);
        for (i, b) in self.blocks.iter().enumerate() {
            b.save(&mut s, i);
        }
        self.heads.save(&mut s);
        if let Some(b) = &self.bg_head {
            b.save(&mut s);
        }
        if let Some(a) = &self.aux {
            s.linear(AUX_HEAD, a);
        }
        s.map
    }
}
