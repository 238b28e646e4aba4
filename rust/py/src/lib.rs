//! `reelbench._native`: thin PyO3 bindings over `reelbench-core`.
//!
//! Bindings only convert arguments, release the GIL around native work
//! ([`errors::detach`]) and map core errors to Python exceptions.

use pyo3::prelude::*;

mod buffer;
mod errors;
mod hashing;
mod metrics;

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    hashing::register(m)?;
    metrics::register(m)?;
    Ok(())
}
