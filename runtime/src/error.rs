//! The runtime's error type. Every variant names the file it is about, so a CLI can print
//! one line that tells the user which input is wrong and how.

use std::path::{Path, PathBuf};

/// Result alias used throughout the runtime.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened, read or written. The I/O error is part of the message
    /// and deliberately not a `source`: CLIs print the chain (`{:#}`), which would repeat it.
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    /// The file was read but its content is wrong; `msg` says where and what.
    #[error("{path}: {msg}")]
    Invalid { path: PathBuf, msg: String },
    /// ONNX Runtime could not be found or failed.
    #[error("{0}")]
    Runtime(String),
    /// What was asked for does not fit together (inputs, options); a CLI exits with 2.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            err: source,
        }
    }

    pub fn invalid(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Invalid {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }
}
