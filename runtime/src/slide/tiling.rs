//! The tile grid: square tiles of a fixed physical size laid over level 0, the ones that are
//! mostly tissue, a seeded random subset of them, and the contrast check on read tiles.

use image::RgbImage;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::tissue::TissueMask;

/// A tile kept for encoding: its top-left corner in level-0 pixels and its tissue fraction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TileSpot {
    pub x: u32,
    pub y: u32,
    pub tissue: f32,
}

/// Grid tiles of `size0` level-0 pixels over a `width`×`height` slide whose tissue fraction
/// (measured on `mask`, which covers the whole slide at a lower resolution) is at least
/// `min_tissue`. Partial tiles at the right and bottom edges are left out. Row-major order.
pub fn tissue_tiles(
    mask: &TissueMask,
    width: u32,
    height: u32,
    size0: f64,
    min_tissue: f32,
) -> Vec<TileSpot> {
    let cols = (width as f64 / size0).floor() as u32;
    let rows = (height as f64 / size0).floor() as u32;
    let sx = mask.width as f64 / width as f64;
    let sy = mask.height as f64 / height as f64;
    let mut out = Vec::new();
    for r in 0..rows {
        for c in 0..cols {
            let x0 = c as f64 * size0;
            let y0 = r as f64 * size0;
            let f = mask.fraction(x0 * sx, y0 * sy, (x0 + size0) * sx, (y0 + size0) * sy);
            if f >= min_tissue {
                out.push(TileSpot {
                    x: x0.round() as u32,
                    y: y0.round() as u32,
                    tissue: f,
                });
            }
        }
    }
    out
}

/// Up to `max` tiles picked at random with `seed` (all when there are fewer), returned in
/// row-major order so reading them walks the file forwards.
pub fn choose(mut tiles: Vec<TileSpot>, max: usize, seed: u64) -> Vec<TileSpot> {
    if tiles.len() > max {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        tiles.shuffle(&mut rng);
        tiles.truncate(max);
    }
    tiles.sort_by_key(|t| (t.y, t.x));
    tiles
}

/// Standard deviation of the grey level (0–255) of a tile: flat tiles (blur, pen, empty glass
/// that passed the mask) have little.
pub fn contrast(tile: &RgbImage) -> f32 {
    let n = (tile.width() * tile.height()) as f64;
    if n == 0.0 {
        return 0.0;
    }
    let (mut s, mut s2) = (0f64, 0f64);
    for p in tile.pixels() {
        let g = 0.299 * p.0[0] as f64 + 0.587 * p.0[1] as f64 + 0.114 * p.0[2] as f64;
        s += g;
        s2 += g * g;
    }
    let m = s / n;
    ((s2 / n - m * m).max(0.0)).sqrt() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn half_mask() -> TissueMask {
        // 8×8 mask, tissue in the left half.
        let mask = (0..64).map(|i| i % 8 < 4).collect();
        TissueMask {
            width: 8,
            height: 8,
            mask,
            threshold: 20,
        }
    }

    #[test]
    fn keeps_tissue_tiles_only() {
        // Slide 800×800 px, mask at 1/100, tiles of 200 px: 4×4 grid, left 2 columns tissue.
        let t = tissue_tiles(&half_mask(), 800, 800, 200.0, 0.8);
        assert_eq!(t.len(), 8);
        assert!(t.iter().all(|s| s.x < 400 && (s.tissue - 1.0).abs() < 1e-6));
        // Tiles straddling the edge (x 300..500) have 50 % tissue.
        let t = tissue_tiles(&half_mask(), 800, 800, 250.0, 0.4);
        assert!(
            t.iter()
                .any(|s| s.x == 250 && (s.tissue - 0.6).abs() < 1e-6)
        );
    }

    #[test]
    fn choice_is_seeded_and_sorted() {
        let all = tissue_tiles(&half_mask(), 800, 800, 50.0, 0.5);
        assert_eq!(all.len(), 128);
        let a = choose(all.clone(), 10, 7);
        let b = choose(all.clone(), 10, 7);
        let c = choose(all.clone(), 10, 8);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 10);
        assert!(a.windows(2).all(|w| (w[0].y, w[0].x) < (w[1].y, w[1].x)));
        assert_eq!(choose(all.clone(), 1000, 1).len(), 128);
    }

    #[test]
    fn flat_tile_has_no_contrast() {
        let flat = RgbImage::from_pixel(16, 16, image::Rgb([200, 120, 180]));
        assert!(contrast(&flat) < 1e-3);
        let mut stripes = flat.clone();
        for (x, _, p) in stripes.enumerate_pixels_mut() {
            if x % 2 == 0 {
                *p = image::Rgb([40, 20, 60]);
            }
        }
        assert!(contrast(&stripes) > 50.0);
    }
}
