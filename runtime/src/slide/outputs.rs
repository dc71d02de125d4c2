//! Files written for a slide: `slide_tiles.npz` with every encoded tile's level-0 corner,
//! features and cluster, beside the K×D cluster means (written with `features::write_features`);
//! or, for `--out X.h5`, the tiles in TRIDENT's HDF5 layout.

use std::path::Path;

use ndarray::{Array0, Array1, Array2};
use ndarray_npy::NpzWriter;

use super::extract::Extraction;
use crate::error::Result;

fn corners(ex: &Extraction) -> Array2<i64> {
    let mut coords = Array2::<i64>::zeros((ex.tiles.len(), 2));
    for (i, t) in ex.tiles.iter().enumerate() {
        coords[[i, 0]] = t.x as i64;
        coords[[i, 1]] = t.y as i64;
    }
    coords
}

/// Writes the tiles as a TRIDENT-layout `.h5` (see [`crate::h5`]) atomically: `features`
/// [N,D], `coords` [N,2] level-0 corners, and on `coords` the geometry TRIDENT states
/// (`patch_size` = the encoder's tile side, `patch_size_level0`, `level0_magnification` and
/// `target_magnification` as 10 µm / mpp, the usual 40× = 0.25 µm/px) plus `patch_level`
/// (the level read, as CLAM) and `mpp`; and the slide's thumbnail (dataset `thumbnail`,
/// which `rnafm-run --maps` paints on).
#[cfg(feature = "hdf5")]
pub fn write_tiles_h5(path: &Path, ex: &Extraction, tile: u32, tile_mpp: f64) -> Result<()> {
    let geometry = crate::h5::TileGeometry {
        patch_size: Some(f64::from(tile)),
        patch_size_level0: Some(ex.plan.size0),
        patch_level: Some(ex.plan.level as i64),
        level0_magnification: Some(10.0 / ex.plan.mpp),
        target_magnification: Some(10.0 / tile_mpp),
        mpp: Some(ex.plan.mpp),
    };
    let name = crate::slide_names::output_name(path);
    let thumb = &ex.plan.thumbnail;
    let (w, h) = thumb.dimensions();
    let thumbnail = crate::h5::SlideThumbnail {
        pixels: ndarray::Array3::from_shape_vec(
            (h as usize, w as usize, 3),
            thumb.as_raw().clone(),
        )
        .map_err(|e| crate::error::Error::Runtime(format!("thumbnail: {e}")))?,
        width0: ex.plan.width,
        height0: ex.plan.height,
    };
    crate::h5::write_tile_file(
        path,
        ex.features.view(),
        corners(ex).view(),
        &geometry,
        Some(&thumbnail),
        &name,
    )
}

/// Writes `slide_tiles.npz` atomically: `coords` [N,2] int64 (x, y of each tile's top-left
/// corner in level-0 pixels), `features` [N,D] float32, `cluster` [N] int64 (-1: none),
/// `tile_size_level0` and `mpp` (float64 scalars).
pub fn write_tiles_npz(path: &Path, ex: &Extraction) -> Result<()> {
    let coords = corners(ex);
    // -1 for every tile when they were not clustered (--clusters 0)
    let cluster: Array1<i64> = match &ex.kmeans {
        Some(km) => km.labels.iter().map(|&c| c as i64).collect(),
        None => Array1::from_elem(ex.tiles.len(), -1),
    };
    crate::atomic::write_atomic(path, |w| {
        let mut z = NpzWriter::new_compressed(w);
        let e = std::io::Error::other;
        z.add_array("coords", &coords).map_err(e)?;
        z.add_array("features", &ex.features).map_err(e)?;
        z.add_array("cluster", &cluster).map_err(e)?;
        z.add_array("tile_size_level0", &Array0::from_elem((), ex.plan.size0))
            .map_err(e)?;
        z.add_array("mpp", &Array0::from_elem((), ex.plan.mpp))
            .map_err(e)?;
        z.finish().map_err(e)?;
        Ok(())
    })
}
