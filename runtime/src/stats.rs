//! The statistics every part of rnafm shares: the one quantile definition (sample summaries,
//! calibration, evaluation, the synthetic oracle all use it).

use num_traits::Float;

/// Quantile `q` of ascending `sorted` values with linear interpolation between the closest
/// ranks (NumPy's default, `method="linear"`); NaN for no values. `q` is clamped to [0, 1].
pub fn quantile_sorted<T: Float>(sorted: &[T], q: f64) -> T {
    match sorted.len() {
        0 => T::nan(),
        1 => sorted[0],
        n => {
            let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = (lo + 1).min(n - 1);
            // `T::from` of an f64 in [0, 1) cannot fail for f32/f64.
            let w = T::from(pos - lo as f64).unwrap_or_else(T::zero);
            sorted[lo] + (sorted[hi] - sorted[lo]) * w
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_as_numpy() {
        // numpy.quantile([1, 2, 3, 8], [0, 0.5, 0.9, 1]) = [1, 2.5, 6.5, 8]
        let v = [1.0f64, 2.0, 3.0, 8.0];
        assert_eq!(quantile_sorted(&v, 0.0), 1.0);
        assert_eq!(quantile_sorted(&v, 0.5), 2.5);
        assert!((quantile_sorted(&v, 0.9) - 6.5).abs() < 1e-12);
        assert_eq!(quantile_sorted(&v, 1.0), 8.0);
        assert_eq!(quantile_sorted(&[4.0f32], 0.3), 4.0);
        assert!(quantile_sorted::<f32>(&[], 0.5).is_nan());
        // the f32 and f64 paths agree to f32 precision
        let f: Vec<f32> = v.iter().map(|&x| x as f32).collect();
        assert_eq!(quantile_sorted(&f, 0.9), 6.5);
    }
}
