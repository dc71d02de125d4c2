//! Files written for a slide: `slide_tiles.npz` with every encoded tile's level-0 corner,
//! features and cluster, beside the K×D cluster means (written with `features::write_features`).

use std::path::Path;

use ndarray::{Array0, Array1, Array2};
use ndarray_npy::NpzWriter;

use super::extract::Extraction;
use crate::error::Result;

/// Writes `slide_tiles.npz` atomically: `coords` [N,2] int64 (x, y of each tile's top-left
/// corner in level-0 pixels), `features` [N,D] float32, `cluster` [N] int64,
/// `tile_size_level0` and `mpp` (float64 scalars).
pub fn write_tiles_npz(path: &Path, ex: &Extraction) -> Result<()> {
    let n = ex.tiles.len();
    let mut coords = Array2::<i64>::zeros((n, 2));
    for (i, t) in ex.tiles.iter().enumerate() {
        coords[[i, 0]] = t.x as i64;
        coords[[i, 1]] = t.y as i64;
    }
    let cluster: Array1<i64> = ex.kmeans.labels.iter().map(|&c| c as i64).collect();
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
