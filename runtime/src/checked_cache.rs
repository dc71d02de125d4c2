//! Remembers which bundle files passed their sha256 checks, so that a second run on an
//! unchanged file does not hash its ~1 GB again (about 0.2 s of each large graph's load).
//!
//! A record names the bundle by its manifest's sha256 and holds the file's identity:
//! device, inode, size, and the modification and status-change times in nanoseconds. Any
//! write to the file, a replacement, a copy or a `touch` changes one of them (the
//! status-change time cannot be set back by a user), and a changed identity means the
//! members are hashed again. Like git's index, a file changed within the clock's
//! granularity of its last check could keep its times, so a check is remembered only for
//! files whose times are older than [`SETTLED`]. What this does not catch is a change made
//! below the file system (a failing disk); `rnafm-run inspect` hashes every member always.
//!
//! The records live in `$RNAFM_CACHE_DIR` (empty: remember nothing), else
//! `$XDG_CACHE_HOME/rnafm`, else `~/.cache/rnafm`, under `checked/`. Failing to read or
//! write them only costs the hashing.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How old a file's times must be for its check to be remembered.
pub const SETTLED: Duration = Duration::from_secs(1);

/// What changes when a file is written, replaced or touched.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileIdentity {
    pub dev: u64,
    pub ino: u64,
    pub len: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
}

impl FileIdentity {
    #[cfg(unix)]
    pub fn of(file: &std::fs::File) -> Option<FileIdentity> {
        use std::os::unix::fs::MetadataExt;
        let m = file.metadata().ok()?;
        let ns = |s: i64, n: i64| s as i128 * 1_000_000_000 + n as i128;
        Some(FileIdentity {
            dev: m.dev(),
            ino: m.ino(),
            len: m.size(),
            mtime_ns: ns(m.mtime(), m.mtime_nsec()),
            ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        })
    }

    #[cfg(not(unix))]
    pub fn of(_file: &std::fs::File) -> Option<FileIdentity> {
        None
    }

    /// Whether both times are at least [`SETTLED`] before `now`.
    fn settled(&self, now: SystemTime) -> bool {
        let Ok(now) = now.duration_since(SystemTime::UNIX_EPOCH) else {
            return false;
        };
        let limit = now.as_nanos() as i128 - SETTLED.as_nanos() as i128;
        self.mtime_ns <= limit && self.ctime_ns <= limit
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    file: FileIdentity,
    members: Vec<String>,
}

/// The cache folder, if any (see the module comment).
pub fn default_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("RNAFM_CACHE_DIR") {
        return (!d.is_empty()).then(|| PathBuf::from(d));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("rnafm"))
}

fn record_path(dir: &Path, manifest_sha256: &str) -> PathBuf {
    dir.join("checked").join(format!("{manifest_sha256}.json"))
}

/// The members remembered as checked for this manifest and file, if the record matches.
pub fn recall(dir: &Path, manifest_sha256: &str, file: &FileIdentity) -> Vec<String> {
    let Ok(text) = std::fs::read(record_path(dir, manifest_sha256)) else {
        return Vec::new();
    };
    match serde_json::from_slice::<Record>(&text) {
        Ok(r) if r.file == *file => r.members,
        _ => Vec::new(),
    }
}

/// Remembers `members` as checked for this manifest and file, unless the file's times are
/// too recent to tell a later change apart. Returns whether a record was written.
pub fn remember(
    dir: &Path,
    manifest_sha256: &str,
    file: &FileIdentity,
    members: Vec<String>,
) -> bool {
    if members.is_empty() || !file.settled(SystemTime::now()) {
        return false;
    }
    let path = record_path(dir, manifest_sha256);
    let record = Record {
        file: file.clone(),
        members,
    };
    let written = path
        .parent()
        .map(std::fs::create_dir_all)
        .transpose()
        .map_err(|e| e.to_string())
        .and_then(|_| {
            crate::atomic::write_atomic(&path, |w| {
                serde_json::to_writer(w, &record).map_err(std::io::Error::other)
            })
            .map_err(|e| e.to_string())
        });
    match written {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(
                "not remembering the bundle's checks in {}: {e}",
                dir.display()
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_matches_only_the_same_file_identity() {
        let dir = tempfile::tempdir().unwrap();
        let old = FileIdentity {
            dev: 1,
            ino: 2,
            len: 3,
            mtime_ns: 1_000_000_000,
            ctime_ns: 1_000_000_000,
        };
        assert!(remember(dir.path(), "abc", &old, vec!["heads.onnx".into()]));
        assert_eq!(recall(dir.path(), "abc", &old), ["heads.onnx"]);
        assert!(recall(dir.path(), "abd", &old).is_empty());
        for changed in [
            FileIdentity {
                len: 4,
                ..old.clone()
            },
            FileIdentity {
                ino: 5,
                ..old.clone()
            },
            FileIdentity {
                ctime_ns: old.ctime_ns + 1,
                ..old.clone()
            },
            FileIdentity {
                mtime_ns: old.mtime_ns + 1,
                ..old.clone()
            },
        ] {
            assert!(recall(dir.path(), "abc", &changed).is_empty());
        }
        // A file changed just now is not remembered: a change within the clock's
        // granularity could keep its times.
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i128;
        let fresh = FileIdentity {
            ctime_ns: now,
            ..old
        };
        assert!(!remember(dir.path(), "fresh", &fresh, vec!["x".into()]));
        assert!(recall(dir.path(), "fresh", &fresh).is_empty());
    }
}
