//! Moving tensors between the burn model and a `WeightMap` in official PyTorch names.
//! PyTorch `Linear.weight` is [out, in]; burn's is [in, out], so linears are transposed on
//! the way in and out.

use std::path::Path;

use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;
use rnafm_runtime::Result;
use rnafm_runtime::weights::{Tensor as HostTensor, WeightMap};

use crate::layers::{AffineNorm, linear_from};

/// Reads named tensors from a weight map onto a device, checking shapes.
pub struct Loader<'a, B: Backend> {
    pub map: &'a WeightMap,
    pub origin: &'a Path,
    pub device: &'a B::Device,
}

impl<'a, B: Backend> Loader<'a, B> {
    pub fn new(map: &'a WeightMap, origin: &'a Path, device: &'a B::Device) -> Self {
        Loader {
            map,
            origin,
            device,
        }
    }

    /// The raw host data of `name`, checked against `shape`.
    pub fn host(&self, name: &str, shape: &[usize]) -> Result<&'a HostTensor> {
        self.map.get(name, shape, self.origin)
    }

    pub fn tensor<const D: usize>(&self, name: &str, shape: [usize; D]) -> Result<Tensor<B, D>> {
        let t = self.host(name, &shape)?;
        Ok(self.from_vec(t.data.clone(), shape))
    }

    pub fn from_vec<const D: usize>(&self, data: Vec<f32>, shape: [usize; D]) -> Tensor<B, D> {
        Tensor::from_data(TensorData::new(data, shape), self.device)
    }

    pub fn param<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
    ) -> Result<Param<Tensor<B, D>>> {
        Ok(Param::from_tensor(self.tensor(name, shape)?))
    }

    /// PyTorch Linear `{prefix}.weight` [out, in] (+ `{prefix}.bias`) as a burn Linear.
    pub fn linear(&self, prefix: &str, d_in: usize, d_out: usize, bias: bool) -> Result<Linear<B>> {
        let w = self.linear_weight(&format!("{prefix}.weight"), d_in, d_out)?;
        let b = if bias {
            Some(self.tensor(&format!("{prefix}.bias"), [d_out])?)
        } else {
            None
        };
        Ok(linear_from(w, b))
    }

    /// A PyTorch [out, in] weight as a burn [in, out] tensor.
    pub fn linear_weight(&self, name: &str, d_in: usize, d_out: usize) -> Result<Tensor<B, 2>> {
        let t = self.host(name, &[d_out, d_in])?;
        Ok(self.from_vec(transpose(&t.data, d_out, d_in), [d_in, d_out]))
    }

    pub fn affine_norm(&self, prefix: &str, dim: usize, eps: f64) -> Result<AffineNorm<B>> {
        Ok(AffineNorm {
            weight: self.param(&format!("{prefix}.weight"), [dim])?,
            bias: self.param(&format!("{prefix}.bias"), [dim])?,
            eps,
        })
    }
}

/// Collects named tensors from the model into a weight map.
#[derive(Default)]
pub struct Saver {
    pub map: WeightMap,
}

impl Saver {
    pub fn tensor<B: Backend, const D: usize>(&mut self, name: &str, t: &Tensor<B, D>) {
        self.put(name, t.dims().to_vec(), to_vec(t));
    }

    pub fn put(&mut self, name: &str, shape: Vec<usize>, data: Vec<f32>) {
        self.map.insert(name, HostTensor::new(shape, data));
    }

    pub fn linear<B: Backend>(&mut self, prefix: &str, l: &Linear<B>) {
        self.linear_weight(&format!("{prefix}.weight"), &l.weight.val());
        if let Some(b) = &l.bias {
            self.tensor(&format!("{prefix}.bias"), &b.val());
        }
    }

    /// A burn [in, out] weight stored as PyTorch [out, in].
    pub fn linear_weight<B: Backend>(&mut self, name: &str, w: &Tensor<B, 2>) {
        let [d_in, d_out] = w.dims();
        self.put(name, vec![d_out, d_in], transpose(&to_vec(w), d_in, d_out));
    }

    pub fn affine_norm<B: Backend>(&mut self, prefix: &str, n: &AffineNorm<B>) {
        self.tensor(&format!("{prefix}.weight"), &n.weight.val());
        self.tensor(&format!("{prefix}.bias"), &n.bias.val());
    }
}

/// Host copy of a float tensor (row-major).
pub fn to_vec<B: Backend, const D: usize>(t: &Tensor<B, D>) -> Vec<f32> {
    t.to_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("float tensors convert to f32")
}

/// Row-major [rows, cols] → [cols, rows].
pub fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

/// An Int index tensor from host indices.
pub fn index_tensor<B: Backend>(idx: &[usize], device: &B::Device) -> Tensor<B, 1, Int> {
    let v: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
    Tensor::from_data(TensorData::new(v, [idx.len()]), device)
}
