//! Per-frame and per-pair kernels other than SSIM: sums that are exact in
//! integers, turned into floats once at the end.

use super::dispatch::multiversion;
use super::plane::{same_shape, Plane};
use crate::Result;

/// Pixels per inner chunk: keeps the `u32` partial sums from overflowing
/// (4096 * 1020² < 2³²) while letting LLVM vectorize the inner loop.
const CHUNK: usize = 4096;

/// Sums of one frame: pixel sum, sum of squares, pixels below a threshold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LumaSums {
    pub count: u64,
    pub sum: u64,
    pub sum_sq: u64,
    pub below: u64,
}

impl LumaSums {
    /// Mean pixel value.
    pub fn mean(&self) -> f64 {
        self.sum as f64 / self.count as f64
    }

    /// Population standard deviation (numpy's `std` with `ddof=0`).
    pub fn std(&self) -> f64 {
        // n² · var = n·Σx² − (Σx)², exact in integers.
        let n = self.count as u128;
        let num = n * self.sum_sq as u128 - (self.sum as u128) * (self.sum as u128);
        ((num as f64) / (n as f64 * n as f64)).sqrt()
    }

    /// Share of pixels below the threshold.
    pub fn below_share(&self) -> f64 {
        self.below as f64 / self.count as f64
    }
}

multiversion! {
    /// Sum, sum of squares and count of pixels `< threshold`, in one pass.
    pub fn luma_sums(a: Plane<'_>, threshold: u8) -> LumaSums {
        let mut out = LumaSums { count: (a.width() * a.height()) as u64, ..LumaSums::default() };
        for y in 0..a.height() {
            for chunk in a.row(y).chunks(CHUNK) {
                let (mut s, mut ss, mut below) = (0u32, 0u32, 0u32);
                for &v in chunk {
                    let v32 = v as u32;
                    s += v32;
                    ss += v32 * v32;
                    below += (v < threshold) as u32;
                }
                out.sum += s as u64;
                out.sum_sq += ss as u64;
                out.below += below as u64;
            }
        }
        out
    }
}

/// Sums of the difference of two frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiffSums {
    pub count: u64,
    pub sum_abs: u64,
    pub sum_sq: u64,
}

impl DiffSums {
    /// Mean absolute difference.
    pub fn mad(&self) -> f64 {
        self.sum_abs as f64 / self.count as f64
    }

    /// Mean squared error.
    pub fn mse(&self) -> f64 {
        self.sum_sq as f64 / self.count as f64
    }

    /// PSNR as FFmpeg's `psnr` filter computes it; `+inf` for identical frames.
    pub fn psnr(&self) -> f64 {
        psnr_from_mse(self.mse())
    }
}

/// `10·log10(255² / mse)`; `+inf` when `mse == 0`.
pub fn psnr_from_mse(mse: f64) -> f64 {
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0 * 255.0 / mse).log10()
    }
}

multiversion! {
    fn diff_sums_unchecked(a: Plane<'_>, b: Plane<'_>) -> DiffSums {
        let mut out = DiffSums { count: (a.width() * a.height()) as u64, ..DiffSums::default() };
        for y in 0..a.height() {
            for (ca, cb) in a.row(y).chunks(CHUNK).zip(b.row(y).chunks(CHUNK)) {
                let (mut sa, mut ss) = (0u32, 0u32);
                for (&p, &q) in ca.iter().zip(cb) {
                    let d = p.abs_diff(q) as u32;
                    sa += d;
                    ss += d * d;
                }
                out.sum_abs += sa as u64;
                out.sum_sq += ss as u64;
            }
        }
        out
    }
}

/// Sum of absolute and of squared differences, in one pass.
pub fn diff_sums(a: Plane<'_>, b: Plane<'_>) -> Result<DiffSums> {
    same_shape(&a, &b)?;
    Ok(diff_sums_unchecked(a, b))
}

/// Sum and sum of squares of the 4-neighbour Laplacian of one interior row
/// (`mid` between `up` and `down`), columns `1..w-1`, in scalar code.
#[inline(always)]
fn laplacian_row(up: &[u8], mid: &[u8], down: &[u8], from: usize) -> (i64, u64) {
    let w = mid.len();
    let (mut sum, mut sum_sq) = (0i64, 0u64);
    let n = w - 2;
    let mut x0 = from;
    while x0 < n {
        let len = CHUNK.min(n - x0);
        let (mut s, mut ss) = (0i32, 0u32);
        let up = &up[x0 + 1..x0 + 1 + len];
        let down = &down[x0 + 1..x0 + 1 + len];
        let left = &mid[x0..x0 + len];
        let centre = &mid[x0 + 1..x0 + 1 + len];
        let right = &mid[x0 + 2..x0 + 2 + len];
        for i in 0..len {
            let lap = up[i] as i32 + down[i] as i32 + left[i] as i32 + right[i] as i32
                - 4 * centre[i] as i32;
            s += lap;
            ss += (lap * lap) as u32;
        }
        sum += s as i64;
        sum_sq += ss as u64;
        x0 += len;
    }
    (sum, sum_sq)
}

/// The Laplacian sums on CPUs without AVX2 (the AVX2 build serves AVX-512
/// machines too, so this one needs no multiversion copies).
fn laplacian_sums_baseline(a: Plane<'_>) -> (i64, u64) {
    let (mut sum, mut sum_sq) = (0i64, 0u64);
    for y in 1..a.height() - 1 {
        let (s, ss) = laplacian_row(a.row(y - 1), a.row(y), a.row(y + 1), 0);
        sum += s;
        sum_sq += ss;
    }
    (sum, sum_sq)
}

/// The Laplacian sums with AVX2: 16 columns per step in 16-bit lanes
/// (|lap| <= 1020), squared and pair-summed into 32-bit lanes by `vpmaddwd`
/// (LLVM widens to 32 bits first and multiplies there, at half the rate).
/// Used on AVX2 and AVX-512 machines alike.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn laplacian_sums_avx2(a: Plane<'_>) -> (i64, u64) {
    use std::arch::x86_64::*;
    let w = a.width();
    let n = w - 2;
    let steps = n / 16;
    let (mut sum, mut sum_sq) = (0i64, 0u64);
    let ones = _mm256_set1_epi16(1);
    for y in 1..a.height() - 1 {
        let (up, mid, down) = (a.row(y - 1), a.row(y), a.row(y + 1));
        // Per row and lane (at most 480 steps for 7680 px): |Σ lap| and
        // Σ lap² (at most 2·1020² per step) fit 32 bits.
        let mut acc = _mm256_setzero_si256();
        let mut acc_sq = _mm256_setzero_si256();
        for k in 0..steps {
            let x = 1 + 16 * k;
            // SAFETY: x + 1 + 16 <= w: every 16-byte load lies within its row.
            let (u, d, l, r, c) = unsafe {
                let load = |s: &[u8], at: usize| {
                    _mm256_cvtepu8_epi16(_mm_loadu_si128(s.as_ptr().add(at).cast()))
                };
                (
                    load(up, x),
                    load(down, x),
                    load(mid, x - 1),
                    load(mid, x + 1),
                    load(mid, x),
                )
            };
            let lap = _mm256_sub_epi16(
                _mm256_add_epi16(_mm256_add_epi16(u, d), _mm256_add_epi16(l, r)),
                _mm256_slli_epi16::<2>(c),
            );
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(lap, ones));
            acc_sq = _mm256_add_epi32(acc_sq, _mm256_madd_epi16(lap, lap));
        }
        let (mut lanes, mut lanes_sq) = ([0i32; 8], [0u32; 8]);
        // SAFETY: both arrays are 32 bytes; unaligned stores.
        unsafe {
            _mm256_storeu_si256(lanes.as_mut_ptr().cast(), acc);
            _mm256_storeu_si256(lanes_sq.as_mut_ptr().cast(), acc_sq);
        }
        sum += lanes.iter().map(|&v| v as i64).sum::<i64>();
        sum_sq += lanes_sq.iter().map(|&v| v as u64).sum::<u64>();
        let (s, ss) = laplacian_row(up, mid, down, steps * 16);
        sum += s;
        sum_sq += ss;
    }
    (sum, sum_sq)
}

/// Count, sum and sum of squares of the 4-neighbour Laplacian over the
/// interior pixels (the frame border has no full neighbourhood).
fn laplacian_sums(a: Plane<'_>) -> (u64, i64, u64) {
    let (w, h) = (a.width(), a.height());
    if w < 3 || h < 3 {
        return (0, 0, 0);
    }
    #[cfg(target_arch = "x86_64")]
    let (sum, sum_sq) = if super::dispatch::isa() >= super::dispatch::Isa::Avx2 {
        // SAFETY: `isa()` answers Avx2 or Avx512 only when the CPU has AVX2.
        unsafe { laplacian_sums_avx2(a) }
    } else {
        laplacian_sums_baseline(a)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let (sum, sum_sq) = laplacian_sums_baseline(a);
    (((w - 2) * (h - 2)) as u64, sum, sum_sq)
}

/// Variance of the 4-neighbour Laplacian over interior pixels; NaN for frames
/// without interior pixels (narrower or shorter than 3).
pub fn laplacian_var(a: Plane<'_>) -> f64 {
    let (n, sum, sum_sq) = laplacian_sums(a);
    if n == 0 {
        return f64::NAN;
    }
    let n = n as i128;
    let num = n * sum_sq as i128 - (sum as i128) * (sum as i128);
    num as f64 / (n as f64 * n as f64)
}

/// Mean and population standard deviation of the pixels.
pub fn luma_stats(a: Plane<'_>) -> (f64, f64) {
    let s = luma_sums(a, 0);
    (s.mean(), s.std())
}

/// Share of pixels strictly below `threshold`.
pub fn black_share(a: Plane<'_>, threshold: u8) -> f64 {
    luma_sums(a, threshold).below_share()
}

/// Mean squared error of two frames of the same shape.
pub fn mse(a: Plane<'_>, b: Plane<'_>) -> Result<f64> {
    Ok(diff_sums(a, b)?.mse())
}

/// Mean absolute difference of two frames of the same shape.
pub fn mad(a: Plane<'_>, b: Plane<'_>) -> Result<f64> {
    Ok(diff_sums(a, b)?.mad())
}

/// PSNR in dB as FFmpeg's `psnr` filter defines it; `+inf` for identical frames.
pub fn psnr(a: Plane<'_>, b: Plane<'_>) -> Result<f64> {
    Ok(diff_sums(a, b)?.psnr())
}

/// Sharpness: variance of the 4-neighbour Laplacian over interior pixels
/// (NaN for frames narrower or shorter than 3 pixels).
pub fn sharpness(a: Plane<'_>) -> f64 {
    laplacian_var(a)
}
