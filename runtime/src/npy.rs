//! Float arrays in NumPy files: `.npy` (float32 or float64, C or Fortran order) and `.npz`
//! (stored or deflate-compressed), read as f32; and atomic `.npy` writing. Slide features,
//! normalisation statistics and samples all travel in these files.
//!
//! The header is parsed before the data so that a wrong dtype or rank is reported as such
//! (ndarray-npy alone would only say "incorrect descriptor").

use std::io::{Cursor, Read};
use std::path::Path;

use ndarray::{ArrayBase, ArrayD, Data, Dimension};
use ndarray_npy::{ReadNpyExt, WritableElement, WriteNpyExt, npy::header::Header};

use crate::error::{Error, Result};

/// The npz key preferred when an archive holds several arrays.
pub const FEATURES_KEY: &str = "features";

/// Reads a float array from `.npy`, or from `.npz` (the array `key`, or the only array).
/// The format is chosen by content (zip magic), not by extension.
pub fn read_float_array(path: &Path, key: Option<&str>) -> Result<ArrayD<f32>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.starts_with(b"PK") {
        let (name, inner) = npz_entry(path, &bytes, key)?;
        parse_float_npy(&inner, path, Some(&name))
    } else {
        parse_float_npy(&bytes, path, None)
    }
}

/// Parses `.npy` bytes; `entry` names the npz member in errors.
pub fn parse_float_npy(bytes: &[u8], path: &Path, entry: Option<&str>) -> Result<ArrayD<f32>> {
    let what = |msg: String| match entry {
        Some(e) => Error::invalid(path, format!("array {e:?}: {msg}")),
        None => Error::invalid(path, msg),
    };
    let header = Header::from_reader(&mut Cursor::new(bytes))
        .map_err(|e| what(format!("not a readable .npy file: {e}")))?;
    let descr = match header.type_descriptor.as_string() {
        Some(s) => s.clone(),
        None => header.type_descriptor.to_string(), // structured dtype: a list
    };
    // `<f4`, `>f8`, `=f4`, `|f4`: byte order first, then kind and size.
    let kind = descr.get(1..).unwrap_or("");
    let read = |e: ndarray_npy::ReadNpyError| what(format!("bad array data: {e}"));
    match kind {
        "f4" => ArrayD::<f32>::read_npy(bytes).map_err(read),
        "f8" => Ok(ArrayD::<f64>::read_npy(bytes)
            .map_err(read)?
            .mapv(|v| v as f32)),
        _ => Err(what(format!(
            "dtype {descr} is not float32 or float64 (shape {:?})",
            header.shape
        ))),
    }
}

/// Extracts the `.npy` bytes of one npz member: `key` if given and present, else
/// [`FEATURES_KEY`], else the only member.
fn npz_entry(path: &Path, bytes: &[u8], key: Option<&str>) -> Result<(String, Vec<u8>)> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| Error::invalid(path, format!("not a readable .npz archive: {e}")))?;
    let names: Vec<String> = zip
        .file_names()
        .map(|n| n.map(|n| n.into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|e| Error::invalid(path, format!("not a readable .npz archive: {e}")))?;
    let stem = |n: &str| n.strip_suffix(".npy").unwrap_or(n).to_string();
    let find = |k: &str| names.iter().find(|n| stem(n) == k).cloned();
    let chosen = match key {
        Some(k) => find(k).ok_or_else(|| {
            Error::invalid(
                path,
                format!("npz has no array {k:?} (it has {:?})", listing(&names)),
            )
        })?,
        None => match (find(FEATURES_KEY), names.as_slice()) {
            (Some(n), _) => n,
            (None, [only]) => only.clone(),
            (None, []) => return Err(Error::invalid(path, "npz archive holds no array")),
            (None, _) => {
                return Err(Error::invalid(
                    path,
                    format!(
                        "npz holds several arrays {:?} and none is named {FEATURES_KEY:?}",
                        listing(&names)
                    ),
                ));
            }
        },
    };
    let mut file = zip
        .by_name(&chosen)
        .map_err(|e| Error::invalid(path, format!("npz member {chosen:?}: {e}")))?;
    let mut out = Vec::with_capacity(file.size() as usize);
    file.read_to_end(&mut out)
        .map_err(|e| Error::invalid(path, format!("npz member {chosen:?}: {e}")))?;
    Ok((stem(&chosen), out))
}

fn listing(names: &[String]) -> Vec<String> {
    names
        .iter()
        .map(|n| n.strip_suffix(".npy").unwrap_or(n).to_string())
        .collect()
}

/// Writes an array as `.npy` atomically (temporary file + rename).
pub fn write_npy<A, S, D>(path: &Path, array: &ArrayBase<S, D>) -> Result<()>
where
    A: WritableElement,
    S: Data<Elem = A>,
    D: Dimension,
{
    crate::atomic::write_atomic(path, |w| array.write_npy(w).map_err(std::io::Error::other))
}
