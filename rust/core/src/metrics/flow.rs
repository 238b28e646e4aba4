//! Dense optical flow between two 8-bit luma frames: coarse-to-fine dense
//! inverse search (DIS, Kroeger et al. 2016) at a working scale whose long
//! side is at most [`WORKING_LONG_SIDE`] pixels. See docs/adr/0004 for the
//! choice and its measured accuracy and speed.
//!
//! Per pyramid level, coarsest first: a grid of `patch x patch` patches
//! `stride` pixels apart is matched by inverse-compositional Gauss-Newton on
//! the mean-normalized SSD (the Hessian of each patch is computed once from
//! the first frame), with spatial propagation from neighbouring patches in a
//! forward and a backward sweep; the patch flows are then densified by
//! averaging the patches that cover each pixel, weighted by
//! `1 / max(1, |photometric error|)`. The dense flow seeds the next level.
//!
//! Everything works on packed `f32` planes in row order, so the inner loops
//! are plain slices that LLVM vectorizes for the ISA [`super::dispatch`] picks.

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
            data: vec![0.0; width * height],
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
        let mut out = Image::zeros(w, h);
        let mut acc = vec![0u32; w];
        let norm = 1.0 / (kx * ky) as f32;
        for oy in 0..h {
            acc.iter_mut().for_each(|a| *a = 0);
            for dy in 0..ky {
                let row = p.row(oy * ky + dy);
                if kx == 1 {
                    for (a, &v) in acc.iter_mut().zip(row) {
                        *a += v as u32;
                    }
                } else {
                    for (a, block) in acc.iter_mut().zip(row.chunks_exact(kx)) {
                        *a += block.iter().map(|&v| v as u32).sum::<u32>();
                    }
                }
            }
            let dst = &mut out.data[oy * w..(oy + 1) * w];
            for (d, &a) in dst.iter_mut().zip(&acc) {
                *d = a as f32 * norm;
            }
        }
        out
    }
}

/// Halve an image by 2x2 box averaging (odd last row/column dropped).
fn half(img: &Image) -> Image {
    let w = (img.width / 2).max(1);
    let h = (img.height / 2).max(1);
    let mut out = Image::zeros(w, h);
    for y in 0..h {
        let r0 = &img.data[(2 * y).min(img.height - 1) * img.width..][..img.width];
        let r1 = &img.data[(2 * y + 1).min(img.height - 1) * img.width..][..img.width];
        let dst = &mut out.data[y * w..(y + 1) * w];
        for (x, d) in dst.iter_mut().enumerate() {
            let (a, b) = (2 * x, (2 * x + 1).min(img.width - 1));
            *d = 0.25 * (r0[a] + r0[b] + r1[a] + r1[b]);
        }
    }
    out
}

/// Horizontal and vertical Sobel gradients / 8 (borders replicated).
fn gradients(img: &Image) -> (Image, Image) {
    let (w, h) = (img.width, img.height);
    let mut gx = Image::zeros(w, h);
    let mut gy = Image::zeros(w, h);
    for y in 0..h {
        let up = &img.data[y.saturating_sub(1) * w..][..w];
        let mid = &img.data[y * w..][..w];
        let down = &img.data[(y + 1).min(h - 1) * w..][..w];
        for x in 0..w {
            let (l, r) = (x.saturating_sub(1), (x + 1).min(w - 1));
            gx.data[y * w + x] =
                ((up[r] - up[l]) + 2.0 * (mid[r] - mid[l]) + (down[r] - down[l])) * 0.125;
            gy.data[y * w + x] =
                ((down[l] - up[l]) + 2.0 * (down[x] - up[x]) + (down[r] - up[r])) * 0.125;
        }
    }
    (gx, gy)
}

/// Bilinear sample of `img` at `(x, y)`, coordinates clamped to the image.
#[inline(always)]
fn sample(img: &Image, x: f32, y: f32) -> f32 {
    let xm = (img.width - 1) as f32;
    let ym = (img.height - 1) as f32;
    let x = x.clamp(0.0, xm);
    let y = y.clamp(0.0, ym);
    let x0 = x.floor();
    let y0 = y.floor();
    let (fx, fy) = (x - x0, y - y0);
    let (x0, y0) = (x0 as usize, y0 as usize);
    let x1 = (x0 + 1).min(img.width - 1);
    let y1 = (y0 + 1).min(img.height - 1);
    let a = img.at(x0, y0) + (img.at(x1, y0) - img.at(x0, y0)) * fx;
    let b = img.at(x0, y1) + (img.at(x1, y1) - img.at(x0, y1)) * fx;
    a + (b - a) * fy
}

/// Flow parameters. The defaults are reelbench's fixed method (changing them
/// changes the numbers; docs/metrics.md documents these values).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FlowParams {
    /// Patch side in pixels.
    pub patch: usize,
    /// Distance between patch origins.
    pub stride: usize,
    /// Gauss-Newton iterations per patch and sweep.
    pub iterations: usize,
}

impl Default for FlowParams {
    fn default() -> Self {
        Self {
            patch: 8,
            stride: 4,
            iterations: 12,
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
            u: vec![0.0; width * height],
            v: vec![0.0; width * height],
        }
    }

    /// Bilinear upscale by 2 to `width x height`, flow values doubled.
    fn upscale(&self, width: usize, height: usize) -> Self {
        let mut out = Self::zeros(width, height);
        let sx = self.width as f32 / width as f32;
        let sy = self.height as f32 / height as f32;
        let fu = Image {
            width: self.width,
            height: self.height,
            data: self.u.clone(),
        };
        let fv = Image {
            width: self.width,
            height: self.height,
            data: self.v.clone(),
        };
        let gain_x = width as f32 / self.width as f32;
        let gain_y = height as f32 / self.height as f32;
        for y in 0..height {
            let ys = (y as f32 + 0.5) * sy - 0.5;
            for x in 0..width {
                let xs = (x as f32 + 0.5) * sx - 0.5;
                out.u[y * width + x] = sample(&fu, xs, ys) * gain_x;
                out.v[y * width + x] = sample(&fv, xs, ys) * gain_y;
            }
        }
        out
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

/// Patch origins along an axis of `len` pixels: every `stride`, plus the last
/// position `len - patch` so the patches cover the axis.
fn origins(len: usize, patch: usize, stride: usize) -> Vec<usize> {
    let last = len - patch;
    let mut v: Vec<usize> = (0..=last).step_by(stride).collect();
    if *v.last().expect("len >= patch") != last {
        v.push(last);
    }
    v
}

/// One level's fixed data: the first frame, its gradients, the second frame.
struct Level {
    i0: Image,
    gx: Image,
    gy: Image,
    i1: Image,
}

/// Per-patch precomputation from the first frame (inverse compositional).
struct PatchInfo {
    x: usize,
    y: usize,
    /// Inverse of the mean-normalized Gauss-Newton Hessian.
    inv: [f32; 3],
}

multiversion! {
    /// Mean-normalized SSD of the patch at `(x, y)` in `i0` against `i1`
    /// displaced by `(u, v)`, and the Gauss-Newton right-hand side.
    fn patch_residual(lv: &Level, x: usize, y: usize, p: usize, u: f32, v: f32, grad: bool) -> (f32, f32, f32) {
        let (w, h) = (lv.i1.width, lv.i1.height);
        let n = (p * p) as f32;
        let fx = x as f32 + u;
        let fy = y as f32 + v;
        let inside = fx >= 0.0 && fy >= 0.0 && fx + (p as f32) < (w - 1) as f32
            && fy + (p as f32) < (h - 1) as f32;
        let mut diff = [0.0f32; 32 * 32];
        let mut sum = 0.0f32;
        if inside {
            let bx = fx.floor();
            let by = fy.floor();
            let (ax, ay) = (fx - bx, fy - by);
            let (bx, by) = (bx as usize, by as usize);
            let w00 = (1.0 - ax) * (1.0 - ay);
            let w01 = ax * (1.0 - ay);
            let w10 = (1.0 - ax) * ay;
            let w11 = ax * ay;
            for j in 0..p {
                let r0 = &lv.i1.data[(by + j) * w + bx..][..p + 1];
                let r1 = &lv.i1.data[(by + j + 1) * w + bx..][..p + 1];
                let t = &lv.i0.data[(y + j) * w + x..][..p];
                let d = &mut diff[j * p..(j + 1) * p];
                for i in 0..p {
                    let s = w00 * r0[i] + w01 * r0[i + 1] + w10 * r1[i] + w11 * r1[i + 1];
                    d[i] = s - t[i];
                }
                sum += d.iter().sum::<f32>();
            }
        } else {
            for j in 0..p {
                for i in 0..p {
                    let s = sample(&lv.i1, (x + i) as f32 + u, (y + j) as f32 + v);
                    let d = s - lv.i0.at(x + i, y + j);
                    diff[j * p + i] = d;
                    sum += d;
                }
            }
        }
        let mean = sum / n;
        let mut ssd = 0.0f32;
        let (mut bx, mut by) = (0.0f32, 0.0f32);
        for j in 0..p {
            let d = &diff[j * p..(j + 1) * p];
            if grad {
                let gx = &lv.gx.data[(y + j) * w + x..][..p];
                let gy = &lv.gy.data[(y + j) * w + x..][..p];
                for i in 0..p {
                    let e = d[i] - mean;
                    ssd += e * e;
                    bx += gx[i] * e;
                    by += gy[i] * e;
                }
            } else {
                for &di in d {
                    let e = di - mean;
                    ssd += e * e;
                }
            }
        }
        (ssd, bx, by)
    }
}

impl PatchInfo {
    fn new(lv: &Level, x: usize, y: usize, p: usize) -> Self {
        let w = lv.i0.width;
        let (mut xx, mut xy, mut yy, mut sgx, mut sgy) = (0.0f32, 0.0f32, 0.0f32, 0.0f32, 0.0f32);
        for j in 0..p {
            let gx = &lv.gx.data[(y + j) * w + x..][..p];
            let gy = &lv.gy.data[(y + j) * w + x..][..p];
            for i in 0..p {
                xx += gx[i] * gx[i];
                xy += gx[i] * gy[i];
                yy += gy[i] * gy[i];
                sgx += gx[i];
                sgy += gy[i];
            }
        }
        let n = (p * p) as f32;
        // Mean normalization removes the mean gradient from the Jacobian;
        // a small ridge keeps flat patches (zero Hessian) well posed.
        let ridge = 1e-2 * n;
        let a = xx - sgx * sgx / n + ridge;
        let b = xy - sgx * sgy / n;
        let c = yy - sgy * sgy / n + ridge;
        let det = a * c - b * b;
        Self {
            x,
            y,
            inv: [c / det, -b / det, a / det],
        }
    }

    /// Gauss-Newton from `(u, v)`; the best flow seen and its SSD.
    fn descend(
        &self,
        lv: &Level,
        p: usize,
        iters: usize,
        u: f32,
        v: f32,
        ssd0: f32,
    ) -> (f32, f32, f32) {
        let (mut u, mut v) = (u, v);
        let (mut best_u, mut best_v, mut best) = (u, v, ssd0);
        for it in 0..iters {
            let (ssd, bx, by) = patch_residual(lv, self.x, self.y, p, u, v, true);
            if it > 0 && ssd < best {
                best = ssd;
                best_u = u;
                best_v = v;
            }
            // The residual already has its mean removed, so the gradient
            // sums need no correction here: sum(g * (d - m)) is what it is.
            let du = self.inv[0] * bx + self.inv[1] * by;
            let dv = self.inv[1] * bx + self.inv[2] * by;
            u -= du;
            v -= dv;
            if du * du + dv * dv < 1e-4 {
                break;
            }
        }
        let (ssd, _, _) = patch_residual(lv, self.x, self.y, p, u, v, false);
        if ssd < best {
            (u, v, ssd)
        } else {
            (best_u, best_v, best)
        }
    }
}

/// One level of DIS: patch search seeded by `init`, then densification.
fn level_flow(lv: &Level, init: &Flow, prm: &FlowParams) -> Flow {
    let (w, h) = (lv.i0.width, lv.i0.height);
    let p = prm.patch;
    let xs = origins(w, p, prm.stride);
    let ys = origins(h, p, prm.stride);
    let (nx, ny) = (xs.len(), ys.len());
    let infos: Vec<PatchInfo> = ys
        .iter()
        .flat_map(|&y| xs.iter().map(move |&x| (x, y)))
        .map(|(x, y)| PatchInfo::new(lv, x, y, p))
        .collect();
    let centre = |info: &PatchInfo| (info.y + p / 2) * w + info.x + p / 2;
    let mut pu: Vec<f32> = infos.iter().map(|i| init.u[centre(i)]).collect();
    let mut pv: Vec<f32> = infos.iter().map(|i| init.v[centre(i)]).collect();
    let max_move = p as f32;
    for sweep in 0..2 {
        let forward = sweep == 0;
        let iters = if forward {
            prm.iterations
        } else {
            prm.iterations.div_ceil(2)
        };
        for k in 0..infos.len() {
            let idx = if forward { k } else { infos.len() - 1 - k };
            let (ix, iy) = (idx % nx, idx / nx);
            let info = &infos[idx];
            let mut cand = vec![(pu[idx], pv[idx])];
            let neighbours = if forward {
                [(ix > 0).then(|| idx - 1), (iy > 0).then(|| idx - nx)]
            } else {
                [
                    (ix + 1 < nx).then(|| idx + 1),
                    (iy + 1 < ny).then(|| idx + nx),
                ]
            };
            cand.extend(neighbours.into_iter().flatten().map(|n| (pu[n], pv[n])));
            let (mut su, mut sv, mut sc) = (pu[idx], pv[idx], f32::INFINITY);
            for (cu, cv) in cand {
                let (c, _, _) = patch_residual(lv, info.x, info.y, p, cu, cv, false);
                if c < sc {
                    (su, sv, sc) = (cu, cv, c);
                }
            }
            let (u, v, _) = info.descend(lv, p, iters, su, sv, sc);
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
    densify(lv, &infos, &pu, &pv, p)
}

multiversion! {
    fn densify(lv: &Level, infos: &[PatchInfo], pu: &[f32], pv: &[f32], p: usize) -> Flow {
        let (w, h) = (lv.i0.width, lv.i0.height);
        let mut acc_u = vec![0.0f32; w * h];
        let mut acc_v = vec![0.0f32; w * h];
        let mut acc_w = vec![0.0f32; w * h];
        for (k, info) in infos.iter().enumerate() {
            let (u, v) = (pu[k], pv[k]);
            for j in 0..p {
                let y = info.y + j;
                for i in 0..p {
                    let x = info.x + i;
                    let d = sample(&lv.i1, x as f32 + u, y as f32 + v) - lv.i0.at(x, y);
                    let wt = 1.0 / d.abs().max(1.0);
                    let o = y * w + x;
                    acc_u[o] += wt * u;
                    acc_v[o] += wt * v;
                    acc_w[o] += wt;
                }
            }
        }
        for ((u, v), wt) in acc_u.iter_mut().zip(acc_v.iter_mut()).zip(&acc_w) {
            let r = 1.0 / wt.max(1e-6);
            *u *= r;
            *v *= r;
        }
        Flow { width: w, height: h, u: acc_u, v: acc_v }
    }
}

/// Dense flow from `i0` to `i1` (same shape): for each pixel `x` of `i0`,
/// `i1(x + flow(x)) ≈ i0(x)`. Images smaller than a patch get a zero flow.
pub fn dense_flow(i0: &Image, i1: &Image, prm: &FlowParams) -> Flow {
    let (w, h) = (i0.width, i0.height);
    let p = prm.patch;
    assert!((2..=32).contains(&p), "patch side must be within 2..32");
    if w < p || h < p {
        return Flow::zeros(w, h);
    }
    // Coarsest level: long side near 4 patches, every level at least a patch.
    let mut levels = (w.max(h) as f32 / (4 * p) as f32).log2().round().max(0.0) as usize;
    while levels > 0 && (w.min(h) >> levels) < p {
        levels -= 1;
    }
    let mut pyr0 = vec![i0.clone()];
    let mut pyr1 = vec![i1.clone()];
    for l in 0..levels {
        pyr0.push(half(&pyr0[l]));
        pyr1.push(half(&pyr1[l]));
    }
    let top = &pyr0[levels];
    let mut flow = Flow::zeros(top.width, top.height);
    for l in (0..=levels).rev() {
        let i0l = pyr0[l].clone();
        let (gx, gy) = gradients(&i0l);
        let lv = Level {
            i0: i0l,
            gx,
            gy,
            i1: pyr1[l].clone(),
        };
        if flow.width != lv.i0.width || flow.height != lv.i0.height {
            flow = flow.upscale(lv.i0.width, lv.i0.height);
        }
        flow = level_flow(&lv, &flow, prm);
    }
    flow
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
    let bu = Image {
        width: w,
        height: h,
        data: bwd.u.clone(),
    };
    let bv = Image {
        width: w,
        height: h,
        data: bwd.v.clone(),
    };
    let (mut sum, mut n) = (0.0f64, 0usize);
    for y in 0..h {
        for x in 0..w {
            let o = y * w + x;
            let (u, v) = (fwd.u[o], fwd.v[o]);
            let (tx, ty) = (x as f32 + u, y as f32 + v);
            if tx < 0.0 || ty < 0.0 || tx > (w - 1) as f32 || ty > (h - 1) as f32 {
                continue;
            }
            let (ub, vb) = (sample(&bu, tx, ty), sample(&bv, tx, ty));
            let (eu, ev) = (u + ub, v + vb);
            if eu * eu + ev * ev > 0.01 * (u * u + v * v + ub * ub + vb * vb) + 0.5 {
                continue;
            }
            sum += (sample(i1, tx, ty) - i0.data[o]).abs() as f64;
            n += 1;
        }
    }
    WarpCheck {
        warp_error: if n == 0 { f64::NAN } else { sum / n as f64 },
        consistent: n as f64 / (w * h) as f64,
    }
}
