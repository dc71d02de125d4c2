//! The tile encoder: any ONNX model that maps N×3×H×W float pixels to N×D features, run in
//! batches on ONNX Runtime (CUDA when available, else CPU).

use std::path::{Path, PathBuf};

use image::RgbImage;
use ndarray::{Array2, Array4, Axis};
use ort::session::Session;
use ort::value::TensorRef;

use crate::error::{Error, Result};
use crate::ort_env::{Device, SessionFactory};

/// How 0–255 pixels become model inputs: (p/255 − mean)/std per channel (RGB order).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalization {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Default for Normalization {
    /// ImageNet statistics, used by most pathology encoders.
    fn default() -> Self {
        Normalization {
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
    }
}

/// A loaded encoder.
pub struct TileEncoder {
    path: PathBuf,
    session: Session,
    input: String,
    output: String,
    /// Fixed input height and width when the model declares them.
    input_hw: Option<(u32, u32)>,
    /// Fixed batch size when the model declares one.
    fixed_batch: Option<usize>,
    norm: Normalization,
    device: Device,
}

fn fixed(d: i64) -> Option<i64> {
    (d > 0).then_some(d)
}

impl TileEncoder {
    /// Loads `path`; its first input must be a rank-4 float tensor with 3 channels.
    pub fn load(path: &Path, factory: &mut SessionFactory, norm: Normalization) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let session = factory.session(&bytes, &path.display().to_string())?;
        let device = factory.device().unwrap_or(Device::Cpu);
        let bad = |msg: String| Error::invalid(path, msg);
        let inp = session
            .inputs()
            .first()
            .ok_or_else(|| bad("the model has no input".into()))?;
        let out = session
            .outputs()
            .first()
            .ok_or_else(|| bad("the model has no output".into()))?;
        let shape: Vec<i64> = inp
            .dtype()
            .tensor_shape()
            .map(|s| s.iter().copied().collect())
            .ok_or_else(|| bad(format!("input `{}` is not a tensor", inp.name())))?;
        if shape.len() != 4 || shape[1] != 3 {
            return Err(bad(format!(
                "input `{}` has shape {shape:?}; an encoder takes N×3×H×W pixels",
                inp.name()
            )));
        }
        let input_hw = match (fixed(shape[2]), fixed(shape[3])) {
            (Some(h), Some(w)) => Some((h as u32, w as u32)),
            _ => None,
        };
        Ok(TileEncoder {
            path: path.to_path_buf(),
            input: inp.name().to_string(),
            output: out.name().to_string(),
            input_hw,
            fixed_batch: fixed(shape[0]).map(|b| b as usize),
            session,
            norm,
            device,
        })
    }

    /// The tile size the model insists on, if any.
    pub fn input_size(&self) -> Option<(u32, u32)> {
        self.input_hw
    }

    /// The batch size the model insists on, if any.
    pub fn fixed_batch(&self) -> Option<usize> {
        self.fixed_batch
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// Features of `tiles` (all the same size), one row per tile.
    pub fn encode(&mut self, tiles: &[RgbImage]) -> Result<Array2<f32>> {
        if tiles.is_empty() {
            return Ok(Array2::zeros((0, 0)));
        }
        let step = self.fixed_batch.unwrap_or(tiles.len());
        let mut parts = Vec::new();
        for group in tiles.chunks(step) {
            let mut x = to_tensor(group, self.norm);
            if let Some(b) = self.fixed_batch
                && group.len() < b
            {
                // Pad a short last batch for fixed-batch models; the padding rows are dropped.
                let (_, c, h, w) = x.dim();
                let mut padded = Array4::<f32>::zeros((b, c, h, w));
                padded
                    .slice_mut(ndarray::s![..group.len(), .., .., ..])
                    .assign(&x);
                x = padded;
            }
            let feats = self.run(&x)?;
            parts.push(feats.slice(ndarray::s![..group.len(), ..]).to_owned());
        }
        let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
        ndarray::concatenate(Axis(0), &views)
            .map_err(|e| Error::invalid(&self.path, format!("outputs of different widths: {e}")))
    }

    fn run(&mut self, x: &Array4<f32>) -> Result<Array2<f32>> {
        let name = self.path.display().to_string();
        let fail = |e: ort::Error| Error::Runtime(format!("{name}: {e}"));
        let input = TensorRef::from_array_view(x).map_err(fail)?;
        let outputs = self
            .session
            .run(ort::inputs![self.input.as_str() => input])
            .map_err(fail)?;
        let v = outputs
            .get(self.output.as_str())
            .ok_or_else(|| Error::Runtime(format!("{name}: no output `{}`", self.output)))?;
        let a = v.try_extract_array::<f32>().map_err(fail)?;
        let shape = a.shape().to_vec();
        let n = x.dim().0;
        // N×D, or N×D×1×1 from a pooled CNN.
        let ok = shape.len() >= 2 && shape[0] == n && shape[2..].iter().all(|&d| d == 1);
        if !ok {
            return Err(Error::invalid(
                &self.path,
                format!(
                    "output `{}` has shape {shape:?} for {n} tiles; an encoder gives N×D features",
                    self.output
                ),
            ));
        }
        let d = shape[1];
        Ok(a.to_shape((n, d))
            .map_err(|e| Error::Runtime(format!("{name}: {e}")))?
            .to_owned())
    }
}

/// N×3×H×W normalised float pixels of equally sized RGB tiles.
pub fn to_tensor(tiles: &[RgbImage], norm: Normalization) -> Array4<f32> {
    let (w, h) = tiles
        .first()
        .map_or((0, 0), |t| (t.width() as usize, t.height() as usize));
    let mut x = Array4::<f32>::zeros((tiles.len(), 3, h, w));
    let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * norm.std[c]));
    let shift: [f32; 3] = std::array::from_fn(|c| norm.mean[c] / norm.std[c]);
    for (i, t) in tiles.iter().enumerate() {
        for (px, py, p) in t.enumerate_pixels() {
            for c in 0..3 {
                x[[i, c, py as usize, px as usize]] = p.0[c] as f32 * scale[c] - shift[c];
            }
        }
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_is_normalised_channel_first() {
        let mut t = RgbImage::from_pixel(3, 2, image::Rgb([255, 0, 128]));
        t.put_pixel(2, 1, image::Rgb([0, 255, 0]));
        let n = Normalization::default();
        let x = to_tensor(&[t.clone(), t], n);
        assert_eq!(x.dim(), (2, 3, 2, 3));
        assert!((x[[0, 0, 0, 0]] - (1.0 - 0.485) / 0.229).abs() < 1e-5);
        assert!((x[[1, 1, 0, 0]] - (0.0 - 0.456) / 0.224).abs() < 1e-5);
        assert!((x[[0, 2, 0, 0]] - (128.0 / 255.0 - 0.406) / 0.225).abs() < 1e-5);
        assert!((x[[0, 1, 1, 2]] - (1.0 - 0.456) / 0.224).abs() < 1e-5);
    }
}
