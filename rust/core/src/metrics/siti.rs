//! Spatial and temporal information (ITU-T P.910) exactly as FFmpeg's `siti`
//! filter computes them on 8-bit video: limited-range luma is first mapped to
//! full range (`255 * clamp(y - 16, 0, 219) / 219`, integer division); SI is
//! the population standard deviation of the Sobel gradient magnitude over the
//! interior pixels, TI that of the difference from the previous frame over
//! all pixels. Magnitudes are `f32` and the mean is accumulated in `f64`, as
//! in the filter, so the values agree to its printed two decimals.

use super::dispatch::multiversion;
use super::plane::Plane;

/// The full-range value of each 8-bit sample (identity for full-range video).
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
    let lut = range_lut(full_range);
    out.clear();
    out.reserve(p.width() * p.height());
    for y in 0..p.height() {
        out.extend(p.row(y).iter().map(|&v| lut[v as usize] as i16));
    }
}

/// Population standard deviation of `f32` values the way the filter sums it.
fn std_f32(values: impl Iterator<Item = f32> + Clone, n: usize) -> f64 {
    let mean = values.clone().map(f64::from).sum::<f64>() / n as f64;
    let sq: f64 = values
        .map(|v| {
            let d = (v as f64 - mean) as f32;
            (d * d) as f64
        })
        .sum();
    (sq / n as f64).sqrt() as f32 as f64
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
            out[i] = ((gx * gx + gy * gy) as f64).sqrt() as f32;
        }
    }
}

/// SI of a full-range packed `width x height` frame; NaN below 3x3.
pub fn spatial_information(full: &[i16], width: usize, height: usize) -> f64 {
    if width < 3 || height < 3 {
        return f64::NAN;
    }
    let iw = width - 2;
    let mut grad = vec![0.0f32; iw * (height - 2)];
    for y in 1..height - 1 {
        sobel_row(
            &full[(y - 1) * width..y * width],
            &full[y * width..(y + 1) * width],
            &full[(y + 1) * width..(y + 2) * width],
            &mut grad[(y - 1) * iw..y * iw],
        );
    }
    std_f32(grad.iter().copied(), grad.len())
}

/// TI between two full-range packed frames of the same size.
pub fn temporal_information(prev: &[i16], cur: &[i16]) -> f64 {
    std_f32(
        prev.iter()
            .zip(cur)
            .map(|(&a, &b)| (b as i32 - a as i32) as f32),
        cur.len(),
    )
}
