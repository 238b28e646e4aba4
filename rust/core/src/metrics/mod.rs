//! Frame metrics on 8-bit luma planes: SSIM and PSNR exactly as FFmpeg's
//! filters define them, plus luma statistics, sharpness, black share and the
//! streaming [`FrameMetrics`] accumulator. Hot loops pick AVX2 at run time.

mod accumulate;
mod dispatch;
pub mod flow;
mod kernels;
mod plane;
pub mod siti;
mod ssim;

pub use accumulate::{
    group_of, Config, FrameMetrics, FrameRecord, Groups, Stats, Summary, Yuv, GROUP_NAMES,
    METRIC_NAMES,
};
pub use dispatch::{isa, kernel_isa, Isa};
pub use kernels::{
    black_share, diff_sums, luma_stats, luma_sums, mad, mse, psnr, psnr_from_mse, sharpness,
    DiffSums, LumaSums,
};
pub use plane::{same_shape, Plane};
pub use ssim::{ssim, ssim_and_diff};

#[cfg(test)]
mod tests;
