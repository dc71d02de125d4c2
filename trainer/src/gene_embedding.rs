//! Gene → token embedding (official `GenePathwayEmbedding`): per pathway, Linear(|p|→H),
//! SiLU, Linear(H→H) on the pathway's genes plus a learned pathway embedding; background
//! genes go through their own MLP into one extra token.
//!
//! The member genes of all pathways are gathered once; each pathway's first linear is one
//! small matmul on its slice (kept as its own parameter: a slice of one packed parameter
//! would make every slice's gradient a full-size tensor). The P second linears run as one
//! batched [P, H, H] matmul.

use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::activation::silu;
use rnafm_runtime::Result;
use rnafm_runtime::pathways::PathwaySet;

use crate::weight_io::{Loader, Saver, index_tensor, to_vec, transpose};

#[derive(Module, Debug)]
pub struct GeneEmbedding<B: Backend> {
    /// First linear weight of each pathway, [|p|, H].
    pub w1: Vec<Param<Tensor<B, 2>>>,
    /// [P, H]
    pub b1: Param<Tensor<B, 2>>,
    /// Second linears, [P, H(in), H(out)].
    pub w2: Param<Tensor<B, 3>>,
    /// [P, H]
    pub b2: Param<Tensor<B, 2>>,
    /// `gene_pathway_ebd` [P, H].
    pub pathway_ebd: Param<Tensor<B, 2>>,
    /// Concatenated member gene indices of all pathways.
    pub members: Tensor<B, 1, Int>,
    pub offsets: Vec<usize>,
    pub sizes: Vec<usize>,
    pub background: Option<BackgroundEmbedding<B>>,
}

#[derive(Module, Debug)]
pub struct BackgroundEmbedding<B: Backend> {
    pub genes: Tensor<B, 1, Int>,
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
    /// `bg_gene_bias` [1, 1, H].
    pub bias: Param<Tensor<B, 3>>,
}

impl<B: Backend> GeneEmbedding<B> {
    /// `x` [B, G] → (pathway tokens [B, P, H], background token [B, 1, H] if any).
    pub fn forward(&self, x: Tensor<B, 2>) -> (Tensor<B, 3>, Option<Tensor<B, 3>>) {
        let [b, _] = x.dims();
        let p = self.sizes.len();
        let [_, h] = self.b1.dims();
        let xg = x.clone().select(1, self.members.clone());
        let firsts: Vec<Tensor<B, 2>> = self
            .offsets
            .iter()
            .zip(&self.sizes)
            .zip(&self.w1)
            .map(|((&o, &n), w)| xg.clone().narrow(1, o, n).matmul(w.val()))
            .collect();
        let h1 = Tensor::stack::<3>(firsts, 1) + self.b1.val().unsqueeze::<3>();
        let h1 = silu(h1);
        let h2 = h1.swap_dims(0, 1).matmul(self.w2.val()).swap_dims(0, 1);
        let tokens = h2 + self.b2.val().unsqueeze::<3>() + self.pathway_ebd.val().unsqueeze::<3>();
        debug_assert_eq!(tokens.dims(), [b, p, h]);
        let bg = self.background.as_ref().map(|bg| {
            let xb = x.select(1, bg.genes.clone());
            bg.fc2
                .forward(silu(bg.fc1.forward(xb)))
                .unsqueeze_dim::<3>(1)
                + bg.bias.val()
        });
        (tokens, bg)
    }

    pub fn load(l: &Loader<B>, pathways: &PathwaySet, hidden: usize) -> Result<Self> {
        let h = hidden;
        let p = pathways.len();
        let sizes = pathways.sizes();
        let mut offsets = Vec::with_capacity(p);
        let mut w1 = Vec::with_capacity(p);
        let mut off = 0;
        let mut b1 = Vec::with_capacity(p * h);
        let mut w2 = Vec::with_capacity(p * h * h);
        let mut b2 = Vec::with_capacity(p * h);
        for (i, &n) in sizes.iter().enumerate() {
            offsets.push(off);
            off += n;
            let pre = format!("gene_embedder.gene_count_ebd.{i}");
            w1.push(Param::from_tensor(l.linear_weight(
                &format!("{pre}.0.weight"),
                n,
                h,
            )?));
            b1.extend_from_slice(&l.host(&format!("{pre}.0.bias"), &[h])?.data);
            w2.extend(transpose(
                &l.host(&format!("{pre}.2.weight"), &[h, h])?.data,
                h,
                h,
            ));
            b2.extend_from_slice(&l.host(&format!("{pre}.2.bias"), &[h])?.data);
        }
        let members: Vec<usize> = pathways.members.concat();
        let background = if pathways.background.is_empty() {
            None
        } else {
            let nb = pathways.background.len();
            Some(BackgroundEmbedding {
                genes: index_tensor(&pathways.background, l.device),
                fc1: l.linear("gene_embedder.bg_gene_count_ebd.0", nb, h, true)?,
                fc2: l.linear("gene_embedder.bg_gene_count_ebd.2", h, h, true)?,
                bias: l.param("gene_embedder.bg_gene_bias", [1, 1, h])?,
            })
        };
        Ok(GeneEmbedding {
            w1,
            b1: Param::from_tensor(l.from_vec(b1, [p, h])),
            w2: Param::from_tensor(l.from_vec(w2, [p, h, h])),
            b2: Param::from_tensor(l.from_vec(b2, [p, h])),
            pathway_ebd: l.param("gene_embedder.gene_pathway_ebd", [p, h])?,
            members: index_tensor(&members, l.device),
            offsets,
            sizes,
            background,
        })
    }

    pub fn save(&self, s: &mut Saver) {
        let [p, h] = self.b1.dims();
        let b1 = to_vec(&self.b1.val());
        let w2 = to_vec(&self.w2.val());
        let b2 = to_vec(&self.b2.val());
        for i in 0..p {
            let pre = format!("gene_embedder.gene_count_ebd.{i}");
            s.linear_weight(&format!("{pre}.0.weight"), &self.w1[i].val());
            s.put(
                &format!("{pre}.0.bias"),
                vec![h],
                b1[i * h..(i + 1) * h].to_vec(),
            );
            s.put(
                &format!("{pre}.2.weight"),
                vec![h, h],
                transpose(&w2[i * h * h..(i + 1) * h * h], h, h),
            );
            s.put(
                &format!("{pre}.2.bias"),
                vec![h],
                b2[i * h..(i + 1) * h].to_vec(),
            );
        }
        s.tensor("gene_embedder.gene_pathway_ebd", &self.pathway_ebd.val());
        if let Some(bg) = &self.background {
            s.linear("gene_embedder.bg_gene_count_ebd.0", &bg.fc1);
            s.linear("gene_embedder.bg_gene_count_ebd.2", &bg.fc2);
            s.tensor("gene_embedder.bg_gene_bias", &bg.bias.val());
        }
    }
}
