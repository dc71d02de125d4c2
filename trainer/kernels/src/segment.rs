//! Per-pathway output heads as one op: pathway p maps its token x[:, p, :] (width H) with
//! its own weight rows onto its own block of `sizes[p]` consecutive outputs. The P products
//! are independent tasks writing disjoint columns of the output (forward) and disjoint
//! tokens and weight rows (backward).

use rayon::prelude::*;

use crate::sgemm::{SendPtr, sgemm};

/// Sizes of one segmented product: x [batch, P, hidden], w [S, hidden], out [batch, S],
/// with P = `sizes.len()` and S = Σ sizes.
#[derive(Debug, Clone, Copy)]
pub struct SegmentShape<'a> {
    pub batch: usize,
    pub hidden: usize,
    pub sizes: &'a [usize],
}

impl SegmentShape<'_> {
    fn offsets(&self) -> (Vec<usize>, usize) {
        let mut off = Vec::with_capacity(self.sizes.len());
        let mut s = 0;
        for &n in self.sizes {
            off.push(s);
            s += n;
        }
        (off, s)
    }
}

/// `out[:, seg_p] = x[:, p, :] · w[seg_p]ᵀ + bias[seg_p]` for every pathway p.
pub fn segment_linear(x: &[f32], w: &[f32], bias: &[f32], shape: SegmentShape) -> Vec<f32> {
    let SegmentShape {
        batch,
        hidden: h,
        sizes,
    } = shape;
    let p = sizes.len();
    let (off, s) = shape.offsets();
    assert_eq!(x.len(), batch * p * h, "segment_linear: x is not [B, P, H]");
    assert_eq!(w.len(), s * h, "segment_linear: w is not [S, H]");
    assert_eq!(bias.len(), s, "segment_linear: bias is not [S]");
    let mut out = vec![0f32; batch * s];
    let o_ptr = SendPtr(out.as_mut_ptr());
    (0..p).into_par_iter().for_each(|i| {
        let n = sizes[i];
        if n == 0 {
            return;
        }
        // SAFETY: x[:, i, :] and w's rows off[i]..off[i]+n are in bounds (checked above);
        // output columns off[i]..off[i]+n belong to pathway i alone.
        unsafe {
            sgemm(
                batch,
                n,
                h,
                o_ptr.get().add(off[i]),
                s as isize,
                1,
                x[i * h..].as_ptr(),
                (p * h) as isize,
                1,
                w[off[i] * h..].as_ptr(),
                1,
                h as isize,
                1.0,
            );
        }
    });
    out.par_chunks_mut(s).for_each(|row| {
        for (o, &b) in row.iter_mut().zip(bias) {
            *o += b;
        }
    });
    out
}

/// Gradients (x, w, bias) of [`segment_linear`] from x, w and the output gradient `dz`.
pub fn segment_linear_backward(
    x: &[f32],
    w: &[f32],
    dz: &[f32],
    shape: SegmentShape,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let SegmentShape {
        batch,
        hidden: h,
        sizes,
    } = shape;
    let p = sizes.len();
    let (off, s) = shape.offsets();
    assert_eq!(
        x.len(),
        batch * p * h,
        "segment_linear_backward: x is not [B, P, H]"
    );
    assert_eq!(w.len(), s * h, "segment_linear_backward: w is not [S, H]");
    assert_eq!(
        dz.len(),
        batch * s,
        "segment_linear_backward: dz is not [B, S]"
    );
    let mut dx = vec![0f32; batch * p * h];
    let mut dw = vec![0f32; s * h];
    let (dx_ptr, dw_ptr) = (SendPtr(dx.as_mut_ptr()), SendPtr(dw.as_mut_ptr()));
    (0..p).into_par_iter().for_each(|i| {
        let n = sizes[i];
        if n == 0 {
            return;
        }
        let dzp = dz[off[i]..].as_ptr();
        // SAFETY: reads in bounds as in the forward; token i of dx and rows off[i].. of dw
        // are written by this task only.
        unsafe {
            // dx[:, i, :] = dz[:, seg] · w[seg]
            sgemm(
                batch,
                h,
                n,
                dx_ptr.get().add(i * h),
                (p * h) as isize,
                1,
                dzp,
                s as isize,
                1,
                w[off[i] * h..].as_ptr(),
                h as isize,
                1,
                1.0,
            );
            // dw[seg] = dz[:, seg]ᵀ · x[:, i, :]
            sgemm(
                n,
                h,
                batch,
                dw_ptr.get().add(off[i] * h),
                h as isize,
                1,
                dzp,
                1,
                s as isize,
                x[i * h..].as_ptr(),
                (p * h) as isize,
                1,
                1.0,
            );
        }
    });
    let mut db = vec![0f32; s];
    for row in dz.chunks(s) {
        for (d, &g) in db.iter_mut().zip(row) {
            *d += g;
        }
    }
    (dx, dw, db)
}
