//! Pathway graph block (official `PathwayGraphBlock`): masked multi-head self-attention
//! between pathway tokens, where pathways attend only to pathways sharing a gene, scaled by
//! a learned `alpha`, then a GELU MLP. Both pre-normed with affine LayerNorm (eps 1e-5).

use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::activation::gelu;
use rnafm_runtime::Result;
use rnafm_runtime::pathways::PathwaySet;

use crate::fused::FusedOps;
use crate::layers::{AffineNorm, attention, linear_tokens};
use crate::weight_io::{Loader, Saver, to_vec};

#[derive(Module, Debug)]
pub struct PathwayGraph<B: Backend> {
    pub norm1: AffineNorm<B>,
    /// `attn.in_proj_{weight,bias}`: q, k, v stacked.
    pub in_proj: Linear<B>,
    pub out_proj: Linear<B>,
    /// Residual scale, stored as [1] (a 0-d tensor in PyTorch).
    pub alpha: Param<Tensor<B, 1>>,
    pub norm2: AffineNorm<B>,
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
    /// Additive attention mask [P, P]: 0 linked, −1e4 not.
    pub mask: Tensor<B, 2>,
    pub heads: usize,
}

impl<B: FusedOps> PathwayGraph<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let h = self.norm1.forward(x.clone());
        let y = attention(
            linear_tokens(&self.in_proj, h),
            self.heads,
            Some(&self.mask),
        );
        let y = linear_tokens(&self.out_proj, y);
        let x = x + y * self.alpha.val().unsqueeze::<3>();
        let m = linear_tokens(
            &self.fc2,
            gelu(linear_tokens(&self.fc1, self.norm2.forward(x.clone()))),
        );
        x + m
    }
}

impl<B: Backend> PathwayGraph<B> {
    pub fn load(l: &Loader<B>, pathways: &PathwaySet, hidden: usize, heads: usize) -> Result<Self> {
        let h = hidden;
        let p = pathways.len();
        let alpha = l.host("pathway_graph.alpha", &[])?.data.clone();
        Ok(PathwayGraph {
            norm1: l.affine_norm("pathway_graph.norm1", h, 1e-5)?,
            in_proj: crate::layers::linear_from(
                l.linear_weight("pathway_graph.attn.in_proj_weight", h, 3 * h)?,
                Some(l.tensor("pathway_graph.attn.in_proj_bias", [3 * h])?),
            ),
            out_proj: l.linear("pathway_graph.attn.out_proj", h, h, true)?,
            alpha: Param::from_tensor(l.from_vec(alpha, [1])),
            norm2: l.affine_norm("pathway_graph.norm2", h, 1e-5)?,
            fc1: l.linear("pathway_graph.mlp.0", h, 4 * h, true)?,
            fc2: l.linear("pathway_graph.mlp.2", 4 * h, h, true)?,
            mask: l.from_vec(pathways.attention_mask(), [p, p]),
            heads,
        })
    }

    pub fn save(&self, s: &mut Saver) {
        s.affine_norm("pathway_graph.norm1", &self.norm1);
        s.linear_weight(
            "pathway_graph.attn.in_proj_weight",
            &self.in_proj.weight.val(),
        );
        if let Some(b) = &self.in_proj.bias {
            s.tensor("pathway_graph.attn.in_proj_bias", &b.val());
        }
        s.linear("pathway_graph.attn.out_proj", &self.out_proj);
        s.put("pathway_graph.alpha", vec![], to_vec(&self.alpha.val()));
        s.affine_norm("pathway_graph.norm2", &self.norm2);
        s.linear("pathway_graph.mlp.0", &self.fc1);
        s.linear("pathway_graph.mlp.2", &self.fc2);
        // Buffers of the official module, so an exported checkpoint loads there unchanged.
        let mask = to_vec(&self.mask);
        let p = self.mask.dims()[0];
        let blocked: Vec<f32> = mask
            .iter()
            .map(|&m| f32::from(u8::from(m != 0.0)))
            .collect();
        s.put("pathway_graph.add_mask", vec![p, p], mask);
        s.put("pathway_graph.attn_mask", vec![p, p], blocked);
    }
}
