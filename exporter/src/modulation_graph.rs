//! `modulation.onnx`: t [R], slide_emb [R,H] → the adaLN-Zero modulations of every layer
//! that the condition c = t_embedder(t) + slide_emb steers: block_mod [R, depth, 6H] (shift,
//! scale, gate of attention and MLP per DiT block), head_mod [R, P, 2H] (shift and scale of
//! each pathway head) and bg_mod [R, 2H] (the background head's).
//!
//! Why a graph of its own: these depend only on (t, slide), never on the sample, so the
//! runtime runs it once per slide for every time point of the Euler grid and both guidance
//! branches, and the per-step graphs only read its rows. At the paper config the pathway
//! heads' projection alone is a [256, 380·512] weight (200 MB) that would otherwise be read
//! at every step.

use std::path::Path;

use rnafm_runtime::Result;
use rnafm_runtime::model_config::ModelConfig;
use rnafm_runtime::weights::WeightMap;

use crate::layers::{Ctx, transpose};
use crate::onnx_builder::{Dim, attr_i};

pub fn build(cfg: &ModelConfig, n_tokens: usize, w: &WeightMap, origin: &Path) -> Result<Vec<u8>> {
    let (h, p, depth) = (cfg.hidden, n_tokens, cfg.depth);
    let mut c = Ctx::new(w, origin);
    let t = c.g.input("t", &[Dim::Batch]);
    let s = c.g.input("slide_emb", &[Dim::Batch, Dim::Fixed(h)]);
    // Sinusoidal timestep embedding of t·1000 (DiT), 256 frequencies.
    let half = 128;
    let freqs: Vec<f32> = (0..half)
        .map(|i| (-(10000f32).ln() * i as f32 / half as f32).exp() * 1000.0)
        .collect();
    let f = c.g.constant("freqs", &[1, half], &freqs);
    let ax = c.g_const_i64(&[1]);
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

    // Every block's adaLN projection in one MatMul: [R,H] × [H, depth·6H].
    let prefixes: Vec<String> = (0..depth)
        .map(|i| format!("blocks.{i}.adaLN_modulation.1"))
        .collect();
    let m = stacked_projection(&mut c, &sc, "block_ada", &prefixes, h, 6 * h)?;
    c.g.output(
        &m,
        "block_mod",
        &[Dim::Batch, Dim::Fixed(depth), Dim::Fixed(6 * h)],
    );
    // All pathway heads' adaLN projections in one MatMul: [R,H] × [H, P·2H].
    let prefixes: Vec<String> = (0..p)
        .map(|i| format!("final_layer.adaLN_modulation.{i}.1"))
        .collect();
    let m = stacked_projection(&mut c, &sc, "final_ada", &prefixes, h, 2 * h)?;
    c.g.output(
        &m,
        "head_mod",
        &[Dim::Batch, Dim::Fixed(p), Dim::Fixed(2 * h)],
    );

    let m = c.linear(&sc, "bg_head.ada.1", h, 2 * h, true)?;
    c.g.output(&m, "bg_mod", &[Dim::Batch, Dim::Fixed(2 * h)]);
    Ok(c.g.encode("modulation"))
}

/// The nn.Linear layers `prefixes` (each [width, h]) applied to `x` [R,h] as one product,
/// [R, n, width]: their transposed weights side by side in one [h, n·width] constant.
fn stacked_projection(
    c: &mut Ctx,
    x: &str,
    hint: &str,
    prefixes: &[String],
    h: usize,
    width: usize,
) -> Result<String> {
    let n = prefixes.len();
    let mut bias = Vec::with_capacity(n * width);
    let mut each = Vec::with_capacity(n);
    for pre in prefixes {
        each.push(transpose(
            c.get(&format!("{pre}.weight"), &[width, h])?,
            width,
            h,
        ));
        bias.extend_from_slice(c.get(&format!("{pre}.bias"), &[width])?);
    }
    let mut w = Vec::with_capacity(h * n * width);
    for r in 0..h {
        for wi in &each {
            w.extend_from_slice(&wi[r * width..(r + 1) * width]);
        }
    }
    drop(each);
    let w = c.g.constant(&format!("{hint}_w"), &[h, n * width], &w);
    let b = c.g.constant(&format!("{hint}_b"), &[n * width], &bias);
    let m = c.g.op("MatMul", &[x, &w], vec![]);
    let m = c.g.op("Add", &[&m, &b], vec![]);
    let shape =
        c.g.constant_i64("shape", &[3], &[0, n as i64, width as i64]);
    Ok(c.g.op("Reshape", &[&m, &shape], vec![]))
}
