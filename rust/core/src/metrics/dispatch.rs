//! Runtime CPU dispatch: each hot loop is written once as a plain Rust body
//! and compiled twice, for baseline x86-64 and for AVX2, so LLVM
//! autovectorizes each copy for its instruction set. The wheel stays
//! portable (no `target-cpu=native`); AVX2 is picked when the CPU has it.

/// `multiversion! { pub fn name(args) -> Ret { body } }` defines `name`, which
/// runs the AVX2 build of `body` when the CPU supports AVX2, else the
/// baseline build.
macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) -> $ret:ty $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) -> $ret {
            #[inline(always)]
            fn body($($arg: $ty),*) -> $ret $body

            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) -> $ret {
                    body($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2, checked just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

pub(crate) use multiversion;

/// Which instruction set the kernels run with on this CPU ("avx2" or "baseline").
pub fn kernel_isa() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") {
            return "avx2";
        }
    }
    "baseline"
}
