//! Output heads: one adaLN-modulated linear per pathway token (official `FinalLayer`,
//! LayerNorm eps 1e-6) and one for the background token (`BGHead`, eps 1e-5).
//!
//! The P modulation linears are packed into one [H, P·2H] matmul, and the P output linears
//! into one [S, H] weight (PyTorch rows of all heads stacked, S = Σ|p|) applied by the
//! fused `segment_linear`: one op whose gradient is one [S, H] tensor, where P separate
//! slices of the token tensor would each have had a full-size gradient.

use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;
use rnafm_runtime::Result;
use rnafm_runtime::pathways::PathwaySet;

use crate::fused::{FusedOps, layer_norm, segment_linear};
use crate::layers::modulate;
use crate::weight_io::{Loader, Saver, to_vec, transpose};

#[derive(Module, Debug)]
pub struct PathwayHeads<B: Backend> {
    /// Packed `final_layer.adaLN_modulation.{i}.1`: [H, P·2H], pathway i owns columns
    /// `i·2H..(i+1)·2H` (shift then scale). Used whole, so packing costs nothing.
    pub ada_w: Param<Tensor<B, 2>>,
    pub ada_b: Param<Tensor<B, 1>>,
    /// `final_layer.linear.{i}.weight` of all pathways stacked: [S, H], pathway i owning
    /// rows `offset_i..offset_i + |p_i|` (PyTorch [out, in] layout).
    pub out_w: Param<Tensor<B, 2>>,
    /// `final_layer.linear.{i}.bias` stacked: [S].
    pub out_b: Param<Tensor<B, 1>>,
    /// |p_i| per pathway.
    pub sizes: Vec<usize>,
}

impl<B: FusedOps> PathwayHeads<B> {
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
        let x = layer_norm(x, 1e-6) * (scale + 1.0) + shift;
        segment_linear(x, self.out_w.val(), self.out_b.val(), &self.sizes)
    }
}

impl<B: Backend> PathwayHeads<B> {
    pub fn load(l: &Loader<B>, pathways: &PathwaySet, hidden: usize) -> Result<Self> {
        let h = hidden;
        let p = pathways.len();
        // Built as [P·2H, H] (PyTorch rows) then transposed once.
        let mut ada_w = Vec::with_capacity(p * 2 * h * h);
        let mut ada_b = Vec::with_capacity(p * 2 * h);
        let sizes = pathways.sizes();
        let s: usize = sizes.iter().sum();
        let mut out_w = Vec::with_capacity(s * h);
        let mut out_b = Vec::with_capacity(s);
        for (i, &n) in sizes.iter().enumerate() {
            let a = format!("final_layer.adaLN_modulation.{i}.1");
            ada_w.extend_from_slice(&l.host(&format!("{a}.weight"), &[2 * h, h])?.data);
            ada_b.extend_from_slice(&l.host(&format!("{a}.bias"), &[2 * h])?.data);
            let o = format!("final_layer.linear.{i}");
            out_w.extend_from_slice(&l.host(&format!("{o}.weight"), &[n, h])?.data);
            out_b.extend_from_slice(&l.host(&format!("{o}.bias"), &[n])?.data);
        }
        Ok(PathwayHeads {
            ada_w: Param::from_tensor(l.from_vec(transpose(&ada_w, p * 2 * h, h), [h, p * 2 * h])),
            ada_b: Param::from_tensor(l.from_vec(ada_b, [p * 2 * h])),
            out_w: Param::from_tensor(l.from_vec(out_w, [s, h])),
            out_b: Param::from_tensor(l.from_vec(out_b, [s])),
            sizes,
        })
    }

    pub fn save(&self, s: &mut Saver) {
        let [h, p2h] = self.ada_w.dims();
        let ada_w = transpose(&to_vec(&self.ada_w.val()), h, p2h);
        let ada_b = to_vec(&self.ada_b.val());
        let two_h = 2 * h;
        let out_w = to_vec(&self.out_w.val());
        let out_b = to_vec(&self.out_b.val());
        let mut off = 0;
        for (i, &n) in self.sizes.iter().enumerate() {
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
            let o = format!("final_layer.linear.{i}");
            s.put(
                &format!("{o}.weight"),
                vec![n, h],
                out_w[off * h..(off + n) * h].to_vec(),
            );
            s.put(&format!("{o}.bias"), vec![n], out_b[off..off + n].to_vec());
            off += n;
        }
    }
}

#[derive(Module, Debug)]
pub struct BackgroundHead<B: Backend> {
    pub ada: Linear<B>,
    pub fc: Linear<B>,
}

impl<B: FusedOps> BackgroundHead<B> {
    /// Background token [B, 1, H] → background genes [B, n_bg].
    pub fn forward(&self, tok: Tensor<B, 3>, silu_c: Tensor<B, 2>) -> Tensor<B, 2> {
        let [b, _, h] = tok.dims();
        let m = self.ada.forward(silu_c);
        let shift = m.clone().narrow(1, 0, h);
        let scale = m.narrow(1, h, h);
        let x = modulate(tok, shift, scale, 1e-5).reshape([b, h]);
        self.fc.forward(x)
    }
}

impl<B: Backend> BackgroundHead<B> {
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
