//! The CPU grist runs on and the instruction set its own kernels use. Every vectorized kernel
//! (MinHash, exp/softmax/GELU, ...) is compiled for AVX-512, AVX2 and the x86-64 baseline and
//! picks one at run time through [`simd`]: the best the CPU has, or a lower one when
//! `GRIST_SIMD` asks (`avx512`, `avx2`, `scalar`), so each path can be tested and benchmarked on
//! one machine. The trainer's GEMM is one of them (`trainer::gemm`). Benchmarks print
//! [`describe`] so no figure is read without its machine.

use std::sync::OnceLock;

use crate::env::SIMD;

/// An instruction-set level, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Simd {
    /// The x86-64 baseline (SSE2), or another architecture.
    Scalar,
    /// AVX2 with FMA.
    Avx2,
    /// AVX-512 F, DQ, BW and VL.
    Avx512,
}

impl Simd {
    /// The name `GRIST_SIMD` takes and benchmarks print.
    pub fn name(self) -> &'static str {
        match self {
            Simd::Scalar => "scalar",
            Simd::Avx2 => "avx2",
            Simd::Avx512 => "avx512",
        }
    }

    fn parse(s: &str) -> Option<Simd> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scalar" | "none" | "baseline" => Some(Simd::Scalar),
            "avx2" => Some(Simd::Avx2),
            "avx512" | "avx-512" => Some(Simd::Avx512),
            _ => None,
        }
    }

    /// Every level this CPU can run, lowest first (what tests of each path iterate over).
    pub fn available() -> Vec<Simd> {
        [Simd::Scalar, Simd::Avx2, Simd::Avx512].into_iter().filter(|&l| l <= detected()).collect()
    }
}

/// The best level this CPU supports.
pub fn detected() -> Simd {
    static DETECTED: OnceLock<Simd> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f") && has!("avx512dq") && has!("avx512bw") && has!("avx512vl") {
                return Simd::Avx512;
            }
            if has!("avx2") && has!("fma") {
                return Simd::Avx2;
            }
        }
        Simd::Scalar
    })
}

/// The level grist's kernels use: [`detected`], lowered by `GRIST_SIMD` when it names a lower
/// one (a higher one than the CPU has is ignored, with a warning, never obeyed).
pub fn simd() -> Simd {
    static LEVEL: OnceLock<Simd> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let best = detected();
        match std::env::var(SIMD) {
            Err(_) => best,
            Ok(v) => match Simd::parse(&v) {
                Some(want) if want <= best => want,
                Some(want) => {
                    tracing::warn!("{SIMD}={v}: this CPU has {} at most; using that", best.name());
                    let _ = want;
                    best
                }
                None => {
                    tracing::warn!("{SIMD}={v} is not scalar, avx2 or avx512; using {}", best.name());
                    best
                }
            },
        }
    })
}

/// The CPU's model name (`/proc/cpuinfo`), or the architecture when it cannot be read.
pub fn model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// One line for benchmark output: the model, the cores, the best instruction set and the one
/// grist's kernels (the GEMM included) use, e.g. `AMD EPYC, 2 cores, avx2 (kernels: avx2)`.
pub fn describe() -> String {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!("{}, {cores} cores, {} (kernels: {})", model(), detected().name(), simd().name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_order_and_cap() {
        assert_eq!(Simd::parse("AVX2"), Some(Simd::Avx2));
        assert_eq!(Simd::parse(" avx512 "), Some(Simd::Avx512));
        assert_eq!(Simd::parse("scalar"), Some(Simd::Scalar));
        assert_eq!(Simd::parse("sse9"), None);
        assert!(Simd::Scalar < Simd::Avx2 && Simd::Avx2 < Simd::Avx512);
        let avail = Simd::available();
        assert_eq!(avail.first(), Some(&Simd::Scalar));
        assert_eq!(avail.last(), Some(&detected()));
        assert!(simd() <= detected());
        assert!(describe().contains(detected().name()));
    }
}
