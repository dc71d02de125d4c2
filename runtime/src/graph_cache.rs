//! Each graph in ONNX Runtime's own format (ORT), saved on its first load and then used in
//! place, so that later loads skip parsing, optimising and copying its weights.
//!
//! Why: building a session from ONNX protobuf copies every weight (protobuf, then tensors)
//! and optimises the graph again on every run; at the paper configuration that was 0.17–0.47 s
//! per large graph here, most of a 0.7 s load. An ORT-format file mapped read-only and
//! handed to ONNX Runtime with `session.use_ort_model_bytes_directly` and
//! `session.use_ort_model_bytes_for_initializers` is used where it lies: 0.035 s for the
//! 267 MB heads graph (ORT 1.31.1, measured). The saved graph is optimised at the extended
//! level, which holds no hardware-specific layout (the session that saves it runs the same
//! graph; on the paper graphs its outputs were bit-identical to the all-level graph's).
//!
//! A file is named by the bundle member's sha256 (checked, or remembered as checked, before
//! the cache is consulted) and by the ONNX Runtime build, so another bundle or another
//! ONNX Runtime never reads it. Beside it a record holds the file's identity when it was
//! written (as in [`crate::checked_cache`]); a file that was changed, replaced or truncated
//! since no longer matches and is rebuilt from the bundle. The cache lives with the checked
//! records (`$RNAFM_CACHE_DIR`, empty: off; `RNAFM_GRAPH_CACHE=0` turns off this cache alone),
//! under `graphs/`; it costs about the bundle's
//! size on disk per bundle and ONNX Runtime version, and may be deleted at any time.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::checked_cache::FileIdentity;

/// The mapped ORT-format files whose bytes sessions use in place; they must outlive those
/// sessions (a struct that holds both declares this after its sessions: fields drop in
/// order).
#[derive(Default)]
pub struct Mapped(Vec<Arc<memmap2::Mmap>>);

impl Mapped {
    pub fn push(&mut self, map: Arc<memmap2::Mmap>) {
        self.0.push(map);
    }

    pub fn extend(&mut self, other: Mapped) {
        self.0.extend(other.0);
    }
}

impl std::fmt::Debug for Mapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mapped({} graphs)", self.0.len())
    }
}

/// Hands a mapped file's pages back to the page cache (MADV_DONTNEED).
pub fn drop_pages(map: &memmap2::Mmap) {
    // SAFETY: a read-only file mapping; after MADV_DONTNEED a read faults the same file
    // bytes back in, so a session reading through it sees the same contents. Failure only
    // means the pages stay mapped.
    let _ = unsafe { map.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    file: FileIdentity,
}

/// The folder of saved graphs for one ONNX Runtime build.
#[derive(Debug, Clone)]
pub struct GraphCache {
    dir: PathBuf,
    /// Names the ONNX Runtime build; read once ONNX Runtime is loaded (the first lookup or
    /// save comes after a session factory loaded it).
    build: std::sync::OnceLock<String>,
}

impl GraphCache {
    /// The cache under `cache_dir` (see [`crate::checked_cache::default_dir`]).
    pub fn new(cache_dir: &Path) -> Self {
        GraphCache {
            dir: cache_dir.join("graphs"),
            build: std::sync::OnceLock::new(),
        }
    }

    fn build(&self) -> &str {
        self.build
            .get_or_init(|| hex::encode(Sha256::digest(ort::info().as_bytes()))[..16].to_string())
    }

    /// The cache in the default folder, if there is one and `RNAFM_GRAPH_CACHE` is not `0`.
    pub fn default_location() -> Option<Self> {
        if std::env::var_os("RNAFM_GRAPH_CACHE").is_some_and(|v| v == "0") {
            return None;
        }
        crate::checked_cache::default_dir().map(|d| Self::new(&d))
    }

    fn stem(&self, sha256: &str) -> PathBuf {
        self.dir
            .join(format!("{}-ort{}", sha256.to_lowercase(), self.build()))
    }

    fn file(&self, sha256: &str) -> PathBuf {
        self.stem(sha256).with_extension("ort")
    }

    fn record(&self, sha256: &str) -> PathBuf {
        self.stem(sha256).with_extension("json")
    }

    /// The saved graph of the member with this sha256, mapped, if it is there unchanged.
    pub fn lookup(&self, sha256: &str) -> Option<Arc<memmap2::Mmap>> {
        let file = std::fs::File::open(self.file(sha256)).ok()?;
        let identity = FileIdentity::of(&file)?;
        let record: Record =
            serde_json::from_slice(&std::fs::read(self.record(sha256)).ok()?).ok()?;
        if record.file != identity {
            tracing::debug!(
                sha256,
                "saved graph changed since it was written; rebuilding it"
            );
            return None;
        }
        // SAFETY: the map is only read. A process that rewrites the file in place while it
        // is mapped could change what a session reads; the cache's files are written only
        // under a temporary name and renamed into place, never rewritten.
        let map = unsafe { memmap2::Mmap::map(&file) }.ok()?;
        Some(Arc::new(map))
    }

    /// Builds a session with `build`, which is given the temporary path to which ONNX
    /// Runtime saves the optimised graph; the file is then renamed into place and its
    /// identity recorded. Failing to save costs only the cache: the caller builds again
    /// without it.
    pub fn save<S>(
        &self,
        sha256: &str,
        build: impl FnOnce(&Path) -> crate::error::Result<S>,
    ) -> crate::error::Result<S> {
        let path = self.file(sha256);
        let mut session = None;
        crate::atomic::write_atomic_via_path(&path, |tmp| {
            session = Some(build(tmp)?);
            Ok(())
        })?;
        let session = session.ok_or_else(|| {
            crate::error::Error::Runtime("the graph cache built no session".into())
        })?;
        // The identity is recorded right after the rename: a later change to the file alters
        // its inode, size or status-change time, except a same-size rewrite in place within
        // the file system's timestamp granularity, which nothing in rnafm does.
        let identity = std::fs::File::open(&path)
            .ok()
            .and_then(|f| FileIdentity::of(&f));
        if let Some(file) = identity {
            let record = Record { file };
            let written = crate::atomic::write_atomic(&self.record(sha256), |w| {
                serde_json::to_writer(w, &record).map_err(std::io::Error::other)
            });
            if let Err(e) = written {
                tracing::debug!("graph cache record not written: {e}");
            }
        }
        Ok(session)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(dir: &Path) -> GraphCache {
        GraphCache {
            dir: dir.join("graphs"),
            build: "test".to_string().into(),
        }
    }

    #[test]
    fn a_saved_file_is_found_until_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path());
        assert!(c.lookup("ab").is_none());
        let got = c
            .save("ab", |tmp| {
                std::fs::write(tmp, b"graph bytes").unwrap();
                Ok(7)
            })
            .unwrap();
        assert_eq!(got, 7);
        assert_eq!(&c.lookup("AB").expect("saved")[..], b"graph bytes");
        assert!(c.lookup("cd").is_none());
        // Replaced (as a copy or an editor would): the record no longer matches.
        let path = c.file("ab");
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"graph bytes").unwrap();
        assert!(c.lookup("ab").is_none());
    }

    #[test]
    fn a_failed_build_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let c = cache(dir.path());
        let r: crate::error::Result<()> = c.save("ab", |tmp| {
            std::fs::write(tmp, b"half").unwrap();
            Err(crate::error::Error::Runtime("no".into()))
        });
        assert!(r.is_err());
        assert!(c.lookup("ab").is_none());
        let left: Vec<_> = std::fs::read_dir(dir.path().join("graphs"))
            .unwrap()
            .flatten()
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
