//! Borrow any contiguous bytes-like object (bytes, bytearray, memoryview,
//! numpy array of any dtype) as `&[u8]` without copying, like hashlib does.

use std::ffi::c_int;
use std::mem::MaybeUninit;

use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;

/// A held `Py_buffer`, released (with the GIL) on drop.
pub struct ContiguousBytes {
    view: Box<ffi::Py_buffer>,
}

// SAFETY: the exporter keeps the memory alive and unmoved while the buffer is
// held; we only read it. Release happens in Drop, which re-attaches the GIL.
unsafe impl Send for ContiguousBytes {}
unsafe impl Sync for ContiguousBytes {}

impl ContiguousBytes {
    /// Request a C-contiguous byte view (`PyBUF_SIMPLE`), as hashlib does.
    pub fn get(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Self> {
        let mut view = Box::new(MaybeUninit::<ffi::Py_buffer>::uninit());
        // SAFETY: obj is a live object; view points to writable storage.
        let rc: c_int =
            unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), view.as_mut_ptr(), ffi::PyBUF_SIMPLE) };
        if rc != 0 {
            let cause = PyErr::fetch(obj.py());
            let type_name = obj
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| "object".into());
            let err = PyBufferError::new_err(format!(
                "{what} needs a C-contiguous bytes-like object; got {type_name} ({}). \
                 Pass bytes(data) or numpy.ascontiguousarray(data) instead.",
                cause.value(obj.py())
            ));
            err.set_cause(obj.py(), Some(cause));
            return Err(err);
        }
        // SAFETY: PyObject_GetBuffer succeeded, so the struct is initialised.
        let view = unsafe { Box::from_raw(Box::into_raw(view).cast::<ffi::Py_buffer>()) };
        Ok(Self { view })
    }

    /// The bytes, valid as long as `self` lives.
    pub fn as_slice(&self) -> &[u8] {
        let len = self.view.len as usize;
        if len == 0 {
            return &[];
        }
        // SAFETY: a simple buffer is `len` contiguous readable bytes at `buf`.
        unsafe { std::slice::from_raw_parts(self.view.buf as *const u8, len) }
    }
}

impl Drop for ContiguousBytes {
    fn drop(&mut self) {
        Python::attach(|_| {
            // SAFETY: the view was filled by a successful PyObject_GetBuffer.
            unsafe { ffi::PyBuffer_Release(&mut *self.view) }
        });
    }
}
