//! Run-time instruction-set dispatch for the trainer's own kernels, and a vectorized exp.
//!
//! [`multiversion!`] compiles a kernel three times (x86-64 baseline, AVX2 + FMA, AVX-512) and
//! calls the one [`level`] names: the best the CPU has, lowered by `GRIST_SIMD`
//! (`shards::cpu::simd`). rustc never fuses a multiply and an add on its own and never reorders
//! a floating-point sum, so the three compile to the same IEEE operations on wider vectors: they
//! give the same bits (`tests::every_level_gives_the_same_bits` in `forward` checks each kernel
//! at each level the CPU has). LayerNorm, GELU, the attention's softmax passes and AdamW go
//! through it; the GEMM's micro-kernels ([`crate::gemm`]) are picked by the same [`level`].
//!
//! The exp is Cephes' single-precision polynomial (relative error about 2e-7 over the whole
//! range), written branch-free so the compiler vectorizes it.

use std::sync::atomic::{AtomicU8, Ordering};

use shards::cpu::Simd;

/// A level forced by tests (0: none).
static FORCED: AtomicU8 = AtomicU8::new(0);

/// The instruction set the kernels use now.
#[inline]
pub fn level() -> Simd {
    match FORCED.load(Ordering::Relaxed) {
        1 => Simd::Scalar,
        2 => Simd::Avx2,
        3 => Simd::Avx512,
        _ => shards::cpu::simd(),
    }
}

/// Makes every kernel use `level` (at most what the CPU has) until [`unforce`]; for tests that
/// compare the paths. Global: a test running meanwhile gets the same bits on any path.
pub fn force(level: Simd) {
    let level = level.min(shards::cpu::detected());
    FORCED.store(
        match level {
            Simd::Scalar => 1,
            Simd::Avx2 => 2,
            Simd::Avx512 => 3,
        },
        Ordering::Relaxed,
    );
}

/// Ends [`force`].
pub fn unforce() {
    FORCED.store(0, Ordering::Relaxed);
}

/// Defines a function compiled for the x86-64 baseline, AVX2 + FMA and AVX-512, calling the
/// version [`level`] names. The body is written once, as plain Rust.
#[macro_export]
macro_rules! multiversion {
    (
        $(#[$meta:meta])*
        $vis:vis fn $name:ident $(<$($g:ident : $bound:path),*>)? ($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block
    ) => {
        $(#[$meta])*
        $vis fn $name $(<$($g: $bound),*>)? ($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn imp $(<$($g: $bound),*>)? ($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn v4 $(<$($g: $bound),*>)? ($($arg: $ty),*) $(-> $ret)? { imp($($arg),*) }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            unsafe fn v3 $(<$($g: $bound),*>)? ($($arg: $ty),*) $(-> $ret)? { imp($($arg),*) }
            match $crate::simd::level() {
                // SAFETY: `level` never exceeds what `shards::cpu::detected` found on this CPU.
                #[cfg(target_arch = "x86_64")]
                shards::cpu::Simd::Avx512 => unsafe { v4($($arg),*) },
                // SAFETY: as above.
                #[cfg(target_arch = "x86_64")]
                shards::cpu::Simd::Avx2 => unsafe { v3($($arg),*) },
                _ => imp($($arg),*),
            }
        }
    };
}

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Below LOW, exp underflows (0 is returned); above HIGH it saturates at exp(88) (so 2^n stays
/// a normal float).
const LOW: f32 = -87.336_54;
const HIGH: f32 = 88.0;

#[inline(always)]
fn exp1(x: f32) -> f32 {
    let xc = x.clamp(LOW, HIGH);
    let n = (xc * LOG2E + 0.5).floor();
    let r = xc - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_2e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5; // Cephes: 5.0000001201e-1, which is 0.5 in f32
    let y = p * r * r + r + 1.0;
    // 2^n through the exponent bits (n is in [-126, 127] after the clamp).
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    if x < LOW { 0.0 } else { y * scale }
}

#[inline(always)]
fn exp_loop(xs: &mut [f32]) {
    for x in xs {
        *x = exp1(*x);
    }
}

multiversion! {
    /// xs = exp(xs), elementwise.
    pub fn exp_in_place(xs: &mut [f32]) {
        exp_loop(xs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_the_library_exp_to_a_few_ulps_and_paths_agree() {
        let xs: Vec<f32> = (-1980..=1990).map(|i| i as f32 * 0.0441).chain([-1e30, -88.0, 0.0, 87.9, 1e-8]).collect();
        let mut fast = xs.clone();
        exp_in_place(&mut fast);
        for l in Simd::available() {
            force(l);
            let mut at = xs.clone();
            exp_in_place(&mut at);
            unforce();
            assert_eq!(fast, at, "{l:?} gives the same bits as the default path");
        }
        for (&x, &y) in xs.iter().zip(&fast) {
            let want = (x as f64).exp();
            if want < f32::MIN_POSITIVE as f64 {
                assert!(y < 1.2e-38, "exp({x}) = {y}");
            } else {
                let rel = (y as f64 - want).abs() / want;
                assert!(rel < 4e-7, "exp({x}) = {y}, want {want} (relative error {rel})");
            }
        }
        let mut ends = [f32::NEG_INFINITY, 1e30];
        exp_in_place(&mut ends);
        assert_eq!(ends[0], 0.0);
        assert!(ends[1].is_finite() && ends[1] > 1e38, "saturates: {}", ends[1]);
    }
}
