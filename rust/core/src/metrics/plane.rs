//! A borrowed 8-bit plane with a row stride (PyAV planes and numpy views
//! have `stride >= width`): the one input type of every kernel.

use crate::{Error, Result};

/// A read-only `height x width` 8-bit plane whose rows start `stride` bytes apart.
#[derive(Clone, Copy, Debug)]
pub struct Plane<'a> {
    data: &'a [u8],
    width: usize,
    height: usize,
    stride: usize,
}

impl<'a> Plane<'a> {
    /// Wrap `data`; it must hold `height` rows of `width` bytes, `stride` apart
    /// (the last row may be short of the full stride, as in sliced views).
    pub fn new(data: &'a [u8], width: usize, height: usize, stride: usize) -> Result<Self> {
        if width == 0 || height == 0 {
            return Err(Error::InvalidArgument(format!(
                "empty frame ({height} x {width}); frames need at least one pixel"
            )));
        }
        if stride < width {
            return Err(Error::InvalidArgument(format!(
                "row stride {stride} is smaller than the width {width}"
            )));
        }
        let needed = (height - 1) * stride + width;
        if data.len() < needed {
            return Err(Error::InvalidArgument(format!(
                "a {height} x {width} plane with stride {stride} needs {needed} bytes, got {}",
                data.len()
            )));
        }
        Ok(Self {
            data,
            width,
            height,
            stride,
        })
    }

    /// A tightly packed plane (`stride == width`).
    pub fn packed(data: &'a [u8], width: usize, height: usize) -> Result<Self> {
        Self::new(data, width, height, width)
    }

    /// Width in pixels.
    #[inline]
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    #[inline]
    pub fn height(&self) -> usize {
        self.height
    }

    /// `(height, width)`, the numpy order used in error messages.
    #[inline]
    pub fn shape(&self) -> (usize, usize) {
        (self.height, self.width)
    }

    /// Row `y` (exactly `width` bytes).
    #[inline(always)]
    pub fn row(&self, y: usize) -> &'a [u8] {
        let start = y * self.stride;
        &self.data[start..start + self.width]
    }

    /// The `width x height` window whose top-left pixel is `(x, y)`.
    pub fn crop(&self, x: usize, y: usize, width: usize, height: usize) -> Result<Plane<'a>> {
        if x + width > self.width || y + height > self.height {
            return Err(Error::InvalidArgument(format!(
                "crop {width}x{height} at ({x}, {y}) is outside the {}x{} plane",
                self.width, self.height
            )));
        }
        let start = y * self.stride + x;
        Plane::new(&self.data[start..], width, height, self.stride)
    }

    /// Copy the pixels into `out` as a packed plane (reusing its allocation).
    pub fn copy_packed_into(&self, out: &mut Vec<u8>) {
        out.clear();
        out.reserve(self.width * self.height);
        for y in 0..self.height {
            out.extend_from_slice(self.row(y));
        }
    }
}

/// Error unless both planes have the same shape.
pub fn same_shape(a: &Plane<'_>, b: &Plane<'_>) -> Result<()> {
    if a.shape() == b.shape() {
        Ok(())
    } else {
        Err(Error::ShapeMismatch {
            a: a.shape(),
            b: b.shape(),
        })
    }
}
