//! The `.rnafm` bundle: one zip file holding the ONNX graphs, `null_slide_emb.npy`, optional
//! self-test arrays and `manifest.json` (which lists the sha256 of every other member).
//!
//! Opening maps the file into memory: stored members (the graphs, ~1 GB at paper size) stay
//! in the page cache instead of being copied onto the heap. [`Bundle::open`] checks every
//! member's sha256 at once; [`Bundle::open_lazy`] checks a member the first time it is read,
//! so a run hashes only the graphs it loads, on another thread while ONNX Runtime builds the
//! sessions (see `run::model`). Either way no byte reaches a caller unchecked, and a damaged
//! or tampered bundle fails with one line naming the file.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

pub use crate::bundle_members::MANIFEST;
use crate::error::{Error, Result};
use crate::manifest::Manifest;

/// Largest member accepted (paper-size graphs are ~100 MB); guards against zip bombs.
pub const MAX_MEMBER_BYTES: u64 = 2 << 30;

/// Where a member's bytes are.
enum Bytes {
    /// A range of the mapped bundle file (members stored uncompressed).
    Range(Range<usize>),
    /// A member file of an unpacked bundle, mapped.
    Map(memmap2::Mmap),
    /// A compressed member, inflated.
    Owned(Vec<u8>),
}

struct Member {
    bytes: Bytes,
    /// The manifest's sha256 (hex).
    want: String,
    /// The outcome of the sha256 check, once made (the error's text).
    checked: OnceLock<std::result::Result<(), String>>,
}

pub struct Bundle {
    pub path: PathBuf,
    pub manifest: Manifest,
    /// sha256 of `manifest.json` as stored: it lists every member's sha256, so it names the
    /// bundle's content without hashing the whole file.
    pub manifest_sha256: String,
    map: Option<memmap2::Mmap>,
    /// The zip file's identity when it was opened (for [`crate::checked_cache`]).
    file: Option<crate::checked_cache::FileIdentity>,
    members: BTreeMap<String, Member>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Maps `file` read-only. The map is only read; a file changed by another process while it
/// is mapped can show changed bytes, which is why every member is hashed before use (and
/// ONNX Runtime copies the graphs it parses).
fn map_file(file: &std::fs::File, path: &Path) -> Result<memmap2::Mmap> {
    // SAFETY: read-only map of a file we opened; see above for concurrent changes.
    unsafe { memmap2::Mmap::map(file) }.map_err(|e| Error::io(path, e))
}

/// A member name must be a plain relative path inside the bundle.
fn check_member_name(name: &str, origin: &Path) -> Result<()> {
    let bad = name.is_empty()
        || name.starts_with('/')
        || name.starts_with('\\')
        || name.contains(':')
        || name.contains('\\')
        || name
            .split('/')
            .any(|c| c == ".." || c == "." || c.is_empty());
    if bad {
        return Err(Error::invalid(
            origin,
            format!("bundle member name {name:?} is absolute or escapes the bundle"),
        ));
    }
    Ok(())
}

fn over_limit(path: &Path, name: &str, size: u64, limit: u64) -> Error {
    Error::invalid(
        path,
        format!("bundle member {name} is {size} bytes, over the {limit}-byte limit"),
    )
}

impl Bundle {
    /// Opens a bundle and checks every member's sha256.
    pub fn open(path: &Path) -> Result<Bundle> {
        Self::open_with_limit(path, MAX_MEMBER_BYTES)
    }

    /// As `open`, with a custom per-member size limit.
    pub fn open_with_limit(path: &Path, limit: u64) -> Result<Bundle> {
        let b = Self::open_lazy_with_limit(path, limit)?;
        b.verify_all()?;
        Ok(b)
    }

    /// Opens a bundle, checking its structure (names, sizes, the manifest's member list);
    /// each member's sha256 is checked when the member is first read.
    pub fn open_lazy(path: &Path) -> Result<Bundle> {
        Self::open_lazy_with_limit(path, MAX_MEMBER_BYTES)
    }

    fn open_lazy_with_limit(path: &Path, limit: u64) -> Result<Bundle> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let identity = crate::checked_cache::FileIdentity::of(&file);
        let map = map_file(&file, path)?;
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(&map[..]))
            .map_err(|e| Error::invalid(path, format!("not a .rnafm bundle (zip): {e}")))?;
        let mut found = BTreeMap::new();
        for i in 0..zip.len() {
            let bad_entry = |e| Error::invalid(path, format!("bad zip entry {i}: {e}"));
            let entry = zip.by_index_raw(i).map_err(bad_entry)?;
            let name = entry
                .name()
                .map_err(|e| Error::invalid(path, format!("bad zip entry name {i}: {e}")))?
                .to_string();
            check_member_name(&name, path)?;
            if entry.is_dir() {
                continue;
            }
            if entry.size() > limit {
                return Err(over_limit(path, &name, entry.size(), limit));
            }
            let stored = entry.compression() == zip::CompressionMethod::Stored
                && !entry.encrypted()
                && entry.compressed_size() == entry.size();
            let bytes = match (stored, entry.data_start()) {
                (true, Some(start)) => {
                    let end = start
                        .checked_add(entry.size())
                        .filter(|&e| e <= map.len() as u64)
                        .ok_or_else(|| {
                            Error::invalid(path, format!("bundle member {name} is truncated"))
                        })?;
                    Bytes::Range(start as usize..end as usize)
                }
                _ => {
                    drop(entry);
                    let mut entry = zip.by_index(i).map_err(bad_entry)?;
                    // The declared size can lie; cap the actual read too.
                    let mut buf = Vec::with_capacity(entry.size().min(limit) as usize);
                    (&mut entry)
                        .take(limit + 1)
                        .read_to_end(&mut buf)
                        .map_err(|e| {
                            Error::invalid(path, format!("cannot read member {name}: {e}"))
                        })?;
                    if buf.len() as u64 > limit {
                        return Err(over_limit(path, &name, buf.len() as u64, limit));
                    }
                    Bytes::Owned(buf)
                }
            };
            if found.insert(name.clone(), bytes).is_some() {
                return Err(Error::invalid(
                    path,
                    format!("duplicate bundle member {name}"),
                ));
            }
        }
        drop(zip);
        let mbytes = match found.remove(MANIFEST) {
            Some(Bytes::Owned(v)) => v,
            Some(Bytes::Range(r)) => map[r].to_vec(),
            Some(Bytes::Map(_)) => unreachable!("zip members are ranges or inflated"),
            None => return Err(Error::invalid(path, "bundle has no manifest.json")),
        };
        let manifest = Manifest::from_json(&mbytes, path)?;
        let mut members = BTreeMap::new();
        for (name, want) in &manifest.members {
            check_member_name(name, path)?;
            let bytes = found
                .remove(name)
                .ok_or_else(|| Error::invalid(path, format!("bundle member {name} is missing")))?;
            members.insert(name.clone(), Member::new(bytes, want));
        }
        if let Some(extra) = found.keys().next() {
            return Err(Error::invalid(
                path,
                format!("bundle member {extra} is not listed in the manifest"),
            ));
        }
        Ok(Bundle {
            path: path.to_path_buf(),
            manifest,
            manifest_sha256: sha256_hex(&mbytes),
            map: Some(map),
            file: identity,
            members,
        })
    }

    /// A bundle as a `.rnafm` zip, or unpacked into a folder (`manifest.json` beside its
    /// members, e.g. after `unzip model.rnafm -d model/`); every member checked.
    pub fn open_any(path: &Path) -> Result<Bundle> {
        let b = Self::open_any_lazy(path)?;
        b.verify_all()?;
        Ok(b)
    }

    /// As [`Bundle::open_any`], each member checked when first read.
    pub fn open_any_lazy(path: &Path) -> Result<Bundle> {
        if Self::is_unpacked(path) {
            Self::open_dir(path)
        } else {
            Self::open_lazy(path)
        }
    }

    /// Whether `path` is a folder holding an unpacked bundle.
    pub fn is_unpacked(path: &Path) -> bool {
        path.is_dir() && path.join(MANIFEST).is_file()
    }

    /// An unpacked bundle: every member the manifest lists is mapped from the folder and
    /// checked against its sha256 when read, as in the zip; other files are ignored.
    fn open_dir(dir: &Path) -> Result<Bundle> {
        let mpath = dir.join(MANIFEST);
        let mbytes = std::fs::read(&mpath).map_err(|e| Error::io(&mpath, e))?;
        let manifest = Manifest::from_json(&mbytes, &mpath)?;
        let mut members = BTreeMap::new();
        for (name, want) in &manifest.members {
            check_member_name(name, dir)?;
            let p = dir.join(name);
            let file = std::fs::File::open(&p).map_err(|e| Error::io(&p, e))?;
            let len = file.metadata().map_err(|e| Error::io(&p, e))?.len();
            if len > MAX_MEMBER_BYTES {
                return Err(over_limit(dir, name, len, MAX_MEMBER_BYTES));
            }
            // An empty file cannot be mapped.
            let bytes = if len == 0 {
                Bytes::Owned(Vec::new())
            } else {
                Bytes::Map(map_file(&file, &p)?)
            };
            members.insert(name.clone(), Member::new(bytes, want));
        }
        Ok(Bundle {
            path: dir.to_path_buf(),
            manifest,
            manifest_sha256: sha256_hex(&mbytes),
            map: None,
            file: None,
            members,
        })
    }

    fn bytes<'a>(&'a self, m: &'a Member) -> &'a [u8] {
        match &m.bytes {
            Bytes::Range(r) => &self.map.as_ref().expect("ranges come with a map")[r.clone()],
            Bytes::Map(map) => map,
            Bytes::Owned(v) => v,
        }
    }

    /// Bytes of a member, its sha256 checked (once); an error names the bundle.
    pub fn member(&self, name: &str) -> Result<&[u8]> {
        let m = self
            .members
            .get(name)
            .ok_or_else(|| Error::invalid(&self.path, format!("bundle has no member {name}")))?;
        let bytes = self.bytes(m);
        m.checked
            .get_or_init(|| {
                let got = sha256_hex(bytes);
                if got.eq_ignore_ascii_case(&m.want) {
                    Ok(())
                } else {
                    Err(format!(
                        "bundle member {name} is corrupt (sha256 {got}, manifest says {})",
                        m.want
                    ))
                }
            })
            .clone()
            .map_err(|e| Error::invalid(&self.path, e))?;
        Ok(bytes)
    }

    /// The sha256 the manifest gives for a member (checked when the member is read).
    pub fn member_sha256(&self, name: &str) -> Option<&str> {
        self.members.get(name).map(|m| m.want.as_str())
    }

    /// Hands a member's pages back to the page cache: ONNX Runtime holds its own copy of a
    /// graph once its session is built, and the mapped pages would otherwise count in this
    /// process's memory until exit (~1 GB at paper size). Reading the member again maps
    /// them anew; inflated members are unaffected.
    pub fn drop_pages(&self, name: &str) {
        let Some(m) = self.members.get(name) else {
            return;
        };
        let (map, range) = match (&m.bytes, &self.map) {
            (Bytes::Range(r), Some(map)) => (map, r.clone()),
            (Bytes::Map(map), _) => (map, 0..map.len()),
            _ => return,
        };
        // SAFETY: the map is a shared read-only file mapping; after MADV_DONTNEED a read
        // faults the same file bytes back in, so no slice handed out sees other contents.
        // Failure only means the pages stay mapped.
        let _ = unsafe {
            map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, range.start, range.len())
        };
    }

    /// Takes the checks `cache` remembers for this very file as made (see
    /// [`crate::checked_cache`]); returns how many members that spares. Zip bundles only.
    pub fn recall_checks(&self, cache: &Path) -> usize {
        let Some(file) = &self.file else {
            return 0;
        };
        crate::checked_cache::recall(cache, &self.manifest_sha256, file)
            .iter()
            .filter_map(|name| self.members.get(name))
            .filter(|m| m.checked.set(Ok(())).is_ok())
            .count()
    }

    /// Records in `cache` the members whose check passed; whether a record was written.
    pub fn remember_checks(&self, cache: &Path) -> bool {
        let Some(file) = &self.file else {
            return false;
        };
        let passed = self
            .members
            .iter()
            .filter(|(_, m)| matches!(m.checked.get(), Some(Ok(()))))
            .map(|(name, _)| name.clone())
            .collect();
        crate::checked_cache::remember(cache, &self.manifest_sha256, file, passed)
    }

    /// Checks every member's sha256 (those not checked yet).
    pub fn verify_all(&self) -> Result<()> {
        self.members
            .keys()
            .try_for_each(|n| self.member(n).map(|_| ()))
    }

    pub fn member_names(&self) -> impl Iterator<Item = &str> {
        self.members.keys().map(String::as_str)
    }

    /// Frees the members `drop` selects (inflated ones hold heap memory; mapped ones only
    /// the page cache's). The manifest still lists them.
    pub fn release(&mut self, drop: impl Fn(&str) -> bool) {
        self.members.retain(|name, _| !drop(name));
    }
}

impl Member {
    fn new(bytes: Bytes, want: &str) -> Member {
        Member {
            bytes,
            want: want.to_string(),
            checked: OnceLock::new(),
        }
    }
}

/// Collects members, fills in their checksums and writes the bundle atomically.
pub struct BundleWriter {
    manifest: Manifest,
    members: BTreeMap<String, Vec<u8>>,
}

impl BundleWriter {
    /// `manifest.members` is overwritten with the checksums of the added members.
    pub fn new(manifest: Manifest) -> Self {
        BundleWriter {
            manifest,
            members: BTreeMap::new(),
        }
    }

    pub fn add(&mut self, name: &str, bytes: Vec<u8>) -> Result<()> {
        check_member_name(name, Path::new(name))?;
        if name == MANIFEST {
            return Err(Error::invalid(
                name,
                "manifest.json is written by the bundle writer",
            ));
        }
        self.members.insert(name.to_string(), bytes);
        Ok(())
    }

    pub fn manifest_mut(&mut self) -> &mut Manifest {
        &mut self.manifest
    }

    /// The manifest as it will be written (with checksums).
    pub fn finish_manifest(&mut self) -> &Manifest {
        self.manifest.members = self
            .members
            .iter()
            .map(|(k, v)| (k.clone(), sha256_hex(v)))
            .collect();
        &self.manifest
    }

    pub fn write(mut self, path: &Path) -> Result<()> {
        self.finish_manifest();
        self.manifest.validate(path)?;
        let manifest = self.manifest.to_json();
        let members = self.members;
        crate::atomic::write_atomic(path, |w| {
            let mut zip = zip::ZipWriter::new_stream(w);
            // Graphs are mostly float weights that barely compress; store them for fast open.
            let stored = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored)
                .large_file(true);
            let deflated = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated);
            zip.start_file(MANIFEST, deflated)
                .map_err(std::io::Error::other)?;
            zip.write_all(&manifest)?;
            for (name, bytes) in &members {
                zip.start_file(name.as_str(), stored)
                    .map_err(std::io::Error::other)?;
                zip.write_all(bytes)?;
            }
            zip.finish().map_err(std::io::Error::other)?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{SamplingDefaults, SlideContract};
    use crate::model_config::ModelConfig;
    use crate::model_spec::ModelSpec;
    use crate::pathways::PathwaySet;

    fn manifest() -> Manifest {
        let origin = Path::new("test");
        let mut config = ModelConfig::paper(6, 2, 4);
        config.hidden = 8;
        config.heads = 2;
        let pathways = PathwaySet::new(
            6,
            vec!["a".into(), "b".into()],
            vec![vec![0, 1, 2], vec![2, 3]],
            vec![4, 5],
            origin,
        )
        .unwrap();
        Manifest {
            schema_version: crate::manifest::SCHEMA_VERSION,
            model: ModelSpec {
                config,
                genes: (0..6).map(|i| format!("G{i}")).collect(),
                pathways,
                normalization: None,
            },
            slide: SlideContract {
                clusters: 2,
                feat_dim: 4,
                encoder: "test".into(),
                microns_per_pixel: 0.5,
                tile_size: 224,
            },
            sampling: SamplingDefaults::default(),
            feature_stats: None,
            cv_r: Some(vec![0.5; 6]),
            provenance: None,
            calibration: None,
            members: BTreeMap::new(),
            self_test: None,
            ensemble: Vec::new(),
            anchor: None,
        }
    }

    fn write_good(dir: &Path) -> PathBuf {
        let path = dir.join("m.rnafm");
        let mut w = BundleWriter::new(manifest());
        w.add("condition.onnx", vec![1, 2, 3]).unwrap();
        w.add("sub/x.npy", vec![9; 100]).unwrap();
        w.write(&path).unwrap();
        path
    }

    /// Writes a zip with the given raw entries (name, bytes), bypassing the writer's checks.
    fn write_raw(path: &Path, entries: &[(&str, Vec<u8>)]) {
        let f = std::fs::File::create(path).unwrap();
        let mut z = zip::ZipWriter::new(f);
        for (n, b) in entries {
            z.start_file(*n, zip::write::SimpleFileOptions::default())
                .unwrap();
            z.write_all(b).unwrap();
        }
        z.finish().unwrap();
    }

    fn manifest_with(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut m = manifest();
        m.members = members
            .iter()
            .map(|(n, b)| (n.to_string(), sha256_hex(b)))
            .collect();
        m.to_json()
    }

    fn err(path: &Path) -> String {
        match Bundle::open(path) {
            Ok(_) => panic!("bundle {} should be rejected", path.display()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn round_trip_keeps_members_and_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_good(dir.path());
        let b = Bundle::open(&path).unwrap();
        assert_eq!(b.member("condition.onnx").unwrap(), &[1, 2, 3]);
        assert_eq!(b.member("sub/x.npy").unwrap(), &[9u8; 100][..]);
        assert_eq!(b.manifest.members.len(), 2);
        assert_eq!(b.manifest.model, manifest().model);
        assert_eq!(b.manifest.cv_r, Some(vec![0.5; 6]));
        assert!(b.member("nope").unwrap_err().to_string().contains("nope"));
        // No temporary file left next to the output.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn rejects_path_traversal_and_absolute_names() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["../evil.onnx", "/abs.onnx", "a/../../b", "C:/x"] {
            let path = dir.path().join("bad.rnafm");
            write_raw(&path, &[(MANIFEST, manifest_with(&[])), (bad, vec![1])]);
            let e = err(&path);
            assert!(
                e.contains("bad.rnafm") && e.contains("escapes"),
                "{bad}: {e}"
            );
        }
        let mut w = BundleWriter::new(manifest());
        assert!(w.add("../x", vec![]).is_err());
    }

    #[test]
    fn rejects_oversized_member() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_good(dir.path());
        let e = Bundle::open_with_limit(&path, 50)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("m.rnafm") && e.contains("limit"), "{e}");
        assert!(Bundle::open_with_limit(&path, 100_000).is_ok());
    }

    #[test]
    fn rejects_missing_member() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("miss.rnafm");
        write_raw(
            &path,
            &[(MANIFEST, manifest_with(&[("heads.onnx", b"abc")]))],
        );
        let e = err(&path);
        assert!(
            e.contains("miss.rnafm") && e.contains("heads.onnx is missing"),
            "{e}"
        );
        // And a bundle without a manifest.
        write_raw(&path, &[("heads.onnx", b"abc".to_vec())]);
        assert!(err(&path).contains("no manifest.json"));
    }

    #[test]
    fn rejects_checksum_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sum.rnafm");
        write_raw(
            &path,
            &[
                (MANIFEST, manifest_with(&[("heads.onnx", b"abc")])),
                ("heads.onnx", b"abd".to_vec()),
            ],
        );
        let e = err(&path);
        assert!(e.contains("sum.rnafm") && e.contains("corrupt"), "{e}");
    }

    /// Stored members are read through the map; a lazily opened bundle checks a member when
    /// it is first read, and only that one; dropping pages keeps the bytes readable.
    #[test]
    fn lazy_open_checks_each_member_when_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lazy.rnafm");
        let mut w = BundleWriter::new(manifest());
        w.add("condition.onnx", vec![1, 2, 3]).unwrap();
        w.add("heads.onnx", b"abc".repeat(5000)).unwrap();
        w.write(&path).unwrap();
        // Change one byte of heads.onnx's stored data in the zip.
        let mut zip = std::fs::read(&path).unwrap();
        let at = zip
            .windows(6)
            .rposition(|w| w == b"abcabc")
            .expect("stored data");
        zip[at] = b'x';
        std::fs::write(&path, &zip).unwrap();
        let e = err(&path);
        assert!(
            e.contains("lazy.rnafm") && e.contains("heads.onnx is corrupt"),
            "{e}"
        );
        let b = Bundle::open_lazy(&path).unwrap();
        assert_eq!(b.member("condition.onnx").unwrap(), &[1, 2, 3]);
        b.drop_pages("condition.onnx");
        assert_eq!(b.member("condition.onnx").unwrap(), &[1, 2, 3]);
        for _ in 0..2 {
            let e = b.member("heads.onnx").unwrap_err().to_string();
            assert!(e.contains("lazy.rnafm") && e.contains("corrupt"), "{e}");
        }
        assert!(b.verify_all().is_err());
        // The writer stores members uncompressed: the good bundle's heads are a map range.
        let good = write_good(dir.path());
        let b = Bundle::open_lazy(&good).unwrap();
        assert!(matches!(b.members["condition.onnx"].bytes, Bytes::Range(_)));
    }

    /// A check remembered for a file is taken as made only while the file is unchanged: a
    /// byte changed in place (same size) is found again.
    #[test]
    fn remembered_checks_hold_only_for_the_unchanged_file() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let path = dir.path().join("r.rnafm");
        let mut w = BundleWriter::new(manifest());
        w.add("heads.onnx", b"abc".repeat(5000)).unwrap();
        w.write(&path).unwrap();
        let b = Bundle::open_lazy(&path).unwrap();
        b.verify_all().unwrap();
        // Just written: too recent to tell a later change apart, so not remembered yet.
        assert!(!b.remember_checks(&cache));
        std::thread::sleep(crate::checked_cache::SETTLED + std::time::Duration::from_millis(200));
        let b = Bundle::open_lazy(&path).unwrap();
        assert_eq!(b.recall_checks(&cache), 0);
        b.verify_all().unwrap();
        assert!(b.remember_checks(&cache));
        assert_eq!(Bundle::open_lazy(&path).unwrap().recall_checks(&cache), 1);
        let mut zip = std::fs::read(&path).unwrap();
        let at = zip.windows(6).rposition(|w| w == b"abcabc").unwrap();
        zip[at] = b'x';
        std::fs::write(&path, &zip).unwrap();
        let b = Bundle::open_lazy(&path).unwrap();
        assert_eq!(b.recall_checks(&cache), 0);
        let e = b.member("heads.onnx").unwrap_err().to_string();
        assert!(e.contains("corrupt"), "{e}");
    }

    #[test]
    fn rejects_unknown_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ver.rnafm");
        let mut m: serde_json::Value = serde_json::from_slice(&manifest_with(&[])).unwrap();
        m["schema_version"] = serde_json::json!(99);
        write_raw(&path, &[(MANIFEST, serde_json::to_vec(&m).unwrap())]);
        let e = err(&path);
        assert!(
            e.contains("ver.rnafm") && e.contains("schema version 99"),
            "{e}"
        );
    }

    #[test]
    fn rejects_non_zip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk.rnafm");
        std::fs::write(&path, b"not a zip").unwrap();
        assert!(err(&path).contains("junk.rnafm"));
    }
}
