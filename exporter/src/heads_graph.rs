//! `heads.onnx`: tokens_out [B,P,H], bg_token [B,1,H], head_mod [B,P,2H], bg_mod [B,2H]
//! (from modulation.onnx) → velocity v [B,G]
//! (per-pathway adaLN heads, background head, average over genes in several pathways).

use std::collections::BTreeMap;
use std::path::Path;

use rnafm_runtime::model_spec::ModelSpec;
use rnafm_runtime::weights::WeightMap;
use rnafm_runtime::{Error, Result};

use crate::layers::Ctx;
use crate::onnx_builder::{Dim, attr_i, attr_ints};
use crate::packing::buckets;

pub fn build(spec: &ModelSpec, w: &WeightMap, origin: &Path) -> Result<Vec<u8>> {
    let cfg = &spec.config;
    let (g, h) = (cfg.genes, cfg.hidden);
    let ps = &spec.pathways;
    let p = ps.len();
    let nbg = ps.background.len();
    let mut c = Ctx::new(w, origin);
    let tok =
        c.g.input("tokens_out", &[Dim::Batch, Dim::Fixed(p), Dim::Fixed(h)]);
    let bgt =
        c.g.input("bg_token", &[Dim::Batch, Dim::Fixed(1), Dim::Fixed(h)]);
    // Shift and scale of every head, from modulation.onnx.
    let m =
        c.g.input("head_mod", &[Dim::Batch, Dim::Fixed(p), Dim::Fixed(2 * h)]);
    let bgm = c.g.input("bg_mod", &[Dim::Batch, Dim::Fixed(2 * h)]);
    let sh = c.g.op_n("Split", &[&m], vec![attr_i("axis", -1)], 2);
    let one = c.scalar(1.0);
    let n = c.layer_norm(&tok, None, h, 1e-6)?;
    let s1 = c.g.op("Add", &[&sh[1], &one], vec![]);
    let n = c.g.op("Mul", &[&n, &s1], vec![]);
    let x = c.g.op("Add", &[&n, &sh[0]], vec![]); // [B,P,H]

    // Feature-major from here on ([.., H, B]): the per-pathway weights are the left operand
    // of each product, which ONNX Runtime streams without repacking (1.6× faster at 32 rows,
    // 2.1× at 2, measured), and the gathers below move whole rows.
    let xt =
        c.g.op("Transpose", &[&x], vec![attr_ints("perm", &[1, 2, 0])]); // [P,H,B]
    let mut parts = Vec::new();
    let mut targets: Vec<i64> = Vec::new();
    for bk in buckets(&ps.sizes()) {
        let (nb, s) = (bk.pathways.len(), bk.width);
        let mut wb = vec![0f32; nb * s * h];
        let mut bb = vec![0f32; nb * s];
        let pidx: Vec<i64> = bk.pathways.iter().map(|&i| i as i64).collect();
        for (j, &pi) in bk.pathways.iter().enumerate() {
            let mlen = ps.members[pi].len();
            // PyTorch [out, in] = [mlen, h]: the first mlen rows of this pathway's [s, h].
            let wt = c.get(&format!("final_layer.linear.{pi}.weight"), &[mlen, h])?;
            wb[j * s * h..j * s * h + mlen * h].copy_from_slice(wt);
            bb[j * s..j * s + mlen]
                .copy_from_slice(c.get(&format!("final_layer.linear.{pi}.bias"), &[mlen])?);
            for r in 0..s {
                // Padded outputs aim at gene g, which no gene reads.
                targets.push(ps.members[pi].get(r).map_or(g as i64, |&v| v as i64));
            }
        }
        let pidx = c.g.constant_i64("heads", &[nb], &pidx);
        let xb = c.g.op("Gather", &[&xt, &pidx], vec![attr_i("axis", 0)]); // [nb,H,B]
        let wb = c.g.constant("final_w", &[nb, s, h], &wb);
        let y = c.g.op("MatMul", &[&wb, &xb], vec![]); // [nb,s,B]
        let bb = c.g.constant("final_b", &[nb, s, 1], &bb);
        let y = c.g.op("Add", &[&y, &bb], vec![]);
        let shape = c.g.constant_i64("shape", &[2], &[(nb * s) as i64, -1]);
        parts.push(c.g.op("Reshape", &[&y, &shape], vec![]));
    }

    // Background head (LayerNorm eps 1e-5, unlike the pathway heads).
    let ax = c.g_const_i64(&[1]);
    let m = c.g.op("Unsqueeze", &[&bgm, &ax], vec![]);
    let sh = c.g.op_n("Split", &[&m], vec![attr_i("axis", -1)], 2);
    let n = c.layer_norm(&bgt, None, h, 1e-5)?;
    let s1 = c.g.op("Add", &[&sh[1], &one], vec![]);
    let n = c.g.op("Mul", &[&n, &s1], vec![]);
    let n = c.g.op("Add", &[&n, &sh[0]], vec![]);
    let y = c.linear(&n, "bg_head.fc", h, nbg, true)?;
    let shape = c.g.constant_i64("shape", &[2], &[0, nbg as i64]);
    let y = c.g.op("Reshape", &[&y, &shape], vec![]);
    parts.push(c.g.op("Transpose", &[&y], vec![attr_ints("perm", &[1, 0])]));
    targets.extend(ps.background.iter().map(|&i| i as i64));

    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    let flat = c.g.op("Concat", &refs, vec![attr_i("axis", 0)]); // [N,B]
    let v = average_into_genes(&mut c, &flat, &targets, g)?; // [G,B]
    let v = c.g.op("Transpose", &[&v], vec![attr_ints("perm", &[1, 0])]);
    c.g.output(&v, "v", &[Dim::Batch, Dim::Fixed(g)]);
    Ok(c.g.encode("heads"))
}

/// `flat` [N,B] → [G,B]: each gene gets the mean of the outputs aimed at it (`targets[j]` is
/// output j's gene; `g` marks padding). Genes are grouped by their number of outputs k; a
/// group is one Gather of its [n_k, k] output positions and a ReduceSum, and one last Gather
/// puts the genes in order. This replaces a ScatterElements add, which ONNX Runtime runs
/// element by element (with its Expand and Concat, 6% of sampling time at the paper config).
fn average_into_genes(c: &mut Ctx, flat: &str, targets: &[i64], g: usize) -> Result<String> {
    let mut positions: Vec<Vec<i64>> = vec![Vec::new(); g];
    for (j, &t) in targets.iter().enumerate() {
        if let Some(p) = positions.get_mut(t as usize) {
            p.push(j as i64);
        }
    }
    if let Some(gene) = positions.iter().position(Vec::is_empty) {
        return Err(Error::invalid(
            c.origin,
            format!("gene {gene} is in no pathway and not among the background genes"),
        ));
    }
    let mut by_count: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (gene, p) in positions.iter().enumerate() {
        by_count.entry(p.len()).or_default().push(gene);
    }
    let mut parts = Vec::with_capacity(by_count.len());
    let mut order = Vec::with_capacity(g);
    for (&k, genes) in &by_count {
        let idx: Vec<i64> = genes
            .iter()
            .flat_map(|&gi| positions[gi].iter().copied())
            .collect();
        let idx = c.g.constant_i64("gene_outputs", &[idx.len()], &idx);
        let y = c.g.op("Gather", &[flat, &idx], vec![attr_i("axis", 0)]); // [n_k·k, B]
        let y = if k == 1 {
            y
        } else {
            let shape =
                c.g.constant_i64("shape", &[3], &[genes.len() as i64, k as i64, -1]);
            let y = c.g.op("Reshape", &[&y, &shape], vec![]);
            let axes = c.g_const_i64(&[1]);
            let y =
                c.g.op("ReduceSum", &[&y, &axes], vec![attr_i("keepdims", 0)]); // [n_k, B]
            let inv = c.scalar(1.0 / k as f32);
            c.g.op("Mul", &[&y, &inv], vec![])
        };
        parts.push(y);
        order.extend_from_slice(genes);
    }
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    let grouped = c.g.op("Concat", &refs, vec![attr_i("axis", 0)]); // genes by group
    let mut column = vec![0i64; g];
    for (pos, &gene) in order.iter().enumerate() {
        column[gene] = pos as i64;
    }
    let column = c.g.constant_i64("gene_column", &[g], &column);
    Ok(c.g.op("Gather", &[&grouped, &column], vec![attr_i("axis", 0)]))
}
