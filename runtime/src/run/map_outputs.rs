//! The files of `rnafm-run --maps` for one slide (see `maps` for what is computed):
//!   <slide>.map.clusters.tsv  per target and cluster: tiles, effect (mean over draws), sd, se
//!   <slide>.map.tiles.tsv     per tile: x, y, size (level-0 px), cluster, each target's effect
//!   <slide>.map.geojson       a FeatureCollection, one square Polygon per tile in level-0
//!                             pixel coordinates with QuPath's `objectType`, `classification`
//!                             and `measurements` properties (File > Import objects)
//!   <slide>.map.<target>.png  the effect painted over the slide thumbnail (whole slides) or on
//!                             the tile grid; red raises the prediction, blue lowers it, full
//!                             colour at the largest |effect| of that target

use std::io::Write;
use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};

use crate::atomic::write_atomic;
use crate::error::{Error, Result};
use crate::run::maps::ClusterEffects;
use crate::slide::thumbnail::write_png;

/// Where a slide's tiles lie and which cluster each belongs to.
#[derive(Debug, Clone)]
pub struct TileLayout {
    /// Top-left corners in level-0 pixels, one (x, y) per tile.
    pub corners: Vec<(i64, i64)>,
    /// Tile side in level-0 pixels.
    pub size0: f64,
    /// Cluster of each tile.
    pub labels: Vec<usize>,
    /// The slide's thumbnail and level-0 size, for whole-slide inputs.
    pub thumbnail: Option<(RgbImage, u32, u32)>,
}

impl TileLayout {
    /// Tile side from the spacing of the corners (the smallest step between distinct x or
    /// y values), for tile files that do not state it.
    pub fn spacing(corners: &[(i64, i64)]) -> Option<f64> {
        let step = |mut v: Vec<i64>| {
            v.sort_unstable();
            v.dedup();
            v.windows(2).map(|w| w[1] - w[0]).filter(|&d| d > 0).min()
        };
        let sx = step(corners.iter().map(|c| c.0).collect());
        let sy = step(corners.iter().map(|c| c.1).collect());
        match (sx, sy) {
            (Some(a), Some(b)) => Some(a.min(b) as f64),
            (a, b) => a.or(b).map(|v| v as f64),
        }
    }
}

/// The map files of slide `name` in `dir`.
pub struct MapFiles {
    pub clusters: PathBuf,
    pub tiles: PathBuf,
    pub geojson: PathBuf,
    pub pngs: Vec<PathBuf>,
}

/// A target's name as part of a file name: letters, digits, `-` and `.` kept, the rest `_`.
fn file_part(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    s.chars().take(80).collect()
}

impl MapFiles {
    pub fn new(dir: &Path, name: &str, effects: &ClusterEffects) -> Self {
        let mut seen = std::collections::HashSet::new();
        let pngs = effects
            .targets
            .iter()
            .map(|t| {
                let mut stem = file_part(&t.name);
                while !seen.insert(stem.clone()) {
                    stem.push('_');
                }
                dir.join(format!("{name}.map.{stem}.png"))
            })
            .collect();
        MapFiles {
            clusters: dir.join(format!("{name}.map.clusters.tsv")),
            tiles: dir.join(format!("{name}.map.tiles.tsv")),
            geojson: dir.join(format!("{name}.map.geojson")),
            pngs,
        }
    }

    fn all(&self) -> impl Iterator<Item = &PathBuf> {
        [&self.clusters, &self.tiles, &self.geojson]
            .into_iter()
            .chain(&self.pngs)
    }
}

/// Writes every map file, or none (a failure part-way removes those written).
pub fn write_maps(files: &MapFiles, effects: &ClusterEffects, layout: &TileLayout) -> Result<()> {
    let k = effects.mean.nrows();
    if let Some(bad) = layout.labels.iter().find(|&&c| c >= k) {
        return Err(Error::Runtime(format!(
            "tile cluster {bad} is not one of the {k} clusters"
        )));
    }
    let written = write_clusters_tsv(&files.clusters, effects, layout)
        .and_then(|_| write_tiles_tsv(&files.tiles, effects, layout))
        .and_then(|_| write_geojson(&files.geojson, effects, layout))
        .and_then(|_| {
            for (t, png) in files.pngs.iter().enumerate() {
                write_png(png, &render(effects, layout, t))?;
            }
            Ok(())
        });
    if written.is_err() {
        for p in files.all() {
            let _ = std::fs::remove_file(p);
        }
    }
    written
}

fn counts(layout: &TileLayout, k: usize) -> Vec<usize> {
    let mut n = vec![0; k];
    for &c in &layout.labels {
        n[c] += 1;
    }
    n
}

fn write_clusters_tsv(path: &Path, e: &ClusterEffects, layout: &TileLayout) -> Result<()> {
    let n = counts(layout, e.mean.nrows());
    let root_n = (e.draws as f64).sqrt();
    write_atomic(path, |w| {
        writeln!(w, "target\tkind\tunit\tcluster\ttiles\teffect\tsd\tse")?;
        for (t, tg) in e.targets.iter().enumerate() {
            for (c, &tiles) in n.iter().enumerate() {
                let (m, sd) = (e.mean[[c, t]], e.sd[[c, t]]);
                writeln!(
                    w,
                    "{}\t{}\t{}\t{c}\t{tiles}\t{m}\t{sd}\t{}",
                    tg.name,
                    tg.kind,
                    tg.unit,
                    sd / root_n
                )?;
            }
        }
        Ok(())
    })
}

fn write_tiles_tsv(path: &Path, e: &ClusterEffects, layout: &TileLayout) -> Result<()> {
    write_atomic(path, |w| {
        write!(w, "tile\tx\ty\tsize\tcluster")?;
        for tg in &e.targets {
            write!(w, "\t{}", tg.name)?;
        }
        writeln!(w)?;
        for (i, (&(x, y), &c)) in layout.corners.iter().zip(&layout.labels).enumerate() {
            write!(w, "{i}\t{x}\t{y}\t{}\t{c}", layout.size0)?;
            for t in 0..e.targets.len() {
                write!(w, "\t{}", e.mean[[c, t]])?;
            }
            writeln!(w)?;
        }
        Ok(())
    })
}

/// A distinct colour per cluster for QuPath's classification (golden-angle hues).
fn cluster_colour(c: usize) -> [u8; 3] {
    let h = (c as f64 * 137.508) % 360.0;
    let f = |n: f64| {
        let k = (n + h / 60.0) % 6.0;
        let v = 1.0 - (k.min(4.0 - k).clamp(0.0, 1.0));
        (55.0 + 200.0 * v).round() as u8
    };
    [f(5.0), f(3.0), f(1.0)]
}

fn write_geojson(path: &Path, e: &ClusterEffects, layout: &TileLayout) -> Result<()> {
    let s = layout.size0;
    let features: Vec<serde_json::Value> = layout
        .corners
        .iter()
        .zip(&layout.labels)
        .enumerate()
        .map(|(i, (&(x, y), &c))| {
            let (x, y) = (x as f64, y as f64);
            let mut m = serde_json::Map::new();
            m.insert("cluster".into(), c.into());
            for (t, tg) in e.targets.iter().enumerate() {
                m.insert(tg.name.clone(), e.mean[[c, t]].into());
                m.insert(format!("{} sd", tg.name), e.sd[[c, t]].into());
            }
            serde_json::json!({
                "type": "Feature",
                "id": format!("tile-{i}"),
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [[[x, y], [x + s, y], [x + s, y + s], [x, y + s], [x, y]]],
                },
                "properties": {
                    "objectType": "tile",
                    "name": format!("tile {i}"),
                    "classification": {"name": format!("cluster {c}"), "color": cluster_colour(c)},
                    "measurements": m,
                },
            })
        })
        .collect();
    let doc = serde_json::json!({"type": "FeatureCollection", "features": features});
    write_atomic(path, |w| {
        serde_json::to_writer(&mut *w, &doc).map_err(std::io::Error::other)?;
        writeln!(w)
    })
}

/// Blue (−1) – near white (0) – red (+1), a diverging scale (the end colours of
/// matplotlib's coolwarm).
fn diverging(v: f64) -> Rgb<u8> {
    let v = v.clamp(-1.0, 1.0);
    let (end, a) = if v < 0.0 {
        ([59.0, 76.0, 192.0], -v)
    } else {
        ([180.0, 4.0, 38.0], v)
    };
    let mid = [242.0, 242.0, 242.0];
    Rgb(std::array::from_fn(|i| {
        (mid[i] + (end[i] - mid[i]) * a).round() as u8
    }))
}

/// Longest side of a map drawn on the tile grid.
const GRID_PX: f64 = 1024.0;

fn render(e: &ClusterEffects, layout: &TileLayout, t: usize) -> RgbImage {
    let vmax = (0..e.mean.nrows())
        .map(|c| e.mean[[c, t]].abs())
        .fold(0.0f64, f64::max);
    let colour = |c: usize| {
        if vmax > 0.0 {
            diverging(e.mean[[c, t]] / vmax)
        } else {
            diverging(0.0)
        }
    };
    let (mut img, scale, alpha) = match &layout.thumbnail {
        Some((thumb, w0, _)) => (thumb.clone(), thumb.width() as f64 / *w0 as f64, 0.6),
        None => {
            let right = layout
                .corners
                .iter()
                .map(|c| c.0 as f64 + layout.size0)
                .fold(1.0, f64::max);
            let bottom = layout
                .corners
                .iter()
                .map(|c| c.1 as f64 + layout.size0)
                .fold(1.0, f64::max);
            let scale = GRID_PX / right.max(bottom);
            let (w, h) = (
                (right * scale).ceil() as u32,
                (bottom * scale).ceil() as u32,
            );
            (
                RgbImage::from_pixel(w.max(1), h.max(1), Rgb([255, 255, 255])),
                scale,
                1.0,
            )
        }
    };
    let (w, h) = (img.width() as i64, img.height() as i64);
    for (&(x, y), &c) in layout.corners.iter().zip(&layout.labels) {
        let col = colour(c);
        let x0 = (x as f64 * scale).floor() as i64;
        let y0 = (y as f64 * scale).floor() as i64;
        let x1 = (((x as f64 + layout.size0) * scale).ceil() as i64).max(x0 + 1);
        let y1 = (((y as f64 + layout.size0) * scale).ceil() as i64).max(y0 + 1);
        for py in y0.max(0)..y1.min(h) {
            for px in x0.max(0)..x1.min(w) {
                let p = img.get_pixel_mut(px as u32, py as u32);
                for (v, n) in p.0.iter_mut().zip(col.0) {
                    *v = (f64::from(*v) * (1.0 - alpha) + f64::from(n) * alpha).round() as u8;
                }
            }
        }
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spacing_is_the_smallest_step() {
        let c = [(0, 0), (512, 0), (1024, 512), (0, 512)];
        assert_eq!(TileLayout::spacing(&c), Some(512.0));
        assert_eq!(TileLayout::spacing(&[(7, 7)]), None);
    }

    #[test]
    fn colours_run_blue_white_red() {
        assert_eq!(diverging(-1.0), Rgb([59, 76, 192]));
        assert_eq!(diverging(0.0), Rgb([242, 242, 242]));
        assert_eq!(diverging(1.0), Rgb([180, 4, 38]));
        assert_eq!(diverging(7.0), diverging(1.0));
    }

    #[test]
    fn file_names_are_safe_and_distinct() {
        assert_eq!(
            file_part("GO:0003700 DNA-binding"),
            "GO_0003700_DNA-binding"
        );
        assert_eq!(file_part("a/b\\c"), "a_b_c");
    }
}
