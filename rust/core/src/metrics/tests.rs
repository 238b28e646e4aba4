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
        full_range: false,
    };
    let reference = Yuv {
        y: plane(&y, 16),
        u: Some(plane(&u, 8)),
        v: Some(plane(&v, 8)),
        full_range: false,
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

mod motion {
    use super::super::flow::{dense_flow, downscale, working_factor, FlowParams, Image};
    use super::super::siti::{range_lut, spatial_information, temporal_information, to_full_range};
    use super::super::{Config, FrameMetrics, Groups, Plane};

    /// Hash of a lattice point to 0..1.
    fn lattice(ix: i64, iy: i64, octave: u64) -> f32 {
        let mut s = (ix as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (iy as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
            ^ octave.wrapping_mul(0x1656_67B1_9E37_79F9);
        s ^= s >> 31;
        s = s.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        s ^= s >> 29;
        (s >> 40) as f32 / (1u64 << 24) as f32
    }

    /// A smooth, non-periodic texture (value noise over four octaves)
    /// defined everywhere, so sub-pixel shifts are exact.
    fn texture(x: f32, y: f32) -> f32 {
        let mut v = 0.0;
        for (o, (cell, amp)) in [(24.0f32, 90.0f32), (12.0, 60.0), (6.0, 40.0), (3.0, 20.0)]
            .into_iter()
            .enumerate()
        {
            let (gx, gy) = (x / cell, y / cell);
            let (fx, fy) = (gx.floor(), gy.floor());
            let (tx, ty) = (gx - fx, gy - fy);
            let (sx, sy) = (tx * tx * (3.0 - 2.0 * tx), ty * ty * (3.0 - 2.0 * ty));
            let (ix, iy) = (fx as i64, fy as i64);
            let o = o as u64;
            let a = lattice(ix, iy, o) + (lattice(ix + 1, iy, o) - lattice(ix, iy, o)) * sx;
            let b =
                lattice(ix, iy + 1, o) + (lattice(ix + 1, iy + 1, o) - lattice(ix, iy + 1, o)) * sx;
            v += amp * (a + (b - a) * sy - 0.5);
        }
        (128.0 + v).clamp(0.0, 255.0)
    }

    fn image(w: usize, h: usize, dx: f32, dy: f32) -> Image {
        let mut img = Image::zeros(w, h);
        for y in 0..h {
            for x in 0..w {
                img.data[y * w + x] = texture(x as f32 - dx, y as f32 - dy);
            }
        }
        img
    }

    fn epe(i0: &Image, i1: &Image, dx: f32, dy: f32) -> f64 {
        let f = dense_flow(i0, i1, &FlowParams::default());
        let (w, h) = (f.width, f.height);
        // Pixels whose match leaves the frame are unknowable: skip a border.
        let m = 24usize;
        let mut sum = 0.0f64;
        let mut n = 0usize;
        for y in m..h - m {
            for x in m..w - m {
                let o = y * w + x;
                let (eu, ev) = (f.u[o] - dx, f.v[o] - dy);
                sum += ((eu * eu + ev * ev) as f64).sqrt();
                n += 1;
            }
        }
        sum / n as f64
    }

    #[test]
    fn flow_recovers_translations() {
        for (dx, dy) in [
            (0.5, 0.0),
            (1.25, -0.75),
            (3.5, 2.0),
            (-7.0, 4.5),
            (12.0, -9.0),
            (20.0, 0.0),
        ] {
            let i0 = image(256, 192, 0.0, 0.0);
            let i1 = image(256, 192, dx, dy);
            let e = epe(&i0, &i1, dx, dy);
            assert!(e < 0.15, "translation ({dx}, {dy}): EPE {e}");
        }
    }

    #[test]
    fn flow_of_identical_frames_is_zero() {
        let i0 = image(128, 96, 0.0, 0.0);
        let f = dense_flow(&i0, &i0, &FlowParams::default());
        let max = f.magnitudes().into_iter().fold(0.0f32, f32::max);
        assert!(max < 1e-3, "max magnitude {max}");
    }

    #[test]
    fn flow_of_tiny_frames_is_zero_not_a_panic() {
        let i0 = image(5, 4, 0.0, 0.0);
        let f = dense_flow(&i0, &i0, &FlowParams::default());
        assert_eq!(f.u.len(), 20);
    }

    #[test]
    fn working_scale_keeps_the_long_side_within_512() {
        assert_eq!(working_factor(512, 288), 1);
        assert_eq!(working_factor(1280, 720), 3);
        assert_eq!(working_factor(1920, 1080), 4);
        let data: Vec<u8> = (0..1280 * 720).map(|i| (i % 251) as u8).collect();
        let p = Plane::packed(&data, 1280, 720).unwrap();
        let small = downscale(p, 3);
        assert_eq!((small.width, small.height), (426, 240));
        // The first output pixel is the mean of the top-left 3x3 block.
        let d = &data;
        let mean = (0..3)
            .flat_map(|y| (0..3).map(move |x| d[y * 1280 + x] as f32))
            .sum::<f32>()
            / 9.0;
        assert!((small.data[0] - mean).abs() < 1e-4);
    }

    #[test]
    fn limited_range_maps_like_ffmpeg() {
        let lut = range_lut(false);
        assert_eq!(
            (lut[0], lut[16], lut[17], lut[235], lut[255]),
            (0, 0, 1, 255, 255)
        );
        // 255 * 100 / 219 = 116.43..., truncated.
        assert_eq!(lut[116], 116);
        assert_eq!(range_lut(true)[77], 77);
    }

    #[test]
    fn si_of_a_flat_frame_is_zero_and_of_an_edge_is_positive() {
        let flat = vec![100i16; 16 * 16];
        assert_eq!(spatial_information(&flat, 16, 16), 0.0);
        let edge: Vec<i16> = (0..16 * 16)
            .map(|i| if i % 16 < 8 { 0 } else { 255 })
            .collect();
        assert!(spatial_information(&edge, 16, 16) > 100.0);
        assert!(spatial_information(&flat, 2, 2).is_nan());
    }

    #[test]
    fn sobel_root_in_f32_equals_the_filters_f64_root_for_every_magnitude() {
        // Every value gx² + gy² can take on 8-bit input (|gx|, |gy| <= 1020).
        for v in 0..=2 * 1020u32 * 1020 {
            let filter = (v as f64).sqrt() as f32;
            assert_eq!((v as f32).sqrt().to_bits(), filter.to_bits(), "{v}");
        }
    }

    #[test]
    fn full_range_rows_equal_the_table_for_every_value() {
        // Every 8-bit value, in a row long enough for the vector loop and its tail.
        let values: Vec<u8> = (0..=255u8).chain(0..=255u8).chain(0..7).collect();
        let plane = Plane::packed(&values, values.len(), 1).unwrap();
        for full in [false, true] {
            let lut = range_lut(full);
            let mut out = Vec::new();
            to_full_range(plane, full, &mut out);
            let expected: Vec<i16> = values.iter().map(|&v| lut[v as usize] as i16).collect();
            assert_eq!(out, expected, "full range {full}");
        }
    }

    #[test]
    fn ti_is_the_std_of_the_difference() {
        let a = vec![10i16, 10, 10, 10];
        let b = vec![12i16, 8, 12, 8];
        assert!((temporal_information(&a, &b) - 2.0).abs() < 1e-6);
    }

    #[test]
    fn motion_group_measures_a_pan_and_a_still_scene() {
        let (w, h) = (320usize, 180usize);
        let frame = |shift: f32| -> Vec<u8> {
            (0..w * h)
                .map(|i| texture((i % w) as f32 - shift, (i / w) as f32).round() as u8)
                .collect()
        };
        let config = Config {
            groups: Groups::from_names(&["motion"]).unwrap(),
            ..Config::default()
        };
        let mut pan = FrameMetrics::new(config).unwrap();
        let mut still = FrameMetrics::new(config).unwrap();
        for t in 0..4 {
            let moved = frame(3.0 * t as f32);
            pan.push(Plane::packed(&moved, w, h).unwrap(), None)
                .unwrap();
            let fixed = frame(0.0);
            still
                .push(Plane::packed(&fixed, w, h).unwrap(), None)
                .unwrap();
        }
        let r = pan.records();
        assert!(r[0].motion_mean.is_none() && r[0].ti.is_none() && r[0].si.is_some());
        let m = r[2].motion_mean.unwrap();
        assert!((m - 3.0).abs() < 0.3, "pan of 3 px/frame measured {m}");
        assert!(r[2].warp_error.unwrap() < 3.0);
        assert_eq!(pan.summary().dynamic_degree, Some(1.0));
        assert_eq!(still.summary().dynamic_degree, Some(0.0));
        assert!(still.records()[1].motion_p95.unwrap() < 0.05);
        assert_eq!(still.records()[1].ti, Some(0.0));
    }
}
