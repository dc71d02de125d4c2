//! Multi-head softmax attention straight from a fused `qkv` projection, forward and
//! backward. Each (sample, head) pair is one task: its q, k and v are strided views into
//! `qkv` [B, N, 3C] (layout (3, heads, C/heads), as timm `Attention`), so nothing is
//! permuted or copied; the products go to `gemm` with those strides, and the outputs are
//! written in place into [B, N, C] (forward) and [B, N, 3C] (the gradient of `qkv`).

use multiversion::multiversion;
use rayon::prelude::*;

use crate::math;
use crate::sgemm::{SendPtr, sgemm};

/// The shape of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct AttentionShape {
    pub batch: usize,
    pub tokens: usize,
    /// Width of q, k and v (all heads): `qkv` rows hold 3·channels values.
    pub channels: usize,
    pub heads: usize,
}

impl AttentionShape {
    fn head_dim(&self) -> usize {
        self.channels / self.heads
    }

    fn check(&self, qkv: &[f32]) {
        assert!(
            self.heads > 0 && self.channels.is_multiple_of(self.heads),
            "attention: {} channels do not split into {} heads",
            self.channels,
            self.heads
        );
        assert_eq!(
            qkv.len(),
            self.batch * self.tokens * 3 * self.channels,
            "attention: qkv is not [B, N, 3C]"
        );
    }
}

#[multiversion(targets = "simd")]
fn softmax_rows(s: &mut [f32], n: usize, mask: Option<&[f32]>) {
    for (i, row) in s.chunks_mut(n).enumerate() {
        if let Some(m) = mask {
            for (v, &m) in row.iter_mut().zip(&m[i * n..(i + 1) * n]) {
                *v += m;
            }
        }
        let max = math::max(row);
        for v in row.iter_mut() {
            *v = math::exp(*v - max);
        }
        let inv = 1.0 / math::sum(row);
        for v in row.iter_mut() {
            *v *= inv;
        }
    }
}

/// Forward: returns the attended values [B, N, C] and the probabilities [B, heads, N, N]
/// (kept for the backward pass). `mask` is an additive [N, N] mask shared by all samples
/// and heads.
pub fn attention_forward(
    qkv: &[f32],
    shape: AttentionShape,
    mask: Option<&[f32]>,
) -> (Vec<f32>, Vec<f32>) {
    shape.check(qkv);
    let AttentionShape {
        batch,
        tokens: n,
        channels: c,
        heads,
    } = shape;
    if let Some(m) = mask {
        assert_eq!(m.len(), n * n, "attention: mask is not [N, N]");
    }
    let dh = shape.head_dim();
    let scale = 1.0 / (dh as f32).sqrt();
    let mut out = vec![0f32; batch * n * c];
    let mut probs = vec![0f32; batch * heads * n * n];
    let out_ptr = SendPtr(out.as_mut_ptr());
    let (rs, c3) = ((3 * c) as isize, 3 * c);
    probs
        .par_chunks_mut(n * n)
        .enumerate()
        .for_each(|(job, p)| {
            let (b, h) = (job / heads, job % heads);
            let q = qkv[b * n * c3 + h * dh..].as_ptr();
            let k = qkv[b * n * c3 + c + h * dh..].as_ptr();
            let v = qkv[b * n * c3 + 2 * c + h * dh..].as_ptr();
            // SAFETY: q/k/v views stay inside sample b's rows of `qkv`; `p` is this task's
            // own block; the output columns h·dh..(h+1)·dh of sample b belong to this task
            // alone.
            unsafe {
                sgemm(
                    n,
                    n,
                    dh,
                    p.as_mut_ptr(),
                    n as isize,
                    1,
                    q,
                    rs,
                    1,
                    k,
                    1,
                    rs,
                    scale,
                );
            }
            softmax_rows(p, n, mask);
            unsafe {
                let o = out_ptr.get().add(b * n * c + h * dh);
                sgemm(
                    n,
                    dh,
                    n,
                    o,
                    c as isize,
                    1,
                    p.as_ptr(),
                    n as isize,
                    1,
                    v,
                    rs,
                    1,
                    1.0,
                );
            }
        });
    (out, probs)
}

#[multiversion(targets = "simd")]
fn softmax_backward_rows(p: &[f32], ds: &mut [f32], n: usize, scale: f32) {
    for (p, d) in p.chunks(n).zip(ds.chunks_mut(n)) {
        let dot = math::dot(p, d);
        for (d, &p) in d.iter_mut().zip(p) {
            *d = p * (*d - dot) * scale;
        }
    }
}

/// Backward: the gradient of `qkv` [B, N, 3C] from `qkv`, the forward's probabilities and
/// the gradient of the output [B, N, C].
pub fn attention_backward(
    qkv: &[f32],
    probs: &[f32],
    dout: &[f32],
    shape: AttentionShape,
) -> Vec<f32> {
    shape.check(qkv);
    let AttentionShape {
        batch,
        tokens: n,
        channels: c,
        heads,
    } = shape;
    assert_eq!(probs.len(), batch * heads * n * n, "attention: probs shape");
    assert_eq!(
        dout.len(),
        batch * n * c,
        "attention: dout is not [B, N, C]"
    );
    let dh = shape.head_dim();
    let scale = 1.0 / (dh as f32).sqrt();
    let c3 = 3 * c;
    let (rs, ors, ns) = (c3 as isize, c as isize, n as isize);
    let mut dqkv = vec![0f32; batch * n * c3];
    let d_ptr = SendPtr(dqkv.as_mut_ptr());
    (0..batch * heads).into_par_iter().for_each_init(
        || vec![0f32; n * n],
        |ds, job| {
            let (b, h) = (job / heads, job % heads);
            let base = b * n * c3 + h * dh;
            let q = qkv[base..].as_ptr();
            let k = qkv[base + c..].as_ptr();
            let v = qkv[base + 2 * c..].as_ptr();
            let p = &probs[job * n * n..(job + 1) * n * n];
            let go = dout[b * n * c + h * dh..].as_ptr();
            // SAFETY: reads stay inside sample b; the dq/dk/dv columns of head h in sample
            // b's rows of `dqkv` are written by this task only.
            unsafe {
                let dq = d_ptr.get().add(base);
                let dk = dq.add(c);
                let dv = dq.add(2 * c);
                // dV = Pᵀ·dO
                sgemm(n, dh, n, dv, rs, 1, p.as_ptr(), 1, ns, go, ors, 1, 1.0);
                // dP = dO·Vᵀ
                sgemm(n, n, dh, ds.as_mut_ptr(), ns, 1, go, ors, 1, v, 1, rs, 1.0);
                softmax_backward_rows(p, ds, n, scale);
                // dQ = dS·K, dK = dSᵀ·Q (dS already carries the 1/√dh of the scores)
                sgemm(n, dh, n, dq, rs, 1, ds.as_ptr(), ns, 1, k, rs, 1, 1.0);
                sgemm(n, dh, n, dk, rs, 1, ds.as_ptr(), 1, ns, q, rs, 1, 1.0);
            }
        },
    );
    dqkv
}
