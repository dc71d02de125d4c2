//! Sinusoidal time embedding followed by an MLP (official `TimestepEmbedder`): t is scaled
//! by 1000, 128 frequencies, `cat[cos, sin]`, Linear(256, H), SiLU, Linear(H, H).

use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::activation::silu;
use rnafm_runtime::Result;

use crate::weight_io::{Loader, Saver};

pub const FREQ_DIM: usize = 256;

#[derive(Module, Debug)]
pub struct TimestepEmbedder<B: Backend> {
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
}

impl<B: Backend> TimestepEmbedder<B> {
    /// `t` [B] in [0, 1] → [B, H].
    pub fn forward(&self, t: Tensor<B, 1>) -> Tensor<B, 2> {
        let [b] = t.dims();
        let half = FREQ_DIM / 2;
        // Frequencies in float32, as `torch.exp(-ln(10000) * arange(half, f32) / half)`.
        let freqs: Vec<f32> = (0..half)
            .map(|i| (-(10000f32).ln() * i as f32 / half as f32).exp())
            .collect();
        let freqs = Tensor::<B, 2>::from_data(TensorData::new(freqs, [1, half]), &t.device());
        let args = (t * 1000.0).reshape([b, 1]) * freqs;
        let emb = Tensor::cat(vec![args.clone().cos(), args.sin()], 1);
        self.fc2.forward(silu(self.fc1.forward(emb)))
    }

    pub fn load(l: &Loader<B>, hidden: usize) -> Result<Self> {
        Ok(TimestepEmbedder {
            fc1: l.linear("t_embedder.mlp.0", FREQ_DIM, hidden, true)?,
            fc2: l.linear("t_embedder.mlp.2", hidden, hidden, true)?,
        })
    }

    pub fn save(&self, s: &mut Saver) {
        s.linear("t_embedder.mlp.0", &self.fc1);
        s.linear("t_embedder.mlp.2", &self.fc2);
    }
}
