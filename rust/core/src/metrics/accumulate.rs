//! `FrameMetrics`: the streaming accumulator fed one decoded frame at a time.
//! It keeps only the previous frame's pixels, so memory stays constant in the
//! number of frames (records are a few numbers per frame).

use super::kernels::{diff_sums, laplacian_var, luma_sums, psnr_from_mse};
use super::plane::{same_shape, Plane};
use super::ssim::ssim;
use crate::{Error, Result};

/// Thresholds that turn per-frame values into events; see docs/metrics.md.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Config {
    /// A pixel is black when its luma is strictly below this (38 = FFmpeg
    /// `blackdetect`'s default `pix_th=0.10` on limited-range video).
    pub black_threshold: u8,
    /// A frame is black when at least this share of its pixels is black
    /// (`blackdetect`'s `pic_th=0.98`).
    pub black_frame_share: f64,
    /// A frame is frozen when its mean absolute difference from the previous
    /// frame is below this (0-255 scale).
    pub frozen_mad: f64,
    /// A scene cut: SSIM with the previous frame below this ...
    pub scene_cut_ssim: f64,
    /// ... and mean absolute difference at least this.
    pub scene_cut_mad: f64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            black_threshold: 38,
            black_frame_share: 0.98,
            frozen_mad: 0.5,
            scene_cut_ssim: 0.35,
            scene_cut_mad: 20.0,
        }
    }
}

/// One frame's values. `None`: not applicable (no previous frame, no
/// reference). NaN: undefined (SSIM of a frame smaller than 8x8). PSNR of
/// identical frames is `+inf`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FrameRecord {
    pub index: u64,
    pub luma_mean: f64,
    pub luma_std: f64,
    pub sharpness: f64,
    pub black: f64,
    pub mad_prev: Option<f64>,
    pub mse_prev: Option<f64>,
    pub ssim_prev: Option<f64>,
    pub psnr_prev: Option<f64>,
    pub ssim_ref: Option<f64>,
    pub psnr_ref: Option<f64>,
    pub mse_ref: Option<f64>,
}

/// The names of the per-frame metrics, in record order (without `index`).
pub const METRIC_NAMES: [&str; 10] = [
    "luma_mean",
    "luma_std",
    "sharpness",
    "black",
    "mad_prev",
    "ssim_prev",
    "psnr_prev",
    "ssim_ref",
    "psnr_ref",
    "mse_ref",
];

impl FrameRecord {
    /// The value of metric `name` (one of [`METRIC_NAMES`]).
    pub fn get(&self, name: &str) -> Option<f64> {
        match name {
            "luma_mean" => Some(self.luma_mean),
            "luma_std" => Some(self.luma_std),
            "sharpness" => Some(self.sharpness),
            "black" => Some(self.black),
            "mad_prev" => self.mad_prev,
            "ssim_prev" => self.ssim_prev,
            "psnr_prev" => self.psnr_prev,
            "ssim_ref" => self.ssim_ref,
            "psnr_ref" => self.psnr_ref,
            "mse_ref" => self.mse_ref,
            _ => None,
        }
    }
}

/// Distribution of one metric over the frames where it is defined.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    pub p05: f64,
    pub p50: f64,
    pub p95: f64,
}

impl Stats {
    /// Stats of `values` (NaN dropped); `None` when nothing is left.
    /// Percentiles interpolate linearly, as numpy's default.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Self> {
        let mut v: Vec<f64> = values.into_iter().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        Some(Self {
            mean,
            min: v[0],
            max: v[v.len() - 1],
            p05: percentile(&v, 0.05),
            p50: percentile(&v, 0.50),
            p95: percentile(&v, 0.95),
        })
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    if lo == hi || frac == 0.0 || sorted[lo] == sorted[hi] {
        sorted[lo]
    } else {
        sorted[lo] + (sorted[hi] - sorted[lo]) * frac
    }
}

/// Whole-video figures; see docs/metrics.md for the definitions.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// `(metric, stats)` for every metric with at least one defined value.
    pub metrics: Vec<(&'static str, Stats)>,
    /// (255 − mean `mad_prev`) / 255; `None` with fewer than two frames.
    pub temporal_flicker: Option<f64>,
    /// Share of consecutive pairs that are frozen; `None` with fewer than two frames.
    pub frozen_ratio: Option<f64>,
    /// Share of frames that are black; `None` without frames.
    pub black_ratio: Option<f64>,
    /// Number of scene cuts.
    pub scene_cuts: u64,
    /// PSNR of the mean `mse_prev` (`+inf` when every pair is identical).
    pub psnr_prev_pooled: Option<f64>,
    /// PSNR of the mean `mse_ref`.
    pub psnr_ref_pooled: Option<f64>,
}

/// The streaming accumulator.
#[derive(Clone, Debug, Default)]
pub struct FrameMetrics {
    config: Config,
    prev: Vec<u8>,
    prev_shape: Option<(usize, usize)>,
    records: Vec<FrameRecord>,
}

impl FrameMetrics {
    /// An empty accumulator with the given thresholds.
    pub fn new(config: Config) -> Result<Self> {
        for (name, v) in [
            ("black_frame_share", config.black_frame_share),
            ("scene_cut_ssim", config.scene_cut_ssim),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(Error::InvalidArgument(format!(
                    "{name} must be within 0..1, got {v}"
                )));
            }
        }
        for (name, v) in [
            ("frozen_mad", config.frozen_mad),
            ("scene_cut_mad", config.scene_cut_mad),
        ] {
            if !(0.0..=255.0).contains(&v) {
                return Err(Error::InvalidArgument(format!(
                    "{name} must be within 0..255, got {v}"
                )));
            }
        }
        Ok(Self {
            config,
            ..Self::default()
        })
    }

    /// The thresholds in use.
    pub fn config(&self) -> Config {
        self.config
    }

    /// Number of frames pushed.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True before the first frame.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The per-frame records so far.
    pub fn records(&self) -> &[FrameRecord] {
        &self.records
    }

    /// Measure the next frame `y`, against `reference` when given. Frames
    /// must keep one shape; a reference must have the frame's shape.
    pub fn push(&mut self, y: Plane<'_>, reference: Option<Plane<'_>>) -> Result<&FrameRecord> {
        if let Some(r) = &reference {
            same_shape(&y, r)?;
        }
        if let Some(shape) = self.prev_shape {
            if shape != y.shape() {
                return Err(Error::ShapeMismatch {
                    a: shape,
                    b: y.shape(),
                });
            }
        }
        let sums = luma_sums(y, self.config.black_threshold);
        let mut rec = FrameRecord {
            index: self.records.len() as u64,
            luma_mean: sums.mean(),
            luma_std: sums.std(),
            sharpness: laplacian_var(y),
            black: sums.below_share(),
            ..FrameRecord::default()
        };
        if let Some((h, w)) = self.prev_shape {
            let prev = Plane::packed(&self.prev, w, h)?;
            let d = diff_sums(prev, y)?;
            rec.mad_prev = Some(d.mad());
            rec.mse_prev = Some(d.mse());
            rec.psnr_prev = Some(d.psnr());
            rec.ssim_prev = Some(ssim(prev, y)?);
        }
        if let Some(r) = reference {
            let d = diff_sums(y, r)?;
            rec.mse_ref = Some(d.mse());
            rec.psnr_ref = Some(d.psnr());
            rec.ssim_ref = Some(ssim(y, r)?);
        }
        y.copy_packed_into(&mut self.prev);
        self.prev_shape = Some(y.shape());
        self.records.push(rec);
        Ok(self.records.last().expect("just pushed"))
    }

    /// Is the pair ending at `rec` frozen?
    fn is_frozen(&self, rec: &FrameRecord) -> bool {
        rec.mad_prev.is_some_and(|m| m < self.config.frozen_mad)
    }

    /// Is there a scene cut between `rec` and the frame before it? Frames too
    /// small for SSIM decide on the difference alone.
    pub fn is_scene_cut(&self, rec: &FrameRecord) -> bool {
        match (rec.mad_prev, rec.ssim_prev) {
            (Some(mad), Some(s)) => {
                mad >= self.config.scene_cut_mad && (s.is_nan() || s < self.config.scene_cut_ssim)
            }
            _ => false,
        }
    }

    /// The whole-video summary of the frames so far.
    pub fn summary(&self) -> Summary {
        let metrics = METRIC_NAMES
            .iter()
            .filter_map(|&name| {
                Stats::of(self.records.iter().filter_map(|r| r.get(name))).map(|s| (name, s))
            })
            .collect();
        let pairs: Vec<&FrameRecord> = self
            .records
            .iter()
            .filter(|r| r.mad_prev.is_some())
            .collect();
        let mean_of = |f: &dyn Fn(&FrameRecord) -> Option<f64>| -> Option<f64> {
            let vals: Vec<f64> = self.records.iter().filter_map(f).collect();
            (!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64)
        };
        let n = self.records.len();
        Summary {
            metrics,
            temporal_flicker: mean_of(&|r| r.mad_prev).map(|m| (255.0 - m) / 255.0),
            frozen_ratio: (!pairs.is_empty()).then(|| {
                pairs.iter().filter(|r| self.is_frozen(r)).count() as f64 / pairs.len() as f64
            }),
            black_ratio: (n > 0).then(|| {
                self.records
                    .iter()
                    .filter(|r| r.black >= self.config.black_frame_share)
                    .count() as f64
                    / n as f64
            }),
            scene_cuts: pairs.iter().filter(|r| self.is_scene_cut(r)).count() as u64,
            psnr_prev_pooled: mean_of(&|r| r.mse_prev).map(psnr_from_mse),
            psnr_ref_pooled: mean_of(&|r| r.mse_ref).map(psnr_from_mse),
        }
    }
}
