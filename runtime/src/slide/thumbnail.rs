//! The review thumbnail: the low-resolution slide image with the tissue mask tinted green and
//! every encoded tile outlined, so a user can see at a glance what the features came from.

use std::path::Path;

use image::{Rgb, RgbImage};

use super::tiling::TileSpot;
use super::tissue::TissueMask;
use crate::error::{Error, Result};

const TILE_COLOUR: Rgb<u8> = Rgb([220, 20, 20]);
const TISSUE_TINT: [f32; 3] = [40.0, 200.0, 60.0];

/// Draws the mask and tiles (`size0` level-0 pixels wide, corners in level-0 pixels) onto a
/// copy of `thumb`, which shows the whole `width`×`height` slide.
pub fn render(
    thumb: &RgbImage,
    mask: &TissueMask,
    tiles: &[TileSpot],
    size0: f64,
    width: u32,
    height: u32,
) -> RgbImage {
    let mut out = thumb.clone();
    let (tw, th) = out.dimensions();
    for (x, y, p) in out.enumerate_pixels_mut() {
        let mx = (x as u64 * mask.width as u64 / tw.max(1) as u64) as u32;
        let my = (y as u64 * mask.height as u64 / th.max(1) as u64) as u32;
        if mask.mask[(my.min(mask.height - 1) * mask.width + mx.min(mask.width - 1)) as usize] {
            for (v, tint) in p.0.iter_mut().zip(TISSUE_TINT) {
                *v = (0.7 * *v as f32 + 0.3 * tint).round() as u8;
            }
        }
    }
    let sx = tw as f64 / width as f64;
    let sy = th as f64 / height as f64;
    for t in tiles {
        let x0 = (t.x as f64 * sx).round() as i64;
        let y0 = (t.y as f64 * sy).round() as i64;
        let x1 = ((t.x as f64 + size0) * sx).round() as i64 - 1;
        let y1 = ((t.y as f64 + size0) * sy).round() as i64 - 1;
        outline(&mut out, x0, y0, x1.max(x0), y1.max(y0));
    }
    out
}

fn outline(img: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64) {
    let (w, h) = (img.width() as i64, img.height() as i64);
    let mut put = |x: i64, y: i64| {
        if (0..w).contains(&x) && (0..h).contains(&y) {
            img.put_pixel(x as u32, y as u32, TILE_COLOUR);
        }
    };
    for x in x0..=x1 {
        put(x, y0);
        put(x, y1);
    }
    for y in y0..=y1 {
        put(x0, y);
        put(x1, y);
    }
}

/// Writes `img` as PNG, atomically.
pub fn write_png(path: &Path, img: &RgbImage) -> Result<()> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, image::ImageFormat::Png)
        .map_err(|e| Error::invalid(path, format!("cannot encode PNG: {e}")))?;
    crate::atomic::write_bytes_atomic(path, bytes.get_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_are_outlined_and_tissue_tinted() {
        let thumb = RgbImage::from_pixel(20, 10, Rgb([255, 255, 255]));
        let mask = TissueMask {
            width: 20,
            height: 10,
            mask: (0..200).map(|i| i % 20 < 10).collect(),
            threshold: 20,
        };
        let tiles = [TileSpot {
            x: 0,
            y: 0,
            tissue: 1.0,
        }];
        // Slide 200×100 px, tile of 50 px → 5 thumbnail px.
        let img = render(&thumb, &mask, &tiles, 50.0, 200, 100);
        assert_eq!(*img.get_pixel(0, 0), TILE_COLOUR);
        assert_eq!(*img.get_pixel(4, 4), TILE_COLOUR);
        assert_ne!(*img.get_pixel(2, 2), TILE_COLOUR);
        assert_ne!(*img.get_pixel(7, 7), Rgb([255, 255, 255]));
        assert_eq!(*img.get_pixel(15, 7), Rgb([255, 255, 255]));
    }
}
