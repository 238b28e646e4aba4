//! `sha256_file`, `Sha256` and `seed_from_variant_key`.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use reelbench_core::{hash, seed};

use crate::buffer::ContiguousBytes;
use crate::errors::{detach, CoreError};

/// Below this many bytes, releasing the GIL costs more than it saves.
const DETACH_THRESHOLD: usize = 2048;

/// SHA-256 of a file as lowercase hex, streamed in chunks with the GIL released.
#[pyfunction]
fn sha256_file(py: Python<'_>, path: PathBuf) -> PyResult<String> {
    detach(py, move || hash::sha256_file_hex(&path))
}

/// Incremental SHA-256 hasher (like hashlib.sha256, releases the GIL).
#[pyclass(name = "Sha256", module = "reelbench._native")]
#[derive(Clone)]
struct Sha256 {
    inner: hash::Hasher,
}

#[pymethods]
impl Sha256 {
    #[new]
    #[pyo3(signature = (data = None))]
    fn new(py: Python<'_>, data: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let mut this = Self {
            inner: hash::Hasher::new(),
        };
        if let Some(data) = data {
            this.update(py, data)?;
        }
        Ok(this)
    }

    /// Feed any C-contiguous bytes-like object, without copying it.
    fn update(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let buf = ContiguousBytes::get(data, "Sha256.update()")?;
        let bytes = buf.as_slice();
        if bytes.len() >= DETACH_THRESHOLD {
            let inner = &mut self.inner;
            py.detach(|| inner.update(bytes));
        } else {
            self.inner.update(bytes);
        }
        Ok(())
    }

    /// The 32-byte digest of everything fed so far.
    fn digest<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.digest())
    }

    /// The digest as 64 lowercase hex characters.
    fn hexdigest(&self) -> String {
        self.inner.hexdigest()
    }

    /// An independent copy of the hasher's state.
    fn copy(&self) -> Self {
        self.clone()
    }

    #[getter]
    fn name(&self) -> &'static str {
        "sha256"
    }

    #[getter]
    fn digest_size(&self) -> usize {
        32
    }

    #[getter]
    fn block_size(&self) -> usize {
        64
    }
}

/// The seed of one run: SHA-256 of the domain-separated key, mod 2**bits.
#[pyfunction]
#[pyo3(signature = (variant_key, item_id = "", repeat = 0, bits = None), text_signature = "(variant_key, item_id='', repeat=0, bits=32)")]
fn seed_from_variant_key(
    variant_key: &str,
    item_id: &str,
    repeat: u64,
    bits: Option<&Bound<'_, PyAny>>,
) -> PyResult<u64> {
    // Any int out of range, however large, is a ValueError (not OverflowError).
    let bits = match bits {
        None => 32,
        Some(b) => b
            .extract::<i64>()
            .map_or(0, |b| u32::try_from(b).unwrap_or(0)),
    };
    seed::seed_from_variant_key(variant_key, item_id, repeat, bits).map_err(|e| CoreError(e).into())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(sha256_file, m)?)?;
    m.add_function(wrap_pyfunction!(seed_from_variant_key, m)?)?;
    m.add_class::<Sha256>()?;
    m.add("SHA256_CHUNK_SIZE", hash::CHUNK_SIZE)?;
    Ok(())
}
