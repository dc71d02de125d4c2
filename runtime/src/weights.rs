//! Named float32 tensors, the interchange between the trainer, the exporter and official
//! RNA-FM checkpoints. Names follow the official PyTorch `state_dict` (e.g.
//! `blocks.0.attn.qkv.weight`; Linear weights are [out, in]); files are safetensors.

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::error::{Error, Result};

/// One tensor: shape and row-major data.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Tensor { shape, data }
    }

    pub fn numel(&self) -> usize {
        self.data.len()
    }
}

/// Tensors by name (sorted, as safetensors stores them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WeightMap {
    pub tensors: BTreeMap<String, Tensor>,
}

impl WeightMap {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, name: impl Into<String>, t: Tensor) {
        self.tensors.insert(name.into(), t);
    }

    /// The tensor `name`, checked against `shape`; `origin` names the file in errors.
    pub fn get(&self, name: &str, shape: &[usize], origin: &Path) -> Result<&Tensor> {
        let t = self
            .tensors
            .get(name)
            .ok_or_else(|| Error::invalid(origin, format!("missing tensor {name:?}")))?;
        if t.shape != shape {
            return Err(Error::invalid(
                origin,
                format!(
                    "tensor {name:?} has shape {:?}, the model needs {:?}",
                    t.shape, shape
                ),
            ));
        }
        Ok(t)
    }

    pub fn total_params(&self) -> usize {
        self.tensors.values().map(Tensor::numel).sum()
    }

    /// Parses safetensors bytes; float32, float64, float16, bfloat16 and bool (as 0/1) are
    /// read as f32.
    pub fn from_safetensors_bytes(bytes: &[u8], origin: &Path) -> Result<Self> {
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| Error::invalid(origin, format!("not a safetensors file: {e}")))?;
        let mut map = WeightMap::new();
        for (name, view) in st.tensors() {
            let data = to_f32(&view).ok_or_else(|| {
                Error::invalid(
                    origin,
                    format!(
                        "tensor {name:?} has dtype {:?}; expected a float type",
                        view.dtype()
                    ),
                )
            })?;
            if let Some(i) = data.iter().position(|v| !v.is_finite()) {
                return Err(Error::invalid(
                    origin,
                    format!("tensor {name:?} holds a non-finite value at element {i}"),
                ));
            }
            map.insert(name, Tensor::new(view.shape().to_vec(), data));
        }
        Ok(map)
    }

    pub fn read_safetensors(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_safetensors_bytes(&bytes, path)
    }

    /// Serialises as float32 safetensors, with optional string metadata.
    pub fn to_safetensors_bytes(
        &self,
        metadata: Option<std::collections::HashMap<String, String>>,
    ) -> Vec<u8> {
        let views: Vec<(String, TensorView<'_>)> = self
            .tensors
            .iter()
            .map(|(n, t)| {
                let bytes: &[u8] = bytemuck_f32(&t.data);
                (
                    n.clone(),
                    TensorView::new(Dtype::F32, t.shape.clone(), bytes)
                        .expect("shape and data length agree by construction"),
                )
            })
            .collect();
        safetensors::serialize(views, metadata).expect("float32 tensors always serialise")
    }

    /// Writes safetensors atomically.
    pub fn write_safetensors(&self, path: &Path) -> Result<()> {
        crate::atomic::write_bytes_atomic(path, &self.to_safetensors_bytes(None))
    }
}

fn bytemuck_f32(data: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding or invalid bit patterns; u8 has alignment 1. This is the
    // little-endian layout safetensors stores (all supported targets are little-endian).
    unsafe { std::slice::from_raw_parts(data.as_ptr().cast::<u8>(), std::mem::size_of_val(data)) }
}

fn to_f32(view: &TensorView<'_>) -> Option<Vec<f32>> {
    let b = view.data();
    Some(match view.dtype() {
        Dtype::F32 => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        Dtype::F64 => b
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
            .collect(),
        Dtype::BF16 => b
            .chunks_exact(2)
            .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
            .collect(),
        Dtype::F16 => b
            .chunks_exact(2)
            .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        // Official checkpoints hold boolean buffers (`pathway_graph.attn_mask`); 0/1 is exact.
        Dtype::BOOL => b.iter().map(|&v| f32::from(u8::from(v != 0))).collect(),
        _ => return None,
    })
}

/// IEEE half to single; written out because only this one conversion is needed.
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // subnormal: normalise
            let mut e = 127 - 15 + 1;
            let mut f = f;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | ((e as u32) << 23) | ((f & 0x3ff) << 13)
        }
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 127 - 15) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}
