//! Element-wise and per-row kernels: tanh-GELU, LayerNorm without affine parameters, and
//! the per-sample scale/shift of adaLN, each with its gradient. Inputs are contiguous
//! row-major f32 slices; work is split over rayon's pool.

use multiversion::multiversion;
use rayon::prelude::*;

use crate::math;

/// Elements per parallel task of the element-wise loops.
const CHUNK: usize = 1 << 15;

const GELU_K: f32 = 0.797_884_6; // sqrt(2/π)
const GELU_A: f32 = 0.044_715;

#[multiversion(targets = "simd")]
fn gelu_chunk(x: &[f32], y: &mut [f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        let u = GELU_K * (x + GELU_A * x * x * x);
        *y = 0.5 * x * (1.0 + math::tanh(u));
    }
}

#[multiversion(targets = "simd")]
fn gelu_backward_chunk(x: &[f32], dy: &[f32], dx: &mut [f32]) {
    for ((dx, &x), &g) in dx.iter_mut().zip(x).zip(dy) {
        let x2 = x * x;
        let t = math::tanh(GELU_K * x * (1.0 + GELU_A * x2));
        let du = GELU_K * (1.0 + 3.0 * GELU_A * x2);
        *dx = g * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du);
    }
}

/// GELU with the tanh approximation, `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
pub fn gelu_tanh(x: &[f32]) -> Vec<f32> {
    let mut y = vec![0f32; x.len()];
    y.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(y, x)| gelu_chunk(x, y));
    y
}

/// dL/dx of [`gelu_tanh`] from the input and dL/dy.
pub fn gelu_tanh_backward(x: &[f32], dy: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), dy.len(), "gelu_tanh_backward: lengths differ");
    let mut dx = vec![0f32; x.len()];
    dx.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK)))
        .for_each(|(dx, (x, dy))| gelu_backward_chunk(x, dy, dx));
    dx
}

/// Rows per parallel task for row-wise kernels with rows of `h` values.
fn rows_per_task(h: usize) -> usize {
    (CHUNK / h.max(1)).max(1)
}

#[multiversion(targets = "simd")]
fn layer_norm_rows(x: &[f32], y: &mut [f32], rstd: &mut [f32], h: usize, eps: f32) {
    for ((x, y), r) in x.chunks(h).zip(y.chunks_mut(h)).zip(rstd.iter_mut()) {
        let mean = math::sum(x) / h as f32;
        let var = math::sum_sq_dev(x, mean) / h as f32;
        let s = 1.0 / (var + eps).sqrt();
        for (y, &v) in y.iter_mut().zip(x) {
            *y = (v - mean) * s;
        }
        *r = s;
    }
}

/// LayerNorm of each row of `h` values (biased variance, as PyTorch); returns the
/// normalised rows and 1/sqrt(var + eps) per row.
pub fn layer_norm(x: &[f32], h: usize, eps: f32) -> (Vec<f32>, Vec<f32>) {
    assert!(
        h > 0 && x.len().is_multiple_of(h),
        "layer_norm: {} values in rows of {h}",
        x.len()
    );
    let rows = x.len() / h;
    let mut y = vec![0f32; x.len()];
    let mut rstd = vec![0f32; rows];
    let rt = rows_per_task(h);
    y.par_chunks_mut(rt * h)
        .zip(rstd.par_chunks_mut(rt))
        .zip(x.par_chunks(rt * h))
        .for_each(|((y, r), x)| layer_norm_rows(x, y, r, h, eps));
    (y, rstd)
}

#[multiversion(targets = "simd")]
fn layer_norm_backward_rows(y: &[f32], rstd: &[f32], dy: &[f32], dx: &mut [f32], h: usize) {
    for (((y, &s), dy), dx) in y
        .chunks(h)
        .zip(rstd)
        .zip(dy.chunks(h))
        .zip(dx.chunks_mut(h))
    {
        let m1 = math::sum(dy) / h as f32;
        let m2 = math::dot(dy, y) / h as f32;
        for ((dx, &g), &v) in dx.iter_mut().zip(dy).zip(y) {
            *dx = s * (g - m1 - v * m2);
        }
    }
}

/// dL/dx of [`layer_norm`] from its output `y`, `rstd` and dL/dy:
/// `rstd·(dy − mean(dy) − y·mean(dy·y))` per row.
pub fn layer_norm_backward(y: &[f32], rstd: &[f32], dy: &[f32], h: usize) -> Vec<f32> {
    assert_eq!(y.len(), dy.len(), "layer_norm_backward: lengths differ");
    assert_eq!(y.len(), rstd.len() * h, "layer_norm_backward: rows differ");
    let mut dx = vec![0f32; y.len()];
    let rt = rows_per_task(h);
    dx.par_chunks_mut(rt * h)
        .zip(y.par_chunks(rt * h))
        .zip(rstd.par_chunks(rt).zip(dy.par_chunks(rt * h)))
        .for_each(|((dx, y), (r, dy))| layer_norm_backward_rows(y, r, dy, dx, h));
    dx
}

#[multiversion(targets = "simd")]
fn scale_shift_sample(x: &[f32], m: &[f32], a: Option<&[f32]>, y: &mut [f32]) {
    let h = m.len();
    for (y, x) in y.chunks_mut(h).zip(x.chunks(h)) {
        match a {
            Some(a) => {
                for (((y, &x), &m), &a) in y.iter_mut().zip(x).zip(m).zip(a) {
                    *y = x * m + a;
                }
            }
            None => {
                for ((y, &x), &m) in y.iter_mut().zip(x).zip(m) {
                    *y = x * m;
                }
            }
        }
    }
}

/// `y[b, n, :] = x[b, n, :]·m[b, :] + a[b, :]` for x [B, N, H], m and a [B, H].
pub fn scale_shift(x: &[f32], m: &[f32], a: Option<&[f32]>, b: usize, h: usize) -> Vec<f32> {
    assert!(
        b > 0 && h > 0 && x.len().is_multiple_of(b * h),
        "scale_shift: shapes differ"
    );
    assert_eq!(m.len(), b * h, "scale_shift: m is not [B, H]");
    let per = x.len() / b;
    let mut y = vec![0f32; x.len()];
    y.par_chunks_mut(per)
        .zip(x.par_chunks(per))
        .enumerate()
        .for_each(|(i, (y, x))| {
            let a = a.map(|a| &a[i * h..(i + 1) * h]);
            scale_shift_sample(x, &m[i * h..(i + 1) * h], a, y)
        });
    y
}

#[multiversion(targets = "simd")]
fn scale_shift_backward_sample(
    x: &[f32],
    m: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    dm: &mut [f32],
    da: &mut [f32],
) {
    let h = m.len();
    for ((dx, x), dy) in dx.chunks_mut(h).zip(x.chunks(h)).zip(dy.chunks(h)) {
        for (((((dx, &x), &g), &m), dm), da) in dx
            .iter_mut()
            .zip(x)
            .zip(dy)
            .zip(m)
            .zip(dm.iter_mut())
            .zip(da.iter_mut())
        {
            *dx = g * m;
            *dm += g * x;
            *da += g;
        }
    }
}

/// Gradients (x, m, a) of [`scale_shift`]: `dy·m`, and the sums over tokens of `dy·x` and
/// `dy` per sample.
pub fn scale_shift_backward(
    x: &[f32],
    m: &[f32],
    dy: &[f32],
    b: usize,
    h: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert_eq!(x.len(), dy.len(), "scale_shift_backward: lengths differ");
    assert_eq!(m.len(), b * h, "scale_shift_backward: m is not [B, H]");
    let per = x.len() / b;
    let mut dx = vec![0f32; x.len()];
    let mut dm = vec![0f32; b * h];
    let mut da = vec![0f32; b * h];
    dx.par_chunks_mut(per)
        .zip(dm.par_chunks_mut(h).zip(da.par_chunks_mut(h)))
        .enumerate()
        .for_each(|(i, (dx, (dm, da)))| {
            scale_shift_backward_sample(
                &x[i * per..(i + 1) * per],
                &m[i * h..(i + 1) * h],
                &dy[i * per..(i + 1) * per],
                dx,
                dm,
                da,
            )
        });
    (dx, dm, da)
}
