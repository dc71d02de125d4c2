//! Tile features in HDF5, as TRIDENT and CLAM write them (one file per slide): dataset
//! `features` [N, D] (float16/32/64; [1, N, D] is taken as [N, D]) and `coords` [N, 2]
//! (x, y of each tile's top-left corner in level-0 pixels) with the patch geometry as
//! attributes of `coords` (TRIDENT: `patch_size`, `patch_size_level0`,
//! `level0_magnification`, `target_magnification`; CLAM: `patch_size`, `patch_level`,
//! `downsample`).
//!
//! Read and written with the reference HDF5 C library (crate `hdf5-metno`, libhdf5 from the
//! Debian packages): h5py writes through that same library, so chunked, gzip- or
//! shuffle-filtered files from any of these tools read without a second implementation.

use std::path::Path;

use hdf5::types::{FloatSize, TypeDescriptor};
use ndarray::{Array2, Array3, ArrayView2, Ix2, Ix3};

use crate::error::{Error, Result};
use crate::limits::{MAX_FEATURE_VALUES, MAX_TILES};

/// The patch geometry of a tile file (whatever of it the file states).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TileGeometry {
    /// Tile side at the level the tiles were read from, in pixels.
    pub patch_size: Option<f64>,
    /// Tile side in level-0 pixels (TRIDENT's `patch_size_level0`, or CLAM's `patch_size` ×
    /// `downsample`).
    pub patch_size_level0: Option<f64>,
    /// Pyramid level the tiles were read from (CLAM).
    pub patch_level: Option<i64>,
    /// Objective magnification of level 0 and of the tiles (TRIDENT).
    pub level0_magnification: Option<f64>,
    pub target_magnification: Option<f64>,
    /// Microns per level-0 pixel (written by rnafm-features).
    pub mpp: Option<f64>,
}

/// A slide's tiles: N×D features, N×2 level-0 corners when the file has them.
#[derive(Debug, Clone)]
pub struct TileFile {
    pub features: Array2<f32>,
    pub coords: Option<Array2<i64>>,
    pub geometry: TileGeometry,
    /// The slide's thumbnail, in files rnafm-features wrote (an extra dataset the other tools
    /// ignore), so that `rnafm-run --maps` paints on the slide as for the image itself.
    pub thumbnail: Option<SlideThumbnail>,
}

/// A low-resolution RGB image of the whole slide and the slide's level-0 size in pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct SlideThumbnail {
    /// [height, width, 3].
    pub pixels: Array3<u8>,
    pub width0: u32,
    pub height0: u32,
}

const THUMBNAIL: &str = "thumbnail";

fn h5_err(path: &Path, what: &str, e: hdf5::Error) -> Error {
    Error::invalid(path, format!("{what}: {e}"))
}

fn describe(t: &TypeDescriptor) -> String {
    match t {
        TypeDescriptor::Float(FloatSize::U2) => "float16".into(),
        TypeDescriptor::Float(FloatSize::U4) => "float32".into(),
        TypeDescriptor::Float(FloatSize::U8) => "float64".into(),
        TypeDescriptor::Integer(s) => format!("int{}", *s as usize * 8),
        TypeDescriptor::Unsigned(s) => format!("uint{}", *s as usize * 8),
        other => format!("{other}"),
    }
}

/// Reads `features` (and `coords`, if present) of a TRIDENT/CLAM tile file. Features must be
/// floating point, at most [`MAX_TILES`] rows; coords, when present, one (x, y) row per
/// feature row. Their values are checked (non-empty, finite) by
/// `features::read_h5_tiles`, as every feature file's are; read through that.
pub fn read_tile_file(path: &Path) -> Result<TileFile> {
    let file = hdf5::File::open(path).map_err(|e| {
        if path.is_file() {
            h5_err(path, "not a readable HDF5 file", e)
        } else {
            Error::invalid(path, "no such file")
        }
    })?;
    let ds = file.dataset("features").map_err(|_| {
        let names = file.member_names().unwrap_or_default().join(", ");
        Error::invalid(
            path,
            format!("no dataset `features` (TRIDENT/CLAM layout); the file holds: {names}"),
        )
    })?;
    let dtype = ds
        .dtype()
        .and_then(|t| t.to_descriptor())
        .map_err(|e| h5_err(path, "`features` has an unreadable type", e))?;
    if !matches!(dtype, TypeDescriptor::Float(_)) {
        return Err(Error::invalid(
            path,
            format!(
                "`features` is {}, expected float16, float32 or float64",
                describe(&dtype)
            ),
        ));
    }
    let shape = ds.shape();
    let rows = match shape.as_slice() {
        [n, _] | [1, n, _] => *n,
        _ => {
            return Err(Error::invalid(
                path,
                format!("`features` must be N × D (tiles × feature dim), found shape {shape:?}"),
            ));
        }
    };
    let values: u64 = shape.iter().map(|&s| s as u64).product();
    if values > MAX_FEATURE_VALUES {
        return Err(Error::invalid(
            path,
            format!(
                "`features` {shape:?} holds {values} values, more than the {MAX_FEATURE_VALUES} allowed"
            ),
        ));
    }
    if rows > MAX_TILES {
        return Err(Error::invalid(
            path,
            format!("{rows} tiles, more than the {MAX_TILES} allowed"),
        ));
    }
    // HDF5 converts float16/64 to float32 as it reads.
    let features = if shape.len() == 3 {
        ds.read::<f32, Ix3>()
            .map_err(|e| h5_err(path, "cannot read `features`", e))?
            .index_axis_move(ndarray::Axis(0), 0)
    } else {
        ds.read::<f32, Ix2>()
            .map_err(|e| h5_err(path, "cannot read `features`", e))?
    };

    let mut geometry = TileGeometry::default();
    let coords = match file.dataset("coords") {
        Err(_) => None,
        Ok(c) => {
            let cshape = c.shape();
            if cshape.as_slice() != [rows, 2] {
                return Err(Error::invalid(
                    path,
                    format!(
                        "`coords` has shape {cshape:?}, expected [{rows}, 2] (one x, y per tile of `features`)"
                    ),
                ));
            }
            let ctype = c
                .dtype()
                .and_then(|t| t.to_descriptor())
                .map_err(|e| h5_err(path, "`coords` has an unreadable type", e))?;
            let coords = match ctype {
                TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) => c
                    .read::<i64, Ix2>()
                    .map_err(|e| h5_err(path, "cannot read `coords`", e))?,
                TypeDescriptor::Float(_) => c
                    .read::<f64, Ix2>()
                    .map_err(|e| h5_err(path, "cannot read `coords`", e))?
                    .mapv(|v| v.round() as i64),
                other => {
                    return Err(Error::invalid(
                        path,
                        format!("`coords` is {}, expected integers", describe(&other)),
                    ));
                }
            };
            geometry = read_geometry(&c);
            Some(coords)
        }
    };
    Ok(TileFile {
        features,
        coords,
        geometry,
        thumbnail: read_thumbnail(&file),
    })
}

/// The `thumbnail` dataset with its level-0 size, when the file has a well-formed one.
fn read_thumbnail(file: &hdf5::File) -> Option<SlideThumbnail> {
    let ds = file.dataset(THUMBNAIL).ok()?;
    let pixels = ds.read::<u8, Ix3>().ok()?;
    if pixels.dim().2 != 3 {
        return None;
    }
    let size = |k: &str| num_attr(&ds, k).filter(|v| *v >= 1.0).map(|v| v as u32);
    Some(SlideThumbnail {
        pixels,
        width0: size("level0_width")?,
        height0: size("level0_height")?,
    })
}

/// A numeric attribute (scalar, or the first value of a 1-d one) as f64; `None` when absent
/// or not numeric (tools write strings beside the numbers).
fn num_attr(loc: &hdf5::Location, name: &str) -> Option<f64> {
    let a = loc.attr(name).ok()?;
    match a.dtype().ok()?.to_descriptor().ok()? {
        TypeDescriptor::Float(_)
        | TypeDescriptor::Integer(_)
        | TypeDescriptor::Unsigned(_)
        | TypeDescriptor::Boolean => {}
        _ => return None,
    }
    if a.is_scalar() {
        a.read_scalar::<f64>().ok()
    } else {
        a.read_raw::<f64>().ok()?.first().copied()
    }
}

fn read_geometry(coords: &hdf5::Dataset) -> TileGeometry {
    let patch_size = num_attr(coords, "patch_size");
    let downsample = num_attr(coords, "downsample");
    TileGeometry {
        patch_size,
        patch_size_level0: num_attr(coords, "patch_size_level0")
            .or_else(|| Some(patch_size? * downsample.unwrap_or(1.0))),
        patch_level: num_attr(coords, "patch_level").map(|v| v as i64),
        level0_magnification: num_attr(coords, "level0_magnification"),
        target_magnification: num_attr(coords, "target_magnification"),
        mpp: num_attr(coords, "mpp"),
    }
}

/// Writes a tile file in TRIDENT's layout, atomically: `features` [N, D] float32 and
/// `coords` [N, 2] int64 (chunked, gzip level 4), the geometry as attributes of `coords`,
/// and `name` (the slide) on both; plus the slide's thumbnail when given (dataset
/// `thumbnail`, uint8 [h, w, 3], with `level0_width`/`level0_height`).
pub fn write_tile_file(
    path: &Path,
    features: ArrayView2<'_, f32>,
    coords: ArrayView2<'_, i64>,
    geometry: &TileGeometry,
    thumbnail: Option<&SlideThumbnail>,
    slide_name: &str,
) -> Result<()> {
    let n = features.nrows();
    if coords.dim() != (n, 2) {
        return Err(Error::invalid(
            path,
            format!("coords {:?} do not match {n} feature rows", coords.dim()),
        ));
    }
    crate::atomic::write_atomic_via_path(path, |tmp| {
        let w = |e: hdf5::Error| h5_err(path, "cannot write", e);
        let file = hdf5::File::create(tmp).map_err(w)?;
        let chunk_rows = n.clamp(1, 4096);
        let f = file
            .new_dataset_builder()
            .chunk((chunk_rows, features.ncols().max(1)))
            .deflate(4)
            .with_data(&features.as_standard_layout())
            .create("features")
            .map_err(w)?;
        let c = file
            .new_dataset_builder()
            .chunk((chunk_rows, 2))
            .deflate(4)
            .with_data(&coords.as_standard_layout())
            .create("coords")
            .map_err(w)?;
        let name: hdf5::types::VarLenUnicode = slide_name
            .parse()
            .map_err(|_| Error::invalid(path, "slide name holds a NUL byte"))?;
        for ds in [&f, &c] {
            ds.new_attr::<hdf5::types::VarLenUnicode>()
                .create("name")
                .and_then(|a| a.write_scalar(&name))
                .map_err(w)?;
        }
        let g = geometry;
        let nums = [
            ("patch_size", g.patch_size),
            ("patch_size_level0", g.patch_size_level0),
            ("level0_magnification", g.level0_magnification),
            ("target_magnification", g.target_magnification),
            ("mpp", g.mpp),
        ];
        for (key, v) in nums {
            if let Some(v) = v {
                c.new_attr::<f64>()
                    .create(key)
                    .and_then(|a| a.write_scalar(&v))
                    .map_err(w)?;
            }
        }
        if let Some(level) = g.patch_level {
            c.new_attr::<i64>()
                .create("patch_level")
                .and_then(|a| a.write_scalar(&level))
                .map_err(w)?;
        }
        if let Some(t) = thumbnail {
            let ds = file
                .new_dataset_builder()
                .with_data(&t.pixels.as_standard_layout())
                .create(THUMBNAIL)
                .map_err(w)?;
            for (key, v) in [("level0_width", t.width0), ("level0_height", t.height0)] {
                ds.new_attr::<i64>()
                    .create(key)
                    .and_then(|a| a.write_scalar(&i64::from(v)))
                    .map_err(w)?;
            }
        }
        file.close().map_err(w)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn roundtrip_features_coords_and_geometry() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.h5");
        let f = Array2::from_shape_fn((5, 3), |(i, j)| i as f32 - 0.5 * j as f32);
        let c = Array2::from_shape_fn((5, 2), |(i, j)| (i * 512 + j * 7) as i64);
        let g = TileGeometry {
            patch_size: Some(256.0),
            patch_size_level0: Some(512.0),
            patch_level: Some(0),
            mpp: Some(0.25),
            ..Default::default()
        };
        let thumb = SlideThumbnail {
            pixels: Array3::from_shape_fn((4, 6, 3), |(y, x, c)| (y * 40 + x * 5 + c) as u8),
            width0: 3000,
            height0: 2000,
        };
        write_tile_file(&p, f.view(), c.view(), &g, Some(&thumb), "slide-1").unwrap();
        let t = read_tile_file(&p).unwrap();
        assert_eq!(t.features, f);
        assert_eq!(t.coords.unwrap(), c);
        assert_eq!(t.geometry, g);
        assert_eq!(t.thumbnail, Some(thumb));
        // only the file: no temporary left beside it
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn bad_files_are_named_with_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.h5");
        std::fs::write(&p, b"not hdf5 at all").unwrap();
        let e = read_tile_file(&p).unwrap_err().to_string();
        assert!(
            e.contains("x.h5") && e.contains("not a readable HDF5"),
            "{e}"
        );
        let e = read_tile_file(&dir.path().join("none.h5"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("none.h5") && e.contains("no such file"), "{e}");

        // One file with the given datasets, and the reader's error for it.
        let refused = |write: &dyn Fn(&hdf5::File)| -> String {
            let file = hdf5::File::create(&p).unwrap();
            write(&file);
            drop(file);
            read_tile_file(&p).unwrap_err().to_string()
        };
        let put =
            |f: &hdf5::File,
             name: &str,
             a: &dyn Fn(hdf5::DatasetBuilder) -> hdf5::Result<hdf5::Dataset>| {
                a(f.new_dataset_builder()).unwrap_or_else(|e| panic!("{name}: {e}"));
            };
        let e = refused(&|f| {
            put(f, "features", &|b| {
                b.with_data(&array![[1i32, 2], [3, 4]]).create("features")
            })
        });
        assert!(e.contains("`features` is int32"), "{e}");
        let e = refused(&|f| {
            put(f, "features", &|b| {
                b.with_data(&array![[1f32, 2.0], [3.0, 4.0]])
                    .create("features")
            });
            put(f, "coords", &|b| {
                b.with_data(&array![[0i64, 0]]).create("coords")
            });
        });
        assert!(e.contains("`coords` has shape [1, 2]"), "{e}");
        let e = refused(&|f| {
            put(f, "feats", &|b| {
                b.with_data(&array![1f32, 2.0]).create("feats")
            })
        });
        assert!(
            e.contains("no dataset `features`") && e.contains("feats"),
            "{e}"
        );
    }
}
