//! One mapping from core errors to Python exceptions, and the
//! "release the GIL, run, convert the error" helper used by every binding.

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use reelbench_core::Error;

/// Wrapper so `From<Error> for PyErr` can live in this crate.
pub struct CoreError(pub Error);

impl From<Error> for CoreError {
    fn from(e: Error) -> Self {
        CoreError(e)
    }
}

impl From<CoreError> for PyErr {
    fn from(CoreError(e): CoreError) -> PyErr {
        match e {
            // OSError(errno, strerror, filename) picks the matching subclass
            // (FileNotFoundError, IsADirectoryError, PermissionError...) by
            // itself and keeps `.filename`, just like `open()` does.
            Error::Io { path, source } => {
                let filename = path.to_string_lossy().into_owned();
                match source.raw_os_error() {
                    Some(errno) => {
                        let msg = std::io::Error::from_raw_os_error(errno).to_string();
                        let msg = msg.split(" (os error").next().unwrap_or(&msg).to_owned();
                        PyOSError::new_err((errno, msg, filename))
                    }
                    None => PyOSError::new_err(format!("{filename}: {source}")),
                }
            }
            Error::ShapeMismatch { .. } | Error::InvalidArgument(_) => {
                PyValueError::new_err(e.to_string())
            }
        }
    }
}

/// Release the GIL, run `f`, convert a core error into a Python exception.
pub fn detach<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    F: Send + FnOnce() -> Result<T, Error>,
    T: Send,
{
    py.detach(f).map_err(|e| CoreError(e).into())
}
