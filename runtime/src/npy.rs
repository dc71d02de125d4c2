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

/// Most values any array file may hold (4 GiB as float32): a header that claims more is
/// refused before anything is allocated.
pub const MAX_ARRAY_VALUES: u64 = 1 << 30;

/// The first bytes of a `.npy` stream looked at for its header (headers are < 64 KiB).
const HEADER_PEEK: u64 = 1 << 20;

/// Reads a float array from `.npy`, or from `.npz` (the array `key`, or the only array).
/// The format is chosen by content (zip magic), not by extension. At most
/// [`MAX_ARRAY_VALUES`] values.
pub fn read_float_array(path: &Path, key: Option<&str>) -> Result<ArrayD<f32>> {
    read_float_array_limited(path, key, MAX_ARRAY_VALUES)
}

/// [`read_float_array`] with at most `max_values` values. The size the header claims is
/// checked against `max_values` and against the data actually there before the array is
/// allocated, so a forged header or a compressed bomb costs no memory.
pub fn read_float_array_limited(
    path: &Path,
    key: Option<&str>,
    max_values: u64,
) -> Result<ArrayD<f32>> {
    use std::io::{Seek, SeekFrom};
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut magic = [0u8; 2];
    let n = file.read(&mut magic).map_err(|e| Error::io(path, e))?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| Error::io(path, e))?;
    if n == 2 && &magic == b"PK" {
        let mut zip = zip::ZipArchive::new(file)
            .map_err(|e| Error::invalid(path, format!("not a readable .npz archive: {e}")))?;
        let chosen = npz_member(path, &mut zip, key)?;
        let member = zip
            .by_name(&chosen)
            .map_err(|e| Error::invalid(path, format!("npz member {chosen:?}: {e}")))?;
        let name = chosen.strip_suffix(".npy").unwrap_or(&chosen).to_string();
        let bytes = read_npy_bytes(member, path, Some(&name), max_values)?;
        parse_float_npy(&bytes, path, Some(&name))
    } else {
        let bytes = read_npy_bytes(file, path, None, max_values)?;
        parse_float_npy(&bytes, path, None)
    }
}

/// Reads one `.npy` stream: the header first, then exactly the data it declares (after
/// checking the declared size), then makes sure nothing follows.
fn read_npy_bytes(
    mut r: impl Read,
    path: &Path,
    entry: Option<&str>,
    max_values: u64,
) -> Result<Vec<u8>> {
    let what = |msg: String| match entry {
        Some(e) => Error::invalid(path, format!("array {e:?}: {msg}")),
        None => Error::invalid(path, msg),
    };
    let io = |e: std::io::Error| what(format!("cannot read: {e}"));
    let mut buf = Vec::new();
    (&mut r)
        .take(HEADER_PEEK)
        .read_to_end(&mut buf)
        .map_err(io)?;
    let mut cur = Cursor::new(&buf[..]);
    let header = Header::from_reader(&mut cur)
        .map_err(|e| what(format!("not a readable .npy file: {e}")))?;
    let header_len = cur.position();
    let values = header
        .shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
        .filter(|&v| v <= max_values)
        .ok_or_else(|| {
            what(format!(
                "shape {:?} is larger than the {max_values} values allowed",
                header.shape
            ))
        })?;
    // float64 at most; other dtypes are refused by the parser with their own message
    let item = header
        .type_descriptor
        .as_string()
        .and_then(|d| d.get(2..))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(8)
        .clamp(1, 8);
    let total = header_len + values * item;
    if (buf.len() as u64) < total {
        let want = total - buf.len() as u64;
        (&mut r).take(want).read_to_end(&mut buf).map_err(io)?;
    }
    if (buf.len() as u64) < total {
        return Err(what(format!(
            "truncated: shape {:?} needs {} bytes of data, the file holds {}",
            header.shape,
            values * item,
            (buf.len() as u64).saturating_sub(header_len)
        )));
    }
    let mut extra = [0u8; 1];
    if buf.len() as u64 > total || r.read(&mut extra).map_err(io)? > 0 {
        return Err(what(format!(
            "more data than its shape {:?} holds",
            header.shape
        )));
    }
    Ok(buf)
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

/// The npz member to read: `key` if given and present, else [`FEATURES_KEY`], else the
/// only member.
fn npz_member<R: Read + std::io::Seek>(
    path: &Path,
    zip: &mut zip::ZipArchive<R>,
    key: Option<&str>,
) -> Result<String> {
    let names: Vec<String> = zip
        .file_names()
        .map(|n| n.map(|n| n.into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|e| Error::invalid(path, format!("not a readable .npz archive: {e}")))?;
    let stem = |n: &str| n.strip_suffix(".npy").unwrap_or(n).to_string();
    let find = |k: &str| names.iter().find(|n| stem(n) == k).cloned();
    match key {
        Some(k) => find(k).ok_or_else(|| {
            Error::invalid(
                path,
                format!("npz has no array {k:?} (it has {:?})", listing(&names)),
            )
        }),
        None => match (find(FEATURES_KEY), names.as_slice()) {
            (Some(n), _) => Ok(n),
            (None, [only]) => Ok(only.clone()),
            (None, []) => Err(Error::invalid(path, "npz archive holds no array")),
            (None, _) => Err(Error::invalid(
                path,
                format!(
                    "npz holds several arrays {:?} and none is named {FEATURES_KEY:?}",
                    listing(&names)
                ),
            )),
        },
    }
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
