//! Network layers as ONNX subgraphs, reading official-PyTorch-named weights.

use std::path::Path;

use rnafm_runtime::weights::WeightMap;
use rnafm_runtime::{Error, Result};

use tract_onnx::pb::tensor_proto::DataType;

use crate::onnx_builder::{Graph, attr_f, attr_i, attr_ints};

/// How the token-wise graphs (embed, backbone) are written.
#[derive(Debug, Clone, Copy)]
pub struct GraphOptions {
    /// Token-wise linear layers in int8 ([`Ctx::weight_matmul`]).
    pub int8: bool,
    /// Attention as ONNX Runtime's fused `com.microsoft.MultiHeadAttention` ([`Ctx`]);
    /// false writes standard ONNX only, which any engine (tract) runs.
    pub fused_attention: bool,
}

impl GraphOptions {
    /// What bundles hold: float32, fused attention.
    pub const BUNDLE: GraphOptions = GraphOptions {
        int8: false,
        fused_attention: true,
    };
}

/// Graph under construction plus the weights it reads.
pub struct Ctx<'a> {
    pub g: Graph,
    pub w: &'a WeightMap,
    pub origin: &'a Path,
    /// Token-wise linear layers as int8 dynamically quantised products ([`Ctx::weight_matmul`]).
    pub int8: bool,
    /// Attention as ONNX Runtime's fused `com.microsoft.MultiHeadAttention` instead of
    /// MatMul/Softmax/MatMul: 1.75× faster at 32 rows of 380 tokens on 2 CPU threads
    /// (ORT 1.31.1, measured), since it skips the head transposes and the separate softmax
    /// pass. Off for graphs that tract must run (the condition graph).
    pub fused_attention: bool,
}

/// Symmetric per-column int8 quantisation of a row-major [rows, cols] matrix: the int8
/// values and one scale per column (max |w| / 127; 1 for an all-zero column).
pub fn quantize_columns(data: &[f32], rows: usize, cols: usize) -> (Vec<i8>, Vec<f32>) {
    let mut scale = vec![0f32; cols];
    for r in 0..rows {
        for (c, s) in scale.iter_mut().enumerate() {
            *s = s.max(data[r * cols + c].abs());
        }
    }
    for s in &mut scale {
        *s = if *s > 0.0 { *s / 127.0 } else { 1.0 };
    }
    let q = data
        .iter()
        .enumerate()
        .map(|(i, &v)| (v / scale[i % cols]).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (q, scale)
}

/// Row-major transpose of a [rows, cols] matrix.
pub fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

impl<'a> Ctx<'a> {
    /// A context for a token-wise graph written as `o` says.
    pub fn with_options(w: &'a WeightMap, origin: &'a Path, o: GraphOptions) -> Self {
        Ctx {
            int8: o.int8,
            fused_attention: o.fused_attention,
            ..Ctx::new(w, origin)
        }
    }

    pub fn new(w: &'a WeightMap, origin: &'a Path) -> Self {
        Ctx {
            g: Graph::default(),
            w,
            origin,
            int8: false,
            fused_attention: false,
        }
    }

    /// A weight's data, checked against `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<&'a [f32]> {
        Ok(&self.w.get(name, shape, self.origin)?.data)
    }

    /// Shape of a weight (for inferring sizes).
    pub fn shape(&self, name: &str) -> Result<&'a [usize]> {
        self.w
            .tensors
            .get(name)
            .map(|t| t.shape.as_slice())
            .ok_or_else(|| Error::invalid(self.origin, format!("weights lack {name}")))
    }

    pub fn weight(&mut self, name: &str, shape: &[usize]) -> Result<String> {
        let d = self.get(name, shape)?;
        Ok(self.g.constant(name, shape, d))
    }

    /// A 1-d int64 constant.
    pub fn g_const_i64(&mut self, v: &[i64]) -> String {
        self.g.constant_i64("i", &[v.len()], v)
    }

    pub fn scalar(&mut self, v: f32) -> String {
        self.g.constant("c", &[], &[v])
    }

    /// `x` [.., inp] times the constant `wt` [inp, out] (row-major). With `int8`: x is
    /// quantised per tensor at run time (DynamicQuantizeLinear, uint8), the weight per column
    /// at export (int8), the product taken in integers (MatMulInteger) and scaled back; ONNX
    /// Runtime fuses this into one DynamicQuantizeMatMul on VNNI/AMX kernels.
    pub fn weight_matmul(
        &mut self,
        x: &str,
        hint: &str,
        wt: &[f32],
        inp: usize,
        out: usize,
    ) -> String {
        if !self.int8 {
            let w = self.g.constant(hint, &[inp, out], wt);
            return self.g.op("MatMul", &[x, &w], vec![]);
        }
        let (q, scale) = quantize_columns(wt, inp, out);
        let wq = self.g.constant_i8(&format!("{hint}_int8"), &[inp, out], &q);
        let ws = self.g.constant(&format!("{hint}_scale"), &[out], &scale);
        let xq = self.g.op_n("DynamicQuantizeLinear", &[x], vec![], 3);
        let y = self.g.op("MatMulInteger", &[&xq[0], &wq, &xq[2]], vec![]);
        let y = self
            .g
            .op("Cast", &[&y], vec![attr_i("to", DataType::Float as i64)]);
        let s = self.g.op("Mul", &[&xq[1], &ws], vec![]);
        self.g.op("Mul", &[&y, &s], vec![])
    }

    /// A linear layer applied to every token: like [`Ctx::linear`], quantised with `int8`.
    pub fn token_linear(
        &mut self,
        x: &str,
        prefix: &str,
        inp: usize,
        out: usize,
    ) -> Result<String> {
        let w = self.get(&format!("{prefix}.weight"), &[out, inp])?;
        let y = self.weight_matmul(
            x,
            &format!("{prefix}.weight_t"),
            &transpose(w, out, inp),
            inp,
            out,
        );
        let b = self.weight(&format!("{prefix}.bias"), &[out])?;
        Ok(self.g.op("Add", &[&y, &b], vec![]))
    }

    /// nn.Linear `prefix.weight` [out, in] (+ `prefix.bias`) on the last axis.
    pub fn linear(
        &mut self,
        x: &str,
        prefix: &str,
        inp: usize,
        out: usize,
        bias: bool,
    ) -> Result<String> {
        let w = self.get(&format!("{prefix}.weight"), &[out, inp])?;
        let wt = self.g.constant(
            &format!("{prefix}.weight_t"),
            &[inp, out],
            &transpose(w, out, inp),
        );
        let mut y = self.g.op("MatMul", &[x, &wt], vec![]);
        if bias {
            let b = self.weight(&format!("{prefix}.bias"), &[out])?;
            y = self.g.op("Add", &[&y, &b], vec![]);
        }
        Ok(y)
    }

    pub fn silu(&mut self, x: &str) -> String {
        let s = self.g.op("Sigmoid", &[x], vec![]);
        self.g.op("Mul", &[x, &s], vec![])
    }

    /// Exact (erf) GELU; opset 17 has no Gelu op. Written as x·0.5·(1 + erf(x / √2)), the
    /// form ONNX Runtime fuses into one Gelu kernel.
    pub fn gelu(&mut self, x: &str) -> String {
        let r = self.scalar(std::f32::consts::SQRT_2);
        let xs = self.g.op("Div", &[x, &r], vec![]);
        let e = self.g.op("Erf", &[&xs], vec![]);
        let one = self.scalar(1.0);
        let e1 = self.g.op("Add", &[&e, &one], vec![]);
        let half = self.scalar(0.5);
        let hx = self.g.op("Mul", &[x, &half], vec![]);
        self.g.op("Mul", &[&hx, &e1], vec![])
    }

    /// tanh-approximated GELU (timm Mlp in the DiT blocks), written as
    /// x·0.5·(1 + tanh(√(2/π)·(x + 0.044715·x³))) with Pow, the form ONNX Runtime fuses into
    /// one FastGelu kernel (with the preceding bias Add); unfused it is nine passes over the
    /// widest tensor of the network.
    pub fn gelu_tanh(&mut self, x: &str) -> String {
        let three = self.scalar(3.0);
        let x3 = self.g.op("Pow", &[x, &three], vec![]);
        let k = self.scalar(0.044715);
        let kx3 = self.g.op("Mul", &[&x3, &k], vec![]);
        let inner = self.g.op("Add", &[x, &kx3], vec![]);
        let s = self.scalar((2.0f64 / std::f64::consts::PI).sqrt() as f32);
        let si = self.g.op("Mul", &[&inner, &s], vec![]);
        let t = self.g.op("Tanh", &[&si], vec![]);
        let one = self.scalar(1.0);
        let t1 = self.g.op("Add", &[&t, &one], vec![]);
        let half = self.scalar(0.5);
        let hx = self.g.op("Mul", &[x, &half], vec![]);
        self.g.op("Mul", &[&hx, &t1], vec![])
    }

    /// LayerNorm over the last axis; `prefix` None = no affine (ones/zeros).
    pub fn layer_norm(
        &mut self,
        x: &str,
        prefix: Option<&str>,
        width: usize,
        eps: f32,
    ) -> Result<String> {
        let (s, b) = match prefix {
            Some(p) => (
                self.weight(&format!("{p}.weight"), &[width])?,
                self.weight(&format!("{p}.bias"), &[width])?,
            ),
            None => (
                self.g.constant("ln_one", &[width], &vec![1.0; width]),
                self.g.constant("ln_zero", &[width], &vec![0.0; width]),
            ),
        };
        Ok(self.g.op(
            "LayerNormalization",
            &[x, &s, &b],
            vec![attr_i("axis", -1), attr_f("epsilon", eps)],
        ))
    }

    /// Multi-head self-attention on [B, N, W] with a packed q;k;v projection `qkv_w` [3W, W]
    /// (timm Attention and nn.MultiheadAttention share this layout), optional additive mask.
    /// The projections are token-wise (int8 with `int8`); the attention itself stays float.
    #[allow(clippy::too_many_arguments)]
    pub fn attention(
        &mut self,
        x: &str,
        n: usize,
        width: usize,
        heads: usize,
        qkv_w: &str,
        qkv_b: Option<&str>,
        proj: (&str, &str),
        mask: Option<&[f32]>,
    ) -> Result<String> {
        let dh = width / heads;
        let w = self.get(qkv_w, &[3 * width, width])?;
        let pw = self.get(proj.0, &[width, width])?;
        let mut pb = self.get(proj.1, &[width])?.to_vec();
        let o = if self.fused_attention {
            // q, k and v as three products rather than one split three ways (the Split of the
            // [.., 3W] product took as long as its bias Add, profiled at 10 draws), and two of
            // the three biases dropped, exactly in arithmetic: q·b_k is the same for all of a
            // query's scores, which softmax ignores; the attention weights sum to 1, so b_v
            // comes out as it went in and joins the output bias (b_o + W_o b_v).
            let b = qkv_b.map(|b| self.get(b, &[3 * width])).transpose()?;
            let mut qkv = Vec::with_capacity(3);
            for (i, part) in ["q", "k", "v"].into_iter().enumerate() {
                let wi = &w[i * width * width..(i + 1) * width * width];
                let hint = format!("{qkv_w}.{part}");
                qkv.push(self.weight_matmul(x, &hint, &transpose(wi, width, width), width, width));
            }
            if let Some(b) = b {
                let bq = self
                    .g
                    .constant(&format!("{qkv_w}.q_bias"), &[width], &b[..width]);
                qkv[0] = self.g.op("Add", &[&qkv[0], &bq], vec![]);
                let bv = &b[2 * width..];
                for (j, o) in pb.iter_mut().enumerate() {
                    let row = &pw[j * width..(j + 1) * width];
                    let wb: f64 = row.iter().zip(bv).map(|(&a, &c)| a as f64 * c as f64).sum();
                    *o = (*o as f64 + wb) as f32;
                }
            }
            let bias = mask.map(|m| self.g.constant("attn_mask", &[1, 1, n, n], m));
            let mut inputs = vec![qkv[0].as_str(), &qkv[1], &qkv[2]];
            if let Some(b) = &bias {
                // Inputs 3 and 4 (projection bias, key padding mask) are absent.
                inputs.extend(["", "", b.as_str()]);
            }
            self.g.op_ms(
                "MultiHeadAttention",
                &inputs,
                vec![attr_i("num_heads", heads as i64)],
            )
        } else {
            let mut qkv =
                self.weight_matmul(x, qkv_w, &transpose(w, 3 * width, width), width, 3 * width);
            if let Some(b) = qkv_b {
                let b = self.weight(b, &[3 * width])?;
                qkv = self.g.op("Add", &[&qkv, &b], vec![]);
            }
            let shape =
                self.g
                    .constant_i64("shape", &[5], &[0, n as i64, 3, heads as i64, dh as i64]);
            let r = self.g.op("Reshape", &[&qkv, &shape], vec![]);
            let t = self.g.op(
                "Transpose",
                &[&r],
                vec![attr_ints("perm", &[2, 0, 3, 1, 4])],
            );
            let parts = self.g.op_n("Split", &[&t], vec![attr_i("axis", 0)], 3);
            let sq = self.g.constant_i64("axes", &[1], &[0]);
            let q = self.g.op("Squeeze", &[&parts[0], &sq], vec![]);
            let k = self.g.op("Squeeze", &[&parts[1], &sq], vec![]);
            let v = self.g.op("Squeeze", &[&parts[2], &sq], vec![]);
            let kt = self
                .g
                .op("Transpose", &[&k], vec![attr_ints("perm", &[0, 1, 3, 2])]);
            let s = self.g.op("MatMul", &[&q, &kt], vec![]);
            let scale = self.scalar(1.0 / (dh as f32).sqrt());
            let mut s = self.g.op("Mul", &[&s, &scale], vec![]);
            if let Some(m) = mask {
                let m = self.g.constant("attn_mask", &[n, n], m);
                s = self.g.op("Add", &[&s, &m], vec![]);
            }
            let p = self.g.op("Softmax", &[&s], vec![attr_i("axis", -1)]);
            let o = self.g.op("MatMul", &[&p, &v], vec![]);
            let o = self
                .g
                .op("Transpose", &[&o], vec![attr_ints("perm", &[0, 2, 1, 3])]);
            let shape = self
                .g
                .constant_i64("shape", &[3], &[0, n as i64, width as i64]);
            self.g.op("Reshape", &[&o, &shape], vec![])
        };
        let o = self.weight_matmul(&o, proj.0, &transpose(pw, width, width), width, width);
        let pb = self.g.constant(proj.1, &[width], &pb);
        Ok(self.g.op("Add", &[&o, &pb], vec![]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_quantise_symmetrically() {
        // [2, 3]: column maxima 4, 0.5, 0.
        let w = [4.0, -0.5, 0.0, -2.0, 0.25, 0.0];
        let (q, s) = quantize_columns(&w, 2, 3);
        assert_eq!(s, vec![4.0 / 127.0, 0.5 / 127.0, 1.0]);
        assert_eq!(q, vec![127, -127, 0, -64, 64, 0]);
        for (i, (&qv, &wv)) in q.iter().zip(&w).enumerate() {
            assert!((qv as f32 * s[i % 3] - wv).abs() <= s[i % 3] / 2.0 + 1e-7);
        }
    }
}
