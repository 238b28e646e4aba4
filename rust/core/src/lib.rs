//! reelbench-core: the native hot path of reelbench, with no Python in it.
//!
//! * [`hash`]: streaming SHA-256 of files and buffers (SHA-NI picked at run time).
//! * [`seed`]: the documented, language-neutral seed derivation.
//! * [`metrics`]: frame metrics on 8-bit luma planes (SSIM/PSNR as FFmpeg defines them).

pub mod error;
pub mod hash;
pub mod metrics;
pub mod seed;

pub use error::{Error, Result};
