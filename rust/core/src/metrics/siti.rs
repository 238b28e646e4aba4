//! Spatial and temporal information (ITU-T P.910) exactly as FFmpeg's `siti`
//! filter computes them on 8-bit video: limited-range luma is first mapped to
//! full range (`255 * clamp(y - 16, 0, 219) / 219`, integer division); SI is
//! the population standard deviation of the Sobel gradient magnitude over the
//! interior pixels, TI that of the difference from the previous frame over
//! all pixels. Magnitudes are `f32` and the mean is accumulated in `f64`, as
//! in the filter, so the values agree to its printed two decimals.

use super::dispatch::multiversion;
use super::flow::pool;
use super::plane::Plane;

/// The full-range value of each 8-bit sample (identity for full-range video):
/// the mapping written as a table, which the tests hold the computed rows to.
#[cfg(test)]
pub fn range_lut(full_range: bool) -> [u16; 256] {
    let mut lut = [0u16; 256];
    for (v, out) in lut.iter_mut().enumerate() {
        *out = if full_range {
            v as u16
        } else {
            let limited = (v as i32 - 16).clamp(0, 219);
            (255 * limited / 219) as u16
        };
    }
    lut
}

/// The plane mapped to full range, packed, into `out`.
pub fn to_full_range(p: Plane<'_>, full_range: bool, out: &mut Vec<i16>) {
    out.clear();
    out.resize(p.width() * p.height(), 0);
    for (y, dst) in out.chunks_exact_mut(p.width().max(1)).enumerate() {
        full_range_row(p.row(y), full_range, dst);
    }
}

multiversion! {
    /// One row of [`to_full_range`]: [`range_lut`]'s formula, computed (the
    /// division by the constant 219 vectorizes; a table lookup does not).
    fn full_range_row(src: &[u8], full_range: bool, dst: &mut [i16]) -> () {
        if full_range {
            for (d, &v) in dst.iter_mut().zip(src) {
                *d = v as i16;
            }
        } else {
            for (d, &v) in dst.iter_mut().zip(src) {
                let limited = (v as u32).saturating_sub(16).min(219);
                *d = (255 * limited / 219) as i16;
            }
        }
    }
}

/// Lanes of the `f64` sums: four AVX-512 vectors, so the adds overlap.
const LANES: usize = 32;

multiversion! {
    /// Σ `values` in `f64`, in interleaved lanes (the filter sums in order;
    /// the two differ by rounding in the last bits only).
    fn sum_f64(values: &[f32]) -> f64 {
        let mut lanes = [0f64; LANES];
        let chunks = values.chunks_exact(LANES);
        let rest = chunks.remainder();
        for c in chunks {
            for k in 0..LANES {
                lanes[k] += c[k] as f64;
            }
        }
        for (k, &v) in rest.iter().enumerate() {
            lanes[k] += v as f64;
        }
        lanes.iter().sum()
    }
}

multiversion! {
    /// Σ `(v - mean)²`, the difference rounded to `f32` and squared in `f32`
    /// as in the filter, summed in `f64` lanes.
    fn sum_sq_dev(values: &[f32], mean: f64) -> f64 {
        let mut lanes = [0f64; LANES];
        let chunks = values.chunks_exact(LANES);
        let rest = chunks.remainder();
        for c in chunks {
            for k in 0..LANES {
                let d = (c[k] as f64 - mean) as f32;
                lanes[k] += (d * d) as f64;
            }
        }
        for (k, &v) in rest.iter().enumerate() {
            let d = (v as f64 - mean) as f32;
            lanes[k] += (d * d) as f64;
        }
        lanes.iter().sum()
    }
}

multiversion! {
    /// Σ `cur[i] - prev[i]`, exact in integers (as the filter's f64 sum of
    /// these integers is).
    fn sum_differences(prev: &[i16], cur: &[i16]) -> i64 {
        let mut total = 0i64;
        // i32 lanes per chunk: |d| <= 255, so 4096 of them cannot overflow.
        for (a, b) in prev.chunks(4096).zip(cur.chunks(4096)) {
            let mut s = 0i32;
            for (&p, &c) in a.iter().zip(b) {
                s += c as i32 - p as i32;
            }
            total += s as i64;
        }
        total
    }
}

multiversion! {
    /// [`sum_sq_dev`] of the differences `cur[i] - prev[i]`, without storing them.
    fn sum_sq_dev_of_differences(prev: &[i16], cur: &[i16], mean: f64) -> f64 {
        let mut lanes = [0f64; LANES];
        let (pc, cc) = (prev.chunks_exact(LANES), cur.chunks_exact(LANES));
        let (pr, cr) = (pc.remainder(), cc.remainder());
        for (a, b) in pc.zip(cc) {
            for k in 0..LANES {
                let d = ((b[k] as i32 - a[k] as i32) as f64 - mean) as f32;
                lanes[k] += (d * d) as f64;
            }
        }
        for (k, (&p, &c)) in pr.iter().zip(cr).enumerate() {
            let d = ((c as i32 - p as i32) as f64 - mean) as f32;
            lanes[k] += (d * d) as f64;
        }
        lanes.iter().sum()
    }
}

/// Population standard deviation of `values`, the way the filter computes it.
fn std_f32(values: &[f32]) -> f64 {
    let n = values.len() as f64;
    let mean = sum_f64(values) / n;
    (sum_sq_dev(values, mean) / n).sqrt() as f32 as f64
}

multiversion! {
    fn sobel_row(up: &[i16], mid: &[i16], down: &[i16], out: &mut [f32]) -> () {
        let n = out.len();
        for i in 0..n {
            let gx = (up[i] as i32 - up[i + 2] as i32)
                + 2 * (mid[i] as i32 - mid[i + 2] as i32)
                + (down[i] as i32 - down[i + 2] as i32);
            let gy = (up[i] as i32 + 2 * up[i + 1] as i32 + up[i + 2] as i32)
                - (down[i] as i32 + 2 * down[i + 1] as i32 + down[i + 2] as i32);
            // The filter takes the square root in f64 and stores an f32. The
            // sum is below 2^24, so it is exact in f32, and a correctly
            // rounded f32 root equals the f64 root rounded to f32 (f64 has
            // more than 2·24 + 2 bits): the same value, sixteen lanes at a time.
            out[i] = ((gx * gx + gy * gy) as f32).sqrt();
        }
    }
}

/// SI of a full-range packed `width x height` frame; NaN below 3x3.
pub fn spatial_information(full: &[i16], width: usize, height: usize) -> f64 {
    if width < 3 || height < 3 {
        return f64::NAN;
    }
    let iw = width - 2;
    let mut grad = pool::take(iw * (height - 2));
    for y in 1..height - 1 {
        sobel_row(
            &full[(y - 1) * width..y * width],
            &full[y * width..(y + 1) * width],
            &full[(y + 1) * width..(y + 2) * width],
            &mut grad[(y - 1) * iw..y * iw],
        );
    }
    let si = std_f32(&grad);
    pool::give(grad);
    si
}

/// TI between two full-range packed frames of the same size.
pub fn temporal_information(prev: &[i16], cur: &[i16]) -> f64 {
    let n = cur.len().min(prev.len());
    let (prev, cur) = (&prev[..n], &cur[..n]);
    let mean = sum_differences(prev, cur) as f64 / n as f64;
    (sum_sq_dev_of_differences(prev, cur, mean) / n as f64).sqrt() as f32 as f64
}
