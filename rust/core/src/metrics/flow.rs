//! Dense optical flow between two 8-bit luma frames: coarse-to-fine dense
//! inverse search (DIS, Kroeger et al. 2016) at a working scale whose long
//! side is at most [`WORKING_LONG_SIDE`] pixels. See docs/adr/0004 for the
//! choice and its measured accuracy and speed.
//!
//! Per pyramid level, coarsest first: a grid of [`PATCH`]` x `[`PATCH`]
//! patches `stride` pixels apart (wider on the finest level) is matched by
//! inverse-compositional Gauss-Newton on the mean-normalized SSD (the Hessian
//! of each patch is computed once from the first frame), with spatial
//! propagation from neighbouring patches in a forward and a backward sweep;
//! the patch flows are then densified by averaging the patches that cover
//! each pixel, weighted by `1 / max(1, |photometric error|)`. The coarser
//! level's dense flow seeds each patch of the next one (sampled at the patch
//! centre only: no level but the finest is upscaled as a whole).
//!
//! Everything works on packed `f32` planes in row order. The patch side is a
//! compile-time constant, so a patch row is one `[f32; 8]` that LLVM keeps in
//! a vector register for the ISA [`super::dispatch`] picks; the second frame
//! carries a replicated border, so patch reads need no per-pixel clamping.

use super::dispatch::multiversion;
use super::plane::Plane;

/// The working scale: frames are box-downscaled by the smallest integer
/// factor that brings their long side to at most this many pixels.
pub const WORKING_LONG_SIDE: usize = 512;

/// A packed `f32` plane (0-255 scale).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

impl Image {
    /// A `width x height` image of zeros.
    pub fn zeros(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            data: pool::zeros(width * height),
        }
    }

    /// A `width x height` image to be written in full (contents unspecified).
    fn for_writing(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            data: pool::take(width * height),
        }
    }

    /// The 8-bit plane as floats, unscaled.
    pub fn from_plane(p: Plane<'_>) -> Self {
        downscale(p, 1)
    }

    #[inline(always)]
    fn at(&self, x: usize, y: usize) -> f32 {
        self.data[y * self.width + x]
    }
}

/// Recycled plane buffers. A flow allocates a few dozen planes of up to a
/// few MB; fresh ones come from `mmap` and cost a page fault per 4 KiB on
/// first touch, more than the flow itself at 320x240. Planes are handed back
/// here when dropped and reused by the next flow on the same thread.
pub(crate) mod pool {
    use std::cell::RefCell;

    /// At most this many bytes are kept per thread.
    const MAX_BYTES: usize = 64 << 20;

    thread_local! {
        static FREE: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
    }

    /// `n` zeros, in a recycled buffer when one is large enough.
    pub(super) fn zeros(n: usize) -> Vec<f32> {
        let mut v = take(n);
        v.fill(0.0);
        v
    }

    /// A buffer of `n` values whose contents are unspecified (stale values of
    /// an earlier plane): for planes that are written in full.
    pub(crate) fn take(n: usize) -> Vec<f32> {
        let reused = FREE.with(|f| {
            let mut f = f.borrow_mut();
            let best = f
                .iter()
                .enumerate()
                .filter(|(_, v)| v.capacity() >= n)
                .min_by_key(|(_, v)| v.capacity())
                .map(|(i, _)| i);
            best.map(|i| f.swap_remove(i))
        });
        match reused {
            Some(mut v) => {
                v.truncate(n);
                if v.len() < n {
                    v.resize(n, 0.0);
                }
                v
            }
            None => vec![0.0; n],
        }
    }

    /// Keep `v` for reuse (dropped instead when the pool is full).
    pub(crate) fn give(v: Vec<f32>) {
        if v.capacity() < 4096 {
            return;
        }
        // `try_with`: during thread teardown the pool may be gone already.
        let _ = FREE.try_with(|f| {
            let mut f = f.borrow_mut();
            let held: usize = f.iter().map(|v| v.capacity() * 4).sum();
            if held + v.capacity() * 4 <= MAX_BYTES {
                f.push(v);
            }
        });
    }
}

impl Drop for Flow {
    fn drop(&mut self) {
        pool::give(std::mem::take(&mut self.u));
        pool::give(std::mem::take(&mut self.v));
    }
}

/// The patch side in pixels (fixed: the kernels are built for it).
pub const PATCH: usize = 8;

/// Replicated border around the second frame of each level, in pixels: a
/// displaced patch is clamped to keep one pixel on the frame, so its reads
/// (`PATCH + 1` samples per row and column) stay inside the border.
const BORDER: usize = 16;

/// The integer downscale factor of the working scale for a `width x height` frame.
pub fn working_factor(width: usize, height: usize) -> usize {
    width.max(height).div_ceil(WORKING_LONG_SIDE).max(1)
}

multiversion! {
    /// Box-average `k x k` blocks of `p` (the partial blocks at the right
    /// and bottom edges are dropped; at least one pixel is kept).
    pub fn downscale(p: Plane<'_>, k: usize) -> Image {
        let k = k.max(1);
        let w = (p.width() / k).max(1);
        let h = (p.height() / k).max(1);
        let kx = k.min(p.width());
        let ky = k.min(p.height());
        let mut out = Image::for_writing(w, h);
        // Column sums of the block row first (contiguous: vectorizes), then
        // groups of `kx` columns: the same integer sums as block by block.
        let cols = w * kx;
        let mut acc = vec![0u32; cols];
        let norm = 1.0 / (kx * ky) as f32;
        for oy in 0..h {
            acc.iter_mut().for_each(|a| *a = 0);
            for dy in 0..ky {
                let row = &p.row(oy * ky + dy)[..cols];
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a += v as u32;
                }
            }
            let dst = &mut out.data[oy * w..(oy + 1) * w];
            if kx == 1 {
                for (d, &a) in dst.iter_mut().zip(&acc) {
                    *d = a as f32 * norm;
                }
            } else {
                for (d, block) in dst.iter_mut().zip(acc.chunks_exact(kx)) {
                    *d = block.iter().sum::<u32>() as f32 * norm;
                }
            }
        }
        out
    }
}

/// Halve an image by 2x2 box averaging (odd last row/column dropped).
fn half(img: &Image) -> Image {
    let w = (img.width / 2).max(1);
    let h = (img.height / 2).max(1);
    let mut out = Image::for_writing(w, h);
    if img.width < 2 || img.height < 2 {
        // Degenerate (never a flow level): nearest sample.
        for y in 0..h {
            for x in 0..w {
                out.data[y * w + x] =
                    img.at((2 * x).min(img.width - 1), (2 * y).min(img.height - 1));
            }
        }
        return out;
    }
    for y in 0..h {
        let r0 = &img.data[2 * y * img.width..][..2 * w];
        let r1 = &img.data[(2 * y + 1) * img.width..][..2 * w];
        let dst = &mut out.data[y * w..(y + 1) * w];
        for ((d, a), b) in dst
            .iter_mut()
            .zip(r0.chunks_exact(2))
            .zip(r1.chunks_exact(2))
        {
            *d = 0.25 * ((a[0] + a[1]) + (b[0] + b[1]));
        }
    }
    out
}

/// Horizontal and vertical Sobel gradients / 8 (borders replicated).
fn gradients(img: &Image) -> (Vec<f32>, Vec<f32>) {
    let (w, h) = (img.width, img.height);
    let mut gx = pool::take(w * h);
    let mut gy = pool::take(w * h);
    let mut vs = vec![0.0f32; w]; // up + 2 mid + down
    let mut vd = vec![0.0f32; w]; // down - up
    for y in 0..h {
        let up = &img.data[y.saturating_sub(1) * w..][..w];
        let mid = &img.data[y * w..][..w];
        let down = &img.data[(y + 1).min(h - 1) * w..][..w];
        for (((s, d), (&a, &m)), &b) in vs
            .iter_mut()
            .zip(vd.iter_mut())
            .zip(up.iter().zip(mid))
            .zip(down)
        {
            *s = a + 2.0 * m + b;
            *d = b - a;
        }
        let ox = &mut gx[y * w..][..w];
        let oy = &mut gy[y * w..][..w];
        if w == 1 {
            ox[0] = 0.0;
            oy[0] = 4.0 * vd[0] * 0.125;
            continue;
        }
        // Interior columns as shifted slices (vectorizes), then the edges.
        for (o, (&r, &l)) in ox[1..w - 1]
            .iter_mut()
            .zip(vs[2..].iter().zip(&vs[..w - 2]))
        {
            *o = (r - l) * 0.125;
        }
        for ((o, (&l, &m)), &r) in oy[1..w - 1]
            .iter_mut()
            .zip(vd[..w - 2].iter().zip(&vd[1..w - 1]))
            .zip(&vd[2..])
        {
            *o = (l + 2.0 * m + r) * 0.125;
        }
        ox[0] = (vs[1] - vs[0]) * 0.125;
        ox[w - 1] = (vs[w - 1] - vs[w - 2]) * 0.125;
        oy[0] = (3.0 * vd[0] + vd[1]) * 0.125;
        oy[w - 1] = (vd[w - 2] + 3.0 * vd[w - 1]) * 0.125;
    }
    (gx, gy)
}

/// Flow parameters. The defaults are reelbench's fixed method (changing them
/// changes the numbers; docs/metrics.md documents these values).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FlowParams {
    /// Distance between patch origins on the coarser levels.
    pub stride: usize,
    /// Distance between patch origins on the finest level.
    pub finest_stride: usize,
    /// Gauss-Newton iterations per patch in the forward sweep of the coarser
    /// levels (the backward sweep does half).
    pub iterations: usize,
    /// Gauss-Newton iterations per patch on the finest level, which starts
    /// from a good guess and has a forward sweep only.
    pub finest_iterations: usize,
}

impl Default for FlowParams {
    fn default() -> Self {
        Self {
            stride: 6,
            finest_stride: 6,
            iterations: 6,
            finest_iterations: 2,
        }
    }
}

/// A dense flow field: `u` (x) and `v` (y) displacements in pixels of the
/// image it was computed on, packed row by row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Flow {
    pub width: usize,
    pub height: usize,
    pub u: Vec<f32>,
    pub v: Vec<f32>,
}

impl Flow {
    fn zeros(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            u: pool::zeros(width * height),
            v: pool::zeros(width * height),
        }
    }

    /// Bilinear sample of the flow at pixel `(x, y)` of a `width x height`
    /// grid (pixel centres aligned), in that grid's pixels.
    #[inline(always)]
    fn sample_scaled(&self, x: usize, y: usize, width: usize, height: usize) -> (f32, f32) {
        let sx = self.width as f32 / width as f32;
        let sy = self.height as f32 / height as f32;
        let xs = (x as f32 + 0.5) * sx - 0.5;
        let ys = (y as f32 + 0.5) * sy - 0.5;
        let (u, v) = (
            sample_slice(&self.u, self.width, self.height, xs, ys),
            sample_slice(&self.v, self.width, self.height, xs, ys),
        );
        (u / sx, v / sy)
    }

    /// Flow magnitudes, row by row.
    pub fn magnitudes(&self) -> Vec<f32> {
        self.u
            .iter()
            .zip(&self.v)
            .map(|(u, v)| (u * u + v * v).sqrt())
            .collect()
    }
}

/// Bilinear sample of a packed `w x h` plane, coordinates clamped.
#[inline(always)]
fn sample_slice(data: &[f32], w: usize, h: usize, x: f32, y: f32) -> f32 {
    let x = x.clamp(0.0, (w - 1) as f32);
    let y = y.clamp(0.0, (h - 1) as f32);
    let (x0, y0) = (x as usize, y as usize);
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let x1 = (x0 + 1).min(w - 1);
    let y1 = (y0 + 1).min(h - 1);
    let (r0, r1) = (&data[y0 * w..][..w], &data[y1 * w..][..w]);
    let a = r0[x0] + (r0[x1] - r0[x0]) * fx;
    let b = r1[x0] + (r1[x1] - r1[x0]) * fx;
    a + (b - a) * fy
}

/// Patch origins along an axis of `len` pixels: every `stride`, plus the last
/// position `len - PATCH` so the patches cover the axis.
fn origins(len: usize, stride: usize) -> Vec<usize> {
    let last = len - PATCH;
    let mut v: Vec<usize> = (0..=last).step_by(stride).collect();
    if *v.last().expect("len >= PATCH") != last {
        v.push(last);
    }
    v
}

/// One pyramid level of a frame: the image, its gradients (used when it is
/// the first frame) and a copy with a replicated border (when it is the
/// second).
#[derive(Clone, Debug)]
struct Level {
    img: Image,
    gx: Vec<f32>,
    gy: Vec<f32>,
    pad: Vec<f32>,
}

impl Drop for Level {
    fn drop(&mut self) {
        for v in [
            std::mem::take(&mut self.img.data),
            std::mem::take(&mut self.gx),
            std::mem::take(&mut self.gy),
            std::mem::take(&mut self.pad),
        ] {
            pool::give(v);
        }
    }
}

impl Level {
    /// The level of `img`, with what its roles need: the gradients as the
    /// first frame of a flow, the padded copy as the second.
    fn new(img: Image, roles: Roles) -> Self {
        let (gx, gy) = if roles.first {
            gradients(&img)
        } else {
            (Vec::new(), Vec::new())
        };
        if !roles.second {
            return Self {
                img,
                gx,
                gy,
                pad: Vec::new(),
            };
        }
        let (w, h) = (img.width, img.height);
        let pw = w + 2 * BORDER;
        let mut pad = pool::take(pw * (h + 2 * BORDER));
        for py in 0..h + 2 * BORDER {
            let src = &img.data[py.saturating_sub(BORDER).min(h - 1) * w..][..w];
            let dst = &mut pad[py * pw..][..pw];
            dst[..BORDER].fill(src[0]);
            dst[BORDER..BORDER + w].copy_from_slice(src);
            dst[BORDER + w..].fill(src[w - 1]);
        }
        Self { img, gx, gy, pad }
    }
}

/// Which side(s) of a flow a pyramid serves.
#[derive(Clone, Copy, Debug)]
struct Roles {
    first: bool,
    second: bool,
}

/// A frame's image pyramid, built once and used for the flow to and from
/// its neighbours.
#[derive(Clone, Debug)]
pub struct Pyramid {
    levels: Vec<Level>,
}

impl Pyramid {
    /// The pyramid of `img`: halved until the long side is near four patches
    /// and every level still holds a patch. Images smaller than a patch get
    /// a single level (and a zero flow). It can be either frame of a flow.
    pub fn new(img: Image) -> Self {
        Self::with_roles(
            img,
            Roles {
                first: true,
                second: true,
            },
        )
    }

    /// A pyramid for the first frame of flows only (no padded copies).
    pub fn first(img: Image) -> Self {
        Self::with_roles(
            img,
            Roles {
                first: true,
                second: false,
            },
        )
    }

    /// A pyramid for the second frame of flows only (no gradients).
    pub fn second(img: Image) -> Self {
        Self::with_roles(
            img,
            Roles {
                first: false,
                second: true,
            },
        )
    }

    fn with_roles(img: Image, roles: Roles) -> Self {
        let (w, h) = (img.width, img.height);
        if w < PATCH || h < PATCH {
            return Self {
                levels: vec![Level {
                    img,
                    gx: Vec::new(),
                    gy: Vec::new(),
                    pad: Vec::new(),
                }],
            };
        }
        let mut n = (w.max(h) as f32 / (4 * PATCH) as f32)
            .log2()
            .round()
            .max(0.0) as usize;
        while n > 0 && (w.min(h) >> n) < PATCH {
            n -= 1;
        }
        let mut levels = Vec::with_capacity(n + 1);
        let mut cur = img;
        for _ in 0..n {
            let next = half(&cur);
            levels.push(Level::new(cur, roles));
            cur = next;
        }
        levels.push(Level::new(cur, roles));
        Self { levels }
    }

    /// The full-size image.
    pub fn image(&self) -> &Image {
        &self.levels[0].img
    }
}

/// Per-patch data from the first frame (inverse compositional).
#[derive(Clone, Copy, Debug)]
struct PatchInfo {
    x: usize,
    y: usize,
    /// Inverse of the mean-normalized Gauss-Newton Hessian.
    inv: [f32; 3],
    /// Sums of the patch's x and y gradients (for the mean correction).
    sgx: f32,
    sgy: f32,
}

/// Row `r[..PATCH + 1]` interpolated horizontally at fraction `ax`.
#[inline(always)]
fn hrow(r: &[f32], ax: f32) -> [f32; PATCH] {
    let a: &[f32; PATCH] = r[..PATCH].try_into().expect("patch row");
    let b: &[f32; PATCH] = r[1..PATCH + 1].try_into().expect("patch row");
    std::array::from_fn(|i| a[i] + (b[i] - a[i]) * ax)
}

#[inline(always)]
fn row(data: &[f32], offset: usize) -> &[f32; PATCH] {
    data[offset..offset + PATCH].try_into().expect("patch row")
}

/// Where a patch of the first frame at `(x, y)` displaced by `(u, v)` lands
/// in the padded second frame: the offset of its top-left sample and the
/// bilinear fractions. The position is clamped so that the patch keeps at
/// least one pixel on the frame.
#[inline(always)]
fn landing(l1: &Level, x: usize, y: usize, u: f32, v: f32) -> (usize, f32, f32) {
    let (w, h) = (l1.img.width, l1.img.height);
    let b = BORDER as f32;
    let lo = (BORDER + 1 - PATCH) as f32;
    let fx = (x as f32 + u + b).clamp(lo, (BORDER + w - 1) as f32);
    let fy = (y as f32 + v + b).clamp(lo, (BORDER + h - 1) as f32);
    let (bx, by) = (fx as usize, fy as usize);
    (by * (w + 2 * BORDER) + bx, fx - bx as f32, fy - by as f32)
}

/// Sums over the patch at `(x, y)` of `d = i1(p + (u, v)) - i0(p)`: `d`,
/// `d²` and, with `GRAD`, `gx d` and `gy d`. `SIMD`: the AVX2 kernel (only
/// called where the CPU has AVX2 and FMA).
#[inline(always)]
fn patch_sums<const SIMD: bool, const GRAD: bool>(
    l0: &Level,
    l1: &Level,
    x: usize,
    y: usize,
    u: f32,
    v: f32,
) -> [f32; 4] {
    let w = l0.img.width;
    let pw = w + 2 * BORDER;
    let (o1, ax, ay) = landing(l1, x, y, u, v);
    let o0 = y * w + x;
    // The patch lies on the frame and `landing` keeps its reads inside the
    // border: checked once here, so the kernels index without checks.
    assert!(x + PATCH <= w && y + PATCH <= l0.img.height);
    assert!(o1 + PATCH * pw + PATCH < l1.pad.len());
    #[cfg(target_arch = "x86_64")]
    if SIMD {
        // SAFETY: SIMD is only set on CPUs with AVX2 and FMA
        // (`pyramid_flow`); the bounds are asserted above.
        return unsafe {
            avx::patch_sums::<GRAD>(
                l0.img.data.as_ptr().add(o0),
                l0.gx.as_ptr().add(o0),
                l0.gy.as_ptr().add(o0),
                w,
                l1.pad.as_ptr().add(o1),
                pw,
                ax,
                ay,
            )
        };
    }
    let mut s1 = [0.0f32; PATCH];
    let mut s2 = [0.0f32; PATCH];
    let mut sx = [0.0f32; PATCH];
    let mut sy = [0.0f32; PATCH];
    let mut prev = hrow(&l1.pad[o1..], ax);
    for j in 0..PATCH {
        let next = hrow(&l1.pad[o1 + (j + 1) * pw..], ax);
        let t = row(&l0.img.data, o0 + j * w);
        let gx = row(&l0.gx, o0 + j * w);
        let gy = row(&l0.gy, o0 + j * w);
        for i in 0..PATCH {
            let d = prev[i] + (next[i] - prev[i]) * ay - t[i];
            s1[i] += d;
            s2[i] += d * d;
            if GRAD {
                sx[i] += gx[i] * d;
                sy[i] += gy[i] * d;
            }
        }
        prev = next;
    }
    [hsum(s1), hsum(s2), hsum(sx), hsum(sy)]
}

/// Sum of a patch row, as a tree (the order a vector reduction takes).
#[inline(always)]
fn hsum(a: [f32; PATCH]) -> f32 {
    let b: [f32; 4] = std::array::from_fn(|i| a[i] + a[i + 4]);
    (b[0] + b[2]) + (b[1] + b[3])
}

const N: f32 = (PATCH * PATCH) as f32;

/// Mean-normalized SSD of the patch displaced by `(u, v)`.
#[inline(always)]
fn patch_ssd<const SIMD: bool>(l0: &Level, l1: &Level, x: usize, y: usize, u: f32, v: f32) -> f32 {
    let [s1, s2, _, _] = patch_sums::<SIMD, false>(l0, l1, x, y, u, v);
    s2 - s1 * s1 / N
}

impl PatchInfo {
    #[inline(always)]
    fn new<const SIMD: bool>(l0: &Level, x: usize, y: usize) -> Self {
        let w = l0.img.width;
        assert!(x + PATCH <= w && y + PATCH <= l0.img.height);
        #[cfg(target_arch = "x86_64")]
        if SIMD {
            let o = y * w + x;
            // SAFETY: SIMD only with AVX2 and FMA; the patch is on the frame
            // (asserted above).
            let t = unsafe { avx::structure(l0.gx.as_ptr().add(o), l0.gy.as_ptr().add(o), w) };
            return Self::from_sums(x, y, t);
        }
        let mut xx = [0.0f32; PATCH];
        let mut xy = [0.0f32; PATCH];
        let mut yy = [0.0f32; PATCH];
        let mut sx = [0.0f32; PATCH];
        let mut sy = [0.0f32; PATCH];
        for j in 0..PATCH {
            let gx = row(&l0.gx, (y + j) * w + x);
            let gy = row(&l0.gy, (y + j) * w + x);
            for i in 0..PATCH {
                xx[i] += gx[i] * gx[i];
                xy[i] += gx[i] * gy[i];
                yy[i] += gy[i] * gy[i];
                sx[i] += gx[i];
                sy[i] += gy[i];
            }
        }
        Self::from_sums(x, y, [hsum(xx), hsum(xy), hsum(yy), hsum(sx), hsum(sy)])
    }

    /// From the sums of `gx²`, `gx gy`, `gy²`, `gx` and `gy` over the patch.
    #[inline(always)]
    fn from_sums(x: usize, y: usize, [xx, xy, yy, sgx, sgy]: [f32; 5]) -> Self {
        // Mean normalization removes the mean gradient from the Jacobian;
        // a small ridge keeps flat patches (zero Hessian) well posed.
        let ridge = 1e-2 * N;
        let a = xx - sgx * sgx / N + ridge;
        let b = xy - sgx * sgy / N;
        let c = yy - sgy * sgy / N + ridge;
        let det = a * c - b * b;
        Self {
            x,
            y,
            inv: [c / det, -b / det, a / det],
            sgx,
            sgy,
        }
    }

    /// Gauss-Newton from `(u, v)`, whose patch sums (with gradients) are
    /// `sums`; the best flow seen.
    #[inline(always)]
    fn descend<const SIMD: bool>(
        &self,
        l0: &Level,
        l1: &Level,
        iters: usize,
        u: f32,
        v: f32,
        sums: [f32; 4],
    ) -> (f32, f32) {
        let (mut u, mut v) = (u, v);
        let [s1, s2, _, _] = sums;
        let (mut best_u, mut best_v, mut best) = (u, v, s2 - s1 * s1 / N);
        let mut sums = sums;
        for it in 0..iters {
            if it > 0 {
                sums = patch_sums::<SIMD, true>(l0, l1, self.x, self.y, u, v);
                let [s1, s2, _, _] = sums;
                let ssd = s2 - s1 * s1 / N;
                if ssd < best {
                    (best_u, best_v, best) = (u, v, ssd);
                }
            }
            let [s1, _, gd, hd] = sums;
            // Gradient of the mean-normalized residual: sum(g (d - mean d)).
            let bx = gd - s1 * self.sgx / N;
            let by = hd - s1 * self.sgy / N;
            let du = self.inv[0] * bx + self.inv[1] * by;
            let dv = self.inv[1] * bx + self.inv[2] * by;
            u -= du;
            v -= dv;
            if du * du + dv * dv < 1e-4 {
                // Converged: the last step is too small to change the SSD
                // ranking, so it is taken without another evaluation.
                return (u, v);
            }
        }
        if patch_ssd::<SIMD>(l0, l1, self.x, self.y, u, v) < best {
            (u, v)
        } else {
            (best_u, best_v)
        }
    }
}

/// One level of DIS: patch search seeded by the coarser level's dense flow
/// `init` (none on the coarsest level), then densification.
#[inline(always)]
fn level_flow<const SIMD: bool>(
    l0: &Level,
    l1: &Level,
    init: Option<&Flow>,
    stride: usize,
    iterations: usize,
    finest: bool,
) -> Flow {
    let (w, h) = (l0.img.width, l0.img.height);
    let xs = origins(w, stride);
    let ys = origins(h, stride);
    let (nx, ny) = (xs.len(), ys.len());
    let mut infos = Vec::with_capacity(nx * ny);
    for &y in &ys {
        for &x in &xs {
            infos.push(PatchInfo::new::<SIMD>(l0, x, y));
        }
    }
    let mut pu = vec![0.0f32; infos.len()];
    let mut pv = vec![0.0f32; infos.len()];
    if let Some(init) = init {
        for (k, info) in infos.iter().enumerate() {
            let c = PATCH / 2;
            (pu[k], pv[k]) = init.sample_scaled(info.x + c, info.y + c, w, h);
        }
    }
    let max_move = PATCH as f32;
    // The finest level starts from a good guess: one forward sweep.
    let sweeps = if finest { 1 } else { 2 };
    for sweep in 0..sweeps {
        let forward = sweep == 0;
        let iters = if forward {
            iterations
        } else {
            iterations.div_ceil(2)
        };
        for k in 0..infos.len() {
            let idx = if forward { k } else { infos.len() - 1 - k };
            let (ix, iy) = (idx % nx, idx / nx);
            let info = &infos[idx];
            let (mut su, mut sv) = (pu[idx], pv[idx]);
            let own = patch_sums::<SIMD, true>(l0, l1, info.x, info.y, su, sv);
            let mut sc = own[1] - own[0] * own[0] / N;
            let mut moved = false;
            let neighbours = if forward {
                [(ix > 0).then(|| idx - 1), (iy > 0).then(|| idx - nx)]
            } else {
                [
                    (ix + 1 < nx).then(|| idx + 1),
                    (iy + 1 < ny).then(|| idx + nx),
                ]
            };
            for n in neighbours.into_iter().flatten() {
                let (cu, cv) = (pu[n], pv[n]);
                // A neighbour with (nearly) the same flow is no new guess.
                if (cu - su).abs() + (cv - sv).abs() < 1e-2 {
                    continue;
                }
                let c = patch_ssd::<SIMD>(l0, l1, info.x, info.y, cu, cv);
                if c < sc {
                    (su, sv, sc, moved) = (cu, cv, c, true);
                }
            }
            let sums = if moved {
                patch_sums::<SIMD, true>(l0, l1, info.x, info.y, su, sv)
            } else {
                own
            };
            let (u, v) = info.descend::<SIMD>(l0, l1, iters, su, sv, sums);
            // A patch that wandered further than its own size from where it
            // started has most likely locked onto something else.
            let (u, v) = if (u - su).abs() > max_move || (v - sv).abs() > max_move {
                (su, sv)
            } else {
                (u, v)
            };
            pu[idx] = u;
            pv[idx] = v;
        }
    }
    densify::<SIMD>(l0, l1, &infos, &pu, &pv)
}

/// Dense flow from patch flows: each pixel averages the patches covering it,
/// weighted by `1 / max(1, |i1(x + f) - i0(x)|)`.
#[inline(always)]
fn densify<const SIMD: bool>(
    l0: &Level,
    l1: &Level,
    infos: &[PatchInfo],
    pu: &[f32],
    pv: &[f32],
) -> Flow {
    let (w, h) = (l0.img.width, l0.img.height);
    let pw = w + 2 * BORDER;
    let mut acc_u = pool::zeros(w * h);
    let mut acc_v = pool::zeros(w * h);
    let mut acc_w = pool::zeros(w * h);
    for (k, info) in infos.iter().enumerate() {
        let (u, v) = (pu[k], pv[k]);
        let (o1, ax, ay) = landing(l1, info.x, info.y, u, v);
        let o0 = info.y * w + info.x;
        assert!(info.x + PATCH <= w && info.y + PATCH <= h);
        assert!(o1 + PATCH * pw + PATCH < l1.pad.len());
        #[cfg(target_arch = "x86_64")]
        if SIMD {
            // SAFETY: as in `patch_sums`; the accumulators have the
            // first frame's shape, so the patch's rows are inside them.
            unsafe {
                avx::densify_patch(
                    l0.img.data.as_ptr().add(o0),
                    w,
                    l1.pad.as_ptr().add(o1),
                    pw,
                    [ax, ay, u, v],
                    [
                        acc_u.as_mut_ptr().add(o0),
                        acc_v.as_mut_ptr().add(o0),
                        acc_w.as_mut_ptr().add(o0),
                    ],
                )
            };
            continue;
        }
        let mut prev = hrow(&l1.pad[o1..], ax);
        for j in 0..PATCH {
            let next = hrow(&l1.pad[o1 + (j + 1) * pw..], ax);
            let t = row(&l0.img.data, o0 + j * w);
            let o = o0 + j * w;
            let au: &mut [f32; PATCH] = (&mut acc_u[o..o + PATCH]).try_into().expect("row");
            let av: &mut [f32; PATCH] = (&mut acc_v[o..o + PATCH]).try_into().expect("row");
            let aw: &mut [f32; PATCH] = (&mut acc_w[o..o + PATCH]).try_into().expect("row");
            for i in 0..PATCH {
                let d = prev[i] + (next[i] - prev[i]) * ay - t[i];
                let wt = 1.0 / d.abs().max(1.0);
                au[i] += wt * u;
                av[i] += wt * v;
                aw[i] += wt;
            }
            prev = next;
        }
    }
    for ((u, v), wt) in acc_u.iter_mut().zip(acc_v.iter_mut()).zip(&acc_w) {
        let r = 1.0 / wt.max(1e-6);
        *u *= r;
        *v *= r;
    }
    pool::give(acc_w);
    Flow {
        width: w,
        height: h,
        u: acc_u,
        v: acc_v,
    }
}

/// Dense flow from the frame of `p0` to the frame of `p1` (same shape): for
/// each pixel `x`, `i1(x + flow(x)) ≈ i0(x)`. Frames smaller than a patch get
/// a zero flow. Runs the AVX2 kernels when the CPU has AVX2 and FMA and
/// `REELBENCH_KERNEL_ISA` allows them.
pub fn pyramid_flow(p0: &Pyramid, p1: &Pyramid, prm: &FlowParams) -> Flow {
    #[cfg(target_arch = "x86_64")]
    if super::dispatch::isa() >= super::dispatch::Isa::Avx2 && std::is_x86_feature_detected!("fma")
    {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        return unsafe { avx::pyramid_flow(p0, p1, prm) };
    }
    pyramid_flow_with::<false>(p0, p1, prm)
}

#[inline(always)]
fn pyramid_flow_with<const SIMD: bool>(p0: &Pyramid, p1: &Pyramid, prm: &FlowParams) -> Flow {
    let (w, h) = (p0.image().width, p0.image().height);
    assert_eq!(
        (w, h),
        (p1.image().width, p1.image().height),
        "frames of one shape"
    );
    if w < PATCH || h < PATCH {
        return Flow::zeros(w, h);
    }
    // The SIMD kernels read the gradients unchecked.
    assert!(
        p0.levels.iter().all(|l| l.gx.len() == l.img.data.len()),
        "the first frame's pyramid has gradients"
    );
    let mut flow: Option<Flow> = None;
    for l in (0..p0.levels.len()).rev() {
        let (stride, iters) = if l == 0 {
            (prm.finest_stride, prm.finest_iterations)
        } else {
            (prm.stride, prm.iterations)
        };
        flow = Some(level_flow::<SIMD>(
            &p0.levels[l],
            &p1.levels[l],
            flow.as_ref(),
            stride.max(1),
            iters,
            l == 0,
        ));
    }
    flow.expect("at least one level")
}

/// The patch kernels with AVX2 and FMA: one patch row is one `__m256`.
#[cfg(target_arch = "x86_64")]
mod avx {
    use super::{Flow, FlowParams, Pyramid, PATCH};
    use std::arch::x86_64::*;

    /// The whole flow compiled with AVX2 and FMA, so the kernels inline.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn pyramid_flow(p0: &Pyramid, p1: &Pyramid, prm: &FlowParams) -> Flow {
        super::pyramid_flow_with::<true>(p0, p1, prm)
    }

    /// Row `r[..9]` interpolated horizontally at fraction `ax`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hrow(r: *const f32, ax: __m256) -> __m256 {
        let a = _mm256_loadu_ps(r);
        let b = _mm256_loadu_ps(r.add(1));
        _mm256_fmadd_ps(_mm256_sub_ps(b, a), ax, a)
    }

    /// `d = i1(p + f) - i0(p)` for row `j` of the patch; `prev` is the
    /// horizontally interpolated row `j` of `i1` and is advanced to `j + 1`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn diff_row(
        t: *const f32,
        r: *const f32,
        pw: usize,
        j: usize,
        ax: __m256,
        ay: __m256,
        prev: &mut __m256,
    ) -> __m256 {
        let next = hrow(r.add((j + 1) * pw), ax);
        let s = _mm256_fmadd_ps(_mm256_sub_ps(next, *prev), ay, *prev);
        *prev = next;
        _mm256_sub_ps(s, _mm256_loadu_ps(t))
    }

    /// See `super::patch_sums`. `t`, `gx`, `gy`: the patch's top-left in
    /// the first frame's planes (row stride `w`); `r`: the landing's
    /// top-left in the padded second frame (row stride `pw`).
    ///
    /// # Safety
    /// AVX2 and FMA; `PATCH` rows of `PATCH` values readable from `t`, `gx`,
    /// `gy`, and `PATCH + 1` rows of `PATCH + 1` values from `r`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn patch_sums<const GRAD: bool>(
        t: *const f32,
        gx: *const f32,
        gy: *const f32,
        w: usize,
        r: *const f32,
        pw: usize,
        ax: f32,
        ay: f32,
    ) -> [f32; 4] {
        let (ax, ay) = (_mm256_set1_ps(ax), _mm256_set1_ps(ay));
        let mut prev = hrow(r, ax);
        let mut s1 = _mm256_setzero_ps();
        let mut s2 = _mm256_setzero_ps();
        let mut sx = _mm256_setzero_ps();
        let mut sy = _mm256_setzero_ps();
        for j in 0..PATCH {
            let d = diff_row(t.add(j * w), r, pw, j, ax, ay, &mut prev);
            s1 = _mm256_add_ps(s1, d);
            s2 = _mm256_fmadd_ps(d, d, s2);
            if GRAD {
                sx = _mm256_fmadd_ps(_mm256_loadu_ps(gx.add(j * w)), d, sx);
                sy = _mm256_fmadd_ps(_mm256_loadu_ps(gy.add(j * w)), d, sy);
            }
        }
        // [s1, s2, sx, sy] of the low and the high half, then added.
        let h = _mm256_hadd_ps(_mm256_hadd_ps(s1, s2), _mm256_hadd_ps(sx, sy));
        let q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h));
        let mut out = [0.0f32; 4];
        _mm_storeu_ps(out.as_mut_ptr(), q);
        out
    }

    /// Sums over a patch of `gx²`, `gx gy`, `gy²`, `gx`, `gy` (row stride `w`).
    ///
    /// # Safety
    /// AVX2 and FMA; `PATCH` rows of `PATCH` values readable from `gx`, `gy`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn structure(gx: *const f32, gy: *const f32, w: usize) -> [f32; 5] {
        let mut xx = _mm256_setzero_ps();
        let mut xy = _mm256_setzero_ps();
        let mut yy = _mm256_setzero_ps();
        let mut sx = _mm256_setzero_ps();
        let mut sy = _mm256_setzero_ps();
        for j in 0..PATCH {
            let a = _mm256_loadu_ps(gx.add(j * w));
            let b = _mm256_loadu_ps(gy.add(j * w));
            xx = _mm256_fmadd_ps(a, a, xx);
            xy = _mm256_fmadd_ps(a, b, xy);
            yy = _mm256_fmadd_ps(b, b, yy);
            sx = _mm256_add_ps(sx, a);
            sy = _mm256_add_ps(sy, b);
        }
        let h = _mm256_hadd_ps(_mm256_hadd_ps(xx, xy), _mm256_hadd_ps(yy, sx));
        let q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h));
        let mut out = [0.0f32; 5];
        _mm_storeu_ps(out.as_mut_ptr(), q);
        let m = _mm_add_ps(_mm256_castps256_ps128(sy), _mm256_extractf128_ps::<1>(sy));
        let m = _mm_add_ps(m, _mm_movehl_ps(m, m));
        out[4] = _mm_cvtss_f32(_mm_add_ss(m, _mm_movehdup_ps(m)));
        out
    }

    /// See `super::densify`: adds the patch's weighted flow `(u, v)` and
    /// weights into `acc = [u, v, weight]` (row stride `w`, at the patch's
    /// top-left).
    ///
    /// # Safety
    /// As `patch_sums`, and `PATCH` rows of `PATCH` values writable at each
    /// of `acc`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn densify_patch(
        t: *const f32,
        w: usize,
        r: *const f32,
        pw: usize,
        [ax, ay, u, v]: [f32; 4],
        [au, av, aw]: [*mut f32; 3],
    ) {
        let (ax, ay) = (_mm256_set1_ps(ax), _mm256_set1_ps(ay));
        let (u, v) = (_mm256_set1_ps(u), _mm256_set1_ps(v));
        let one = _mm256_set1_ps(1.0);
        let sign = _mm256_set1_ps(-0.0);
        let mut prev = hrow(r, ax);
        for j in 0..PATCH {
            let d = diff_row(t.add(j * w), r, pw, j, ax, ay, &mut prev);
            let wt = _mm256_div_ps(one, _mm256_max_ps(_mm256_andnot_ps(sign, d), one));
            let (pu, pv, pw_) = (au.add(j * w), av.add(j * w), aw.add(j * w));
            _mm256_storeu_ps(pu, _mm256_fmadd_ps(wt, u, _mm256_loadu_ps(pu)));
            _mm256_storeu_ps(pv, _mm256_fmadd_ps(wt, v, _mm256_loadu_ps(pv)));
            _mm256_storeu_ps(pw_, _mm256_add_ps(wt, _mm256_loadu_ps(pw_)));
        }
    }
}

/// Dense flow from `i0` to `i1` (same shape): for each pixel `x` of `i0`,
/// `i1(x + flow(x)) ≈ i0(x)`. Images smaller than a patch get a zero flow.
pub fn dense_flow(i0: &Image, i1: &Image, prm: &FlowParams) -> Flow {
    dense_flow_of(i0.clone(), i1.clone(), prm)
}

/// [`dense_flow`] of owned frames (whose planes become the pyramids').
pub fn dense_flow_of(i0: Image, i1: Image, prm: &FlowParams) -> Flow {
    pyramid_flow(&Pyramid::first(i0), &Pyramid::second(i1), prm)
}

/// Photometric error and forward-backward consistency of a flow pair.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WarpCheck {
    /// Mean `|i1(x + f(x)) - i0(x)|` over the consistent pixels (0-255 scale).
    pub warp_error: f64,
    /// Share of pixels that pass the forward-backward check.
    pub consistent: f64,
}

/// Forward-backward check: pixel `x` is consistent when
/// `|f(x) + b(x + f(x))|² ≤ 0.01 (|f(x)|² + |b(x + f(x))|²) + 0.5`
/// (Sundaram et al. 2010), and when `x + f(x)` lies inside the frame.
pub fn warp_check(i0: &Image, i1: &Image, fwd: &Flow, bwd: &Flow) -> WarpCheck {
    let (w, h) = (i0.width, i0.height);
    for plane in [&i1.data, &fwd.u, &fwd.v, &bwd.u, &bwd.v] {
        assert_eq!(plane.len(), w * h, "planes of one shape");
    }
    assert_eq!(i0.data.len(), w * h, "planes of one shape");
    #[cfg(target_arch = "x86_64")]
    let (sum, n) = if super::dispatch::isa() >= super::dispatch::Isa::Avx2 {
        // SAFETY: the CPU has AVX2; the planes hold w x h values (checked above).
        unsafe { warp_avx::warp_sums(i0, i1, fwd, bwd) }
    } else {
        warp_sums(i0, i1, fwd, bwd)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let (sum, n) = warp_sums(i0, i1, fwd, bwd);
    WarpCheck {
        warp_error: if n == 0 { f64::NAN } else { sum / n as f64 },
        consistent: n as f64 / (w * h) as f64,
    }
}

/// The warp error of pixel `(x, y)`, or None when it is not consistent.
#[inline(always)]
fn warp_pixel(i0: &Image, i1: &Image, fwd: &Flow, bwd: &Flow, x: usize, y: usize) -> Option<f32> {
    let (w, h) = (i0.width, i0.height);
    let o = y * w + x;
    let (u, v) = (fwd.u[o], fwd.v[o]);
    let (tx, ty) = (x as f32 + u, y as f32 + v);
    if tx < 0.0 || ty < 0.0 || tx > (w - 1) as f32 || ty > (h - 1) as f32 {
        return None;
    }
    let ub = sample_slice(&bwd.u, w, h, tx, ty);
    let vb = sample_slice(&bwd.v, w, h, tx, ty);
    let (eu, ev) = (u + ub, v + vb);
    if eu * eu + ev * ev > 0.01 * (u * u + v * v + ub * ub + vb * vb) + 0.5 {
        return None;
    }
    Some((sample_slice(&i1.data, w, h, tx, ty) - i0.data[o]).abs())
}

/// The sum of the warp errors over the consistent pixels (in pixel order),
/// and their count.
fn warp_sums(i0: &Image, i1: &Image, fwd: &Flow, bwd: &Flow) -> (f64, usize) {
    let (mut sum, mut n) = (0.0f64, 0usize);
    for y in 0..i0.height {
        for x in 0..i0.width {
            if let Some(e) = warp_pixel(i0, i1, fwd, bwd, x, y) {
                sum += e as f64;
                n += 1;
            }
        }
    }
    (sum, n)
}

/// The warp check eight pixels at a time with AVX2 gathers: the same f32
/// operations per pixel as [`warp_pixel`] (no fused multiply-add), and the
/// sum taken in pixel order, so the result is the same to the bit.
#[cfg(target_arch = "x86_64")]
mod warp_avx {
    use super::{warp_pixel, Flow, Image};
    use std::arch::x86_64::*;

    /// Bilinear samples of `data` at the four corner indices, fractions `fx`, `fy`.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn bilinear(data: *const f32, idx: [__m256i; 4], fx: __m256, fy: __m256) -> __m256 {
        let p00 = _mm256_i32gather_ps::<4>(data, idx[0]);
        let p01 = _mm256_i32gather_ps::<4>(data, idx[1]);
        let p10 = _mm256_i32gather_ps::<4>(data, idx[2]);
        let p11 = _mm256_i32gather_ps::<4>(data, idx[3]);
        let a = _mm256_add_ps(p00, _mm256_mul_ps(_mm256_sub_ps(p01, p00), fx));
        let b = _mm256_add_ps(p10, _mm256_mul_ps(_mm256_sub_ps(p11, p10), fx));
        _mm256_add_ps(a, _mm256_mul_ps(_mm256_sub_ps(b, a), fy))
    }

    /// See [`super::warp_sums`].
    ///
    /// # Safety
    /// AVX2; every plane holds `width * height` values, fewer than 2^31.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn warp_sums(i0: &Image, i1: &Image, fwd: &Flow, bwd: &Flow) -> (f64, usize) {
        let (w, h) = (i0.width, i0.height);
        let zero = _mm256_setzero_ps();
        let (xm, ym) = (
            _mm256_set1_ps((w - 1) as f32),
            _mm256_set1_ps((h - 1) as f32),
        );
        let lanes = _mm256_setr_ps(0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0);
        let stride = _mm256_set1_epi32(w as i32);
        let one = _mm256_set1_epi32(1);
        let (last_x, last_y) = (
            _mm256_set1_epi32(w as i32 - 1),
            _mm256_set1_epi32(h as i32 - 1),
        );
        let (tol, floor) = (_mm256_set1_ps(0.01), _mm256_set1_ps(0.5));
        let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        let (mut sum, mut n) = (0.0f64, 0usize);
        let mut errors = [0f32; 8];
        for y in 0..h {
            let yf = _mm256_set1_ps(y as f32);
            let mut x = 0;
            while x + 8 <= w {
                let o = y * w + x;
                let u = _mm256_loadu_ps(fwd.u.as_ptr().add(o));
                let v = _mm256_loadu_ps(fwd.v.as_ptr().add(o));
                let tx = _mm256_add_ps(_mm256_add_ps(_mm256_set1_ps(x as f32), lanes), u);
                let ty = _mm256_add_ps(yf, v);
                let outside = _mm256_or_ps(
                    _mm256_or_ps(
                        _mm256_cmp_ps::<_CMP_LT_OQ>(tx, zero),
                        _mm256_cmp_ps::<_CMP_LT_OQ>(ty, zero),
                    ),
                    _mm256_or_ps(
                        _mm256_cmp_ps::<_CMP_GT_OQ>(tx, xm),
                        _mm256_cmp_ps::<_CMP_GT_OQ>(ty, ym),
                    ),
                );
                let inside = !_mm256_movemask_ps(outside) & 0xff;
                if inside == 0 {
                    x += 8;
                    continue;
                }
                // A no-op for the pixels inside; for the others (NaN included,
                // which max_ps turns into 0) it keeps every index in the plane.
                let cx = _mm256_min_ps(_mm256_max_ps(tx, zero), xm);
                let cy = _mm256_min_ps(_mm256_max_ps(ty, zero), ym);
                let (x0, y0) = (_mm256_cvttps_epi32(cx), _mm256_cvttps_epi32(cy));
                let fx = _mm256_sub_ps(cx, _mm256_cvtepi32_ps(x0));
                let fy = _mm256_sub_ps(cy, _mm256_cvtepi32_ps(y0));
                let x1 = _mm256_min_epi32(_mm256_add_epi32(x0, one), last_x);
                let y1 = _mm256_min_epi32(_mm256_add_epi32(y0, one), last_y);
                let (r0, r1) = (
                    _mm256_mullo_epi32(y0, stride),
                    _mm256_mullo_epi32(y1, stride),
                );
                let idx = [
                    _mm256_add_epi32(r0, x0),
                    _mm256_add_epi32(r0, x1),
                    _mm256_add_epi32(r1, x0),
                    _mm256_add_epi32(r1, x1),
                ];
                let ub = bilinear(bwd.u.as_ptr(), idx, fx, fy);
                let vb = bilinear(bwd.v.as_ptr(), idx, fx, fy);
                let (eu, ev) = (_mm256_add_ps(u, ub), _mm256_add_ps(v, vb));
                let lhs = _mm256_add_ps(_mm256_mul_ps(eu, eu), _mm256_mul_ps(ev, ev));
                let norms = _mm256_add_ps(
                    _mm256_add_ps(
                        _mm256_add_ps(_mm256_mul_ps(u, u), _mm256_mul_ps(v, v)),
                        _mm256_mul_ps(ub, ub),
                    ),
                    _mm256_mul_ps(vb, vb),
                );
                let rhs = _mm256_add_ps(_mm256_mul_ps(tol, norms), floor);
                let keep = inside & !_mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(lhs, rhs));
                if keep != 0 {
                    let warped = bilinear(i1.data.as_ptr(), idx, fx, fy);
                    let target = _mm256_loadu_ps(i0.data.as_ptr().add(o));
                    let e = _mm256_and_ps(_mm256_sub_ps(warped, target), abs);
                    _mm256_storeu_ps(errors.as_mut_ptr(), e);
                    for (k, &e) in errors.iter().enumerate() {
                        if keep >> k & 1 == 1 {
                            sum += e as f64;
                            n += 1;
                        }
                    }
                }
                x += 8;
            }
            for x in x..w {
                if let Some(e) = warp_pixel(i0, i1, fwd, bwd, x, y) {
                    sum += e as f64;
                    n += 1;
                }
            }
        }
        (sum, n)
    }
}

#[cfg(test)]
mod kernel_tests {
    use super::*;

    fn noise(w: usize, h: usize, seed: usize) -> Image {
        let mut img = Image::zeros(w, h);
        for (i, v) in img.data.iter_mut().enumerate() {
            *v = ((i * seed % 101) as f32) * 2.5;
        }
        img
    }

    /// The AVX2 warp check gives the portable one's sum and count to the bit,
    /// with pixels whose target leaves the frame and inconsistent ones.
    #[test]
    fn simd_and_portable_warp_checks_agree_to_the_bit() {
        #[cfg(target_arch = "x86_64")]
        {
            if !is_x86_feature_detected!("avx2") {
                return;
            }
            let mut counts = Vec::new();
            for (w, h) in [(8, 8), (37, 23), (64, 9), (101, 40)] {
                let (i0, i1) = (noise(w, h, 37), noise(w, h, 53));
                let field = |seed: usize, scale: f32| -> Vec<f32> {
                    (0..w * h)
                        .map(|i| (((i * seed + 7) % 97) as f32 - 48.0) * scale)
                        .collect()
                };
                for scale in [0.01f32, 0.07, 0.4] {
                    let fwd = Flow {
                        width: w,
                        height: h,
                        u: field(31, scale),
                        v: field(17, scale),
                    };
                    // Mostly the opposite of the forward flow (consistent),
                    // elsewhere not.
                    let bwd = Flow {
                        width: w,
                        height: h,
                        u: fwd
                            .u
                            .iter()
                            .enumerate()
                            .map(|(i, u)| if i % 5 == 0 { *u } else { -u })
                            .collect(),
                        v: fwd.v.iter().map(|v| -v * 1.01).collect(),
                    };
                    let portable = warp_sums(&i0, &i1, &fwd, &bwd);
                    // SAFETY: AVX2 checked above; planes of w x h values.
                    let simd = unsafe { warp_avx::warp_sums(&i0, &i1, &fwd, &bwd) };
                    assert_eq!(portable.1, simd.1, "{w}x{h} {scale}");
                    assert_eq!(portable.0.to_bits(), simd.0.to_bits(), "{w}x{h} {scale}");
                    counts.push((portable.1, w * h));
                }
            }
            // The cases hold consistent pixels and pixels that are not.
            assert!(
                counts.iter().any(|&(n, all)| n > all / 2 && n < all),
                "{counts:?}"
            );
            assert!(counts.iter().any(|&(n, all)| n < all / 2), "{counts:?}");
        }
    }

    /// The AVX2 kernels compute what the portable ones do (up to rounding),
    /// also where the landing is clamped at the border.
    #[test]
    fn simd_and_portable_kernels_agree() {
        #[cfg(target_arch = "x86_64")]
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            return;
        }
        let both = Roles {
            first: true,
            second: true,
        };
        let (l0, l1) = (
            Level::new(noise(40, 30, 37), both),
            Level::new(noise(40, 30, 53), both),
        );
        let at = [
            (0, 0, 0.0, 0.0),
            (5, 7, 1.3, -0.7),
            (32, 22, -3.2, 2.6),
            (3, 2, -30.0, 50.0),
        ];
        for (x, y, u, v) in at {
            let a = patch_sums::<false, true>(&l0, &l1, x, y, u, v);
            let b = patch_sums::<true, true>(&l0, &l1, x, y, u, v);
            for k in 0..4 {
                assert!(
                    (a[k] - b[k]).abs() <= 1e-3 * a[k].abs().max(1.0),
                    "{a:?} {b:?}"
                );
            }
        }
        for &(x, y, _, _) in &at {
            let (a, b) = (
                PatchInfo::new::<false>(&l0, x, y),
                PatchInfo::new::<true>(&l0, x, y),
            );
            for k in 0..3 {
                assert!((a.inv[k] - b.inv[k]).abs() <= 1e-4 * a.inv[k].abs().max(1e-3));
            }
            assert!((a.sgx - b.sgx).abs() < 1e-2 && (a.sgy - b.sgy).abs() < 1e-2);
        }
        let infos: Vec<PatchInfo> = at
            .iter()
            .map(|&(x, y, _, _)| PatchInfo::new::<false>(&l0, x, y))
            .collect();
        let pu: Vec<f32> = at.iter().map(|a| a.2).collect();
        let pv: Vec<f32> = at.iter().map(|a| a.3).collect();
        let a = densify::<false>(&l0, &l1, &infos, &pu, &pv);
        let b = densify::<true>(&l0, &l1, &infos, &pu, &pv);
        for i in 0..a.u.len() {
            assert!(
                (a.u[i] - b.u[i]).abs() < 1e-4 && (a.v[i] - b.v[i]).abs() < 1e-4,
                "pixel {i}"
            );
        }
    }
}
