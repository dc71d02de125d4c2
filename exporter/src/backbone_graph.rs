//! `backbone.onnx`: tokens [B,P,H], t [B], slide_emb [B,H] → tokens_out [B,P,H], c [B,H].
//! With `int8` the token-wise linear layers of the blocks are dynamically quantised.

use std::path::Path;

use rnafm_runtime::Result;
use rnafm_runtime::model_config::ModelConfig;
use rnafm_runtime::weights::WeightMap;

use crate::layers::{Ctx, GraphOptions};
use crate::onnx_builder::{Dim, attr_i};

pub fn build(
    cfg: &ModelConfig,
    n_tokens: usize,
    w: &WeightMap,
    origin: &Path,
    opts: GraphOptions,
) -> Result<Vec<u8>> {
    let (h, p) = (cfg.hidden, n_tokens);
    let mut c = Ctx::with_options(w, origin, opts);
    let x =
        c.g.input("tokens", &[Dim::Batch, Dim::Fixed(p), Dim::Fixed(h)]);
    let t = c.g.input("t", &[Dim::Batch]);
    let s = c.g.input("slide_emb", &[Dim::Batch, Dim::Fixed(h)]);
    // Sinusoidal timestep embedding of t·1000 (DiT), 256 frequencies.
    let half = 128;
    let freqs: Vec<f32> = (0..half)
        .map(|i| (-(10000f32).ln() * i as f32 / half as f32).exp() * 1000.0)
        .collect();
    let f = c.g.constant("freqs", &[1, half], &freqs);
    let ax = c.g.constant_i64("axes", &[1], &[1]);
    let tu = c.g.op("Unsqueeze", &[&t, &ax], vec![]);
    let arg = c.g.op("Mul", &[&tu, &f], vec![]);
    let cos = c.g.op("Cos", &[&arg], vec![]);
    let sin = c.g.op("Sin", &[&arg], vec![]);
    let emb = c.g.op("Concat", &[&cos, &sin], vec![attr_i("axis", -1)]);
    let te = c.linear(&emb, "t_embedder.mlp.0", 2 * half, h, true)?;
    let te = c.silu(&te);
    let te = c.linear(&te, "t_embedder.mlp.2", h, h, true)?;
    let cond = c.g.op("Add", &[&te, &s], vec![]);
    let sc = c.silu(&cond);
    let mut y = x;
    for i in 0..cfg.depth {
        let b = format!("blocks.{i}");
        let m = c.linear(&sc, &format!("{b}.adaLN_modulation.1"), h, 6 * h, true)?;
        let m = c.g.op("Unsqueeze", &[&m, &ax], vec![]);
        let ch = c.g.op_n("Split", &[&m], vec![attr_i("axis", -1)], 6);
        let one = c.scalar(1.0);
        let n1 = c.layer_norm(&y, None, h, 1e-6)?;
        let sc1 = c.g.op("Add", &[&ch[1], &one], vec![]);
        let n1 = c.g.op("Mul", &[&n1, &sc1], vec![]);
        let n1 = c.g.op("Add", &[&n1, &ch[0]], vec![]);
        let a = c.attention(
            &n1,
            p,
            h,
            cfg.heads,
            &format!("{b}.attn.qkv.weight"),
            Some(&format!("{b}.attn.qkv.bias")),
            (
                &format!("{b}.attn.proj.weight"),
                &format!("{b}.attn.proj.bias"),
            ),
            None,
        )?;
        let a = c.g.op("Mul", &[&a, &ch[2]], vec![]);
        y = c.g.op("Add", &[&y, &a], vec![]);
        let n2 = c.layer_norm(&y, None, h, 1e-6)?;
        let sc2 = c.g.op("Add", &[&ch[4], &one], vec![]);
        let n2 = c.g.op("Mul", &[&n2, &sc2], vec![]);
        let n2 = c.g.op("Add", &[&n2, &ch[3]], vec![]);
        let inner = c.shape(&format!("{b}.mlp.fc1.weight"))?[0];
        let f = c.token_linear(&n2, &format!("{b}.mlp.fc1"), h, inner)?;
        let f = c.gelu_tanh(&f);
        let f = c.token_linear(&f, &format!("{b}.mlp.fc2"), inner, h)?;
        let f = c.g.op("Mul", &[&f, &ch[5]], vec![]);
        y = c.g.op("Add", &[&y, &f], vec![]);
    }
    c.g.output(
        &y,
        "tokens_out",
        &[Dim::Batch, Dim::Fixed(p), Dim::Fixed(h)],
    );
    c.g.output(&cond, "c", &[Dim::Batch, Dim::Fixed(h)]);
    Ok(c.g.encode("backbone"))
}
