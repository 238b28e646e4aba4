//! Frame kernels (`ssim`, `psnr`, `mse`, `mad`, `luma_stats`, `sharpness`,
//! `black_share`) and the `FrameMetrics` accumulator.
//!
//! Frames are 2-D uint8 numpy arrays borrowed without copying: C-contiguous
//! or row-strided views (a PyAV plane viewed with its `line_size`). Only
//! arrays whose pixels within a row are not adjacent are copied first.
//! `FrameMetrics.push_frame` takes decoded PyAV frames themselves: their
//! planes are read through the buffer protocol with their `line_size`, with
//! no copy and no numpy on the way.

use numpy::{
    PyArrayDescrMethods, PyArrayMethods, PyReadonlyArray2, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use reelbench_core::metrics::{self as core, Config, FrameRecord, Groups, Plane, Yuv};
use reelbench_core::Error;

use crate::buffer::ContiguousBytes;
use crate::errors::{detach, CoreError};

/// The planes of a decoded PyAV frame (`frame.planes`), borrowed: bytes and
/// `(width, height, line_size)` of each.
struct AvFrame {
    planes: Vec<(ContiguousBytes, usize, usize, usize)>,
    full_range: bool,
}

/// Is the frame full range? As FFmpeg's `siti` decides: the frame's
/// `color_range` when set (2 = JPEG), else the `yuvj*` pixel formats.
fn is_full_range(obj: &Bound<'_, PyAny>) -> bool {
    let range: i64 = obj
        .getattr("color_range")
        .and_then(|r| r.extract())
        .unwrap_or(0);
    match range {
        1 => false,
        2 => true,
        _ => obj
            .getattr("format")
            .and_then(|f| f.getattr("name"))
            .and_then(|n| n.extract::<String>())
            .is_ok_and(|n| n.starts_with("yuvj")),
    }
}

impl AvFrame {
    /// Borrow the first `count` planes of `obj` (Y, then U and V).
    fn extract(obj: &Bound<'_, PyAny>, count: usize, what: &str) -> PyResult<Self> {
        let planes = obj
            .getattr("planes")
            .map_err(|_| PyTypeError::new_err(format!("{what} must be a decoded av.VideoFrame")))?;
        let mut out = Vec::with_capacity(count);
        for (i, plane) in planes.try_iter()?.enumerate() {
            if i == count {
                break;
            }
            let plane = plane?;
            let width: usize = plane.getattr("width")?.extract()?;
            let height: usize = plane.getattr("height")?.extract()?;
            let line: usize = plane.getattr("line_size")?.extract()?;
            out.push((ContiguousBytes::get(&plane, what)?, width, height, line));
        }
        if out.len() < count {
            return Err(PyTypeError::new_err(format!(
                "{what} has {} plane(s); {count} are needed (convert it to yuv420p first)",
                out.len()
            )));
        }
        Ok(Self {
            planes: out,
            full_range: is_full_range(obj),
        })
    }

    fn plane(&self, i: usize) -> Result<Plane<'_>, Error> {
        let (bytes, w, h, line) = &self.planes[i];
        Plane::new(bytes.as_slice(), *w, *h, *line)
    }

    fn yuv(&self) -> Result<Yuv<'_>, Error> {
        Ok(Yuv {
            y: self.plane(0)?,
            u: self.planes.get(1).map(|_| self.plane(1)).transpose()?,
            v: self.planes.get(2).map(|_| self.plane(2)).transpose()?,
            full_range: self.full_range,
        })
    }
}

/// A borrowed frame: the numpy array, plus a packed copy when its layout
/// cannot be read row by row.
struct Frame<'py> {
    array: PyReadonlyArray2<'py, u8>,
    copy: Option<Vec<u8>>,
}

impl<'py> Frame<'py> {
    fn extract(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<Self> {
        let Ok(untyped) = obj.cast::<PyUntypedArray>() else {
            let type_name = obj
                .get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| "object".into());
            return Err(PyTypeError::new_err(format!(
                "{what} must be a 2-D numpy array of uint8 (height, width), got {type_name}"
            )));
        };
        if untyped.ndim() != 2 || !untyped.dtype().is_equiv_to(&numpy::dtype::<u8>(obj.py())) {
            return Err(PyTypeError::new_err(format!(
                "{what} must be a 2-D numpy array of uint8 (height, width), got a {}-D array of {}",
                untyped.ndim(),
                untyped.dtype()
            )));
        }
        let array: PyReadonlyArray2<'py, u8> = obj.extract()?;
        let view = array.as_array();
        let (h, w) = view.dim();
        let strides = view.strides();
        let rows_readable = (w <= 1 || strides[1] == 1) && (h <= 1 || strides[0] >= w as isize);
        let copy = (!rows_readable).then(|| view.iter().copied().collect());
        Ok(Self { array, copy })
    }

    fn plane(&self) -> Result<Plane<'_>, Error> {
        let view = self.array.as_array();
        let (h, w) = view.dim();
        if let Some(copy) = &self.copy {
            return Plane::packed(copy, w, h);
        }
        if h == 0 || w == 0 {
            return Plane::packed(&[], w, h);
        }
        let stride = if h == 1 {
            w
        } else {
            view.strides()[0] as usize
        };
        let len = (h - 1) * stride + w;
        // SAFETY: the array is borrowed read-only for the lifetime of `self`
        // and its rows, `stride` bytes apart with unit column stride, lie
        // within `len` bytes from the data pointer (checked in `extract`).
        let data = unsafe { std::slice::from_raw_parts(view.as_ptr(), len) };
        Plane::new(data, w, h, stride)
    }
}

fn pair<'py>(a: &Bound<'py, PyAny>, b: &Bound<'py, PyAny>) -> PyResult<(Frame<'py>, Frame<'py>)> {
    Ok((Frame::extract(a, "a")?, Frame::extract(b, "b")?))
}

/// SSIM of two frames as FFmpeg's `ssim` filter computes it (NaN below 8x8).
#[pyfunction]
fn ssim(py: Python<'_>, a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>) -> PyResult<f64> {
    let (fa, fb) = pair(a, b)?;
    let (pa, pb) = (
        fa.plane().map_err(CoreError)?,
        fb.plane().map_err(CoreError)?,
    );
    detach(py, move || core::ssim(pa, pb))
}

/// PSNR in dB as FFmpeg's `psnr` filter computes it; `inf` for identical frames.
#[pyfunction]
fn psnr(py: Python<'_>, a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>) -> PyResult<f64> {
    let (fa, fb) = pair(a, b)?;
    let (pa, pb) = (
        fa.plane().map_err(CoreError)?,
        fb.plane().map_err(CoreError)?,
    );
    detach(py, move || core::psnr(pa, pb))
}

/// Mean squared error of two frames.
#[pyfunction]
fn mse(py: Python<'_>, a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>) -> PyResult<f64> {
    let (fa, fb) = pair(a, b)?;
    let (pa, pb) = (
        fa.plane().map_err(CoreError)?,
        fb.plane().map_err(CoreError)?,
    );
    detach(py, move || core::mse(pa, pb))
}

/// Mean absolute difference of two frames.
#[pyfunction]
fn mad(py: Python<'_>, a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>) -> PyResult<f64> {
    let (fa, fb) = pair(a, b)?;
    let (pa, pb) = (
        fa.plane().map_err(CoreError)?,
        fb.plane().map_err(CoreError)?,
    );
    detach(py, move || core::mad(pa, pb))
}

/// Mean and population standard deviation of the pixels.
#[pyfunction]
fn luma_stats(py: Python<'_>, a: &Bound<'_, PyAny>) -> PyResult<(f64, f64)> {
    let fa = Frame::extract(a, "a")?;
    let pa = fa.plane().map_err(CoreError)?;
    detach(py, move || Ok(core::luma_stats(pa)))
}

/// Variance of the 4-neighbour Laplacian over interior pixels (NaN below 3x3).
#[pyfunction]
fn sharpness(py: Python<'_>, a: &Bound<'_, PyAny>) -> PyResult<f64> {
    let fa = Frame::extract(a, "a")?;
    let pa = fa.plane().map_err(CoreError)?;
    detach(py, move || Ok(core::sharpness(pa)))
}

/// Share of pixels strictly below `threshold`.
#[pyfunction]
// Defaults are literals so the text signature shows them; they equal `Config::default()`.
#[pyo3(signature = (a, threshold = 38))]
fn black_share(py: Python<'_>, a: &Bound<'_, PyAny>, threshold: u8) -> PyResult<f64> {
    let fa = Frame::extract(a, "a")?;
    let pa = fa.plane().map_err(CoreError)?;
    detach(py, move || Ok(core::black_share(pa, threshold)))
}

/// Streaming per-frame metrics of one video; see docs/metrics.md.
#[pyclass(name = "FrameMetrics", module = "reelbench._native")]
struct FrameMetrics {
    inner: core::FrameMetrics,
}

/// `+inf`/NaN are not JSON: they become `None`.
fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite())
}

fn record_dict<'py>(
    py: Python<'py>,
    r: &FrameRecord,
    groups: &Groups,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("index", r.index)?;
    for name in core::METRIC_NAMES {
        if groups.computes(name) {
            d.set_item(name, finite(r.get(name)))?;
        }
    }
    Ok(d)
}

#[pymethods]
impl FrameMetrics {
    #[new]
    #[pyo3(signature = (
        black_threshold = 38,
        black_frame_share = 0.98,
        frozen_mad = 0.5,
        scene_cut_ssim = 0.35,
        scene_cut_mad = 20.0,
        dynamic_threshold = 0.005,
        groups = None,
        flow = true,
    ))]
    // Python's keyword arguments, one per setting.
    #[allow(clippy::too_many_arguments)]
    fn new(
        black_threshold: u8,
        black_frame_share: f64,
        frozen_mad: f64,
        scene_cut_ssim: f64,
        scene_cut_mad: f64,
        dynamic_threshold: f64,
        groups: Option<Vec<String>>,
        flow: bool,
    ) -> PyResult<Self> {
        let groups = match groups {
            Some(names) => Groups::from_names(&names).map_err(CoreError)?,
            None => Groups::default(),
        };
        let inner = core::FrameMetrics::new(Config {
            black_threshold,
            black_frame_share,
            frozen_mad,
            scene_cut_ssim,
            scene_cut_mad,
            dynamic_threshold,
            groups,
            flow,
        })
        .map_err(CoreError)?;
        Ok(Self { inner })
    }

    /// Measure the next decoded PyAV frame (8-bit planar YUV or gray), against
    /// the `reference` frame if given; U and V are read for the chroma group.
    #[pyo3(signature = (frame, reference = None))]
    fn push_frame(
        &mut self,
        py: Python<'_>,
        frame: &Bound<'_, PyAny>,
        reference: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let count = if self.inner.config().groups.chroma && reference.is_some() {
            3
        } else {
            1
        };
        let f = AvFrame::extract(frame, count, "frame")?;
        let r = reference
            .map(|r| AvFrame::extract(r, count, "reference"))
            .transpose()?;
        let yuv = f.yuv().map_err(CoreError)?;
        let ref_yuv = r.as_ref().map(|r| r.yuv()).transpose().map_err(CoreError)?;
        let inner = &mut self.inner;
        detach(py, move || inner.push_yuv(yuv, ref_yuv).map(|_| ()))
    }

    /// Measure the next frame (2-D uint8 Y plane), against `reference` if given.
    #[pyo3(signature = (y, reference = None))]
    fn push(
        &mut self,
        py: Python<'_>,
        y: &Bound<'_, PyAny>,
        reference: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let fy = Frame::extract(y, "y")?;
        let fr = reference
            .map(|r| Frame::extract(r, "reference"))
            .transpose()?;
        let py_plane = fy.plane().map_err(CoreError)?;
        let ref_plane = fr
            .as_ref()
            .map(|f| f.plane())
            .transpose()
            .map_err(CoreError)?;
        let inner = &mut self.inner;
        detach(py, move || inner.push(py_plane, ref_plane).map(|_| ()))
    }

    /// Per-frame records: dicts with `index` and every metric (None when n/a).
    fn frames<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let groups = self.inner.config().groups;
        self.inner
            .records()
            .iter()
            .map(|r| record_dict(py, r, &groups))
            .collect()
    }

    /// Whole-video summary: stats per metric plus flicker, frozen, black, cuts, pooled PSNR.
    fn summary<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.summary();
        let d = PyDict::new(py);
        for (name, st) in &s.metrics {
            let m = PyDict::new(py);
            for (k, v) in [
                ("mean", st.mean),
                ("min", st.min),
                ("max", st.max),
                ("p05", st.p05),
                ("p50", st.p50),
                ("p95", st.p95),
            ] {
                m.set_item(k, finite(Some(v)))?;
            }
            d.set_item(*name, m)?;
        }
        let groups = self.inner.config().groups;
        if groups.temporal {
            d.set_item("temporal_flicker", s.temporal_flicker)?;
            d.set_item("frozen_ratio", s.frozen_ratio)?;
        }
        if groups.frame {
            d.set_item("black_ratio", s.black_ratio)?;
        }
        if groups.temporal {
            d.set_item("scene_cuts", s.scene_cuts)?;
            d.set_item("psnr_prev_pooled", finite(s.psnr_prev_pooled))?;
        }
        if groups.reference {
            d.set_item("psnr_ref_pooled", finite(s.psnr_ref_pooled))?;
        }
        if groups.chroma {
            d.set_item("psnr_avg_pooled", finite(s.psnr_avg_pooled))?;
        }
        if groups.motion {
            d.set_item("dynamic_degree", s.dynamic_degree)?;
        }
        Ok(d)
    }

    /// The metric groups this accumulator computes.
    #[getter]
    fn groups(&self) -> Vec<&'static str> {
        self.inner.config().groups.names()
    }

    /// Number of frames pushed.
    #[getter]
    fn frame_count(&self) -> usize {
        self.inner.len()
    }

    #[getter]
    fn black_threshold(&self) -> u8 {
        self.inner.config().black_threshold
    }

    #[getter]
    fn black_frame_share(&self) -> f64 {
        self.inner.config().black_frame_share
    }

    #[getter]
    fn frozen_mad(&self) -> f64 {
        self.inner.config().frozen_mad
    }

    #[getter]
    fn scene_cut_ssim(&self) -> f64 {
        self.inner.config().scene_cut_ssim
    }

    #[getter]
    fn scene_cut_mad(&self) -> f64 {
        self.inner.config().scene_cut_mad
    }

    #[getter]
    fn dynamic_threshold(&self) -> f64 {
        self.inner.config().dynamic_threshold
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __repr__(&self) -> String {
        format!("FrameMetrics(frames={})", self.inner.len())
    }
}

/// Dense optical flow from `a` to `b` (2-D uint8, same shape) at their own
/// size, with reelbench's fixed DIS parameters: a float32 array of shape
/// `(height, width, 2)` holding `(dx, dy)` per pixel, OpenCV's layout. For
/// tests and benchmarks; the metrics compute it inside `FrameMetrics`.
#[pyfunction]
fn optical_flow<'py>(
    py: Python<'py>,
    a: &Bound<'py, PyAny>,
    b: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, numpy::PyArray3<f32>>> {
    let (fa, fb) = pair(a, b)?;
    let (pa, pb) = (
        fa.plane().map_err(CoreError)?,
        fb.plane().map_err(CoreError)?,
    );
    let flow = detach(py, move || {
        reelbench_core::metrics::same_shape(&pa, &pb)?;
        let (i0, i1) = (
            core::flow::Image::from_plane(pa),
            core::flow::Image::from_plane(pb),
        );
        Ok(core::flow::dense_flow_of(
            i0,
            i1,
            &core::flow::FlowParams::default(),
        ))
    })?;
    let (h, w) = (flow.height, flow.width);
    let mut out = vec![0.0f32; 2 * h * w];
    for ((o, &u), &v) in out.chunks_exact_mut(2).zip(&flow.u).zip(&flow.v) {
        o[0] = u;
        o[1] = v;
    }
    numpy::PyArray1::from_vec(py, out).reshape([h, w, 2])
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(optical_flow, m)?)?;
    m.add_function(wrap_pyfunction!(ssim, m)?)?;
    m.add_function(wrap_pyfunction!(psnr, m)?)?;
    m.add_function(wrap_pyfunction!(mse, m)?)?;
    m.add_function(wrap_pyfunction!(mad, m)?)?;
    m.add_function(wrap_pyfunction!(luma_stats, m)?)?;
    m.add_function(wrap_pyfunction!(sharpness, m)?)?;
    m.add_function(wrap_pyfunction!(black_share, m)?)?;
    m.add_class::<FrameMetrics>()?;
    m.add("KERNEL_ISA", core::kernel_isa())?;
    m.add("METRIC_GROUPS", core::GROUP_NAMES.to_vec())?;
    Ok(())
}
