//! DiT block with adaLN-Zero conditioning (official `Block`): the condition c gives shift,
//! scale and gate for attention and MLP; LayerNorm without affine, eps 1e-6; tanh GELU.

use burn::nn::Linear;
use burn::prelude::*;
use rnafm_runtime::Result;

use crate::fused::{FusedOps, gelu_tanh, scale_shift};
use crate::layers::{attention, linear_tokens, modulate};
use crate::weight_io::{Loader, Saver};

#[derive(Module, Debug)]
pub struct DitBlock<B: Backend> {
    pub ada: Linear<B>,
    pub qkv: Linear<B>,
    pub proj: Linear<B>,
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
    pub heads: usize,
}

impl<B: FusedOps> DitBlock<B> {
    /// `x` [B, N, H], `silu_c` = SiLU(c) [B, H].
    pub fn forward(&self, x: Tensor<B, 3>, silu_c: Tensor<B, 2>) -> Tensor<B, 3> {
        let m = self.ada.forward(silu_c).chunk(6, 1);
        let [sh_a, sc_a, g_a, sh_m, sc_m, g_m]: [Tensor<B, 2>; 6] =
            m.try_into().expect("chunk(6) of a 6H axis gives 6 parts");
        let a = modulate(x.clone(), sh_a, sc_a, 1e-6);
        let a = linear_tokens(
            &self.proj,
            attention(linear_tokens(&self.qkv, a), self.heads, None),
        );
        let x = x + scale_shift(a, g_a, None);
        let f = modulate(x.clone(), sh_m, sc_m, 1e-6);
        let f = linear_tokens(&self.fc2, gelu_tanh(linear_tokens(&self.fc1, f)));
        x + scale_shift(f, g_m, None)
    }
}

impl<B: Backend> DitBlock<B> {
    pub fn load(
        l: &Loader<B>,
        i: usize,
        hidden: usize,
        heads: usize,
        mlp_ratio: usize,
    ) -> Result<Self> {
        let h = hidden;
        let pre = format!("blocks.{i}");
        Ok(DitBlock {
            ada: l.linear(&format!("{pre}.adaLN_modulation.1"), h, 6 * h, true)?,
            qkv: l.linear(&format!("{pre}.attn.qkv"), h, 3 * h, true)?,
            proj: l.linear(&format!("{pre}.attn.proj"), h, h, true)?,
            fc1: l.linear(&format!("{pre}.mlp.fc1"), h, mlp_ratio * h, true)?,
            fc2: l.linear(&format!("{pre}.mlp.fc2"), mlp_ratio * h, h, true)?,
            heads,
        })
    }

    pub fn save(&self, s: &mut Saver, i: usize) {
        let pre = format!("blocks.{i}");
        s.linear(&format!("{pre}.adaLN_modulation.1"), &self.ada);
        s.linear(&format!("{pre}.attn.qkv"), &self.qkv);
        s.linear(&format!("{pre}.attn.proj"), &self.proj);
        s.linear(&format!("{pre}.mlp.fc1"), &self.fc1);
        s.linear(&format!("{pre}.mlp.fc2"), &self.fc2);
    }
}
