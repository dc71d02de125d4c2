//! Output heads: one adaLN-modulated linear per pathway token (official `FinalLayer`,
//! LayerNorm eps 1e-6) and one for the background token (`BGHead`, eps 1e-5).
//!
//! The P modulation linears are packed into one [H, P·2H] matmul; the P output linears
//! stay separate modules.

use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;
use rnafm_runtime::Result;
use rnafm_runtime::pathways::PathwaySet;

use crate::layers::modulate;
use crate::weight_io::{Loader, Saver, to_vec, transpose};

#[derive(Module, Debug)]
pub struct PathwayHeads<B: Backend> {
    /// Packed `final_layer.adaLN_modulation.{i}.1`: [H, P·2H], pathway i owns columns
    /// `i·2H..(i+1)·2H` (shift then scale). Used whole, so packing costs nothing.
    pub ada_w: Param<Tensor<B, 2>>,
    pub ada_b: Param<Tensor<B, 1>>,
    /// `final_layer.linear.{i}`, one per pathway: a column block of one packed parameter
    /// would make each block's gradient a full-size tensor.
    pub out: Vec<Linear<B>>,
}

impl<B: Backend> PathwayHeads<B> {
    /// Tokens [B, P, H] → concatenated per-pathway outputs [B, Σ|p|].
    pub fn forward(&self, x: Tensor<B, 3>, silu_c: Tensor<B, 2>) -> Tensor<B, 2> {
        let [b, p, h] = x.dims();
        let m = (silu_c.matmul(self.ada_w.val()) + self.ada_b.val().unsqueeze::<2>()).reshape([
            b,
            p,
            2 * h,
        ]);
        let shift = m.clone().narrow(2, 0, h);
        let scale = m.narrow(2, h, h);
        let x = crate::layers::layer_norm(x, 1e-6) * (scale + 1.0) + shift;
        let outs: Vec<Tensor<B, 2>> = x
            .split(1, 1)
            .into_iter()
            .zip(&self.out)
            .map(|(xi, lin)| lin.forward(xi.reshape([b, h])))
            .collect();
        Tensor::cat(outs, 1)
    }

    pub fn load(l: &Loader<B>, pathways: &PathwaySet, hidden: usize) -> Result<Self> {
        let h = hidden;
        let p = pathways.len();
        // Built as [P·2H, H] (PyTorch rows) then transposed once.
        let mut ada_w = Vec::with_capacity(p * 2 * h * h);
        let mut ada_b = Vec::with_capacity(p * 2 * h);
        let mut out = Vec::with_capacity(p);
        for (i, n) in pathways.sizes().into_iter().enumerate() {
            let a = format!("final_layer.adaLN_modulation.{i}.1");
            ada_w.extend_from_slice(&l.host(&format!("{a}.weight"), &[2 * h, h])?.data);
            ada_b.extend_from_slice(&l.host(&format!("{a}.bias"), &[2 * h])?.data);
            out.push(l.linear(&format!("final_layer.linear.{i}"), h, n, true)?);
        }
        Ok(PathwayHeads {
            ada_w: Param::from_tensor(l.from_vec(transpose(&ada_w, p * 2 * h, h), [h, p * 2 * h])),
            ada_b: Param::from_tensor(l.from_vec(ada_b, [p * 2 * h])),
            out,
        })
    }

    pub fn save(&self, s: &mut Saver) {
        let [h, p2h] = self.ada_w.dims();
        let ada_w = transpose(&to_vec(&self.ada_w.val()), h, p2h);
        let ada_b = to_vec(&self.ada_b.val());
        let two_h = 2 * h;
        for (i, lin) in self.out.iter().enumerate() {
            let a = format!("final_layer.adaLN_modulation.{i}.1");
            s.put(
                &format!("{a}.weight"),
                vec![two_h, h],
                ada_w[i * two_h * h..(i + 1) * two_h * h].to_vec(),
            );
            s.put(
                &format!("{a}.bias"),
                vec![two_h],
                ada_b[i * two_h..(i + 1) * two_h].to_vec(),
            );
            s.linear(&format!("final_layer.linear.{i}"), lin);
        }
    }
}

#[derive(Module, Debug)]
pub struct BackgroundHead<B: Backend> {
    pub ada: Linear<B>,
    pub fc: Linear<B>,
}

impl<B: Backend> BackgroundHead<B> {
    /// Background token [B, 1, H] → background genes [B, n_bg].
    pub fn forward(&self, tok: Tensor<B, 3>, silu_c: Tensor<B, 2>) -> Tensor<B, 2> {
        let [b, _, h] = tok.dims();
        let m = self.ada.forward(silu_c);
        let shift = m.clone().narrow(1, 0, h);
        let scale = m.narrow(1, h, h);
        let x = modulate(tok, shift, scale, 1e-5).reshape([b, h]);
        self.fc.forward(x)
    }

    pub fn load(l: &Loader<B>, hidden: usize, n_bg: usize) -> Result<Self> {
        Ok(BackgroundHead {
            ada: l.linear("bg_head.ada.1", hidden, 2 * hidden, true)?,
            fc: l.linear("bg_head.fc", hidden, n_bg, true)?,
        })
    }

    pub fn save(&self, s: &mut Saver) {
        s.linear("bg_head.ada.1", &self.ada);
        s.linear("bg_head.fc", &self.fc);
    }
}
