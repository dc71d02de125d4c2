//! Slide features: a `.npy` or `.npz` matrix, either K×D cluster means (the model's input)
//! or N×D tile features (to be clustered with k-means), or a TRIDENT/CLAM `.h5` tile file
//! (see [`crate::h5`]). Read as f32 and checked: rank 2, at least one row and column, every
//! value finite.

use std::path::Path;

use ndarray::{Array2, ArrayBase, Data, Ix2};

use crate::error::{Error, Result};
use crate::limits::{MAX_FEATURE_VALUES, MAX_TILES};
use crate::npy;

/// Reads a slide's feature matrix from `.npy` or `.npz` (key `features`, or the only array),
/// or `.h5`/`.hdf5` (dataset `features`); at most [`MAX_FEATURE_VALUES`] values and
/// [`MAX_TILES`] rows.
pub fn read_features(path: &Path) -> Result<Array2<f32>> {
    if is_h5_path(path) {
        return read_h5_features(path);
    }
    let a = npy::read_float_array_limited(path, None, MAX_FEATURE_VALUES)?;
    let shape = a.shape().to_vec();
    let a = a.into_dimensionality::<Ix2>().map_err(|_| {
        Error::invalid(
            path,
            format!(
                "features must be a 2-d matrix (rows × feature dim), found rank {} with shape {shape:?}",
                shape.len()
            ),
        )
    })?;
    if a.nrows() > MAX_TILES {
        return Err(Error::invalid(
            path,
            format!("{} tiles, more than the {MAX_TILES} allowed", a.nrows()),
        ));
    }
    check_features(&a, path)?;
    Ok(a)
}

/// True for `.h5`/`.hdf5` (any case): a TRIDENT/CLAM tile file.
pub fn is_h5_path(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("h5") || e.eq_ignore_ascii_case("hdf5"))
}

#[cfg(feature = "hdf5")]
fn read_h5_features(path: &Path) -> Result<Array2<f32>> {
    Ok(read_h5_tiles(path)?.features)
}

/// A TRIDENT/CLAM `.h5` tile file (features, coords, geometry), its features checked as
/// every feature file's are.
#[cfg(feature = "hdf5")]
pub fn read_h5_tiles(path: &Path) -> Result<crate::h5::TileFile> {
    let t = crate::h5::read_tile_file(path)?;
    check_features(&t.features, path)?;
    Ok(t)
}

#[cfg(not(feature = "hdf5"))]
fn read_h5_features(path: &Path) -> Result<Array2<f32>> {
    Err(Error::invalid(
        path,
        "this build of rnafm reads no HDF5 (built without the `hdf5` feature); convert to .npy or rebuild with it",
    ))
}

/// Checks a feature matrix: non-empty and finite (the first bad value is named by row and
/// column, 0-based).
pub fn check_features<S: Data<Elem = f32>>(a: &ArrayBase<S, Ix2>, path: &Path) -> Result<()> {
    let (rows, cols) = a.dim();
    if rows == 0 {
        return Err(Error::invalid(path, "features have zero rows"));
    }
    if cols == 0 {
        return Err(Error::invalid(path, "features have zero columns"));
    }
    if let Some(((r, c), v)) = a.indexed_iter().find(|(_, v)| !v.is_finite()) {
        return Err(Error::invalid(
            path,
            format!("non-finite value {v} at row {r}, column {c}"),
        ));
    }
    Ok(())
}

/// Writes a float32 matrix (features or samples) as `.npy`, atomically.
pub fn write_features<S: Data<Elem = f32>>(path: &Path, a: &ArrayBase<S, Ix2>) -> Result<()> {
    npy::write_npy(path, a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, Array3, ShapeBuilder, array};
    use ndarray_npy::{NpzWriter, WriteNpyExt};
    use std::fs::File;

    fn err_text(r: Result<Array2<f32>>) -> String {
        match r {
            Ok(a) => panic!("expected an error, got shape {:?}", a.dim()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn roundtrip_f32_and_atomic_writer() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/f.npy");
        let a = Array2::from_shape_fn((5, 3), |(i, j)| i as f32 * 0.5 - j as f32);
        write_features(&p, &a).unwrap();
        assert_eq!(read_features(&p).unwrap(), a);
        // no temporary file is left next to the output
        let n = std::fs::read_dir(p.parent().unwrap()).unwrap().count();
        assert_eq!(n, 1);
    }

    #[test]
    fn reads_f64_and_fortran_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f64f.npy");
        let mut a = Array2::<f64>::zeros((4, 3).f());
        for ((i, j), v) in a.indexed_iter_mut() {
            *v = (i * 10 + j) as f64 + 0.25;
        }
        assert!(a.t().is_standard_layout()); // written in Fortran order
        a.write_npy(File::create(&p).unwrap()).unwrap();
        let got = read_features(&p).unwrap();
        assert_eq!(got.dim(), (4, 3));
        for ((i, j), v) in got.indexed_iter() {
            assert_eq!(*v, (i * 10 + j) as f32 + 0.25);
        }
    }

    #[test]
    fn reads_npz_plain_compressed_named_and_single() {
        let dir = tempfile::tempdir().unwrap();
        let a = array![[1.0f32, 2.0], [3.0, 4.0], [5.0, 6.0]];
        let other = array![9.0f32];
        // plain, two arrays, key `features`
        let p1 = dir.path().join("a.npz");
        let mut w = NpzWriter::new(File::create(&p1).unwrap());
        w.add_array("other", &other).unwrap();
        w.add_array("features", &a).unwrap();
        w.finish().unwrap();
        assert_eq!(read_features(&p1).unwrap(), a);
        // compressed, single array under another name
        let p2 = dir.path().join("b.npz");
        let mut w = NpzWriter::new_compressed(File::create(&p2).unwrap());
        w.add_array("arr_0", &a.mapv(f64::from)).unwrap();
        w.finish().unwrap();
        assert_eq!(read_features(&p2).unwrap(), a);
        // several arrays, none named features
        let p3 = dir.path().join("c.npz");
        let mut w = NpzWriter::new(File::create(&p3).unwrap());
        w.add_array("x", &a).unwrap();
        w.add_array("y", &a).unwrap();
        w.finish().unwrap();
        let e = err_text(read_features(&p3));
        assert!(e.contains("c.npz") && e.contains("several arrays"), "{e}");
    }

    #[test]
    fn missing_file() {
        let e = err_text(read_features(Path::new("/nonexistent/feat.npy")));
        assert!(e.contains("/nonexistent/feat.npy"), "{e}");
    }

    #[test]
    fn garbage_header() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.npy");
        std::fs::write(&p, b"this is not numpy").unwrap();
        let e = err_text(read_features(&p));
        assert!(
            e.contains("bad.npy") && e.contains("not a readable .npy"),
            "{e}"
        );
        let p = dir.path().join("bad.npz");
        std::fs::write(&p, b"PK\x03\x04 truncated").unwrap();
        let e = err_text(read_features(&p));
        assert!(e.contains("bad.npz") && e.contains(".npz"), "{e}");
    }

    #[test]
    fn truncated_data() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.npy");
        let mut bytes = Vec::new();
        Array2::<f32>::ones((4, 4)).write_npy(&mut bytes).unwrap();
        bytes.truncate(bytes.len() - 8);
        std::fs::write(&p, &bytes).unwrap();
        let e = err_text(read_features(&p));
        assert!(
            e.contains("t.npy") && e.contains("truncated") && e.contains("needs 64 bytes"),
            "{e}"
        );
        // and data past what the header declares is refused too
        let mut long = Vec::new();
        Array2::<f32>::ones((4, 4)).write_npy(&mut long).unwrap();
        long.extend_from_slice(&[0u8; 4]);
        std::fs::write(&p, &long).unwrap();
        let e = err_text(read_features(&p));
        assert!(e.contains("t.npy") && e.contains("more data than"), "{e}");
    }

    #[test]
    fn integer_dtype_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i.npy");
        Array2::<i64>::zeros((2, 2))
            .write_npy(File::create(&p).unwrap())
            .unwrap();
        let e = err_text(read_features(&p));
        assert!(
            e.contains("i.npy") && e.contains("<i8") && e.contains("float32"),
            "{e}"
        );
    }

    #[test]
    fn wrong_rank() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.npy");
        Array3::<f32>::zeros((1, 2, 3))
            .write_npy(File::create(&p).unwrap())
            .unwrap();
        let e = err_text(read_features(&p));
        assert!(e.contains("rank 3") && e.contains("[1, 2, 3]"), "{e}");
        Array1::<f32>::zeros(3)
            .write_npy(File::create(&p).unwrap())
            .unwrap();
        assert!(err_text(read_features(&p)).contains("rank 1"));
    }

    #[test]
    fn nan_and_inf_are_located() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("n.npy");
        let mut a = Array2::<f32>::zeros((3, 4));
        a[[2, 1]] = f32::NAN;
        write_features(&p, &a).unwrap();
        let e = err_text(read_features(&p));
        assert!(e.contains("row 2, column 1") && e.contains("NaN"), "{e}");
        a[[2, 1]] = 0.0;
        a[[0, 3]] = f32::INFINITY;
        write_features(&p, &a).unwrap();
        let e = err_text(read_features(&p));
        assert!(e.contains("row 0, column 3") && e.contains("inf"), "{e}");
    }

    /// An `.h5` is checked as every feature file: the first bad value is named.
    #[cfg(feature = "hdf5")]
    #[test]
    fn h5_values_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("n.h5");
        let mut f = Array2::<f32>::zeros((3, 2));
        f[[1, 1]] = f32::NAN;
        let c = Array2::<i64>::zeros((3, 2));
        let g = crate::h5::TileGeometry::default();
        crate::h5::write_tile_file(&p, f.view(), c.view(), &g, None, "n").unwrap();
        let e = err_text(read_features(&p));
        assert!(e.contains("n.h5") && e.contains("row 1, column 1"), "{e}");
        assert!(read_h5_tiles(&p).is_err());
    }

    #[test]
    fn zero_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("z.npy");
        write_features(&p, &Array2::<f32>::zeros((0, 8))).unwrap();
        assert!(err_text(read_features(&p)).contains("zero rows"));
    }

    #[test]
    fn reads_the_fixture_inputs() {
        // y.npy holds [3, 8, 48]: rank 3, so it is not a feature matrix.
        let fix =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/official-small");
        let y = npy::read_float_array(&fix.join("y.npy"), None).unwrap();
        assert_eq!(y.shape(), &[3, 8, 48]);
        let e = err_text(read_features(&fix.join("y.npy")));
        assert!(e.contains("rank 3"), "{e}");
        let x = read_features(&fix.join("x.npy")).unwrap();
        assert_eq!(x.dim(), (3, 600));
    }
}
