//! Runtime CPU dispatch: each hot loop is written once as a plain Rust body
//! and compiled three times, for baseline x86-64, AVX2 and AVX-512 (F, BW,
//! VL), so LLVM autovectorizes each copy for its instruction set. The wheel
//! stays portable (no `target-cpu=native`); the widest set the CPU has is
//! picked at run time. `REELBENCH_KERNEL_ISA=baseline|avx2|avx512` caps the
//! choice (for comparisons and tests); it is read once per process.

/// `multiversion! { pub fn name(args) -> Ret { body } }` defines `name`, which
/// runs the AVX-512, AVX2 or baseline build of `body`, per [`isa`].
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) -> $ret:ty $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) -> $ret {
            #[inline(always)]
            fn body($($arg: $ty),*) -> $ret $body

            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2")]
                fn avx512($($arg: $ty),*) -> $ret {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) -> $ret {
                    body($($arg),*)
                }
                match $crate::metrics::dispatch::isa() {
                    // SAFETY: `isa()` only answers Avx512 when the CPU has
                    // AVX-512 F/BW/VL, and Avx2 when it has AVX2.
                    $crate::metrics::dispatch::Isa::Avx512 => return unsafe { avx512($($arg),*) },
                    $crate::metrics::dispatch::Isa::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::metrics::dispatch::Isa::Baseline => {}
                }
            }
            body($($arg),*)
        }
    };
}

pub(crate) use multiversion;

/// The instruction sets the kernels are built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    Baseline,
    Avx2,
    Avx512,
}

impl Isa {
    /// Lowercase name: "baseline", "avx2", "avx512".
    pub fn name(self) -> &'static str {
        match self {
            Isa::Baseline => "baseline",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }
}

fn detect() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx2")
        {
            return Isa::Avx512;
        }
        if std::is_x86_feature_detected!("avx2") {
            return Isa::Avx2;
        }
    }
    Isa::Baseline
}

/// The instruction set the kernels run with: the widest the CPU supports,
/// capped by `REELBENCH_KERNEL_ISA` when set.
pub fn isa() -> Isa {
    use std::sync::OnceLock;
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        let cap = match std::env::var("REELBENCH_KERNEL_ISA").as_deref() {
            Ok("baseline") => Isa::Baseline,
            Ok("avx2") => Isa::Avx2,
            _ => Isa::Avx512,
        };
        detect().min(cap)
    })
}

/// Name of the instruction set in use ("baseline", "avx2" or "avx512").
pub fn kernel_isa() -> &'static str {
    isa().name()
}
