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
    // Each output's bias, added per gene after the averaging (below), not per bucket: an
    // Add of [nb, s, 1] onto [nb, s, B] broadcasts over a last axis of B elements, which ONNX
    // Runtime runs a few elements at a time (profiled: 15% of the heads' time at one draw).
    let mut biases: Vec<f32> = Vec::new();
    for bk in buckets(&ps.sizes()) {
        let (nb, s) = (bk.pathways.len(), bk.width);
        let mut wb = vec![0f32; nb * s * h];
        let pidx: Vec<i64> = bk.pathways.iter().map(|&i| i as i64).collect();
        for (j, &pi) in bk.pathways.iter().enumerate() {
            let mlen = ps.members[pi].len();
            // PyTorch [out, in] = [mlen, h]: the first mlen rows of this pathway's [s, h].
            let wt = c.get(&format!("final_layer.linear.{pi}.weight"), &[mlen, h])?;
            wb[j * s * h..j * s * h + mlen * h].copy_from_slice(wt);
            let b = c.get(&format!("final_layer.linear.{pi}.bias"), &[mlen])?;
            for r in 0..s {
                // Padded outputs aim at gene g, which no gene reads.
                targets.push(ps.members[pi].get(r).map_or(g as i64, |&v| v as i64));
                biases.push(b.get(r).copied().unwrap_or(0.0));
            }
        }
        let pidx = c.g.constant_i64("heads", &[nb], &pidx);
        let xb = c.g.op("Gather", &[&xt, &pidx], vec![attr_i("axis", 0)]); // [nb,H,B]
        let wb = c.g.constant("final_w", &[nb, s, h], &wb);
        let y = c.g.op("MatMul", &[&wb, &xb], vec![]); // [nb,s,B]
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
    // Its bias stays in its own [B, nbg] product, where it broadcasts cheaply.
    let y = c.linear(&n, "bg_head.fc", h, nbg, true)?;
    let shape = c.g.constant_i64("shape", &[2], &[0, nbg as i64]);
    let y = c.g.op("Reshape", &[&y, &shape], vec![]);
    let y = c.g.op("Transpose", &[&y], vec![attr_ints("perm", &[1, 0])]);
    // One row of zeros after the background outputs, for the averaging's padded slots.
    let pads = c.g_const_i64(&[0, 0, 1, 0]);
    parts.push(c.g.op("Pad", &[&y, &pads], vec![]));
    targets.extend(ps.background.iter().map(|&i| i as i64));
    biases.extend(std::iter::repeat_n(0.0, nbg));
    let zero_row = targets.len();

    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    let flat = c.g.op("Concat", &refs, vec![attr_i("axis", 0)]); // [N+1,B]
    let (v, counts) = sum_into_genes(&mut c, &flat, &targets, zero_row, g)?; // [G,B]
    let v = c.g.op("Transpose", &[&v], vec![attr_ints("perm", &[1, 0])]); // [B,G]
    // The mean of each gene's outputs, then the mean of their biases.
    let mut inv = Vec::with_capacity(g);
    let mut bias = vec![0f64; g];
    for (&t, &b) in targets.iter().zip(&biases) {
        if let Some(x) = bias.get_mut(t as usize) {
            *x += f64::from(b);
        }
    }
    for (gene, &k) in counts.iter().enumerate() {
        inv.push(1.0 / k as f32);
        bias[gene] /= k as f64;
    }
    let inv = c.g.constant("gene_inv_count", &[g], &inv);
    let v = c.g.op("Mul", &[&v, &inv], vec![]);
    let bias: Vec<f32> = bias.iter().map(|&b| b as f32).collect();
    let bias = c.g.constant("gene_bias", &[g], &bias);
    let v = c.g.op("Add", &[&v, &bias], vec![]);
    c.g.output(&v, "v", &[Dim::Batch, Dim::Fixed(g)]);
    Ok(c.g.encode("heads"))
}

/// `flat` [N+1,B] → [G,B]: each gene gets the sum of the outputs aimed at it (`targets[j]`
/// is output j's gene; `g` marks padding; row `zero_row` of `flat` is zeros), and the number
/// of those outputs per gene. Genes are grouped by their number of outputs k, in groups whose
/// largest k is at most 1.5× their smallest; within a group every gene reads that largest k
/// slots, the ones it lacks from the zero row (adding 0 leaves a sum exact, and each gene's
/// outputs are summed in the same order whatever the batch). A group is one Gather and one
/// ReduceSum, and one last Gather puts the genes in order: about 30 nodes at the paper config
/// where one group per k took about 320 (profiled: the averaging was a quarter of the heads'
/// time at one draw). This replaces a ScatterElements add, which ONNX Runtime runs element
/// by element.
fn sum_into_genes(
    c: &mut Ctx,
    flat: &str,
    targets: &[i64],
    zero_row: usize,
    g: usize,
) -> Result<(String, Vec<usize>)> {
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
    let counts: Vec<usize> = positions.iter().map(Vec::len).collect();
    let mut by_count: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (gene, &k) in counts.iter().enumerate() {
        by_count.entry(k).or_default().push(gene);
    }
    // Groups of counts (smallest, largest, genes): a group closes when the next count exceeds
    // 1.5× its smallest; genes with one output need no sum and stay a group of their own.
    let mut groups: Vec<(usize, usize, Vec<usize>)> = Vec::new();
    for (&k, genes) in &by_count {
        match groups.last_mut() {
            Some((first, width, members)) if *first > 1 && 2 * k <= 3 * *first => {
                *width = k;
                members.extend_from_slice(genes);
            }
            _ => groups.push((k, k, genes.clone())),
        }
    }
    let mut parts = Vec::with_capacity(groups.len());
    let mut order = Vec::with_capacity(g);
    for (_, width, genes) in &groups {
        let idx: Vec<i64> = genes
            .iter()
            .flat_map(|&gi| {
                let p = &positions[gi];
                p.iter()
                    .copied()
                    .chain(std::iter::repeat_n(zero_row as i64, width - p.len()))
            })
            .collect();
        let idx = c.g.constant_i64("gene_outputs", &[idx.len()], &idx);
        let y = c.g.op("Gather", &[flat, &idx], vec![attr_i("axis", 0)]); // [n·width, B]
        let y = if *width == 1 {
            y
        } else {
            let shape =
                c.g.constant_i64("shape", &[3], &[genes.len() as i64, *width as i64, -1]);
            let y = c.g.op("Reshape", &[&y, &shape], vec![]);
            let axes = c.g_const_i64(&[1]);
            c.g.op("ReduceSum", &[&y, &axes], vec![attr_i("keepdims", 0)]) // [n, B]
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
    Ok((
        c.g.op("Gather", &[&grouped, &column], vec![attr_i("axis", 0)]),
        counts,
    ))
}
