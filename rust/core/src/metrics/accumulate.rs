//! `FrameMetrics`: the streaming accumulator fed one decoded frame at a time.
//! It keeps only the previous frame's pixels, so memory stays constant in the
//! number of frames (records are a few numbers per frame). Which metrics it
//! computes is chosen by [`Groups`]; work for a group that is off is skipped.

use super::flow::{
    downscale, pyramid_flow, warp_check, working_factor, FlowParams, Pyramid, PATCH,
};
use super::kernels::{laplacian_var, luma_sums, psnr_from_mse};
use super::plane::{same_shape, Plane};
use super::siti::{spatial_information, temporal_information, to_full_range};
use super::ssim::ssim_and_diff;
use crate::{Error, Result};

/// The metric groups, by name: what [`FrameMetrics`] computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Groups {
    /// `luma_mean`, `luma_std`, `sharpness`, `black` (and `black_ratio`).
    pub frame: bool,
    /// `mad_prev`, `ssim_prev`, `psnr_prev` (flicker, frozen ratio, scene cuts).
    pub temporal: bool,
    /// `ssim_ref`, `psnr_ref`, `mse_ref`, when a reference frame is given.
    pub reference: bool,
    /// `ssim_u`, `ssim_v`, `ssim_all`, `psnr_u`, `psnr_v`, `psnr_avg` against
    /// the reference (U and V planes needed); implies `reference`.
    pub chroma: bool,
    /// `motion_mean`, `motion_p95`, `warp_error` (dense optical flow with
    /// the previous frame), `si`, `ti`; `dynamic_degree` in the summary.
    pub motion: bool,
}

/// Names of the groups, as [`Groups::from_names`] takes them.
pub const GROUP_NAMES: [&str; 5] = ["frame", "temporal", "reference", "chroma", "motion"];

impl Default for Groups {
    /// Everything but chroma: the Y-plane metrics.
    fn default() -> Self {
        Self {
            frame: true,
            temporal: true,
            reference: true,
            chroma: false,
            motion: false,
        }
    }
}

impl Groups {
    /// The groups named in `names` (others off); `chroma` turns `reference` on.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Self> {
        let mut g = Groups {
            frame: false,
            temporal: false,
            reference: false,
            chroma: false,
            motion: false,
        };
        for name in names {
            match name.as_ref() {
                "frame" => g.frame = true,
                "temporal" => g.temporal = true,
                "reference" => g.reference = true,
                "chroma" => g.chroma = true,
                "motion" => g.motion = true,
                other => {
                    return Err(Error::InvalidArgument(format!(
                        "unknown metric group {other:?}; choose from {}",
                        GROUP_NAMES.join(", ")
                    )))
                }
            }
        }
        g.reference |= g.chroma;
        Ok(g)
    }

    /// The names of the groups that are on, in [`GROUP_NAMES`] order.
    pub fn names(&self) -> Vec<&'static str> {
        let on = [
            self.frame,
            self.temporal,
            self.reference,
            self.chroma,
            self.motion,
        ];
        GROUP_NAMES
            .iter()
            .zip(on)
            .filter_map(|(n, o)| o.then_some(*n))
            .collect()
    }

    /// Is metric `name` (one of [`METRIC_NAMES`]) computed?
    pub fn computes(&self, name: &str) -> bool {
        match group_of(name) {
            Some("frame") => self.frame,
            Some("temporal") => self.temporal,
            Some("reference") => self.reference,
            Some("chroma") => self.chroma,
            Some("motion") => self.motion,
            _ => false,
        }
    }
}

/// The group a per-frame metric belongs to.
pub fn group_of(name: &str) -> Option<&'static str> {
    match name {
        "luma_mean" | "luma_std" | "sharpness" | "black" => Some("frame"),
        "mad_prev" | "ssim_prev" | "psnr_prev" => Some("temporal"),
        "ssim_ref" | "psnr_ref" | "mse_ref" => Some("reference"),
        "ssim_u" | "ssim_v" | "ssim_all" | "psnr_u" | "psnr_v" | "psnr_avg" => Some("chroma"),
        "motion_mean" | "motion_p95" | "warp_error" | "si" | "ti" => Some("motion"),
        _ => None,
    }
}

/// One decoded frame: its Y plane and, for the chroma metrics, U and V.
#[derive(Clone, Copy, Debug)]
pub struct Yuv<'a> {
    pub y: Plane<'a>,
    pub u: Option<Plane<'a>>,
    pub v: Option<Plane<'a>>,
    /// Full-range (JPEG) samples; otherwise limited range (16-235), which
    /// SI/TI map to full range first, as FFmpeg's `siti` does.
    pub full_range: bool,
}

impl<'a> Yuv<'a> {
    /// A frame known by its Y plane only.
    pub fn luma(y: Plane<'a>) -> Self {
        Self {
            y,
            u: None,
            v: None,
            full_range: false,
        }
    }
}

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
    /// A frame pair is dynamic when its `motion_p95` exceeds this share of
    /// the frame's short side (0.005: 3.6 px per frame at 1280x720).
    pub dynamic_threshold: f64,
    /// What to compute.
    pub groups: Groups,
    /// With the motion group: compute the optical flow and the values made
    /// from it (`false`: SI/TI only, e.g. to time them on their own).
    pub flow: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            black_threshold: 38,
            black_frame_share: 0.98,
            frozen_mad: 0.5,
            scene_cut_ssim: 0.35,
            scene_cut_mad: 20.0,
            dynamic_threshold: 0.005,
            groups: Groups::default(),
            flow: true,
        }
    }
}

/// One frame's values. `None`: not applicable (no previous frame, no
/// reference) or not computed (its group is off). NaN: undefined (SSIM of a
/// frame smaller than 8x8). PSNR of identical frames is `+inf`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct FrameRecord {
    pub index: u64,
    pub luma_mean: Option<f64>,
    pub luma_std: Option<f64>,
    pub sharpness: Option<f64>,
    pub black: Option<f64>,
    pub mad_prev: Option<f64>,
    pub mse_prev: Option<f64>,
    pub ssim_prev: Option<f64>,
    pub psnr_prev: Option<f64>,
    pub ssim_ref: Option<f64>,
    pub psnr_ref: Option<f64>,
    pub mse_ref: Option<f64>,
    pub ssim_u: Option<f64>,
    pub ssim_v: Option<f64>,
    pub ssim_all: Option<f64>,
    pub psnr_u: Option<f64>,
    pub psnr_v: Option<f64>,
    pub psnr_avg: Option<f64>,
    /// Plane-weighted MSE over Y, U and V (what `psnr_avg` is the PSNR of).
    pub mse_avg: Option<f64>,
    /// Mean flow magnitude from the previous frame, canonical px per frame.
    pub motion_mean: Option<f64>,
    /// 95th percentile of the flow magnitude, canonical px per frame.
    pub motion_p95: Option<f64>,
    /// Mean absolute error of the previous frame warped onto this one over
    /// the forward-backward consistent pixels (0-255 scale).
    pub warp_error: Option<f64>,
    /// Share of pixels that pass the forward-backward check.
    pub flow_consistent: Option<f64>,
    /// Spatial information (P.910, as FFmpeg's `siti`).
    pub si: Option<f64>,
    /// Temporal information (P.910, as FFmpeg's `siti`).
    pub ti: Option<f64>,
}

/// The names of the per-frame metrics, in record order (without `index`).
pub const METRIC_NAMES: [&str; 21] = [
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
    "ssim_u",
    "ssim_v",
    "ssim_all",
    "psnr_u",
    "psnr_v",
    "psnr_avg",
    "motion_mean",
    "motion_p95",
    "warp_error",
    "si",
    "ti",
];

impl FrameRecord {
    /// The value of metric `name` (one of [`METRIC_NAMES`]).
    pub fn get(&self, name: &str) -> Option<f64> {
        match name {
            "luma_mean" => self.luma_mean,
            "luma_std" => self.luma_std,
            "sharpness" => self.sharpness,
            "black" => self.black,
            "mad_prev" => self.mad_prev,
            "ssim_prev" => self.ssim_prev,
            "psnr_prev" => self.psnr_prev,
            "ssim_ref" => self.ssim_ref,
            "psnr_ref" => self.psnr_ref,
            "mse_ref" => self.mse_ref,
            "ssim_u" => self.ssim_u,
            "ssim_v" => self.ssim_v,
            "ssim_all" => self.ssim_all,
            "psnr_u" => self.psnr_u,
            "psnr_v" => self.psnr_v,
            "psnr_avg" => self.psnr_avg,
            "motion_mean" => self.motion_mean,
            "motion_p95" => self.motion_p95,
            "warp_error" => self.warp_error,
            "si" => self.si,
            "ti" => self.ti,
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

/// Whole-video figures; see docs/metrics.md for the definitions. Figures of
/// a group that is off are `None`.
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
    /// Number of scene cuts (`None` when the temporal group is off).
    pub scene_cuts: Option<u64>,
    /// PSNR of the mean `mse_prev` (`+inf` when every pair is identical).
    pub psnr_prev_pooled: Option<f64>,
    /// PSNR of the mean `mse_ref`.
    pub psnr_ref_pooled: Option<f64>,
    /// PSNR of the mean plane-weighted MSE (chroma group).
    pub psnr_avg_pooled: Option<f64>,
    /// Share of frame pairs whose `motion_p95` exceeds the dynamic threshold
    /// (motion group; `None` with fewer than two frames).
    pub dynamic_degree: Option<f64>,
}

/// The streaming accumulator.
#[derive(Clone, Debug, Default)]
pub struct FrameMetrics {
    config: Config,
    prev: Vec<u8>,
    prev_shape: Option<(usize, usize)>,
    records: Vec<FrameRecord>,
    /// Motion group: the previous frame at the working scale, and its
    /// full-range luma for TI.
    prev_small: Option<Pyramid>,
    prev_full: Vec<i16>,
    cur_full: Vec<i16>,
}

impl FrameMetrics {
    /// An empty accumulator with the given thresholds.
    pub fn new(config: Config) -> Result<Self> {
        for (name, v) in [
            ("black_frame_share", config.black_frame_share),
            ("scene_cut_ssim", config.scene_cut_ssim),
            ("dynamic_threshold", config.dynamic_threshold),
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
        self.push_yuv(Yuv::luma(y), reference.map(Yuv::luma))
    }

    /// Measure the next frame, its chroma planes too when the chroma group is
    /// on (then the frame and the reference must both carry U and V).
    pub fn push_yuv(&mut self, frame: Yuv<'_>, reference: Option<Yuv<'_>>) -> Result<&FrameRecord> {
        let groups = self.config.groups;
        let y = frame.y;
        if let Some(r) = &reference {
            same_shape(&y, &r.y)?;
        }
        if let Some(shape) = self.prev_shape {
            if shape != y.shape() {
                return Err(Error::ShapeMismatch {
                    a: shape,
                    b: y.shape(),
                });
            }
        }
        let chroma = match (groups.chroma, &reference) {
            (true, Some(r)) => match (frame.u, frame.v, r.u, r.v) {
                (Some(u), Some(v), Some(ru), Some(rv)) => {
                    same_shape(&u, &ru)?;
                    same_shape(&v, &rv)?;
                    Some((u, v, ru, rv))
                }
                _ => {
                    return Err(Error::InvalidArgument(
                        "the chroma metrics need the U and V planes of the frame and of the \
                         reference"
                            .into(),
                    ))
                }
            },
            _ => None,
        };
        let mut rec = FrameRecord {
            index: self.records.len() as u64,
            ..FrameRecord::default()
        };
        if groups.frame {
            let sums = luma_sums(y, self.config.black_threshold);
            rec.luma_mean = Some(sums.mean());
            rec.luma_std = Some(sums.std());
            rec.sharpness = Some(laplacian_var(y));
            rec.black = Some(sums.below_share());
        }
        if groups.temporal {
            if let Some((h, w)) = self.prev_shape {
                let prev = Plane::packed(&self.prev, w, h)?;
                let (s, d) = ssim_and_diff(prev, y)?;
                rec.mad_prev = Some(d.mad());
                rec.mse_prev = Some(d.mse());
                rec.psnr_prev = Some(d.psnr());
                rec.ssim_prev = Some(s);
            }
            y.copy_packed_into(&mut self.prev);
        }
        if let (true, Some(r)) = (groups.reference, &reference) {
            let (ssim_y, d) = ssim_and_diff(y, r.y)?;
            rec.mse_ref = Some(d.mse());
            rec.psnr_ref = Some(d.psnr());
            rec.ssim_ref = Some(ssim_y);
            if let Some((u, v, ru, rv)) = chroma {
                // FFmpeg's ssim and psnr filters weight each plane by its
                // share of the samples (4:2:0 -> 4/6, 1/6, 1/6).
                let (su, du) = ssim_and_diff(u, ru)?;
                let (sv, dv) = ssim_and_diff(v, rv)?;
                let n = (d.count + du.count + dv.count) as f64;
                let (wy, wu, wv) = (d.count as f64 / n, du.count as f64 / n, dv.count as f64 / n);
                let mse_avg = wy * d.mse() + wu * du.mse() + wv * dv.mse();
                rec.ssim_u = Some(su);
                rec.ssim_v = Some(sv);
                rec.ssim_all = Some(wy * ssim_y + wu * su + wv * sv);
                rec.psnr_u = Some(du.psnr());
                rec.psnr_v = Some(dv.psnr());
                rec.mse_avg = Some(mse_avg);
                rec.psnr_avg = Some(psnr_from_mse(mse_avg));
            }
        }
        if groups.motion {
            self.motion(&frame, &mut rec);
        }
        self.prev_shape = Some(y.shape());
        self.records.push(rec);
        Ok(self.records.last().expect("just pushed"))
    }

    /// The motion group: SI/TI at full resolution, flow at the working scale.
    fn motion(&mut self, frame: &Yuv<'_>, rec: &mut FrameRecord) {
        let y = frame.y;
        let (w, h) = (y.width(), y.height());
        to_full_range(y, frame.full_range, &mut self.cur_full);
        rec.si = Some(spatial_information(&self.cur_full, w, h));
        if self.prev_shape.is_some() {
            rec.ti = Some(temporal_information(&self.prev_full, &self.cur_full));
        }
        std::mem::swap(&mut self.prev_full, &mut self.cur_full);
        if !self.config.flow {
            return;
        }
        let k = working_factor(w, h);
        let small = Pyramid::new(downscale(y, k));
        if let Some(prev) = &self.prev_small {
            let (sw, sh) = (small.image().width, small.image().height);
            if sw < PATCH || sh < PATCH {
                // Too small for one patch: the flow is undefined.
                rec.motion_mean = Some(f64::NAN);
                rec.motion_p95 = Some(f64::NAN);
                rec.warp_error = Some(f64::NAN);
                rec.flow_consistent = Some(f64::NAN);
            } else {
                let prm = FlowParams::default();
                let fwd = pyramid_flow(prev, &small, &prm);
                let bwd = pyramid_flow(&small, prev, &prm);
                let mut mags = fwd.magnitudes();
                let scale = k as f64;
                let mean = mags.iter().map(|&m| m as f64).sum::<f64>() / mags.len() as f64;
                rec.motion_mean = Some(mean * scale);
                rec.motion_p95 = Some(quantile_in_place(&mut mags, 0.95) * scale);
                let check = warp_check(prev.image(), small.image(), &fwd, &bwd);
                rec.warp_error = Some(check.warp_error);
                rec.flow_consistent = Some(check.consistent);
            }
        }
        self.prev_small = Some(small);
    }

    /// Is the pair ending at `rec` dynamic?
    pub fn is_dynamic(&self, rec: &FrameRecord) -> bool {
        let short = self.prev_shape.map_or(0, |(h, w)| h.min(w)) as f64;
        rec.motion_p95
            .is_some_and(|m| m > self.config.dynamic_threshold * short)
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
        let groups = self.config.groups;
        let metrics = METRIC_NAMES
            .iter()
            .filter(|&&name| groups.computes(name))
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
            black_ratio: (groups.frame && n > 0).then(|| {
                self.records
                    .iter()
                    .filter(|r| r.black.is_some_and(|b| b >= self.config.black_frame_share))
                    .count() as f64
                    / n as f64
            }),
            scene_cuts: groups
                .temporal
                .then(|| pairs.iter().filter(|r| self.is_scene_cut(r)).count() as u64),
            psnr_prev_pooled: mean_of(&|r| r.mse_prev).map(psnr_from_mse),
            psnr_ref_pooled: mean_of(&|r| r.mse_ref).map(psnr_from_mse),
            psnr_avg_pooled: mean_of(&|r| r.mse_avg).map(psnr_from_mse),
            dynamic_degree: {
                let flows: Vec<&FrameRecord> = self
                    .records
                    .iter()
                    .filter(|r| r.motion_p95.is_some_and(|m| !m.is_nan()))
                    .collect();
                (groups.motion && !flows.is_empty()).then(|| {
                    flows.iter().filter(|r| self.is_dynamic(r)).count() as f64 / flows.len() as f64
                })
            },
        }
    }
}

/// The `q` quantile of `v` with linear interpolation (numpy's default),
/// by selection rather than a full sort; `v` is reordered.
fn quantile_in_place(v: &mut [f32], q: f64) -> f64 {
    let pos = q * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let frac = pos - lo as f64;
    let (_, &mut a, rest) = v.select_nth_unstable_by(lo, f32::total_cmp);
    let a = a as f64;
    if frac == 0.0 || rest.is_empty() {
        return a;
    }
    let b = rest.iter().copied().fold(f32::INFINITY, f32::min) as f64;
    a + (b - a) * frac
}
