//! Vectorized elementwise exp for f32 slices: Cephes' single-precision polynomial (relative
//! error about 2e-7 over the whole range), written branch-free so the compiler vectorizes it;
//! compiled twice, for the baseline x86-64 and for AVX2 (chosen at run time). Both compile to
//! the same sequence of IEEE operations (no fused multiply-add), so they give the same bits.

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

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn exp_avx2(xs: &mut [f32]) {
    exp_loop(xs);
}

/// xs = exp(xs), elementwise.
pub fn exp_in_place(xs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        unsafe { exp_avx2(xs) };
        return;
    }
    exp_loop(xs);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_the_library_exp_to_a_few_ulps_and_paths_agree() {
        let xs: Vec<f32> = (-1980..=1990).map(|i| i as f32 * 0.0441).chain([-1e30, -88.0, 0.0, 87.9, 1e-8]).collect();
        let mut fast = xs.clone();
        exp_in_place(&mut fast);
        let mut plain = xs.clone();
        exp_loop(&mut plain);
        assert_eq!(fast, plain, "the AVX2 and baseline paths give the same bits");
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
