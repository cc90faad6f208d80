//! The trainer's matrix product: a BLIS-style GEMM of our own, compiled for each instruction set
//! and picked at run time like every other kernel ([`crate::simd::level`], so `GRIST_SIMD` and
//! the tests' `force` reach it).
//!
//! `C (m, n) = (C if accumulate) + scale * A (m, k) . B (k, n)`, A and B given by pointer and
//! (row, column) strides (so transposes cost nothing), C row-major with a row stride.
//!
//! The loops are BLIS's: k is cut in panels of [`KC`]; for each panel, A is packed into slivers
//! of MR rows (`MR x kc`, contiguous; in parallel), and B [`NC`] columns at a time into slivers
//! of NR columns (`kc x NR`); then the output is cut into tiles of [`MC`] rows by [`NT`] columns
//! that run in parallel, a tile calling the micro-kernel for each (A sliver, B sliver) pair: an MR x NR block of accumulators kept in registers through the whole panel (AVX2: 6 x 16
//! floats in 12 ymm registers; AVX-512: 12 x 32 in 24 zmm), then added to C once. A B sliver
//! (24 KiB on AVX2, 48 KiB on AVX-512) stays in L1, or streams from L2 where the L1 is
//! smaller, while the tile's A slivers stream from L2.
//!
//! The micro-kernel is plain Rust over fixed-size arrays with `mul_add`; under `target_feature`
//! LLVM turns it into broadcast + `vfmadd231ps` with every accumulator in a register and no
//! spill (checked in the disassembly for both AVX2 and AVX-512). Every output element is the same
//! sequence of IEEE operations on every path and at any thread count: within a panel, one fused
//! multiply-add per k in order from zero; then `C = scale * acc` (first panel, not accumulating)
//! or `C = C + scale * acc`, panels in order. So the scalar, AVX2 and AVX-512 builds give the same
//! bits (tested), and only one task ever writes an element during a panel.
//!
//! Memory: A is packed once per panel (`m x KC`, no more than A itself) and B `KC x NC` at a
//! time (3 MiB in f32), both on the calling thread and reused from call to call.

use std::cell::Cell;

use rayon::prelude::*;
use shards::cpu::Simd;

use crate::forward::{Real, Shared};

/// Depth of one panel: each output element is reduced over k in blocks of KC, in order. The
/// same on every path, so the paths agree bit for bit. 384 measured 10-15% faster than 256 on
/// Zen 3 at two threads (fewer passes over C; B sliver 24 KiB in a 32 KiB L1).
const KC: usize = 384;
/// Rows per tile (a multiple of every MR).
const MC: usize = 96;
/// Columns of B packed at once (a multiple of every NR).
const NC: usize = 2048;
/// Columns per tile (a multiple of every NR).
const NT: usize = 256;

/// A micro-kernel: `(kc, a sliver, b sliver, c, row stride of c, rows, cols, overwrite, scale)`.
pub type Kernel<T> = unsafe fn(usize, *const T, *const T, *mut T, usize, usize, usize, bool, T);

/// A micro-kernel with its register block.
#[derive(Clone, Copy)]
pub struct Micro<T> {
    /// Rows of the register block.
    pub mr: usize,
    /// Columns of the register block.
    pub nr: usize,
    /// The kernel.
    pub kernel: Kernel<T>,
}

/// The MR x NR block `acc = sum over p of a[p] (x) b[p]` (one fused multiply-add per p, in order),
/// written to the first `rows x cols` of C: `C = scale * acc`, or `C += scale * acc`.
///
/// # Safety
/// `a` holds `kc * MR` elements, `b` `kc * NR`, and C's `rows x cols` elements at row stride
/// `rsc` are valid for writes by this thread alone.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub unsafe fn micro<T: Real, const MR: usize, const NR: usize>(
    kc: usize,
    a: *const T,
    b: *const T,
    c: *mut T,
    rsc: usize,
    rows: usize,
    cols: usize,
    overwrite: bool,
    scale: T,
) {
    let mut acc = [[T::zero(); NR]; MR];
    // Ask for C's rows now, so their misses overlap the k loop rather than stall the store at
    // its end (rows are often 4 KiB apart: each a miss). +5-10% on one thread, measured.
    #[cfg(target_arch = "x86_64")]
    for i in 0..rows {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let row = c.wrapping_add(i * rsc) as *const i8;
        // SAFETY: a prefetch never faults; the addresses are C's (the caller's contract).
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(row);
            _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(NR * std::mem::size_of::<T>() - 1));
        }
    }
    /// One step of k: acc += a[p] (x) b[p]. A function, not a closure: closures do not inherit
    /// the caller's target features, and `mul_add` would become a library call.
    #[inline(always)]
    fn step<T: Real, const MR: usize, const NR: usize>(acc: &mut [[T; NR]; MR], a: *const T, b: *const T, p: usize) {
        // SAFETY: p < kc, so the reads stay in the slivers (`micro`'s contract).
        let (av, bv) = unsafe {
            (
                std::ptr::read_unaligned(a.add(p * MR) as *const [T; MR]),
                std::ptr::read_unaligned(b.add(p * NR) as *const [T; NR]),
            )
        };
        for i in 0..MR {
            for j in 0..NR {
                acc[i][j] = av[i].mul_add(bv[j], acc[i][j]);
            }
        }
    }
    // Four steps per iteration (the same operations in the same order): 6 x 16 on AVX2 goes
    // from about 83 to 95 GFLOP/s per core on Zen 3, the loop overhead off the FMA ports.
    let mut p = 0;
    while p + 4 <= kc {
        step(&mut acc, a, b, p);
        step(&mut acc, a, b, p + 1);
        step(&mut acc, a, b, p + 2);
        step(&mut acc, a, b, p + 3);
        p += 4;
    }
    for p in p..kc {
        step(&mut acc, a, b, p);
    }
    // SAFETY: only the first rows x cols elements at stride rsc are touched.
    unsafe {
        if rows == MR && cols == NR {
            for (i, acc) in acc.iter().enumerate() {
                let row = std::slice::from_raw_parts_mut(c.add(i * rsc), NR);
                store(row, acc, overwrite, scale);
            }
        } else {
            for (i, acc) in acc.iter().enumerate().take(rows) {
                let row = std::slice::from_raw_parts_mut(c.add(i * rsc), cols);
                store(row, &acc[..cols], overwrite, scale);
            }
        }
    }
}

#[inline(always)]
fn store<T: Real>(row: &mut [T], acc: &[T], overwrite: bool, scale: T) {
    if overwrite {
        for (c, &x) in row.iter_mut().zip(acc) {
            *c = scale * x;
        }
    } else {
        for (c, &x) in row.iter_mut().zip(acc) {
            *c = *c + scale * x;
        }
    }
}

/// Defines a micro-kernel for one float type, register block and instruction set.
macro_rules! kernel {
    ($name:ident, $t:ty, $mr:literal, $nr:literal $(, $features:literal)?) => {
        $(#[target_feature(enable = $features)])?
        #[allow(clippy::too_many_arguments)]
        unsafe fn $name(
            kc: usize,
            a: *const $t,
            b: *const $t,
            c: *mut $t,
            rsc: usize,
            rows: usize,
            cols: usize,
            overwrite: bool,
            scale: $t,
        ) {
            // SAFETY: the caller's contract (`Kernel`); the target features are checked by
            // `simd::level` before this kernel is chosen.
            unsafe { micro::<$t, $mr, $nr>(kc, a, b, c, rsc, rows, cols, overwrite, scale) }
        }
    };
}

kernel!(f32_scalar, f32, 8, 8);
kernel!(f64_scalar, f64, 8, 4);
#[cfg(target_arch = "x86_64")]
kernel!(f32_avx2, f32, 6, 16, "avx2,fma");
#[cfg(target_arch = "x86_64")]
kernel!(f64_avx2, f64, 6, 8, "avx2,fma");
#[cfg(target_arch = "x86_64")]
kernel!(f32_avx512, f32, 12, 32, "avx512f,avx512dq,avx512bw,avx512vl,avx2,fma");
#[cfg(target_arch = "x86_64")]
kernel!(f64_avx512, f64, 12, 16, "avx512f,avx512dq,avx512bw,avx512vl,avx2,fma");

/// The f32 micro-kernel for an instruction-set level.
pub fn micro_f32(level: Simd) -> Micro<f32> {
    match level {
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => Micro { mr: 12, nr: 32, kernel: f32_avx512 },
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => Micro { mr: 6, nr: 16, kernel: f32_avx2 },
        _ => Micro { mr: 8, nr: 8, kernel: f32_scalar },
    }
}

/// The f64 micro-kernel for an instruction-set level.
pub fn micro_f64(level: Simd) -> Micro<f64> {
    match level {
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => Micro { mr: 12, nr: 16, kernel: f64_avx512 },
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => Micro { mr: 6, nr: 8, kernel: f64_avx2 },
        _ => Micro { mr: 8, nr: 4, kernel: f64_scalar },
    }
}

thread_local! {
    /// Packing space reused by this thread (in 8-byte words, aligned for f32 and f64).
    static PACK_A: Cell<Vec<u64>> = const { Cell::new(Vec::new()) };
    static PACK_B: Cell<Vec<u64>> = const { Cell::new(Vec::new()) };
}

/// Runs `f` on at least `len` elements of this thread's packing space `which`. A nested use on
/// the same thread (rayon may run another task while this one waits) gets its own.
fn with_pack<T: Real, R>(
    which: &'static std::thread::LocalKey<Cell<Vec<u64>>>,
    len: usize,
    f: impl FnOnce(&mut [T]) -> R,
) -> R {
    const { assert!(std::mem::align_of::<T>() <= 8 && std::mem::size_of::<T>() <= 8) };
    let words = (len * std::mem::size_of::<T>()).div_ceil(8);
    let mut space = which.take();
    if space.len() < words {
        space = vec![0u64; words];
    }
    // SAFETY: the words are initialized, aligned for T, and hold at least `len` Ts; T is a
    // plain float (every bit pattern valid).
    let r = f(unsafe { std::slice::from_raw_parts_mut(space.as_mut_ptr() as *mut T, len) });
    which.set(space);
    r
}

/// Packs `rows x kc` of a strided matrix (element (i, p) at `src + i * rs + p * cs`) into
/// slivers of `r` rows, `kc x r` each (element (i, p) at `(i / r) * kc * r + p * r + i % r`),
/// padding the last sliver with zeros. B is packed as its transpose (rows = columns of B).
/// The source is read along its contiguous direction: each row's run when p is contiguous, else
/// each column's run across all the rows (reading `r` rows at a time from a matrix whose rows are
/// 4 KiB apart would thrash the L1's sets).
///
/// # Safety
/// Every element `(i, p)`, `i < rows`, `p < kc` must be readable.
unsafe fn pack<T: Real>(dst: &mut [T], src: *const T, (rs, cs): (usize, usize), rows: usize, kc: usize, r: usize) {
    let slivers = rows.div_ceil(r);
    let dst = &mut dst[..slivers * kc * r];
    let live_last = rows - (slivers - 1) * r;
    if live_last < r {
        let last = &mut dst[(slivers - 1) * kc * r..];
        for p in 0..kc {
            last[p * r + live_last..p * r + r].fill(T::zero());
        }
    }
    if cs < rs {
        // Four rows at a time, so four cache-line misses are in flight rather than one (rows are
        // often 4 KiB apart: four streams still fit the L1's eight ways).
        let mut i = 0;
        while i + 4 <= rows && cs == 1 {
            // SAFETY: rows i .. i + 4 < rows, columns p < kc (the caller's contract).
            let src_rows: [&[T]; 4] =
                std::array::from_fn(|q| unsafe { std::slice::from_raw_parts(src.add((i + q) * rs), kc) });
            let at: [usize; 4] = std::array::from_fn(|q| ((i + q) / r) * kc * r + (i + q) % r);
            for p in 0..kc {
                for q in 0..4 {
                    dst[at[q] + p * r] = src_rows[q][p];
                }
            }
            i += 4;
        }
        for i in i..rows {
            let out = &mut dst[(i / r) * kc * r + i % r..];
            // SAFETY: row i < rows, columns p < kc (the caller's contract).
            let row = unsafe { src.add(i * rs) };
            for p in 0..kc {
                // SAFETY: as above.
                out[p * r] = unsafe { *row.add(p * cs) };
            }
        }
    } else {
        for p in 0..kc {
            // SAFETY: column p < kc (the caller's contract).
            let col = unsafe { src.add(p * cs) };
            for s in 0..slivers {
                let live = r.min(rows - s * r);
                let out = &mut dst[s * kc * r + p * r..s * kc * r + p * r + live];
                for (ii, o) in out.iter_mut().enumerate() {
                    // SAFETY: row s * r + ii < rows.
                    *o = unsafe { *col.add((s * r + ii) * rs) };
                }
            }
        }
    }
}

/// `C (m, n) = (C if accumulate) + scale * A (m, k) . B (k, n)` with `micro`'s kernel, on
/// rayon's threads when `parallel`. See the module documentation for the order of operations.
///
/// # Safety
/// Every element the operands' shapes and strides reach must lie in its allocation; C
/// (`m x n` at row stride `rsc`, column stride 1) must not overlap A or B, nor be written by
/// another thread meanwhile.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm<T: Real>(
    micro: Micro<T>,
    (m, n, k): (usize, usize, usize),
    (c, rsc): (*mut T, usize),
    accumulate: bool,
    (a, rsa, csa): (*const T, usize, usize),
    (b, rsb, csb): (*const T, usize, usize),
    scale: T,
    parallel: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    let cp = Shared(c);
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                // SAFETY: row i of C (the caller's contract).
                unsafe { std::slice::from_raw_parts_mut(cp.at(i * rsc), n) }.fill(T::zero());
            }
        }
        return;
    }
    let Micro { mr, nr, kernel } = micro;
    let (ap, bp) = (Shared(a as *mut T), Shared(b as *mut T));
    let mp = m.div_ceil(mr) * mr;
    for pc in (0..k).step_by(KC) {
        let kc = KC.min(k - pc);
        let overwrite = pc == 0 && !accumulate;
        with_pack::<T, _>(&PACK_A, mp * kc, |apack| {
            // A's rows in blocks of MC (slivers of mr), columns pc .. pc + kc.
            let pack_a = |(g, part): (usize, &mut [T])| {
                let i0 = g * MC;
                // SAFETY: rows i0 .. of A (fewer than m), columns pc .. pc + kc: within A.
                unsafe { pack(part, ap.at(i0 * rsa + pc * csa), (rsa, csa), MC.min(m - i0), kc, mr) }
            };
            if parallel {
                apack.par_chunks_mut(MC * kc).enumerate().for_each(pack_a);
            } else {
                apack.chunks_mut(MC * kc).enumerate().for_each(pack_a);
            }
            let apack: &[T] = apack;
            for jc in (0..n).step_by(NC) {
                let nc = NC.min(n - jc);
                let slivers = nc.div_ceil(nr);
                with_pack::<T, _>(&PACK_B, slivers * kc * nr, |bpack| {
                    // B's columns jc.. as rows of its transpose: (j, p) at b + j*csb + p*rsb.
                    let pack_b = |(g, part): (usize, &mut [T])| {
                        let j0 = g * NT;
                        let src = bp.at(pc * rsb + (jc + j0) * csb);
                        // SAFETY: columns jc + j0 .. of B (fewer than n), rows pc .. pc + kc.
                        unsafe { pack(part, src, (csb, rsb), NT.min(nc - j0), kc, nr) }
                    };
                    if parallel {
                        bpack.par_chunks_mut(NT * kc).enumerate().for_each(pack_b);
                    } else {
                        bpack.chunks_mut(NT * kc).enumerate().for_each(pack_b);
                    }
                    let bpack: &[T] = bpack;
                    let (tiles_m, tiles_n) = (m.div_ceil(MC), nc.div_ceil(NT));
                    // Tile (ti, tj) writes rows ti*MC.. and columns jc + tj*NT.. of C: its own.
                    let tile = |t: usize| {
                        let (ti, tj) = (t / tiles_n, t % tiles_n);
                        let (i0, j0) = (ti * MC, tj * NT);
                        let (mc, nt) = (MC.min(m - i0), NT.min(nc - j0));
                        for jr in (0..nt).step_by(nr) {
                            let bs = &bpack[(j0 + jr) * kc..];
                            for ir in (0..mc).step_by(mr) {
                                // SAFETY: the slivers hold kc * mr and kc * nr elements; the C
                                // block lies in this tile (rows < m, columns < n).
                                unsafe {
                                    kernel(
                                        kc,
                                        apack[(i0 + ir) * kc..].as_ptr(),
                                        bs.as_ptr(),
                                        cp.at((i0 + ir) * rsc + jc + j0 + jr),
                                        rsc,
                                        mr.min(mc - ir),
                                        nr.min(nt - jr),
                                        overwrite,
                                        scale,
                                    )
                                };
                            }
                        }
                    };
                    if parallel && tiles_m * tiles_n > 1 {
                        (0..tiles_m * tiles_n).into_par_iter().for_each(tile);
                    } else {
                        (0..tiles_m * tiles_n).for_each(tile);
                    }
                });
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random fill in [-1, 1).
    fn fill(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// The product in f64, the operands read through their strides.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        (m, n, k): (usize, usize, usize),
        c0: &[f32],
        accumulate: bool,
        a: &[f32],
        (rsa, csa): (usize, usize),
        b: &[f32],
        (rsb, csb): (usize, usize),
        scale: f32,
    ) -> Vec<f64> {
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let dot: f64 = (0..k).map(|p| a[i * rsa + p * csa] as f64 * b[p * rsb + j * csb] as f64).sum();
                out[i * n + j] = scale as f64 * dot + if accumulate { c0[i * n + j] as f64 } else { 0.0 };
            }
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        micro: Micro<f32>,
        (m, n, k): (usize, usize, usize),
        c0: &[f32],
        accumulate: bool,
        a: &[f32],
        sa: (usize, usize),
        b: &[f32],
        sb: (usize, usize),
        scale: f32,
        parallel: bool,
    ) -> Vec<f32> {
        let mut c = c0.to_vec();
        // SAFETY: the operands are sized for their strides by the callers below; c is m x n.
        unsafe {
            gemm(
                micro,
                (m, n, k),
                (c.as_mut_ptr(), n),
                accumulate,
                (a.as_ptr(), sa.0, sa.1),
                (b.as_ptr(), sb.0, sb.1),
                scale,
                parallel,
            )
        };
        c
    }

    // The AVX-512 register blocks built for AVX2 (or the baseline), so the driver's handling of
    // them (12-row slivers, 32-column slivers, their edges) is tested on machines without
    // AVX-512 too; only the instruction selection differs from the real AVX-512 kernels.
    #[cfg(target_arch = "x86_64")]
    kernel!(f32_12x32_on_avx2, f32, 12, 32, "avx2,fma");
    #[cfg(target_arch = "x86_64")]
    kernel!(f64_12x16_on_avx2, f64, 12, 16, "avx2,fma");
    kernel!(f32_12x32_baseline, f32, 12, 32);
    kernel!(f64_12x16_baseline, f64, 12, 16);

    /// Every f32 kernel this CPU can run, named: one per level, plus the AVX-512 block.
    fn micros() -> Vec<(String, Micro<f32>)> {
        let mut all: Vec<(String, Micro<f32>)> =
            Simd::available().into_iter().map(|l| (format!("{l:?}"), micro_f32(l))).collect();
        #[cfg(target_arch = "x86_64")]
        if Simd::available().contains(&Simd::Avx2) {
            all.push(("12x32 on AVX2".into(), Micro { mr: 12, nr: 32, kernel: f32_12x32_on_avx2 }));
        }
        all.push(("12x32 baseline".into(), Micro { mr: 12, nr: 32, kernel: f32_12x32_baseline }));
        all
    }

    #[test]
    fn every_shape_layout_and_level_matches_f64_and_the_levels_agree_bit_for_bit() {
        // Shapes straddling every block edge: MR (6, 8, 12), NR (8, 16, 32), KC, NT, MC, NC.
        let shapes = [
            (1, 1, 1),
            (1, 7, 3),
            (5, 1, 300),
            (13, 17, 255),
            (13, 33, 257),
            (97, 257, 513),
            (7, 2049, 40),
            (200, 40, 0),
        ];
        for (si, &(m, n, k)) in shapes.iter().enumerate() {
            for transposed_a in [false, true] {
                for transposed_b in [false, true] {
                    let sa = if transposed_a { (1, m) } else { (k, 1) };
                    let sb = if transposed_b { (1, k) } else { (n, 1) };
                    let a = fill(m * k, si as u64 * 4 + 1);
                    let b = fill(k * n, si as u64 * 4 + 2);
                    let c0 = fill(m * n, si as u64 * 4 + 3);
                    for (accumulate, scale) in [(false, 1.0), (true, 1.0), (true, 0.125), (false, -0.3)] {
                        let want = reference((m, n, k), &c0, accumulate, &a, sa, &b, sb, scale);
                        let mut first: Option<Vec<f32>> = None;
                        for (level, micro) in micros() {
                            for parallel in [false, true] {
                                let got = run(micro, (m, n, k), &c0, accumulate, &a, sa, &b, sb, scale, parallel);
                                for (e, (&g, &w)) in got.iter().zip(&want).enumerate() {
                                    let tol = 1e-5 * (k as f64).sqrt().max(1.0) * 4.0;
                                    assert!(
                                        (g as f64 - w).abs() <= tol,
                                        "{level} par={parallel} {m}x{n}x{k} ta={transposed_a} tb={transposed_b} acc={accumulate}: element {e}: {g} vs {w}"
                                    );
                                }
                                match &first {
                                    None => first = Some(got),
                                    Some(f) => assert!(
                                        f.iter().zip(&got).all(|(x, y)| x.to_bits() == y.to_bits()),
                                        "{level} par={parallel} {m}x{n}x{k}: the same bits as the first path"
                                    ),
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn f64_matches_a_plain_sum_closely() {
        let (m, n, k) = (19, 23, 300);
        let a: Vec<f64> = fill(m * k, 7).into_iter().map(f64::from).collect();
        let b: Vec<f64> = fill(k * n, 8).into_iter().map(f64::from).collect();
        let mut micros: Vec<(String, Micro<f64>)> =
            Simd::available().into_iter().map(|l| (format!("{l:?}"), micro_f64(l))).collect();
        #[cfg(target_arch = "x86_64")]
        if Simd::available().contains(&Simd::Avx2) {
            micros.push(("12x16 on AVX2".into(), Micro { mr: 12, nr: 16, kernel: f64_12x16_on_avx2 }));
        }
        micros.push(("12x16 baseline".into(), Micro { mr: 12, nr: 16, kernel: f64_12x16_baseline }));
        for (level, micro) in micros {
            let mut c = vec![0.0f64; m * n];
            // SAFETY: a is m x k, b is k x n, c is m x n, all row-major.
            unsafe {
                gemm(micro, (m, n, k), (c.as_mut_ptr(), n), false, (a.as_ptr(), k, 1), (b.as_ptr(), n, 1), 1.0, true)
            };
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
                    assert!((c[i * n + j] - want).abs() < 1e-12, "{level} ({i}, {j})");
                }
            }
        }
    }

    #[test]
    fn the_result_does_not_depend_on_the_thread_count() {
        let (m, n, k) = (300, 700, 600);
        let (a, b) = (fill(m * k, 11), fill(k * n, 12));
        let micro = micro_f32(crate::simd::level());
        let one = run(micro, (m, n, k), &vec![0.0; m * n], false, &a, (k, 1), &b, (1, k), 1.0, false);
        for threads in [2, 3, 5] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let many =
                pool.install(|| run(micro, (m, n, k), &vec![0.0; m * n], false, &a, (k, 1), &b, (1, k), 1.0, true));
            assert!(one.iter().zip(&many).all(|(x, y)| x.to_bits() == y.to_bits()), "{threads} threads");
        }
    }
}
