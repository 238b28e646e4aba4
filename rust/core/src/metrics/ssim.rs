//! SSIM exactly as FFmpeg's `ssim` filter (after x264) computes it on one
//! 8-bit plane: sums over 4x4 blocks, 8x8 windows (2x2 blocks) stepping 4
//! pixels, integer moments turned into `f32` per window, the mean over the
//! `(W/4 - 1)(H/4 - 1)` windows. Columns and rows beyond the last full 4x4
//! block are ignored, as in FFmpeg.

use super::dispatch::multiversion;
use super::kernels::{diff_sums, DiffSums};
use super::plane::{same_shape, Plane};
use crate::Result;

/// round(0.01² · 255² · 64)
const C1: i32 = 416;
/// round(0.03² · 255² · 64 · 63)
const C2: i32 = 235_963;

/// Sums of one row of 4x4 blocks, one array per moment (structure of arrays,
/// so the window step vectorizes).
#[derive(Default)]
struct BlockRow {
    s1: Vec<i32>,
    s2: Vec<i32>,
    ss: Vec<i32>,
    s12: Vec<i32>,
}

impl BlockRow {
    fn new(blocks: usize) -> Self {
        Self {
            s1: vec![0; blocks],
            s2: vec![0; blocks],
            ss: vec![0; blocks],
            s12: vec![0; blocks],
        }
    }
}

/// Per-column sums of the four pixel rows of one block row.
struct ColumnSums {
    a: Vec<i32>,
    b: Vec<i32>,
    ss: Vec<i32>,
    ab: Vec<i32>,
}

/// Sums of |a - b| and (a - b)² over the pixels the blocks cover, gathered
/// on the way (the pixels are in registers already).
#[derive(Default)]
struct Covered {
    sum_abs: u64,
    sum_sq: u64,
}

/// The per-window SSIM, as FFmpeg's `ssim_end1` (integer moments, `f32` ratio).
#[inline(always)]
fn ssim_end1(s1: i32, s2: i32, ss: i32, s12: i32) -> f32 {
    let vars = ss * 64 - s1 * s1 - s2 * s2;
    let covar = s12 * 64 - s1 * s2;
    ((2 * s1 * s2 + C1) as f32 * (2 * covar + C2) as f32)
        / ((s1 * s1 + s2 * s2 + C1) as f32 * (vars + C2) as f32)
}

/// Fill `out` with the 4x4 block sums of block row `by`.
#[inline(always)]
fn block_row(
    a: &Plane<'_>,
    b: &Plane<'_>,
    by: usize,
    cols: &mut ColumnSums,
    out: &mut BlockRow,
    covered: &mut Covered,
) {
    let blocks = out.s1.len();
    let n = blocks * 4;
    let y = by * 4;
    let (a0, a1, a2, a3) = (
        &a.row(y)[..n],
        &a.row(y + 1)[..n],
        &a.row(y + 2)[..n],
        &a.row(y + 3)[..n],
    );
    let (b0, b1, b2, b3) = (
        &b.row(y)[..n],
        &b.row(y + 1)[..n],
        &b.row(y + 2)[..n],
        &b.row(y + 3)[..n],
    );
    let (ca, cb, css, cab) = (
        &mut cols.a[..n],
        &mut cols.b[..n],
        &mut cols.ss[..n],
        &mut cols.ab[..n],
    );
    // Vertical sums first: contiguous, so they vectorize fully. Per block
    // row, |a - b| <= 4·255·n and (a - b)² <= 4·255²·n fit u32 for widths
    // up to 16 000 px (the canonical format stops at 7680).
    let (mut sum_abs, mut sum_sq) = (0u32, 0u32);
    for x in 0..n {
        let (p0, p1, p2, p3) = (a0[x] as i32, a1[x] as i32, a2[x] as i32, a3[x] as i32);
        let (q0, q1, q2, q3) = (b0[x] as i32, b1[x] as i32, b2[x] as i32, b3[x] as i32);
        ca[x] = p0 + p1 + p2 + p3;
        cb[x] = q0 + q1 + q2 + q3;
        let ss = p0 * p0 + p1 * p1 + p2 * p2 + p3 * p3 + q0 * q0 + q1 * q1 + q2 * q2 + q3 * q3;
        let ab = p0 * q0 + p1 * q1 + p2 * q2 + p3 * q3;
        css[x] = ss;
        cab[x] = ab;
        // Σ(p - q)² = Σp² + Σq² - 2Σpq: already at hand.
        sum_sq = sum_sq.wrapping_add((ss - 2 * ab) as u32);
        sum_abs = sum_abs.wrapping_add(
            ((p0 - q0).abs() + (p1 - q1).abs() + (p2 - q2).abs() + (p3 - q3).abs()) as u32,
        );
    }
    covered.sum_abs += sum_abs as u64;
    covered.sum_sq += sum_sq as u64;
    // Then groups of four columns.
    fn group4(src: &[i32], dst: &mut [i32]) {
        for (d, s) in dst.iter_mut().zip(src.chunks_exact(4)) {
            *d = s[0] + s[1] + s[2] + s[3];
        }
    }
    group4(ca, &mut out.s1);
    group4(cb, &mut out.s2);
    group4(css, &mut out.ss);
    group4(cab, &mut out.s12);
}

/// Sum of the SSIM of the windows spanning block rows `p` (above) and `c`.
#[inline(always)]
fn window_row(p: &BlockRow, c: &BlockRow, tmp: &mut [f32]) -> f64 {
    let nw = tmp.len();
    let (p1, p1n, c1, c1n) = (&p.s1[..nw], &p.s1[1..=nw], &c.s1[..nw], &c.s1[1..=nw]);
    let (p2, p2n, c2, c2n) = (&p.s2[..nw], &p.s2[1..=nw], &c.s2[..nw], &c.s2[1..=nw]);
    let (pss, pssn, css, cssn) = (&p.ss[..nw], &p.ss[1..=nw], &c.ss[..nw], &c.ss[1..=nw]);
    let (p12, p12n, c12, c12n) = (&p.s12[..nw], &p.s12[1..=nw], &c.s12[..nw], &c.s12[1..=nw]);
    for i in 0..nw {
        tmp[i] = ssim_end1(
            p1[i] + p1n[i] + c1[i] + c1n[i],
            p2[i] + p2n[i] + c2[i] + c2n[i],
            pss[i] + pssn[i] + css[i] + cssn[i],
            p12[i] + p12n[i] + c12[i] + c12n[i],
        );
    }
    // Eight independent f32 lanes, then f64: vectorizes, and is no less
    // accurate than FFmpeg's sequential f32 row sum.
    let mut lanes = [0f32; 8];
    let chunks = tmp.chunks_exact(8);
    let rest: f32 = chunks.remainder().iter().sum();
    for ch in chunks {
        for k in 0..8 {
            lanes[k] += ch[k];
        }
    }
    lanes.iter().map(|&v| v as f64).sum::<f64>() + rest as f64
}

multiversion! {
    /// SSIM and the difference sums of the pixels covered by whole 4x4 blocks
    /// (`wb·4` columns x `hb·4` rows).
    fn ssim_covered(a: Plane<'_>, b: Plane<'_>) -> (f64, u64, u64) {
        let (wb, hb) = (a.width() / 4, a.height() / 4);
        let n = wb * 4;
        let mut cols = ColumnSums { a: vec![0; n], b: vec![0; n], ss: vec![0; n], ab: vec![0; n] };
        let mut prev = BlockRow::new(wb);
        let mut cur = BlockRow::new(wb);
        let mut covered = Covered::default();
        if wb == 0 || hb == 0 {
            return (f64::NAN, 0, 0);
        }
        block_row(&a, &b, 0, &mut cols, &mut prev, &mut covered);
        let mut total = 0f64;
        let mut tmp = vec![0f32; wb.saturating_sub(1)];
        for by in 1..hb {
            block_row(&a, &b, by, &mut cols, &mut cur, &mut covered);
            if wb >= 2 {
                total += window_row(&prev, &cur, &mut tmp);
            }
            std::mem::swap(&mut prev, &mut cur);
        }
        let value = if wb < 2 || hb < 2 {
            // No complete 8x8 window: FFmpeg divides 0 by 0 here.
            f64::NAN
        } else {
            total / ((wb - 1) * (hb - 1)) as f64
        };
        (value, covered.sum_abs, covered.sum_sq)
    }
}

/// SSIM of two 8-bit planes of the same shape, as FFmpeg's `ssim` filter
/// reports it for that plane. NaN when the frame holds no 8x8 window
/// (narrower or shorter than 8 pixels).
pub fn ssim(a: Plane<'_>, b: Plane<'_>) -> Result<f64> {
    same_shape(&a, &b)?;
    Ok(ssim_covered(a, b).0)
}

/// SSIM and the sums of absolute and squared differences of the whole
/// planes, in one pass over the pixels (the strips right of and below the
/// last whole 4x4 block, which SSIM ignores, are summed on their own).
pub fn ssim_and_diff(a: Plane<'_>, b: Plane<'_>) -> Result<(f64, DiffSums)> {
    same_shape(&a, &b)?;
    let (w, h) = (a.width(), a.height());
    let (cw, ch) = ((w / 4) * 4, (h / 4) * 4);
    let (value, mut sum_abs, mut sum_sq) = ssim_covered(a, b);
    if cw == 0 || ch == 0 {
        // No whole block: the difference is all remainder.
        return Ok((value, diff_sums(a, b)?));
    }
    let mut add = |x: usize, y: usize, cw: usize, ch: usize| -> Result<()> {
        if cw > 0 && ch > 0 {
            let d = diff_sums(a.crop(x, y, cw, ch)?, b.crop(x, y, cw, ch)?)?;
            sum_abs += d.sum_abs;
            sum_sq += d.sum_sq;
        }
        Ok(())
    };
    add(cw, 0, w - cw, h)?; // right strip, full height
    add(0, ch, cw, h - ch)?; // bottom strip, left of it
    Ok((
        value,
        DiffSums {
            count: (w * h) as u64,
            sum_abs,
            sum_sq,
        },
    ))
}
