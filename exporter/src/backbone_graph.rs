//! `backbone.onnx`: tokens [B,P,H], block_mod [B, depth, 6H] (from modulation.onnx) →
//! tokens_out [B,P,H].
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
    // Modulations of every block from modulation.onnx, one row per token set.
    let mods = c.g.input(
        "block_mod",
        &[Dim::Batch, Dim::Fixed(cfg.depth), Dim::Fixed(6 * h)],
    );
    let mut y = x;
    for i in 0..cfg.depth {
        let b = format!("blocks.{i}");
        let idx = c.g.constant_i64("block", &[1], &[i as i64]);
        let m = c.g.op("Gather", &[&mods, &idx], vec![attr_i("axis", 1)]); // [B,1,6H]
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
    Ok(c.g.encode("backbone"))
}
