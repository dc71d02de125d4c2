//! Input-shift check: how far a slide's cluster features lie from the training slides'
//! per-dimension distribution. A large shift (another encoder, stain or scanner) makes the
//! prediction an extrapolation, which the user should be told about.

use ndarray::ArrayView2;

/// Mean |z| above which a slide is flagged: training slides average about 0.8.
pub const SHIFT_WARN_MEAN_ABS_Z: f32 = 3.0;

/// Mean over all features of |(value − mean_d) / sd_d|; `None` when the statistics do not
/// match the feature width.
pub fn mean_abs_z(features: ArrayView2<'_, f32>, mean: &[f32], sd: &[f32]) -> Option<f32> {
    let d = features.ncols();
    if mean.len() != d || sd.len() != d || features.is_empty() {
        return None;
    }
    let mut sum = 0f64;
    for row in features.rows() {
        for ((&v, &m), &s) in row.iter().zip(mean).zip(sd) {
            sum += ((v - m) / s.max(1e-6)).abs() as f64;
        }
    }
    Some((sum / features.len() as f64) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn shift_scales_with_distance() {
        let f = array![[1.0, 2.0], [3.0, 2.0]];
        assert_eq!(mean_abs_z(f.view(), &[2.0, 2.0], &[1.0, 1.0]), Some(0.5));
        let far = &f + 10.0;
        let z = mean_abs_z(far.view(), &[2.0, 2.0], &[1.0, 1.0]).unwrap_or(0.0);
        assert!(z > SHIFT_WARN_MEAN_ABS_Z, "{z}");
        assert_eq!(mean_abs_z(f.view(), &[0.0], &[1.0]), None);
    }
}
