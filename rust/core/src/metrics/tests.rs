//! Kernels against straightforward scalar references (FFmpeg's SSIM written
//! as its C code loops), on random, constant, odd-sized and strided planes.

use super::*;
use crate::Error;

/// Deterministic pseudo-random bytes (no dependency needed).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 56) as u8
        })
        .collect()
}

/// `b` = `a` plus small noise, so SSIM is high but not 1.
fn related(a: &[u8], seed: u64) -> Vec<u8> {
    a.iter()
        .zip(noise(a.len(), seed))
        .map(|(&p, n)| (p as i32 + (n as i32 % 9) - 4).clamp(0, 255) as u8)
        .collect()
}

/// FFmpeg's `ssim_plane` for 8-bit input, loop for loop.
fn ffmpeg_ssim(a: &Plane<'_>, b: &Plane<'_>) -> f64 {
    let (w, h) = (a.width() / 4, a.height() / 4);
    let sums = |by: usize| -> Vec<[i32; 4]> {
        (0..w)
            .map(|bx| {
                let mut s = [0i32; 4];
                for y in 0..4 {
                    for x in 0..4 {
                        let p = a.row(by * 4 + y)[bx * 4 + x] as i32;
                        let q = b.row(by * 4 + y)[bx * 4 + x] as i32;
                        s[0] += p;
                        s[1] += q;
                        s[2] += p * p + q * q;
                        s[3] += p * q;
                    }
                }
                s
            })
            .collect()
    };
    let end1 = |s1: i32, s2: i32, ss: i32, s12: i32| -> f32 {
        let vars = ss * 64 - s1 * s1 - s2 * s2;
        let covar = s12 * 64 - s1 * s2;
        ((2 * s1 * s2 + 416) as f32 * (2 * covar + 235963) as f32)
            / ((s1 * s1 + s2 * s2 + 416) as f32 * (vars + 235963) as f32)
    };
    let mut total = 0f64;
    for y in 1..h {
        let (s0, s1) = (sums(y - 1), sums(y));
        let mut row = 0f32;
        for i in 0..w - 1 {
            let k = |j: usize| s0[i][j] + s0[i + 1][j] + s1[i][j] + s1[i + 1][j];
            row += end1(k(0), k(1), k(2), k(3));
        }
        total += row as f64;
    }
    total / ((h - 1) * (w - 1)) as f64
}

const SIZES: [(usize, usize); 8] = [
    (8, 8),
    (9, 13),
    (16, 16),
    (33, 47),
    (64, 20),
    (120, 90),
    (1920, 16),
    (70, 1081),
];

#[test]
fn ssim_matches_ffmpeg_reference_on_random_and_related_frames() {
    for (i, &(w, h)) in SIZES.iter().enumerate() {
        let a = noise(w * h, i as u64);
        for b in [noise(w * h, 100 + i as u64), related(&a, 200 + i as u64)] {
            let (pa, pb) = (
                Plane::packed(&a, w, h).unwrap(),
                Plane::packed(&b, w, h).unwrap(),
            );
            let got = ssim(pa, pb).unwrap();
            let want = ffmpeg_ssim(&pa, &pb);
            assert!((got - want).abs() < 1e-6, "{w}x{h}: {got} vs {want}");
        }
    }
}

#[test]
fn ssim_reads_rows_through_the_stride() {
    let (w, h, stride) = (37, 29, 48);
    let a = noise(stride * h, 1);
    let b = related(&a, 2);
    let packed = |d: &[u8]| -> Vec<u8> {
        (0..h)
            .flat_map(|y| d[y * stride..y * stride + w].to_vec())
            .collect()
    };
    let (pa, pb) = (packed(&a), packed(&b));
    let strided = ssim(
        Plane::new(&a, w, h, stride).unwrap(),
        Plane::new(&b, w, h, stride).unwrap(),
    )
    .unwrap();
    let tight = ssim(
        Plane::packed(&pa, w, h).unwrap(),
        Plane::packed(&pb, w, h).unwrap(),
    )
    .unwrap();
    assert_eq!(strided, tight);
}

#[test]
fn ssim_is_one_for_identical_and_nan_without_a_window() {
    let a = noise(64 * 48, 3);
    let p = Plane::packed(&a, 64, 48).unwrap();
    assert_eq!(ssim(p, p).unwrap(), 1.0);
    let small = Plane::packed(&a[..7 * 40], 40, 7).unwrap();
    assert!(ssim(small, small).unwrap().is_nan());
}

#[test]
fn shape_mismatch_names_both_shapes() {
    let a = vec![0u8; 12 * 10];
    let b = vec![0u8; 14 * 10];
    let err = ssim(
        Plane::packed(&a, 12, 10).unwrap(),
        Plane::packed(&b, 14, 10).unwrap(),
    )
    .unwrap_err();
    assert!(matches!(
        err,
        Error::ShapeMismatch {
            a: (10, 12),
            b: (10, 14)
        }
    ));
}

#[test]
fn difference_kernels_match_scalar_sums() {
    for (i, &(w, h)) in SIZES.iter().enumerate() {
        let a = noise(w * h, 10 + i as u64);
        let b = noise(w * h, 20 + i as u64);
        let (pa, pb) = (
            Plane::packed(&a, w, h).unwrap(),
            Plane::packed(&b, w, h).unwrap(),
        );
        let n = (w * h) as f64;
        let sq: f64 = a
            .iter()
            .zip(&b)
            .map(|(&p, &q)| ((p as f64) - (q as f64)).powi(2))
            .sum();
        let ab: f64 = a
            .iter()
            .zip(&b)
            .map(|(&p, &q)| ((p as f64) - (q as f64)).abs())
            .sum();
        assert!((mse(pa, pb).unwrap() - sq / n).abs() < 1e-9);
        assert!((mad(pa, pb).unwrap() - ab / n).abs() < 1e-9);
        let want_psnr = 10.0 * (255.0f64 * 255.0 / (sq / n)).log10();
        assert!((psnr(pa, pb).unwrap() - want_psnr).abs() < 1e-9);
        assert_eq!(psnr(pa, pa).unwrap(), f64::INFINITY);
    }
}

#[test]
fn luma_black_and_sharpness_match_scalar_definitions() {
    for (i, &(w, h)) in SIZES.iter().enumerate() {
        let a = noise(w * h, 30 + i as u64);
        let p = Plane::packed(&a, w, h).unwrap();
        let n = (w * h) as f64;
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = a.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        let (m, s) = luma_stats(p);
        assert!((m - mean).abs() < 1e-9 && (s - var.sqrt()).abs() < 1e-9);
        let below = a.iter().filter(|&&v| v < 38).count() as f64 / n;
        assert_eq!(black_share(p, 38), below);
        let mut laps = Vec::new();
        for y in 1..h - 1 {
            for x in 1..w - 1 {
                let at = |yy: usize, xx: usize| a[yy * w + xx] as f64;
                laps.push(
                    at(y - 1, x) + at(y + 1, x) + at(y, x - 1) + at(y, x + 1) - 4.0 * at(y, x),
                );
            }
        }
        let lm = laps.iter().sum::<f64>() / laps.len() as f64;
        let lv = laps.iter().map(|v| (v - lm).powi(2)).sum::<f64>() / laps.len() as f64;
        assert!((sharpness(p) - lv).abs() < 1e-6 * lv.max(1.0), "{w}x{h}");
    }
}

#[test]
fn constant_frames_have_zero_spread_and_tiny_frames_no_sharpness() {
    let a = vec![77u8; 20 * 20];
    let p = Plane::packed(&a, 20, 20).unwrap();
    assert_eq!(luma_stats(p), (77.0, 0.0));
    assert_eq!(sharpness(p), 0.0);
    assert!(sharpness(Plane::packed(&a[..2 * 20], 20, 2).unwrap()).is_nan());
}

#[test]
fn plane_validation_refuses_short_buffers_and_empty_frames() {
    let d = vec![0u8; 100];
    assert!(Plane::new(&d, 10, 10, 10).is_ok());
    assert!(Plane::new(&d, 10, 11, 10).is_err());
    assert!(Plane::new(&d, 10, 2, 9).is_err());
    assert!(Plane::new(&d, 0, 2, 9).is_err());
    // The last row needs only `width` bytes, not a full stride.
    assert!(Plane::new(&d[..95], 5, 10, 10).is_ok());
}

#[test]
fn accumulator_records_summary_and_events() {
    let (w, h) = (32, 32);
    let a = noise(w * h, 5);
    let b: Vec<u8> = a.iter().map(|&v| 255 - v).collect();
    let black = vec![10u8; w * h];
    let mut fm = FrameMetrics::new(Config::default()).unwrap();
    for f in [&a, &a, &b, &black] {
        let p = Plane::packed(f, w, h).unwrap();
        fm.push(p, Some(p)).unwrap();
    }
    let r = fm.records();
    assert_eq!(r.len(), 4);
    assert_eq!(r[0].mad_prev, None);
    assert_eq!(r[1].mad_prev, Some(0.0));
    assert_eq!(r[1].psnr_prev, Some(f64::INFINITY));
    assert_eq!(r[2].ssim_ref, Some(1.0));
    let s = fm.summary();
    assert_eq!(s.frozen_ratio, Some(1.0 / 3.0));
    assert_eq!(s.black_ratio, Some(0.25));
    assert_eq!(s.scene_cuts, Some(2));
    assert_eq!(s.psnr_ref_pooled, Some(f64::INFINITY));
    let names: Vec<&str> = s.metrics.iter().map(|(n, _)| *n).collect();
    let defaults: Vec<&str> = METRIC_NAMES
        .iter()
        .copied()
        .filter(|n| Groups::default().computes(n))
        .collect();
    assert_eq!(names, defaults);
    let mad_mean = r[1..].iter().map(|x| x.mad_prev.unwrap()).sum::<f64>() / 3.0;
    assert_eq!(s.temporal_flicker, Some((255.0 - mad_mean) / 255.0));
}

#[test]
fn accumulator_refuses_shape_changes_without_recording() {
    let a = vec![0u8; 64];
    let mut fm = FrameMetrics::new(Config::default()).unwrap();
    fm.push(Plane::packed(&a, 8, 8).unwrap(), None).unwrap();
    assert!(fm.push(Plane::packed(&a, 16, 4).unwrap(), None).is_err());
    assert_eq!(fm.len(), 1);
}

#[test]
fn percentiles_interpolate_like_numpy() {
    let s = Stats::of([10.0, 50.0, 20.0, 90.0, f64::NAN, 70.0]).unwrap();
    assert_eq!((s.min, s.max), (10.0, 90.0));
    assert!((s.p50 - 50.0).abs() < 1e-12);
    assert!((s.p05 - 12.0).abs() < 1e-12); // 10 + 0.2 * (20 - 10)
    assert!((s.p95 - 86.0).abs() < 1e-12); // 70 + 0.8 * (90 - 70)
    assert!(Stats::of([f64::NAN]).is_none());
}

#[test]
fn extreme_values_on_wide_frames_do_not_overflow_partial_sums() {
    // A 0/255 checkerboard maximises |Laplacian| (1020) and squared
    // differences; 9000 columns span several inner chunks.
    let (w, h) = (9000, 5);
    let board: Vec<u8> = (0..w * h)
        .map(|i| if (i % w + i / w) % 2 == 0 { 0 } else { 255 })
        .collect();
    let inverse: Vec<u8> = board.iter().map(|&v| 255 - v).collect();
    let (p, q) = (
        Plane::packed(&board, w, h).unwrap(),
        Plane::packed(&inverse, w, h).unwrap(),
    );
    assert_eq!(mse(p, q).unwrap(), 65025.0);
    assert_eq!(mad(p, q).unwrap(), 255.0);
    assert_eq!(psnr(p, q).unwrap(), 0.0);
    // Interior Laplacians are ±1020 in equal numbers (odd interior width: off by one).
    let s = sharpness(p);
    assert!((s - 1020.0 * 1020.0).abs() < 1.0, "{s}");
    let white = vec![255u8; w * h];
    assert_eq!(
        luma_stats(Plane::packed(&white, w, h).unwrap()),
        (255.0, 0.0)
    );
}

#[test]
fn groups_that_are_off_are_not_computed() {
    let (w, h) = (32, 32);
    let a = noise(w * h, 9);
    let config = Config {
        groups: Groups::from_names(&["temporal"]).unwrap(),
        ..Config::default()
    };
    let mut fm = FrameMetrics::new(config).unwrap();
    for _ in 0..3 {
        fm.push(Plane::packed(&a, w, h).unwrap(), None).unwrap();
    }
    let r = fm.records();
    assert_eq!(r[0].luma_mean, None);
    assert_eq!(r[2].mad_prev, Some(0.0));
    let s = fm.summary();
    let names: Vec<&str> = s.metrics.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, vec!["mad_prev", "ssim_prev", "psnr_prev"]);
    assert_eq!(s.black_ratio, None);
    assert_eq!(s.scene_cuts, Some(0));
    assert!(Groups::from_names(&["colour"]).is_err());
    assert!(Groups::from_names(&["chroma"]).unwrap().reference);
}

#[test]
fn chroma_planes_are_weighted_by_their_share_of_samples() {
    fn plane(d: &[u8], s: usize) -> Plane<'_> {
        Plane::packed(d, s, s).unwrap()
    }
    // 4:2:0: Y 16x16, U and V 8x8; only U differs from the reference.
    let y = noise(16 * 16, 1);
    let u = noise(8 * 8, 2);
    let v = noise(8 * 8, 3);
    let u2: Vec<u8> = u.iter().map(|&p| p.saturating_add(9)).collect();
    let frame = Yuv {
        y: plane(&y, 16),
        u: Some(plane(&u2, 8)),
        v: Some(plane(&v, 8)),
    };
    let reference = Yuv {
        y: plane(&y, 16),
        u: Some(plane(&u, 8)),
        v: Some(plane(&v, 8)),
    };
    let config = Config {
        groups: Groups::from_names(&["chroma"]).unwrap(),
        ..Config::default()
    };
    let mut fm = FrameMetrics::new(config).unwrap();
    let rec = *fm.push_yuv(frame, Some(reference)).unwrap();
    let su = ssim(plane(&u2, 8), plane(&u, 8)).unwrap();
    let mse_u = mse(plane(&u2, 8), plane(&u, 8)).unwrap();
    assert_eq!(rec.ssim_ref, Some(1.0));
    assert_eq!(rec.ssim_v, Some(1.0));
    assert_eq!(rec.ssim_u, Some(su));
    let all = rec.ssim_all.unwrap();
    assert!(
        (all - (4.0 / 6.0 + su / 6.0 + 1.0 / 6.0)).abs() < 1e-12,
        "{all}"
    );
    assert_eq!(rec.psnr_u, Some(psnr_from_mse(mse_u)));
    let avg = rec.psnr_avg.unwrap();
    assert!((avg - psnr_from_mse(mse_u / 6.0)).abs() < 1e-9, "{avg}");
    // Without U and V the chroma group cannot work: an error, nothing recorded.
    let luma_only = Yuv::luma(plane(&y, 16));
    assert!(fm.push_yuv(luma_only, Some(luma_only)).is_err());
    assert_eq!(fm.len(), 1);
}

#[test]
fn ssim_and_diff_equals_the_separate_kernels_on_any_size() {
    for (w, h) in [
        (1, 1),
        (3, 5),
        (7, 9),
        (8, 8),
        (13, 10),
        (64, 36),
        (101, 67),
        (1281, 9),
    ] {
        let a = noise(w * h, (w * 31 + h) as u64);
        let b = noise(w * h, (w * 17 + h + 1) as u64);
        let (pa, pb) = (
            Plane::packed(&a, w, h).unwrap(),
            Plane::packed(&b, w, h).unwrap(),
        );
        let (s, d) = ssim_and_diff(pa, pb).unwrap();
        let expected = ssim(pa, pb).unwrap();
        assert!(
            s == expected || (s.is_nan() && expected.is_nan()),
            "{w}x{h}"
        );
        assert_eq!(d, diff_sums(pa, pb).unwrap(), "{w}x{h}");
    }
    // A strided view: the strips right of and below the blocks come from the view.
    let (w, h, stride) = (30, 19, 40);
    let a = noise(stride * h, 3);
    let b = noise(stride * h, 4);
    let (pa, pb) = (
        Plane::new(&a, w, h, stride).unwrap(),
        Plane::new(&b, w, h, stride).unwrap(),
    );
    assert_eq!(ssim_and_diff(pa, pb).unwrap().1, diff_sums(pa, pb).unwrap());
}
