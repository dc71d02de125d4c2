//! Tissue detection on a low-resolution image of the slide: Otsu's threshold on colour
//! saturation (H&E stain is coloured, glass and background are grey or white), with a floor
//! so that a slide that is nearly all tissue is not split in two by Otsu.

use image::RgbImage;

/// Saturation below this never counts as tissue, whatever Otsu says (0–255 scale).
const MIN_SATURATION: u8 = 20;
/// Brighter than this (mean of R, G, B) is glass, however tinted.
const MAX_BRIGHTNESS: u8 = 235;

/// A boolean tissue mask at the resolution of the image it was computed from.
#[derive(Debug, Clone, PartialEq)]
pub struct TissueMask {
    pub width: u32,
    pub height: u32,
    /// Row-major, `true` = tissue.
    pub mask: Vec<bool>,
    /// The saturation threshold used (0–255).
    pub threshold: u8,
}

/// HSV saturation on a 0–255 scale.
pub fn saturation(p: [u8; 3]) -> u8 {
    let max = p.iter().copied().max().unwrap_or(0);
    let min = p.iter().copied().min().unwrap_or(0);
    if max == 0 {
        0
    } else {
        ((max - min) as u32 * 255 / max as u32) as u8
    }
}

/// Otsu's threshold of a 256-bin histogram: the value t maximising the between-class
/// variance of {v ≤ t} and {v > t}.
pub fn otsu(hist: &[u64; 256]) -> u8 {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return 0;
    }
    let sum_all: f64 = hist
        .iter()
        .enumerate()
        .map(|(i, &n)| i as f64 * n as f64)
        .sum();
    let (mut w0, mut sum0) = (0f64, 0f64);
    let (mut best, mut best_t) = (-1f64, 0u8);
    for (t, &n) in hist.iter().enumerate() {
        w0 += n as f64;
        sum0 += t as f64 * n as f64;
        let w1 = total as f64 - w0;
        if w0 == 0.0 || w1 == 0.0 {
            continue;
        }
        let m0 = sum0 / w0;
        let m1 = (sum_all - sum0) / w1;
        let between = w0 * w1 * (m0 - m1) * (m0 - m1);
        if between > best {
            best = between;
            best_t = t as u8;
        }
    }
    best_t
}

/// Tissue = saturation above max(Otsu, floor) and not bright glass.
pub fn detect(img: &RgbImage) -> TissueMask {
    let mut hist = [0u64; 256];
    for p in img.pixels() {
        hist[saturation(p.0) as usize] += 1;
    }
    let threshold = otsu(&hist).max(MIN_SATURATION);
    let mask = img
        .pixels()
        .map(|p| {
            let bright = (p.0.iter().map(|&v| v as u32).sum::<u32>() / 3) as u8;
            saturation(p.0) > threshold && bright <= MAX_BRIGHTNESS
        })
        .collect();
    TissueMask {
        width: img.width(),
        height: img.height(),
        mask,
        threshold,
    }
}

impl TissueMask {
    /// Fraction of tissue in the rectangle [x0, x1) × [y0, y1) of mask pixels (clipped to the
    /// mask; the part outside counts as background).
    pub fn fraction(&self, x0: f64, y0: f64, x1: f64, y1: f64) -> f32 {
        let area = ((x1 - x0) * (y1 - y0)).max(0.0);
        if area <= 0.0 {
            return 0.0;
        }
        let mut tissue = 0f64;
        let ys = y0.floor().max(0.0) as u32;
        let ye = (y1.ceil() as u32).min(self.height);
        let xs = x0.floor().max(0.0) as u32;
        let xe = (x1.ceil() as u32).min(self.width);
        for y in ys..ye {
            // Partial cover of edge pixels keeps fractions right for tiles that are not whole
            // mask pixels wide.
            let cy = (y1.min(y as f64 + 1.0) - y0.max(y as f64)).max(0.0);
            for x in xs..xe {
                if self.mask[(y * self.width + x) as usize] {
                    let cx = (x1.min(x as f64 + 1.0) - x0.max(x as f64)).max(0.0);
                    tissue += cx * cy;
                }
            }
        }
        (tissue / area) as f32
    }

    /// Fraction of the whole mask that is tissue.
    pub fn coverage(&self) -> f32 {
        if self.mask.is_empty() {
            return 0.0;
        }
        self.mask.iter().filter(|&&m| m).count() as f32 / self.mask.len() as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn otsu_splits_two_modes() {
        let mut h = [0u64; 256];
        h[30] = 100;
        h[31] = 50;
        h[180] = 80;
        h[190] = 40;
        let t = otsu(&h);
        assert!((31..180).contains(&t), "{t}");
    }

    #[test]
    fn pink_is_tissue_white_is_not() {
        let mut img = RgbImage::from_pixel(10, 4, image::Rgb([245, 245, 245]));
        for y in 0..4 {
            for x in 0..5 {
                img.put_pixel(x, y, image::Rgb([200, 100, 170]));
            }
        }
        let m = detect(&img);
        assert!(m.mask[0] && !m.mask[9]);
        assert!((m.coverage() - 0.5).abs() < 1e-6);
        assert!((m.fraction(0.0, 0.0, 5.0, 4.0) - 1.0).abs() < 1e-6);
        assert!((m.fraction(2.5, 0.0, 7.5, 4.0) - 0.5).abs() < 1e-6);
        // Outside the mask counts as background.
        assert!((m.fraction(8.0, 0.0, 12.0, 4.0)).abs() < 1e-6);
    }
}
