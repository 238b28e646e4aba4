//! The one error type of the core; the bindings map it to Python exceptions.

use std::io;
use std::path::PathBuf;

/// Everything the core can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a named file; keeps the OS error so bindings can pick
    /// the matching OSError subclass.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Two frames that must have the same shape do not.
    #[error("frame shapes differ: {a:?} vs {b:?} (height, width)")]
    ShapeMismatch {
        a: (usize, usize),
        b: (usize, usize),
    },
    /// An argument outside its documented range.
    #[error("{0}")]
    InvalidArgument(String),
}

/// Result alias used throughout the core.
pub type Result<T> = std::result::Result<T, Error>;
