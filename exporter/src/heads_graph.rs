//! `heads.onnx`: tokens_out [B,P,H], bg_token [B,1,H], c [B,H] → velocity v [B,G]
//! (per-pathway adaLN heads, background head, average over genes in several pathways).

use std::path::Path;

use rnafm_runtime::Result;
use rnafm_runtime::model_spec::ModelSpec;
use rnafm_runtime::weights::WeightMap;

use crate::layers::{Ctx, transpose};
use crate::onnx_builder::{Dim, attr_i, attr_ints, attr_s};
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
    let cond = c.g.input("c", &[Dim::Batch, Dim::Fixed(h)]);
    let sc = c.silu(&cond);

    // All pathway adaLN projections in one MatMul: [B,H] × [H, P·2H] → [B,P,2H].
    let mut wa = Vec::with_capacity(h * p * 2 * h);
    let mut ba = Vec::with_capacity(p * 2 * h);
    let mut cols: Vec<Vec<f32>> = Vec::with_capacity(p);
    for i in 0..p {
        let pre = format!("final_layer.adaLN_modulation.{i}.1");
        cols.push(c.get(&format!("{pre}.weight"), &[2 * h, h])?.to_vec());
        ba.extend_from_slice(c.get(&format!("{pre}.bias"), &[2 * h])?);
    }
    for r in 0..h {
        for wi in &cols {
            for o in 0..2 * h {
                wa.push(wi[o * h + r]);
            }
        }
    }
    drop(cols);
    let wa = c.g.constant("final_ada_w", &[h, p * 2 * h], &wa);
    let ba = c.g.constant("final_ada_b", &[p * 2 * h], &ba);
    let m = c.g.op("MatMul", &[&sc, &wa], vec![]);
    let m = c.g.op("Add", &[&m, &ba], vec![]);
    let shape =
        c.g.constant_i64("shape", &[3], &[0, p as i64, 2 * h as i64]);
    let m = c.g.op("Reshape", &[&m, &shape], vec![]);
    let sh = c.g.op_n("Split", &[&m], vec![attr_i("axis", -1)], 2);
    let one = c.scalar(1.0);
    let n = c.layer_norm(&tok, None, h, 1e-6)?;
    let s1 = c.g.op("Add", &[&sh[1], &one], vec![]);
    let n = c.g.op("Mul", &[&n, &s1], vec![]);
    let x = c.g.op("Add", &[&n, &sh[0]], vec![]); // [B,P,H]

    let mut parts = Vec::new();
    let mut targets: Vec<i64> = Vec::new();
    for bk in buckets(&ps.sizes()) {
        let (nb, s) = (bk.pathways.len(), bk.width);
        let mut wb = vec![0f32; nb * h * s];
        let mut bb = vec![0f32; nb * s];
        let pidx: Vec<i64> = bk.pathways.iter().map(|&i| i as i64).collect();
        for (j, &pi) in bk.pathways.iter().enumerate() {
            let mlen = ps.members[pi].len();
            let wt = c.get(&format!("final_layer.linear.{pi}.weight"), &[mlen, h])?;
            let wt = transpose(wt, mlen, h); // [h, mlen]
            for r in 0..h {
                wb[j * h * s + r * s..j * h * s + r * s + mlen]
                    .copy_from_slice(&wt[r * mlen..(r + 1) * mlen]);
            }
            bb[j * s..j * s + mlen]
                .copy_from_slice(c.get(&format!("final_layer.linear.{pi}.bias"), &[mlen])?);
            for r in 0..s {
                // Padded outputs land on a dummy gene column g, dropped at the end.
                targets.push(ps.members[pi].get(r).map_or(g as i64, |&v| v as i64));
            }
        }
        let pidx = c.g.constant_i64("heads", &[nb], &pidx);
        let xb = c.g.op("Gather", &[&x, &pidx], vec![attr_i("axis", 1)]); // [B,nb,H]
        let xb =
            c.g.op("Transpose", &[&xb], vec![attr_ints("perm", &[1, 0, 2])]);
        let wb = c.g.constant("final_w", &[nb, h, s], &wb);
        let y = c.g.op("MatMul", &[&xb, &wb], vec![]); // [nb,B,s]
        let bb = c.g.constant("final_b", &[nb, 1, s], &bb);
        let y = c.g.op("Add", &[&y, &bb], vec![]);
        let y =
            c.g.op("Transpose", &[&y], vec![attr_ints("perm", &[1, 0, 2])]);
        let shape = c.g.constant_i64("shape", &[2], &[0, (nb * s) as i64]);
        parts.push(c.g.op("Reshape", &[&y, &shape], vec![]));
    }

    // Background head (LayerNorm eps 1e-5, unlike the pathway heads).
    let m = c.linear(&sc, "bg_head.ada.1", h, 2 * h, true)?;
    let ax = c.g_const_i64(&[1]);
    let m = c.g.op("Unsqueeze", &[&m, &ax], vec![]);
    let sh = c.g.op_n("Split", &[&m], vec![attr_i("axis", -1)], 2);
    let n = c.layer_norm(&bgt, None, h, 1e-5)?;
    let s1 = c.g.op("Add", &[&sh[1], &one], vec![]);
    let n = c.g.op("Mul", &[&n, &s1], vec![]);
    let n = c.g.op("Add", &[&n, &sh[0]], vec![]);
    let y = c.linear(&n, "bg_head.fc", h, nbg, true)?;
    let shape = c.g.constant_i64("shape", &[2], &[0, nbg as i64]);
    parts.push(c.g.op("Reshape", &[&y, &shape], vec![]));
    targets.extend(ps.background.iter().map(|&i| i as i64));

    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    let flat = c.g.op("Concat", &refs, vec![attr_i("axis", 1)]); // [B,N]
    let nflat = targets.len();
    let tgt = c.g.constant_i64("targets", &[1, nflat], &targets);
    let fshape = c.g.op("Shape", &[&flat], vec![]);
    let tgt = c.g.op("Expand", &[&tgt, &fshape], vec![]);
    let b_dim = {
        let (i0, i1) = (c.g_const_i64(&[0]), c.g_const_i64(&[1]));
        c.g.op("Slice", &[&fshape, &i0, &i1], vec![])
    };
    let gcols = c.g_const_i64(&[g as i64 + 1]);
    let zshape = c.g.op("Concat", &[&b_dim, &gcols], vec![attr_i("axis", 0)]);
    let zf = c.g.constant("zero", &[1, 1], &[0.0]);
    let zeros = c.g.op("Expand", &[&zf, &zshape], vec![]);
    let sum = c.g.op(
        "ScatterElements",
        &[&zeros, &tgt, &flat],
        vec![attr_i("axis", 1), attr_s("reduction", "add")],
    );
    let (s0, sg, s1) = (
        c.g_const_i64(&[0]),
        c.g_const_i64(&[g as i64]),
        c.g_const_i64(&[1]),
    );
    let sum = c.g.op("Slice", &[&sum, &s0, &sg, &s1], vec![]);
    let counts = ps.gene_counts();
    let inv: Vec<f32> = counts
        .iter()
        .map(|&n| if n == 0 { 0.0 } else { 1.0 / n as f32 })
        .collect();
    let inv = c.g.constant("inv_count", &[g], &inv);
    let v = c.g.op("Mul", &[&sum, &inv], vec![]);
    c.g.output(&v, "v", &[Dim::Batch, Dim::Fixed(g)]);
    Ok(c.g.encode("heads"))
}
