//! Whole-slide reader for tiled, pyramidal TIFF and Aperio SVS on the `tiff` crate: finds the
//! pyramid levels, the microns per pixel, and reads RGB regions of any level tile by tile.
//!
//! Tiles come back from `tiff` in the file's colour space (JPEG is decoded without colour
//! conversion), so YCbCr is turned into RGB here. A tile that fails to decode is reported as
//! an error for that region only; a file whose structure cannot be read fails at `open`.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::RgbImage;
use tiff::ColorType;
use tiff::decoder::{ChunkType, Decoder, DecodingResult};
use tiff::tags::{PlanarConfiguration, Tag};

use crate::error::{Error, Result};

/// Decoded tiles kept in memory; regions of neighbouring tiles share their source tiles.
const TILE_CACHE: usize = 256;

/// One pyramid level: an IFD of the file and its size relative to level 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Level {
    /// Index of the image (IFD) in the file.
    pub ifd: usize,
    pub width: u32,
    pub height: u32,
    /// Level-0 pixels per pixel of this level.
    pub downsample: f64,
    /// Tile (or strip) size.
    pub chunk_width: u32,
    pub chunk_height: u32,
    color: ColorType,
}

/// Where the microns per pixel came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MppSource {
    Aperio,
    ResolutionTags,
}

/// An open slide.
pub struct Slide {
    path: PathBuf,
    decoder: Decoder<BufReader<File>>,
    current_ifd: usize,
    levels: Vec<Level>,
    mpp: Option<(f64, MppSource)>,
    description: Option<String>,
    cache: HashMap<(usize, u32), Arc<Chunk>>,
    order: VecDeque<(usize, u32)>,
}

/// A decoded tile as RGB rows, or why it could not be decoded (kept so it is not retried).
enum Chunk {
    Rgb {
        width: u32,
        height: u32,
        rgb: Vec<u8>,
    },
    Bad(String),
}

/// The chunk (tile or strip) of the current image whose data ends last, and that end, from
/// its offsets and byte counts; `None` when the tags cannot be read (the decoder reports that
/// itself when the chunk is read).
fn data_end(decoder: &mut Decoder<BufReader<File>>, tiled: bool) -> Option<(usize, u64)> {
    let (offsets, counts) = if tiled {
        (Tag::TileOffsets, Tag::TileByteCounts)
    } else {
        (Tag::StripOffsets, Tag::StripByteCounts)
    };
    let offsets = decoder.get_tag_u64_vec(offsets).ok()?;
    let counts = decoder.get_tag_u64_vec(counts).ok()?;
    offsets
        .iter()
        .zip(&counts)
        .map(|(&o, &c)| o.saturating_add(c))
        .enumerate()
        .max_by_key(|&(_, e)| e)
}

fn tiff_err(path: &Path, what: &str, e: tiff::TiffError) -> Error {
    match e {
        tiff::TiffError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            Error::invalid(path, format!("truncated: the file ends early ({what})"))
        }
        tiff::TiffError::IoError(io) => Error::io(path, io),
        e => Error::invalid(path, format!("{what}: {e}")),
    }
}

impl Slide {
    /// Opens `path` and reads the structure of every image in it.
    pub fn open(path: &Path) -> Result<Slide> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let mut decoder = Decoder::new(BufReader::new(file))
            .map_err(|e| tiff_err(path, "not a readable TIFF", e))?;
        let mut images = Vec::new();
        let mut description = None;
        let mut resolution = None;
        let mut ifd = 0usize;
        loop {
            let what = format!("image {ifd}");
            let (width, height) = decoder.dimensions().map_err(|e| tiff_err(path, &what, e))?;
            let tiled = decoder.get_chunk_type() == ChunkType::Tile;
            if ifd == 0 {
                description = decoder
                    .find_tag(Tag::ImageDescription)
                    .ok()
                    .flatten()
                    .and_then(|v| v.into_string().ok());
                resolution = resolution_tags(&mut decoder);
            }
            let planar = decoder
                .find_tag_unsigned::<u16>(Tag::PlanarConfiguration)
                .ok()
                .flatten()
                .unwrap_or(1);
            let color = decoder.colortype();
            let (cw, ch) = decoder.chunk_dimensions();
            let end = data_end(&mut decoder, tiled);
            images.push((ifd, width, height, tiled, planar, color, cw, ch, end));
            if !decoder.more_images() {
                break;
            }
            decoder
                .next_image()
                .map_err(|e| tiff_err(path, &format!("image {}", ifd + 1), e))?;
            ifd += 1;
        }

        let (_, w0, h0, ..) = images[0];
        if w0 == 0 || h0 == 0 {
            return Err(Error::invalid(path, "level 0 has zero width or height"));
        }
        let aspect0 = w0 as f64 / h0 as f64;
        let mut levels = Vec::new();
        for (i, &(ifd, width, height, tiled, planar, ref color, cw, ch, end)) in
            images.iter().enumerate()
        {
            // Level 0 is the first image; further levels are tiled images of the same shape
            // (SVS thumbnails, labels and macro images are stripped, or of another shape).
            let same_shape = width > 0
                && height > 0
                && ((width as f64 / height as f64) / aspect0 - 1.0).abs() < 0.02;
            if i > 0 && !(tiled && same_shape && width < w0) {
                continue;
            }
            let what = format!("image {ifd} ({width}x{height})");
            let color = match color {
                Ok(c) => *c,
                Err(e) => {
                    return Err(Error::invalid(path, format!("{what}: {e}")));
                }
            };
            check_color(path, &what, color, planar)?;
            // A copy cut short (an interrupted download) would otherwise read the missing
            // tiles as nothing: refuse it whole.
            if let Some((chunk, end)) = end.filter(|&(_, e)| e > file_len) {
                return Err(Error::invalid(
                    path,
                    format!(
                        "truncated: {what} {} {chunk} ends at byte {end}, the file has {file_len} bytes",
                        if tiled { "tile" } else { "strip" }
                    ),
                ));
            }
            let downsample = (w0 as f64 / width as f64 + h0 as f64 / height as f64) / 2.0;
            levels.push(Level {
                ifd,
                width,
                height,
                downsample,
                chunk_width: cw,
                chunk_height: ch,
                color,
            });
        }
        levels.sort_by_key(|l| std::cmp::Reverse(l.width));
        levels.dedup_by(|a, b| a.width == b.width);

        let mpp = description
            .as_deref()
            .and_then(aperio_mpp)
            .map(|m| (m, MppSource::Aperio))
            .or(resolution.map(|m| (m, MppSource::ResolutionTags)));
        let current_ifd = images.last().map_or(0, |i| i.0);
        Ok(Slide {
            path: path.to_path_buf(),
            decoder,
            current_ifd,
            levels,
            mpp,
            description,
            cache: HashMap::new(),
            order: VecDeque::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Pyramid levels, finest (level 0) first.
    pub fn levels(&self) -> &[Level] {
        &self.levels
    }

    /// Level-0 width and height.
    pub fn dimensions(&self) -> (u32, u32) {
        (self.levels[0].width, self.levels[0].height)
    }

    /// Level-0 microns per pixel, from the Aperio description or the resolution tags.
    pub fn mpp(&self) -> Option<(f64, MppSource)> {
        self.mpp
    }

    /// The first image's ImageDescription.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// The coarsest level that is still at least as fine as `downsample` (so regions are only
    /// ever shrunk, never enlarged); level 0 when the target is finer than the slide.
    pub fn level_for_downsample(&self, downsample: f64) -> usize {
        self.levels
            .iter()
            .enumerate()
            .filter(|(_, l)| l.downsample <= downsample * 1.01)
            .map(|(i, _)| i)
            .next_back()
            .unwrap_or(0)
    }

    fn seek(&mut self, ifd: usize) -> Result<()> {
        if self.current_ifd != ifd {
            self.decoder
                .seek_to_image(ifd)
                .map_err(|e| tiff_err(&self.path, &format!("image {ifd}"), e))?;
            self.current_ifd = ifd;
        }
        Ok(())
    }

    fn chunk(&mut self, level: usize, index: u32) -> Result<Arc<Chunk>> {
        if let Some(c) = self.cache.get(&(level, index)) {
            return Ok(c.clone());
        }
        let lv = self.levels[level].clone();
        self.seek(lv.ifd)?;
        let decoded = match self.decoder.read_chunk(index) {
            Ok(data) => {
                let (w, h) = self.decoder.chunk_data_dimensions(index);
                match to_rgb(data, lv.color, w, h) {
                    Ok(rgb) => Chunk::Rgb {
                        width: w,
                        height: h,
                        rgb,
                    },
                    Err(msg) => Chunk::Bad(msg),
                }
            }
            Err(tiff::TiffError::IoError(e))
                if e.kind() != std::io::ErrorKind::UnexpectedEof
                    && e.kind() != std::io::ErrorKind::InvalidData =>
            {
                return Err(Error::io(&self.path, e));
            }
            Err(e) => Chunk::Bad(e.to_string()),
        };
        let c = Arc::new(decoded);
        if self.order.len() >= TILE_CACHE
            && let Some(old) = self.order.pop_front()
        {
            self.cache.remove(&old);
        }
        self.order.push_back((level, index));
        self.cache.insert((level, index), c.clone());
        Ok(c)
    }

    /// Reads the `width`×`height` region at (`x`, `y`) of `level` (in that level's pixels).
    /// Pixels outside the image are white. A tile that cannot be decoded makes this an
    /// `Error::Invalid` naming the level and tile.
    pub fn read_region(
        &mut self,
        level: usize,
        x: i64,
        y: i64,
        width: u32,
        height: u32,
    ) -> Result<RgbImage> {
        let lv = self.levels[level].clone();
        let mut out = RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
        let (cw, ch) = (lv.chunk_width as i64, lv.chunk_height as i64);
        let across = (lv.width as i64 + cw - 1) / cw;
        let x0 = x.max(0);
        let y0 = y.max(0);
        let x1 = (x + width as i64).min(lv.width as i64);
        let y1 = (y + height as i64).min(lv.height as i64);
        if x0 >= x1 || y0 >= y1 {
            return Ok(out);
        }
        for ty in y0 / ch..=(y1 - 1) / ch {
            for tx in x0 / cw..=(x1 - 1) / cw {
                let index = (ty * across + tx) as u32;
                let chunk = self.chunk(level, index)?;
                let (w, h, rgb) = match &*chunk {
                    Chunk::Rgb { width, height, rgb } => (*width as i64, *height as i64, rgb),
                    Chunk::Bad(msg) => {
                        return Err(Error::invalid(
                            &self.path,
                            format!("level {level} tile ({tx}, {ty}): {msg}"),
                        ));
                    }
                };
                let (ox, oy) = (tx * cw, ty * ch);
                let cx0 = x0.max(ox);
                let cx1 = x1.min(ox + w);
                let cy0 = y0.max(oy);
                let cy1 = y1.min(oy + h);
                if cx0 >= cx1 {
                    continue;
                }
                for py in cy0..cy1 {
                    let src = (((py - oy) * w + (cx0 - ox)) * 3) as usize;
                    let n = ((cx1 - cx0) * 3) as usize;
                    let dst = (((py - y) * width as i64 + (cx0 - x)) * 3) as usize;
                    out.as_mut()[dst..dst + n].copy_from_slice(&rgb[src..src + n]);
                }
            }
        }
        Ok(out)
    }

    /// The whole of `level` box-averaged down by `factor` (≥ 1), read tile by tile so memory
    /// stays small. Tiles that cannot be decoded are left white and counted.
    pub fn read_level_reduced(&mut self, level: usize, factor: f64) -> Result<(RgbImage, usize)> {
        let lv = self.levels[level].clone();
        let factor = factor.max(1.0);
        let ow = ((lv.width as f64 / factor).round() as u32).max(1);
        let oh = ((lv.height as f64 / factor).round() as u32).max(1);
        let sx = ow as f64 / lv.width as f64;
        let sy = oh as f64 / lv.height as f64;
        let mut sums = vec![0u64; (ow * oh * 3) as usize];
        let mut counts = vec![0u32; (ow * oh) as usize];
        let (cw, ch) = (lv.chunk_width, lv.chunk_height);
        let across = lv.width.div_ceil(cw);
        let down = lv.height.div_ceil(ch);
        let mut bad = 0usize;
        // Map level columns/rows to output pixels once.
        let col_of: Vec<u32> = (0..lv.width)
            .map(|x| ((x as f64 * sx) as u32).min(ow - 1))
            .collect();
        for ty in 0..down {
            for tx in 0..across {
                let chunk = self.chunk(level, ty * across + tx)?;
                let Chunk::Rgb { width, height, rgb } = &*chunk else {
                    bad += 1;
                    continue;
                };
                for py in 0..*height {
                    let gy = ty * ch + py;
                    if gy >= lv.height {
                        break;
                    }
                    let oy = ((gy as f64 * sy) as u32).min(oh - 1);
                    for px in 0..*width {
                        let gx = tx * cw + px;
                        if gx >= lv.width {
                            break;
                        }
                        let o = (oy * ow + col_of[gx as usize]) as usize;
                        let s = ((py * width + px) * 3) as usize;
                        sums[o * 3] += rgb[s] as u64;
                        sums[o * 3 + 1] += rgb[s + 1] as u64;
                        sums[o * 3 + 2] += rgb[s + 2] as u64;
                        counts[o] += 1;
                    }
                }
                // The thumbnail pass touches each tile once; keep the cache for regions.
                self.cache.remove(&(level, ty * across + tx));
            }
        }
        let mut out = RgbImage::new(ow, oh);
        for (i, p) in out.pixels_mut().enumerate() {
            let n = counts[i] as u64;
            let avg = |s: u64| s.checked_add(n / 2).and_then(|s| s.checked_div(n));
            *p = match (avg(sums[i * 3]), avg(sums[i * 3 + 1]), avg(sums[i * 3 + 2])) {
                (Some(r), Some(g), Some(b)) => image::Rgb([r as u8, g as u8, b as u8]),
                _ => image::Rgb([255, 255, 255]),
            };
        }
        self.order
            .retain(|k| k.0 != level || self.cache.contains_key(k));
        Ok((out, bad))
    }
}

/// Rejects images whose pixels this reader cannot turn into 8-bit RGB.
fn check_color(path: &Path, what: &str, color: ColorType, planar: u16) -> Result<()> {
    if planar == PlanarConfiguration::Planar.to_u16() {
        return Err(Error::invalid(
            path,
            format!(
                "{what}: planar (separate-plane) TIFF is not supported; save the slide as chunky RGB"
            ),
        ));
    }
    match color {
        ColorType::RGB(8) | ColorType::RGBA(8) | ColorType::YCbCr(8) | ColorType::Gray(8) => Ok(()),
        ColorType::Multiband {
            bit_depth: 8,
            num_samples: 3 | 4,
        } => Ok(()),
        other => Err(Error::invalid(
            path,
            format!(
                "{what}: pixel type {other:?} is not supported (8-bit RGB, YCbCr or grey only)"
            ),
        )),
    }
}

/// Converts one decoded chunk to packed RGB.
fn to_rgb(
    data: DecodingResult,
    color: ColorType,
    w: u32,
    h: u32,
) -> std::result::Result<Vec<u8>, String> {
    let DecodingResult::U8(buf) = data else {
        return Err("tile is not 8-bit".into());
    };
    let n = (w * h) as usize;
    let samples = match color {
        ColorType::Gray(_) => 1,
        ColorType::RGB(_) | ColorType::YCbCr(_) => 3,
        ColorType::RGBA(_) => 4,
        ColorType::Multiband { num_samples, .. } => num_samples as usize,
        _ => 3,
    };
    if buf.len() < n * samples {
        return Err(format!(
            "tile holds {} bytes, {}x{}x{samples} expected",
            buf.len(),
            w,
            h
        ));
    }
    let mut rgb = Vec::with_capacity(n * 3);
    match color {
        ColorType::Gray(_) => {
            for &g in &buf[..n] {
                rgb.extend_from_slice(&[g, g, g]);
            }
        }
        ColorType::YCbCr(_) => {
            for p in buf[..n * 3].chunks_exact(3) {
                rgb.extend_from_slice(&ycbcr_to_rgb(p[0], p[1], p[2]));
            }
        }
        _ if samples == 3 => rgb.extend_from_slice(&buf[..n * 3]),
        _ => {
            for p in buf[..n * samples].chunks_exact(samples) {
                rgb.extend_from_slice(&p[..3]);
            }
        }
    }
    Ok(rgb)
}

/// Full-range (JFIF) YCbCr to RGB, as JPEG decoders do it.
pub fn ycbcr_to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let y = y as f32;
    let cb = cb as f32 - 128.0;
    let cr = cr as f32 - 128.0;
    let c = |v: f32| v.round().clamp(0.0, 255.0) as u8;
    [
        c(y + 1.402 * cr),
        c(y - 0.344_136 * cb - 0.714_136 * cr),
        c(y + 1.772 * cb),
    ]
}

/// `MPP = 0.4990` from an Aperio ImageDescription (`key = value` fields separated by `|`).
pub fn aperio_mpp(description: &str) -> Option<f64> {
    if !description.starts_with("Aperio") {
        return None;
    }
    description.split('|').find_map(|field| {
        let (k, v) = field.split_once('=')?;
        if k.trim() == "MPP" {
            v.trim().parse::<f64>().ok().filter(|m| plausible_mpp(*m))
        } else {
            None
        }
    })
}

/// Microscope resolutions only: 72 dpi defaults written by image software are not one.
fn plausible_mpp(m: f64) -> bool {
    m.is_finite() && (0.01..=100.0).contains(&m)
}

/// Microns per pixel from XResolution + ResolutionUnit (inch when absent, per the TIFF spec).
fn resolution_tags(decoder: &mut Decoder<BufReader<File>>) -> Option<f64> {
    let x = decoder.find_tag(Tag::XResolution).ok().flatten()?;
    let per_unit = match x {
        tiff::decoder::ifd::Value::Rational(n, d) if d != 0 => n as f64 / d as f64,
        other => other.into_f64().ok()?,
    };
    let unit = decoder
        .find_tag_unsigned::<u16>(Tag::ResolutionUnit)
        .ok()
        .flatten()
        .unwrap_or(2);
    let microns = match unit {
        2 => 25_400.0,
        3 => 10_000.0,
        _ => return None,
    };
    if per_unit <= 0.0 {
        return None;
    }
    Some(microns / per_unit).filter(|m| plausible_mpp(*m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aperio_description_gives_mpp() {
        let d = "Aperio Image Library v10.0.50\r\n2220x2967 [0,100 2220x2967] (240x240) JPEG/RGB Q=70|AppMag = 20|MPP = 0.4990|Left = 25.69";
        assert_eq!(aperio_mpp(d), Some(0.499));
        assert_eq!(aperio_mpp("Aperio x|AppMag = 20"), None);
        assert_eq!(aperio_mpp("ImageJ=1.5|MPP = 0.25"), None);
    }

    #[test]
    fn ycbcr_grey_and_colours() {
        assert_eq!(ycbcr_to_rgb(128, 128, 128), [128, 128, 128]);
        // Pure red in JFIF YCbCr is (76, 85, 255).
        let [r, g, b] = ycbcr_to_rgb(76, 85, 255);
        assert!(r >= 253 && g <= 2 && b <= 2, "{r} {g} {b}");
    }
}
