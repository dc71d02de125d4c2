//! `embed.onnx`: expression x [B,G] → pathway tokens [B,P,H] and background token [B,1,H]
//! (gene-to-pathway MLPs, then the pathway graph block). With `int8` the token-wise linear
//! layers of the pathway graph block would be dynamically quantised; bundles hold no int8
//! embed (see graphs.rs).

use std::path::Path;

use rnafm_runtime::model_spec::ModelSpec;
use rnafm_runtime::weights::WeightMap;
use rnafm_runtime::{Error, Result};

use crate::layers::{Ctx, GraphOptions};
use crate::onnx_builder::{Dim, attr_i, attr_ints};
use crate::packing::buckets;

pub fn build(
    spec: &ModelSpec,
    w: &WeightMap,
    origin: &Path,
    opts: GraphOptions,
) -> Result<Vec<u8>> {
    let cfg = &spec.config;
    let (g, h) = (cfg.genes, cfg.hidden);
    let ps = &spec.pathways;
    let p = ps.len();
    let mut c = Ctx::with_options(w, origin, opts);
    let x = c.g.input("x", &[Dim::Batch, Dim::Fixed(g)]);
    // Feature-major ([G, B], then [P, H, B]): the per-pathway weights are the left operand
    // of each product, which ONNX Runtime streams without repacking (1.6× faster at 32 rows,
    // 2.1× at 2, measured), and the member gathers move whole rows. Row g is a zero that
    // padded member slots read.
    let xt = c.g.op("Transpose", &[&x], vec![attr_ints("perm", &[1, 0])]);
    let pads = c.g_const_i64(&[0, 0, 1, 0]);
    let xp = c.g.op("Pad", &[&xt, &pads], vec![]); // [G+1,B]

    let mut parts = Vec::new();
    let mut order = Vec::new();
    for bk in buckets(&ps.sizes()) {
        let (n, s) = (bk.pathways.len(), bk.width);
        let mut idx = vec![g as i64; n * s];
        let mut wb = vec![0f32; n * h * s];
        for (j, &pi) in bk.pathways.iter().enumerate() {
            let m = &ps.members[pi];
            // PyTorch [out, in] = [h, |p|]: the first |p| columns of this pathway's [h, s].
            let w1 = c.get(
                &format!("gene_embedder.gene_count_ebd.{pi}.0.weight"),
                &[h, m.len()],
            )?;
            for (r, &gene) in m.iter().enumerate() {
                idx[j * s + r] = gene as i64;
            }
            for r in 0..h {
                wb[(j * h + r) * s..(j * h + r) * s + m.len()]
                    .copy_from_slice(&w1[r * m.len()..(r + 1) * m.len()]);
            }
            order.push(pi);
        }
        let idx = c.g.constant_i64("members", &[n * s], &idx);
        let xg = c.g.op("Gather", &[&xp, &idx], vec![attr_i("axis", 0)]); // [n·s,B]
        let shape = c.g.constant_i64("shape", &[3], &[n as i64, s as i64, -1]);
        let xg = c.g.op("Reshape", &[&xg, &shape], vec![]);
        let wb = c.g.constant("count_ebd_w", &[n, h, s], &wb);
        parts.push(c.g.op("MatMul", &[&wb, &xg], vec![])); // [n,H,B]
    }
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    let cat = if refs.len() == 1 {
        parts[0].clone()
    } else {
        c.g.op("Concat", &refs, vec![attr_i("axis", 0)])
    };
    // Back to token order.
    let mut inv = vec![0i64; p];
    for (pos, &pi) in order.iter().enumerate() {
        inv[pi] = pos as i64;
    }
    let inv = c.g.constant_i64("token_order", &[p], &inv);
    let y = c.g.op("Gather", &[&cat, &inv], vec![attr_i("axis", 0)]); // [P,H,B]
    let mut b1 = Vec::with_capacity(p * h);
    let mut w2 = Vec::with_capacity(p * h * h);
    let mut b2 = Vec::with_capacity(p * h);
    let ebd = c.get("gene_embedder.gene_pathway_ebd", &[p, h])?;
    for i in 0..p {
        let pre = format!("gene_embedder.gene_count_ebd.{i}");
        b1.extend_from_slice(c.get(&format!("{pre}.0.bias"), &[h])?);
        // PyTorch [out, in], the left operand as it is.
        w2.extend_from_slice(c.get(&format!("{pre}.2.weight"), &[h, h])?);
        let bb = c.get(&format!("{pre}.2.bias"), &[h])?;
        b2.extend(bb.iter().zip(&ebd[i * h..(i + 1) * h]).map(|(a, b)| a + b));
    }
    let b1 = c.g.constant("count_ebd_b1", &[p, h, 1], &b1);
    let y = c.g.op("Add", &[&y, &b1], vec![]);
    let y = c.silu(&y);
    let w2 = c.g.constant("count_ebd_w2", &[p, h, h], &w2);
    let y = c.g.op("MatMul", &[&w2, &y], vec![]); // [P,H,B]
    let tok =
        c.g.op("Transpose", &[&y], vec![attr_ints("perm", &[2, 0, 1])]); // [B,P,H]
    // The bias after the transpose: [P, H] onto [B, P, H] broadcasts whole rows, where
    // [P, H, 1] onto [P, H, B] went B elements at a time (the same sums, bit for bit).
    let b2 = c.g.constant("count_ebd_b2", &[p, h], &b2);
    let mut tok = c.g.op("Add", &[&tok, &b2], vec![]);

    if cfg.graph_attention {
        let mask = ps.attention_mask();
        let n1 = c.layer_norm(&tok, Some("pathway_graph.norm1"), h, 1e-5)?;
        let a = c.attention(
            &n1,
            p,
            h,
            cfg.graph_heads,
            "pathway_graph.attn.in_proj_weight",
            Some("pathway_graph.attn.in_proj_bias"),
            (
                "pathway_graph.attn.out_proj.weight",
                "pathway_graph.attn.out_proj.bias",
            ),
            Some(&mask),
        )?;
        let alpha = c.get("pathway_graph.alpha", &[])?;
        let alpha = c.g.constant("alpha", &[], alpha);
        let a = c.g.op("Mul", &[&a, &alpha], vec![]);
        tok = c.g.op("Add", &[&tok, &a], vec![]);
        let n2 = c.layer_norm(&tok, Some("pathway_graph.norm2"), h, 1e-5)?;
        let inner = c.shape("pathway_graph.mlp.0.weight")?[0];
        let f = c.token_linear(&n2, "pathway_graph.mlp.0", h, inner)?;
        let f = c.gelu(&f);
        let f = c.token_linear(&f, "pathway_graph.mlp.2", inner, h)?;
        tok = c.g.op("Add", &[&tok, &f], vec![]);
    }
    c.g.output(&tok, "tokens", &[Dim::Batch, Dim::Fixed(p), Dim::Fixed(h)]);

    let nbg = ps.background.len();
    if nbg == 0 {
        return Err(Error::invalid(origin, "the model has no background genes"));
    }
    let bg: Vec<i64> = ps.background.iter().map(|&i| i as i64).collect();
    let bg = c.g.constant_i64("background", &[nbg], &bg);
    let xb = c.g.op("Gather", &[&x, &bg], vec![attr_i("axis", 1)]);
    let e = c.linear(&xb, "gene_embedder.bg_gene_count_ebd.0", nbg, h, true)?;
    let e = c.silu(&e);
    let e = c.linear(&e, "gene_embedder.bg_gene_count_ebd.2", h, h, true)?;
    let ax = c.g_const_i64(&[1]);
    let e = c.g.op("Unsqueeze", &[&e, &ax], vec![]);
    let bb = c.weight("gene_embedder.bg_gene_bias", &[1, 1, h])?;
    let e = c.g.op("Add", &[&e, &bb], vec![]);
    c.g.output(&e, "bg_token", &[Dim::Batch, Dim::Fixed(1), Dim::Fixed(h)]);
    Ok(c.g.encode("embed"))
}
