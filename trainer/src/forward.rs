//! The GPT on the CPU, layer by layer in llm.c's manner, each layer's forward beside its
//! backward: encoder, LayerNorm, matmul, causal attention, GELU (tanh), residual, tied logits,
//! fused softmax + cross-entropy over the real vocabulary.
//!
//! Generic over the float type, so the same code runs in f32 (training) and f64
//! (finite-difference gradient checks). Every activation lives in one allocation carved by a
//! size table ([`Workspace`]), reused from step to step; the backward pass needs three more
//! buffers (N x C, N x 4C, N x C) and writes the logits' gradient over the logits.
//!
//! Speed: matmuls go through our GEMM ([`crate::gemm`]: BLIS-style, AVX-512/AVX2/baseline
//! micro-kernels picked at run time);
//! attention is computed per (batch, head) in blocks of 64 queries with the same kernels, keeping
//! only each row's log-sum-exp and recomputing the probabilities in the backward pass (no T x T
//! matrix is kept); rows, heads and column blocks run in parallel with rayon. Every reduction
//! runs in a fixed order, so results do not depend on the thread count.

use std::iter::Sum;

use num_traits::Float;
use rayon::prelude::*;

use crate::model::{GptConfig, Param, Params};

/// The float types the model runs in.
pub trait Real: Float + Sum + Send + Sync + std::fmt::Debug + 'static {
    /// xs = exp(xs), elementwise.
    fn exp_in_place(xs: &mut [Self]) {
        xs.iter_mut().for_each(|x| *x = x.exp());
    }
    /// The GEMM micro-kernel for an instruction-set level.
    fn gemm_micro(level: shards::cpu::Simd) -> crate::gemm::Micro<Self>;
}
impl Real for f32 {
    fn exp_in_place(xs: &mut [f32]) {
        crate::simd::exp_in_place(xs);
    }
    fn gemm_micro(level: shards::cpu::Simd) -> crate::gemm::Micro<f32> {
        crate::gemm::micro_f32(level)
    }
}
impl Real for f64 {
    fn gemm_micro(level: shards::cpu::Simd) -> crate::gemm::Micro<f64> {
        crate::gemm::micro_f64(level)
    }
}

/// Elements per stack chunk in the elementwise passes that exponentiate.
const CHUNK: usize = 256;

/// The sum of exp(x - shift) over xs, in order, exponentiating a chunk at a time.
fn sum_exp<T: Real>(xs: &[T], shift: T) -> T {
    let mut buf = [T::zero(); CHUNK];
    let mut sum = T::zero();
    for part in xs.chunks(CHUNK) {
        let b = &mut buf[..part.len()];
        for (b, &x) in b.iter_mut().zip(part) {
            *b = x - shift;
        }
        T::exp_in_place(b);
        sum = sum + b.iter().copied().sum::<T>();
    }
    sum
}

fn r<T: Real>(x: f64) -> T {
    T::from(x).unwrap_or_else(T::nan)
}

/// Columns per parallel task in the column reductions (bias and LayerNorm gradients).
const COLS: usize = 64;

// ---------------------------------------------------------------- encoder
/// out (N, C) = wte[token] + wpe[position].
pub fn encoder_forward<T: Real>(out: &mut [T], tokens: &[u32], wte: &[T], wpe: &[T], t: usize, c: usize) {
    out.par_chunks_mut(c).enumerate().for_each(|(i, o)| {
        let (tok, pos) = (tokens[i] as usize, i % t);
        for ((o, &w), &p) in o.iter_mut().zip(&wte[tok * c..(tok + 1) * c]).zip(&wpe[pos * c..(pos + 1) * c]) {
            *o = w + p;
        }
    });
}

/// Accumulates into dwte and dwpe, in row order.
pub fn encoder_backward<T: Real>(dwte: &mut [T], dwpe: &mut [T], dout: &[T], tokens: &[u32], t: usize, c: usize) {
    for (i, d) in dout.chunks(c).enumerate() {
        let (tok, pos) = (tokens[i] as usize, i % t);
        for k in 0..c {
            dwte[tok * c + k] = dwte[tok * c + k] + d[k];
            dwpe[pos * c + k] = dwpe[pos * c + k] + d[k];
        }
    }
}

// ---------------------------------------------------------------- layernorm
/// LayerNorm over the last dimension (eps 1e-5, biased variance, as PyTorch); keeps each row's
/// mean and 1/std for the backward pass.
pub fn layernorm_forward<T: Real>(
    out: &mut [T],
    mean: &mut [T],
    rstd: &mut [T],
    inp: &[T],
    w: &[T],
    b: &[T],
    c: usize,
) {
    out.par_chunks_mut(c)
        .zip(inp.par_chunks(c))
        .zip(mean.par_iter_mut().zip(rstd.par_iter_mut()))
        .for_each(|((o, x), (m, s))| (*m, *s) = layernorm_row(o, x, w, b));
}

crate::multiversion! {
    /// One row of [`layernorm_forward`]: writes o, returns (mean, 1/std).
    fn layernorm_row<T: Real>(o: &mut [T], x: &[T], w: &[T], b: &[T]) -> (T, T) {
        let c = x.len();
        let (o, w, b) = (&mut o[..c], &w[..c], &b[..c]);
        let n = r::<T>(c as f64);
        let mu = x.iter().copied().sum::<T>() / n;
        let var = x.iter().map(|&v| (v - mu) * (v - mu)).sum::<T>() / n;
        let rs = T::one() / (var + r(1e-5)).sqrt();
        for i in 0..c {
            o[i] = (x[i] - mu) * rs * w[i] + b[i];
        }
        (mu, rs)
    }
}

/// Accumulates dinp (per row), dw and db (per column block, over rows in order).
#[allow(clippy::too_many_arguments)]
pub fn layernorm_backward<T: Real>(
    dinp: &mut [T],
    dw: &mut [T],
    db: &mut [T],
    dout: &[T],
    inp: &[T],
    w: &[T],
    mean: &[T],
    rstd: &[T],
    c: usize,
) {
    dinp.par_chunks_mut(c).enumerate().for_each(|(row, di)| {
        layernorm_backward_row(di, &inp[row * c..][..c], &dout[row * c..][..c], w, mean[row], rstd[row]);
    });
    let rows = dout.len() / c;
    dw.par_chunks_mut(COLS).zip(db.par_chunks_mut(COLS)).enumerate().for_each(|(blk, (dw, db))| {
        layernorm_backward_cols(dw, db, inp, dout, mean, rstd, c, blk * COLS, rows);
    });
}

crate::multiversion! {
    /// One row of dinp in [`layernorm_backward`].
    fn layernorm_backward_row<T: Real>(di: &mut [T], x: &[T], d: &[T], w: &[T], mu: T, rs: T) {
        let c = x.len();
        let (di, d, w) = (&mut di[..c], &d[..c], &w[..c]);
        let n = r::<T>(c as f64);
        let (mut dnorm_mean, mut dnorm_norm_mean) = (T::zero(), T::zero());
        for i in 0..c {
            let norm = (x[i] - mu) * rs;
            let dnorm = w[i] * d[i];
            dnorm_mean = dnorm_mean + dnorm;
            dnorm_norm_mean = dnorm_norm_mean + dnorm * norm;
        }
        (dnorm_mean, dnorm_norm_mean) = (dnorm_mean / n, dnorm_norm_mean / n);
        for i in 0..c {
            let norm = (x[i] - mu) * rs;
            di[i] = di[i] + (w[i] * d[i] - dnorm_mean - norm * dnorm_norm_mean) * rs;
        }
    }
}

crate::multiversion! {
    /// Columns c0.. of dw and db in [`layernorm_backward`], over all rows in order.
    #[allow(clippy::too_many_arguments)]
    fn layernorm_backward_cols<T: Real>(
        dw: &mut [T],
        db: &mut [T],
        inp: &[T],
        dout: &[T],
        mean: &[T],
        rstd: &[T],
        c: usize,
        c0: usize,
        rows: usize,
    ) {
        let n = dw.len();
        let db = &mut db[..n];
        for row in 0..rows {
            let (x, d) = (&inp[row * c + c0..][..n], &dout[row * c + c0..][..n]);
            let (mu, rs) = (mean[row], rstd[row]);
            for i in 0..n {
                db[i] = db[i] + d[i];
                dw[i] = dw[i] + (x[i] - mu) * rs * d[i];
            }
        }
    }
}

// ---------------------------------------------------------------- matmul
/// The index one past the last element a strided (rows, cols) operand touches.
fn extent(rs: usize, cs: usize, rows: usize, cols: usize) -> usize {
    if rows == 0 || cols == 0 { 0 } else { (rows - 1) * rs + (cols - 1) * cs + 1 }
}

/// dst (m, n, row stride `dst_rs`) = (dst if `accumulate`) + beta * lhs (m, k) . rhs (k, n), the
/// operands given by pointer and (row, column) strides, through [`crate::gemm`] at the current
/// instruction-set level. Each output element is reduced over k in a fixed order whatever the
/// thread count and level.
///
/// # Safety
/// Every element the operands' shapes and strides reach must lie in its allocation, and dst
/// must not overlap lhs or rhs, nor be written by another thread in the elements it reaches.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_raw<T: Real>(
    (m, n, k): (usize, usize, usize),
    (dst, dst_rs): (*mut T, usize),
    accumulate: bool,
    (lhs, lhs_rs, lhs_cs): (*const T, usize, usize),
    (rhs, rhs_rs, rhs_cs): (*const T, usize, usize),
    beta: T,
    parallel: bool,
) {
    let micro = T::gemm_micro(crate::simd::level());
    // SAFETY: the caller's contract.
    unsafe {
        crate::gemm::gemm(
            micro,
            (m, n, k),
            (dst, dst_rs),
            accumulate,
            (lhs, lhs_rs, lhs_cs),
            (rhs, rhs_rs, rhs_cs),
            beta,
            parallel,
        )
    };
}

/// dst (m, n) = (dst if `accumulate`) + lhs (m, k) . rhs (k, n) over slices, the operands given
/// by row and column strides, on all of rayon's threads.
#[allow(clippy::too_many_arguments)]
fn mm<T: Real>(
    (m, n, k): (usize, usize, usize),
    dst: &mut [T],
    accumulate: bool,
    lhs: &[T],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[T],
    (rhs_rs, rhs_cs): (usize, usize),
) {
    assert!(dst.len() >= extent(n, 1, m, n), "gemm: destination too small");
    if k > 0 {
        assert!(
            lhs.len() >= extent(lhs_rs, lhs_cs, m, k) && rhs.len() >= extent(rhs_rs, rhs_cs, k, n),
            "gemm: operand too small"
        );
    }
    let par = rayon::current_num_threads() > 1;
    // SAFETY: the extents were checked above; dst does not alias lhs or rhs (a `&mut` and two
    // `&` slices).
    unsafe {
        gemm_raw(
            (m, n, k),
            (dst.as_mut_ptr(), n),
            accumulate,
            (lhs.as_ptr(), lhs_rs, lhs_cs),
            (rhs.as_ptr(), rhs_rs, rhs_cs),
            T::one(),
            par,
        );
    }
}

/// out (N, OC) = inp (N, C) . w (OC, C)^T + bias.
pub fn matmul_forward<T: Real>(out: &mut [T], inp: &[T], w: &[T], bias: Option<&[T]>, c: usize, oc: usize) {
    let n = out.len() / oc;
    match bias {
        Some(b) => out.par_chunks_mut(oc).for_each(|o| o.copy_from_slice(b)),
        None => out.par_iter_mut().for_each(|x| *x = T::zero()),
    }
    // rhs (C, OC) is w transposed: element (i, j) at w[j * C + i].
    mm((n, oc, c), out, true, inp, (c, 1), w, (1, c));
}

/// out (N, OC) = residual + inp (N, C) . w (OC, C)^T + bias: a projection added to the
/// residual stream in one pass.
pub fn matmul_forward_residual<T: Real>(
    out: &mut [T],
    residual: &[T],
    inp: &[T],
    w: &[T],
    bias: &[T],
    c: usize,
    oc: usize,
) {
    let n = out.len() / oc;
    out.par_chunks_mut(oc).zip(residual.par_chunks(oc)).for_each(|(o, x)| {
        for ((o, &x), &b) in o.iter_mut().zip(x).zip(bias) {
            *o = x + b;
        }
    });
    mm((n, oc, c), out, true, inp, (c, 1), w, (1, c));
}

/// dinp = dout . w (overwritten), dw += dout^T . inp, dbias += column sums of dout (in row
/// order).
#[allow(clippy::too_many_arguments)]
pub fn matmul_backward<T: Real>(
    dinp: &mut [T],
    dw: &mut [T],
    dbias: Option<&mut [T]>,
    dout: &[T],
    inp: &[T],
    w: &[T],
    c: usize,
    oc: usize,
) {
    let n = dout.len() / oc;
    mm((n, c, oc), dinp, false, dout, (oc, 1), w, (c, 1));
    // lhs (OC, N) is dout transposed: element (j, r) at dout[r * OC + j].
    mm((oc, c, n), dw, true, dout, (1, oc), inp, (c, 1));
    if let Some(db) = dbias {
        db.par_chunks_mut(COLS).enumerate().for_each(|(blk, db)| {
            for row in 0..n {
                for (b, &d) in db.iter_mut().zip(&dout[row * oc + blk * COLS..]) {
                    *b = *b + d;
                }
            }
        });
    }
}

// ---------------------------------------------------------------- attention
/// Queries per attention block.
const QB: usize = 64;

/// The first position query `ti` attends to: 0 (dense), or the start of its band.
fn first_key(ti: usize, band: Option<usize>) -> usize {
    band.map_or(0, |w| (ti + 1).saturating_sub(w))
}

/// A pointer shared by the tasks of one parallel loop, each writing its own elements.
#[derive(Clone, Copy)]
pub(crate) struct Shared<T>(pub(crate) *mut T);
// SAFETY: the loops that share one write disjoint elements (documented at each use).
unsafe impl<T: Send> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// The pointer (a method, so closures capture the whole `Shared`, not its field).
    pub(crate) fn at(self, offset: usize) -> *mut T {
        self.0.wrapping_add(offset)
    }
}

/// Scores of one query block against its keys, s (m, nk) = scale * q . k^T, turned into
/// probabilities over each row's visible keys (0 elsewhere) given each row's log-sum-exp, or,
/// when `lse` is to be filled, computing it.
#[allow(clippy::too_many_arguments)]
fn block_probs<T: Real>(
    s: &mut [T],
    qkv: &[T],
    (base, q0, k0, m, nk): (usize, usize, usize, usize, usize),
    (c, h, hs): (usize, usize, usize),
    band: Option<usize>,
    lse: &mut [T],
    compute_lse: bool,
) {
    let scale = T::one() / r::<T>(hs as f64).sqrt();
    let q = base + q0 * 3 * c + h * hs;
    let k = base + k0 * 3 * c + c + h * hs;
    assert!(s.len() >= m * nk && qkv.len() >= q + extent(3 * c, 1, m, hs) && qkv.len() >= k + extent(1, 3 * c, hs, nk));
    // SAFETY: extents checked above; s is a private scratch buffer.
    unsafe {
        gemm_raw(
            (m, nk, hs),
            (s.as_mut_ptr(), nk),
            false,
            (qkv.as_ptr().add(q), 3 * c, 1),
            (qkv.as_ptr().add(k), 1, 3 * c),
            scale,
            false,
        );
    }
    for (i, row) in s[..m * nk].chunks_mut(nk).enumerate() {
        let ti = q0 + i;
        let (lo, hi) = (first_key(ti, band) - k0, ti - k0);
        let l = if compute_lse {
            let max = row[lo..=hi].iter().fold(T::neg_infinity(), |a, &x| a.max(x));
            let l = max + sum_exp(&row[lo..=hi], max).ln();
            lse[ti] = l;
            l
        } else {
            lse[ti]
        };
        row[..lo].iter_mut().for_each(|x| *x = T::zero());
        row[hi + 1..].iter_mut().for_each(|x| *x = T::zero());
        let visible = &mut row[lo..=hi];
        shift_row(visible, l);
        T::exp_in_place(visible);
    }
}

crate::multiversion! {
    /// xs = xs - l.
    fn shift_row<T: Real>(xs: &mut [T], l: T) {
        xs.iter_mut().for_each(|x| *x = *x - l);
    }
}

crate::multiversion! {
    /// ds = p * (dp - d) * scale, over dp: one row of the softmax's backward pass.
    fn softmax_backward_row<T: Real>(ds: &mut [T], p: &[T], d: T, scale: T) {
        for (x, &pv) in ds.iter_mut().zip(p) {
            *x = pv * (*x - d) * scale;
        }
    }
}

/// Causal multi-head attention: qkv (B, T, 3C) -> out (B, T, C), keeping each query row's
/// log-sum-exp of scores in lse (B, NH, T) for the backward pass. With `band`, query t attends
/// only to positions t - band + 1 ..= t (GPT-3's locally banded sparse attention), and only the
/// key blocks a query block can see are computed.
pub fn attention_forward<T: Real>(
    out: &mut [T],
    lse: &mut [T],
    qkv: &[T],
    t: usize,
    c: usize,
    nh: usize,
    band: Option<usize>,
) {
    let hs = c / nh;
    let b = qkv.len() / (t * 3 * c);
    assert!(out.len() >= b * t * c && lse.len() >= b * nh * t);
    let out_ptr = Shared(out.as_mut_ptr());
    // One (batch, head) per task: it writes columns h*hs.. of its batch's rows of out, disjoint
    // from every other task's.
    lse.par_chunks_mut(t).take(b * nh).enumerate().for_each(|(bh, lse)| {
        let (bi, h) = (bh / nh, bh % nh);
        let base = bi * t * 3 * c;
        let mut s = vec![T::zero(); QB * t];
        for q0 in (0..t).step_by(QB) {
            let (q1, k0) = ((q0 + QB).min(t), first_key(q0, band));
            let (m, nk) = (q1 - q0, q1 - k0);
            block_probs(&mut s, qkv, (base, q0, k0, m, nk), (c, h, hs), band, lse, true);
            let v = base + k0 * 3 * c + 2 * c + h * hs;
            assert!(qkv.len() >= v + extent(3 * c, 1, nk, hs));
            // SAFETY: v's extent checked; the destination rows (bi*T + q0 ..) x columns
            // (h*hs ..) lie in out (length checked) and belong to this task alone.
            unsafe {
                gemm_raw(
                    (m, hs, nk),
                    (out_ptr.at((bi * t + q0) * c + h * hs), c),
                    false,
                    (s.as_ptr(), nk, 1),
                    (qkv.as_ptr().add(v), 3 * c, 1),
                    T::one(),
                    false,
                );
            }
        }
    });
}

/// Accumulates dqkv (B, T, 3C) from dout (B, T, C), recomputing the probabilities from qkv and
/// lse; `out` is the forward pass's output.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<T: Real>(
    dqkv: &mut [T],
    dout: &[T],
    qkv: &[T],
    out: &[T],
    lse: &[T],
    t: usize,
    c: usize,
    nh: usize,
    band: Option<usize>,
) {
    let hs = c / nh;
    let b = dout.len() / (t * c);
    let scale = T::one() / r::<T>(hs as f64).sqrt();
    assert!(dqkv.len() >= b * t * 3 * c && qkv.len() >= b * t * 3 * c && out.len() >= b * t * c);
    let dptr = Shared(dqkv.as_mut_ptr());
    // One (batch, head) per task: it writes the q, k and v columns of head h in its batch's
    // rows of dqkv, disjoint from every other task's; its blocks run in order.
    (0..b * nh).into_par_iter().for_each(|bh| {
        let (bi, h) = (bh / nh, bh % nh);
        let base = bi * t * 3 * c;
        let mut lse_row = lse[bh * t..(bh + 1) * t].to_vec();
        // D[t] = dout[t] . out[t] over this head: the softmax backward's row sums.
        let dsum: Vec<T> = (0..t)
            .map(|ti| {
                let at = (bi * t + ti) * c + h * hs;
                dout[at..at + hs].iter().zip(&out[at..at + hs]).map(|(&x, &y)| x * y).sum()
            })
            .collect();
        let (mut p, mut dp) = (vec![T::zero(); QB * t], vec![T::zero(); QB * t]);
        for q0 in (0..t).step_by(QB) {
            let (q1, k0) = ((q0 + QB).min(t), first_key(q0, band));
            let (m, nk) = (q1 - q0, q1 - k0);
            block_probs(&mut p, qkv, (base, q0, k0, m, nk), (c, h, hs), band, &mut lse_row, false);
            let dout_blk = dout.as_ptr().wrapping_add((bi * t + q0) * c + h * hs);
            let (q, k, v) =
                (base + q0 * 3 * c + h * hs, base + k0 * 3 * c + c + h * hs, base + k0 * 3 * c + 2 * c + h * hs);
            // SAFETY (all five products): operand rows lie within batch bi's rows of qkv, dout
            // and dqkv (lengths checked above), scratch buffers are private, and the dqkv
            // elements written (this head's columns of batch bi) belong to this task alone.
            unsafe {
                // dp (m, nk) = dout_blk (m, hs) . v^T (hs, nk)
                gemm_raw(
                    (m, nk, hs),
                    (dp.as_mut_ptr(), nk),
                    false,
                    (dout_blk, c, 1),
                    (qkv.as_ptr().add(v), 1, 3 * c),
                    T::one(),
                    false,
                );
                // dv (nk, hs) += p^T (nk, m) . dout_blk (m, hs)
                gemm_raw(
                    (nk, hs, m),
                    (dptr.at(v), 3 * c),
                    true,
                    (p.as_ptr(), 1, nk),
                    (dout_blk, c, 1),
                    T::one(),
                    false,
                );
            }
            // ds = p * (dp - D) * scale, over dp.
            for (i, (ds, pr)) in dp[..m * nk].chunks_mut(nk).zip(p.chunks(nk)).enumerate() {
                softmax_backward_row(ds, pr, dsum[q0 + i], scale);
            }
            // SAFETY: as above.
            unsafe {
                // dq (m, hs) += ds (m, nk) . k (nk, hs)
                gemm_raw(
                    (m, hs, nk),
                    (dptr.at(q), 3 * c),
                    true,
                    (dp.as_ptr(), nk, 1),
                    (qkv.as_ptr().add(k), 3 * c, 1),
                    T::one(),
                    false,
                );
                // dk (nk, hs) += ds^T (nk, m) . q (m, hs)
                gemm_raw(
                    (nk, hs, m),
                    (dptr.at(k), 3 * c),
                    true,
                    (dp.as_ptr(), 1, nk),
                    (qkv.as_ptr().add(q), 3 * c, 1),
                    T::one(),
                    false,
                );
            }
        }
    });
}

// ---------------------------------------------------------------- gelu
fn gelu_consts<T: Real>() -> (T, T) {
    (r((2.0 / std::f64::consts::PI).sqrt()), r(0.044715))
}

/// GELU, tanh approximation (GPT-2's): 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3),
/// computed as x / (1 + exp(-2u)), the same function.
pub fn gelu_forward<T: Real>(out: &mut [T], inp: &[T]) {
    let (s, k) = gelu_consts::<T>();
    let two = r::<T>(2.0);
    out.par_chunks_mut(CHUNK).zip(inp.par_chunks(CHUNK)).for_each(|(o, x)| {
        gelu_exponent(o, x, s, k, two);
        T::exp_in_place(o);
        gelu_finish(o, x);
    });
}

crate::multiversion! {
    /// e = -2u for GELU's u = s (x + k x^3).
    fn gelu_exponent<T: Real>(e: &mut [T], x: &[T], s: T, k: T, two: T) {
        for (e, &x) in e.iter_mut().zip(x) {
            *e = -two * s * (x + k * x * x * x);
        }
    }
}

crate::multiversion! {
    /// o = x / (1 + o), o holding exp(-2u).
    fn gelu_finish<T: Real>(o: &mut [T], x: &[T]) {
        for (o, &x) in o.iter_mut().zip(x) {
            *o = x / (T::one() + *o);
        }
    }
}

/// d = d * gelu'(inp), in place: the gradient through the GELU.
pub fn gelu_backward<T: Real>(d: &mut [T], inp: &[T]) {
    let (s, k) = gelu_consts::<T>();
    let two = r::<T>(2.0);
    d.par_chunks_mut(CHUNK).zip(inp.par_chunks(CHUNK)).for_each(|(d, x)| {
        let mut e = [T::zero(); CHUNK];
        let e = &mut e[..x.len()];
        gelu_exponent(e, x, s, k, two);
        T::exp_in_place(e);
        gelu_backward_finish(d, x, e, s, k);
    });
}

crate::multiversion! {
    /// d = d * gelu'(x), e holding exp(-2u).
    fn gelu_backward_finish<T: Real>(d: &mut [T], x: &[T], e: &[T], s: T, k: T) {
        let (half, two, three) = (r::<T>(0.5), r::<T>(2.0), r::<T>(3.0));
        for ((d, &x), &e) in d.iter_mut().zip(x).zip(e.iter()) {
            // tanh(u) = 2 sigmoid(2u) - 1.
            let th = two / (T::one() + e) - T::one();
            let sech2 = T::one() - th * th;
            *d = *d * (half * (T::one() + th) + half * x * sech2 * s * (T::one() + three * k * x * x));
        }
    }
}

// ---------------------------------------------------------------- the workspace
/// One layer's activations, carved from the workspace.
struct LayerActs<'a, T> {
    ln1: &'a mut [T],
    ln1_mean: &'a mut [T],
    ln1_rstd: &'a mut [T],
    qkv: &'a mut [T],
    atty: &'a mut [T],
    att_lse: &'a mut [T],
    /// The residual stream after attention.
    x_mid: &'a mut [T],
    ln2: &'a mut [T],
    ln2_mean: &'a mut [T],
    ln2_rstd: &'a mut [T],
    fc: &'a mut [T],
    fcg: &'a mut [T],
    /// The residual stream leaving the layer.
    x_out: &'a mut [T],
}

/// Every activation, carved from one buffer in this order (the size table).
struct Acts<'a, T> {
    encoded: &'a mut [T],
    layers: Vec<LayerActs<'a, T>>,
    lnf: &'a mut [T],
    lnf_mean: &'a mut [T],
    lnf_rstd: &'a mut [T],
    /// (N, Vp): logits after the forward pass, their gradient after the backward pass.
    logits: &'a mut [T],
    /// Per row: log-sum-exp of the logits over the real vocabulary.
    lse: &'a mut [T],
}

/// Elements per activation, in carving order: (per layer, global).
pub(crate) fn act_sizes(cfg: &GptConfig, b: usize, t: usize) -> ([usize; 13], [usize; 6]) {
    let (n, c, nh, vp) = (b * t, cfg.channels, cfg.num_heads, cfg.padded_vocab_size);
    let layer = [n * c, n, n, n * 3 * c, n * c, n * nh, n * c, n * c, n, n, n * 4 * c, n * 4 * c, n * c];
    (layer, [n * c, n * c, n, n, n * vp, n])
}

fn carve<'a, T>(mut buf: &'a mut [T], cfg: &GptConfig, b: usize, t: usize) -> Acts<'a, T> {
    let (layer, global) = act_sizes(cfg, b, t);
    let mut take = |k: usize| -> &'a mut [T] {
        let (head, rest) = std::mem::take(&mut buf).split_at_mut(k);
        buf = rest;
        head
    };
    let encoded = take(global[0]);
    let layers = (0..cfg.num_layers)
        .map(|_| {
            let mut s = layer.iter().map(|&k| take(k));
            let mut next = || s.next().unwrap_or_default();
            LayerActs {
                ln1: next(),
                ln1_mean: next(),
                ln1_rstd: next(),
                qkv: next(),
                atty: next(),
                att_lse: next(),
                x_mid: next(),
                ln2: next(),
                ln2_mean: next(),
                ln2_rstd: next(),
                fc: next(),
                fcg: next(),
                x_out: next(),
            }
        })
        .collect();
    let mut rest = global[1..].iter().map(|&k| take(k));
    let mut next = || rest.next().unwrap_or_default();
    Acts { encoded, layers, lnf: next(), lnf_mean: next(), lnf_rstd: next(), logits: next(), lse: next() }
}

/// Where a parameter tensor lies in a flat parameter (or gradient) buffer.
pub(crate) fn tensor(cfg: &GptConfig, p: Param) -> std::ops::Range<usize> {
    let mut at = 0;
    for (q, n) in cfg.param_sizes() {
        if q == p {
            return at..at + n;
        }
        at += n;
    }
    0..0
}

/// The buffers of forward and backward passes at one batch shape (B, T), allocated once and
/// reused: the activations in one allocation carved by the size table, and the backward pass's
/// three gradient buffers in another.
pub struct Workspace<T> {
    cfg: GptConfig,
    b: usize,
    t: usize,
    acts: Vec<T>,
    /// dresidual (N, C), dbig (N, 4C), dsmall (N, C).
    grad_bufs: Vec<T>,
    /// Whether the logits buffer holds logits (a forward pass ran since the last backward).
    fresh: bool,
}

impl<T: Real> Workspace<T> {
    /// Buffers for batches of `b` sequences of `t` tokens (`t` at most the context).
    pub fn new(cfg: GptConfig, b: usize, t: usize) -> Workspace<T> {
        assert!(t <= cfg.max_seq_len && b > 0 && t > 0, "B x T with 0 < T <= max_seq_len");
        let (layer, global) = act_sizes(&cfg, b, t);
        let len = cfg.num_layers * layer.iter().sum::<usize>() + global.iter().sum::<usize>();
        let n = b * t;
        Workspace {
            cfg,
            b,
            t,
            acts: vec![T::zero(); len],
            grad_bufs: vec![T::zero(); n * 6 * cfg.channels],
            fresh: false,
        }
    }

    /// The batch shape (B, T).
    pub fn shape(&self) -> (usize, usize) {
        (self.b, self.t)
    }

    /// Elements held (activations and gradient buffers).
    pub fn len(&self) -> usize {
        self.acts.len() + self.grad_bufs.len()
    }

    /// Whether no elements are held (never: a workspace has at least one row).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The forward pass over `params` (laid out as `Params`) on B x T `tokens`; with
    /// `targets`, the mean cross-entropy loss over the real vocabulary.
    pub fn forward(&mut self, params: &[T], tokens: &[u32], targets: Option<&[u32]>) -> Option<T> {
        let cfg = self.cfg;
        let (c, l, nh, vp, v) = (cfg.channels, cfg.num_layers, cfg.num_heads, cfg.padded_vocab_size, cfg.vocab_size);
        let (b, t) = (self.b, self.t);
        let n = b * t;
        assert!(tokens.len() == n && params.len() == cfg.num_params(), "B x T tokens and the model's parameters");
        assert!(targets.is_none_or(|y| y.len() == n), "B x T targets");
        assert!(tokens.iter().all(|&x| (x as usize) < v), "token id outside the vocabulary");
        let w = |p: Param| &params[tensor(&cfg, p)];
        let lw = |p: Param, i: usize, size: usize| &w(p)[i * size..(i + 1) * size];
        let acts = carve(&mut self.acts, &cfg, b, t);
        encoder_forward(acts.encoded, tokens, w(Param::Wte), w(Param::Wpe), t, c);
        let mut layers = acts.layers;
        for i in 0..l {
            let (done, rest) = layers.split_at_mut(i);
            let x: &[T] = if i == 0 { acts.encoded } else { done[i - 1].x_out };
            let a = &mut rest[0];
            layernorm_forward(a.ln1, a.ln1_mean, a.ln1_rstd, x, lw(Param::Ln1W, i, c), lw(Param::Ln1B, i, c), c);
            matmul_forward(a.qkv, a.ln1, lw(Param::QkvW, i, 3 * c * c), Some(lw(Param::QkvB, i, 3 * c)), c, 3 * c);
            attention_forward(a.atty, a.att_lse, a.qkv, t, c, nh, cfg.band_of(i));
            let (pw, pb) = (lw(Param::AttProjW, i, c * c), lw(Param::AttProjB, i, c));
            matmul_forward_residual(a.x_mid, x, a.atty, pw, pb, c, c);
            layernorm_forward(a.ln2, a.ln2_mean, a.ln2_rstd, a.x_mid, lw(Param::Ln2W, i, c), lw(Param::Ln2B, i, c), c);
            matmul_forward(a.fc, a.ln2, lw(Param::FcW, i, 4 * c * c), Some(lw(Param::FcB, i, 4 * c)), c, 4 * c);
            gelu_forward(a.fcg, a.fc);
            let (pw, pb) = (lw(Param::FcProjW, i, 4 * c * c), lw(Param::FcProjB, i, c));
            matmul_forward_residual(a.x_out, a.x_mid, a.fcg, pw, pb, 4 * c, c);
        }
        let x: &[T] = if l == 0 { acts.encoded } else { layers[l - 1].x_out };
        layernorm_forward(acts.lnf, acts.lnf_mean, acts.lnf_rstd, x, w(Param::LnfW), w(Param::LnfB), c);
        matmul_forward(acts.logits, acts.lnf, w(Param::Wte), None, c, vp);
        // Log-sum-exp over the real vocabulary (padding columns are outside the softmax).
        acts.lse.par_iter_mut().zip(acts.logits.par_chunks(vp)).for_each(|(lse, z)| {
            let max = z[..v].iter().fold(T::neg_infinity(), |m, &x| m.max(x));
            *lse = max + sum_exp(&z[..v], max).ln();
        });
        self.fresh = true;
        targets.map(|y| {
            let total: T =
                acts.lse.iter().zip(acts.logits.chunks(vp)).zip(y).map(|((&l, z), &y)| l - z[y as usize]).sum();
            total / r(n as f64)
        })
    }

    /// Whether the logits buffer holds the last forward pass's logits (not yet overwritten by a
    /// backward pass).
    pub fn has_logits(&self) -> bool {
        self.fresh
    }

    /// Each position's cross-entropy against `targets` (B*T values), after a forward pass.
    pub fn position_losses(&self, targets: &[u32]) -> Vec<T> {
        let vp = self.cfg.padded_vocab_size;
        let (layer, global) = act_sizes(&self.cfg, self.b, self.t);
        let at = self.cfg.num_layers * layer.iter().sum::<usize>() + global[..5].iter().sum::<usize>();
        let lse = &self.acts[at..at + global[5]];
        self.logits().chunks(vp).zip(lse).zip(targets).map(|((z, &l), &y)| l - z[y as usize]).collect()
    }

    /// The logits (B*T, Vp) of the last forward pass (padding columns included; they are
    /// outside the softmax and never sampled).
    pub fn logits(&self) -> &[T] {
        assert!(self.fresh, "logits are read after a forward pass, before the backward pass");
        let (layer, global) = act_sizes(&self.cfg, self.b, self.t);
        let at = self.cfg.num_layers * layer.iter().sum::<usize>() + global[..4].iter().sum::<usize>();
        &self.acts[at..at + global[4]]
    }

    /// The backward pass after `forward` with the same tokens: accumulates into `grads` (laid
    /// out as the parameters) the gradient of `scale` x the summed cross-entropy over the B x T
    /// positions (`scale` = 1 / (B T) for the mean loss; smaller when accumulating micro-batches).
    /// Overwrites the logits with their gradient.
    pub fn backward(&mut self, params: &[T], grads: &mut [T], tokens: &[u32], targets: &[u32], scale: T) {
        assert!(self.fresh, "backward follows a forward pass");
        self.fresh = false;
        let cfg = self.cfg;
        let (c, l, nh, vp, v) = (cfg.channels, cfg.num_layers, cfg.num_heads, cfg.padded_vocab_size, cfg.vocab_size);
        let (b, t) = (self.b, self.t);
        let n = b * t;
        assert!(grads.len() == params.len() && tokens.len() == n && targets.len() == n);
        let range = |p: Param| tensor(&cfg, p);
        let w = |p: Param| &params[range(p)];
        let acts = carve(&mut self.acts, &cfg, b, t);
        let (dres, rest) = self.grad_bufs.split_at_mut(n * c);
        let (dbig, dsmall) = rest.split_at_mut(n * 4 * c);
        // Fused softmax + cross-entropy: dlogits = scale * (softmax - onehot), over the logits.
        acts.logits.par_chunks_mut(vp).zip(acts.lse.par_iter()).zip(targets.par_iter()).for_each(|((z, &lse), &y)| {
            z[..v].iter_mut().for_each(|x| *x = *x - lse);
            T::exp_in_place(&mut z[..v]);
            z[..v].iter_mut().for_each(|x| *x = *x * scale);
            z[v..].iter_mut().for_each(|x| *x = T::zero());
            z[y as usize] = z[y as usize] - scale;
        });
        matmul_backward(dsmall, &mut grads[range(Param::Wte)], None, acts.logits, acts.lnf, w(Param::Wte), c, vp);
        dres.iter_mut().for_each(|x| *x = T::zero());
        let x_last: &[T] = if l == 0 { acts.encoded } else { acts.layers[l - 1].x_out };
        let lnf = (range(Param::LnfW), range(Param::LnfB));
        norm_backward(grads, params, lnf, dres, dsmall, x_last, (acts.lnf_mean, acts.lnf_rstd));
        for i in (0..l).rev() {
            let a = &acts.layers[i];
            let x_in: &[T] = if i == 0 { acts.encoded } else { acts.layers[i - 1].x_out };
            let sl = |p: Param, size: usize| {
                let r = range(p);
                r.start + i * size..r.start + (i + 1) * size
            };
            let lin = |pw: Param, pb: Param, cin: usize, cout: usize| (sl(pw, cin * cout), sl(pb, cout), cin, cout);
            let norm = |pw: Param, pb: Param| (sl(pw, c), sl(pb, c));
            // x_out = x_mid + fcproj(gelu(fc(ln2(x_mid)))); dres holds d x_out.
            linear_backward(grads, params, lin(Param::FcProjW, Param::FcProjB, 4 * c, c), dbig, dres, a.fcg);
            gelu_backward(dbig, a.fc);
            linear_backward(grads, params, lin(Param::FcW, Param::FcB, c, 4 * c), dsmall, dbig, a.ln2);
            let stats = (&a.ln2_mean[..], &a.ln2_rstd[..]);
            norm_backward(grads, params, norm(Param::Ln2W, Param::Ln2B), dres, dsmall, a.x_mid, stats);
            // x_mid = x_in + attproj(attention(qkv(ln1(x_in)))); dres holds d x_mid.
            linear_backward(grads, params, lin(Param::AttProjW, Param::AttProjB, c, c), dsmall, dres, a.atty);
            let dqkv = &mut dbig[..n * 3 * c];
            dqkv.par_iter_mut().for_each(|x| *x = T::zero());
            attention_backward(dqkv, dsmall, a.qkv, a.atty, a.att_lse, t, c, nh, cfg.band_of(i));
            linear_backward(grads, params, lin(Param::QkvW, Param::QkvB, c, 3 * c), dsmall, dqkv, a.ln1);
            let stats = (&a.ln1_mean[..], &a.ln1_rstd[..]);
            norm_backward(grads, params, norm(Param::Ln1W, Param::Ln1B), dres, dsmall, x_in, stats);
        }
        let (wte, wpe) = (range(Param::Wte), range(Param::Wpe));
        let (head, tail) = grads.split_at_mut(wpe.start);
        encoder_backward(&mut head[wte], &mut tail[..wpe.len()], dres, tokens, t, c);
    }
}

type Range = std::ops::Range<usize>;

/// A weight's and its bias's gradients: two disjoint ranges of one buffer, the weight first.
fn weight_and_bias<'a, T>(grads: &'a mut [T], w: &Range, b: &Range) -> (&'a mut [T], &'a mut [T]) {
    let (head, tail) = grads.split_at_mut(b.start);
    (&mut head[w.clone()], &mut tail[..b.len()])
}

/// A linear layer's backward pass: dinp (overwritten), and the weight and bias gradients
/// accumulated in place.
fn linear_backward<T: Real>(
    grads: &mut [T],
    params: &[T],
    (w, b, cin, cout): (Range, Range, usize, usize),
    dinp: &mut [T],
    dout: &[T],
    inp: &[T],
) {
    let (gw, gb) = weight_and_bias(grads, &w, &b);
    matmul_backward(dinp, gw, Some(gb), dout, inp, &params[w], cin, cout);
}

/// A LayerNorm's backward pass: dinp, and the gain and bias gradients accumulated in place.
fn norm_backward<T: Real>(
    grads: &mut [T],
    params: &[T],
    (w, b): (Range, Range),
    dinp: &mut [T],
    dout: &[T],
    inp: &[T],
    (mean, rstd): (&[T], &[T]),
) {
    let c = w.len();
    let (gw, gb) = weight_and_bias(grads, &w, &b);
    layernorm_backward(dinp, gw, gb, dout, inp, &params[w], mean, rstd, c);
}

/// The f32 forward pass over `Params` (a one-off workspace): logits (B*T, Vp) and, with
/// targets, the mean loss.
pub fn forward(p: &Params, tokens: &[u32], targets: Option<&[u32]>, b: usize, t: usize) -> (Vec<f32>, Option<f32>) {
    let mut ws = Workspace::new(p.config, b, t);
    let loss = ws.forward(&p.data, tokens, targets);
    (ws.logits().to_vec(), loss)
}

/// The gradient of the mean loss with respect to every parameter (a one-off workspace).
pub fn gradients<T: Real>(
    cfg: &GptConfig,
    params: &[T],
    tokens: &[u32],
    targets: &[u32],
    b: usize,
    t: usize,
) -> (T, Vec<T>) {
    let mut ws = Workspace::new(*cfg, b, t);
    let loss = ws.forward(params, tokens, Some(targets)).unwrap_or_else(T::nan);
    let mut grads = vec![T::zero(); params.len()];
    ws.backward(params, &mut grads, tokens, targets, T::one() / r((b * t) as f64));
    (loss, grads)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_and_layernorm_match_f64_references() {
        let (n, c, oc) = (5, 19, 7);
        let inp: Vec<f32> = (0..n * c).map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0).collect();
        let w: Vec<f32> = (0..oc * c).map(|i| ((i * 13 % 17) as f32 - 8.0) / 9.0).collect();
        let bias: Vec<f32> = (0..oc).map(|i| i as f32 / 10.0).collect();
        let mut out = vec![0.0; n * oc];
        matmul_forward(&mut out, &inp, &w, Some(&bias), c, oc);
        for row in 0..n {
            for j in 0..oc {
                let want: f64 =
                    bias[j] as f64 + (0..c).map(|k| inp[row * c + k] as f64 * w[j * c + k] as f64).sum::<f64>();
                assert!((out[row * oc + j] as f64 - want).abs() < 1e-4, "{row} {j}");
            }
        }
        let (ones, zeros) = (vec![1.0f32; c], vec![0.0f32; c]);
        let (mut ln, mut mean, mut rstd) = (vec![0.0; n * c], vec![0.0; n], vec![0.0; n]);
        layernorm_forward(&mut ln, &mut mean, &mut rstd, &inp, &ones, &zeros, c);
        for row in ln.chunks(c) {
            let m: f32 = row.iter().sum::<f32>() / c as f32;
            let var: f32 = row.iter().map(|x| (x - m).powi(2)).sum::<f32>() / c as f32;
            assert!(m.abs() < 1e-5 && (var - 1.0).abs() < 1e-3, "{m} {var}");
        }
    }

    #[test]
    fn a_fresh_model_predicts_uniformly_and_attention_is_causal() {
        let cfg = GptConfig::new(16, 300, 2, 4, 32, 64);
        let p = Params::gpt2_init(cfg, 1);
        let (b, t) = (2, 16);
        let tokens: Vec<u32> = (0..b * t).map(|i| (i * 7 % 300) as u32).collect();
        let targets: Vec<u32> = (0..b * t).map(|i| (i * 11 % 300) as u32).collect();
        let (logits, loss) = forward(&p, &tokens, Some(&targets), b, t);
        let loss = loss.unwrap_or(f32::NAN);
        assert!((loss - (300f32).ln()).abs() < 0.1, "loss {loss}");
        let mut changed = tokens.clone();
        changed[t - 1] = 5;
        let (logits2, _) = forward(&p, &changed, None, b, t);
        let vp = cfg.padded_vocab_size;
        assert_eq!(&logits[..(t - 1) * vp], &logits2[..(t - 1) * vp]);
        assert_ne!(&logits[(t - 1) * vp..t * vp], &logits2[(t - 1) * vp..t * vp]);
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        assert_eq!(one.install(|| forward(&p, &tokens, Some(&targets), b, t)).0, logits);
    }

    #[test]
    fn banded_attention_equals_dense_attention_under_the_band_mask() {
        let (t, c, nh, band) = (12, 16, 2, 4);
        let hs = c / nh;
        let qkv: Vec<f64> = (0..2 * t * 3 * c).map(|i| (((i * 7919) % 211) as f64 / 211.0 - 0.5) * 2.0).collect();
        let (mut out, mut att) = (vec![0.0; 2 * t * c], vec![0.0; 2 * nh * t]);
        attention_forward(&mut out, &mut att, &qkv, t, c, nh, Some(band));
        // Dense attention with scores outside the band set to -inf, written out plainly.
        for bi in 0..2 {
            for h in 0..nh {
                for ti in 0..t {
                    let q = &qkv[(bi * t + ti) * 3 * c + h * hs..][..hs];
                    let scores: Vec<f64> = (0..t)
                        .map(|t2| {
                            let k = &qkv[(bi * t + t2) * 3 * c + c + h * hs..][..hs];
                            let inside = t2 <= ti && ti - t2 < band;
                            if inside {
                                q.iter().zip(k).map(|(a, b)| a * b).sum::<f64>() / (hs as f64).sqrt()
                            } else {
                                f64::NEG_INFINITY
                            }
                        })
                        .collect();
                    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for i in 0..hs {
                        let want: f64 =
                            (0..t).map(|t2| e[t2] / z * qkv[(bi * t + t2) * 3 * c + 2 * c + h * hs + i]).sum();
                        let got = out[(bi * t + ti) * c + h * hs + i];
                        assert!((got - want).abs() < 1e-12, "b{bi} h{h} t{ti} i{i}: {got} vs {want}");
                    }
                }
            }
        }
        // A band as long as the sequence is dense attention.
        let (mut dense, mut att2) = (vec![0.0; 2 * t * c], vec![0.0; 2 * nh * t]);
        attention_forward(&mut dense, &mut att2, &qkv, t, c, nh, None);
        let (mut wide, mut att3) = (vec![0.0; 2 * t * c], vec![0.0; 2 * nh * t]);
        attention_forward(&mut wide, &mut att3, &qkv, t, c, nh, Some(t));
        assert_eq!(dense, wide);
    }

    /// Attention over several query blocks (T = 150 > 64): the output against attention written
    /// out plainly, and every input's gradient against f64 central differences, dense and banded
    /// (a band of 70 crosses block boundaries).
    #[test]
    fn blocked_attention_matches_the_plain_formula_and_finite_differences() {
        let (b, t, c, nh) = (1, 150, 8, 2);
        let hs = c / nh;
        let qkv: Vec<f64> = (0..b * t * 3 * c).map(|i| (((i * 7919) % 211) as f64 / 211.0 - 0.5) * 2.0).collect();
        let g: Vec<f64> = (0..b * t * c).map(|i| ((i * 104_729) % 101) as f64 / 101.0 - 0.5).collect();
        for band in [None, Some(70)] {
            let run = |qkv: &[f64]| {
                let (mut out, mut lse) = (vec![0.0; b * t * c], vec![0.0; b * nh * t]);
                attention_forward(&mut out, &mut lse, qkv, t, c, nh, band);
                (out, lse)
            };
            let (out, lse) = run(&qkv);
            for (h, ti) in [(0, 0), (1, 63), (0, 64), (1, 130), (0, 149)] {
                let q = &qkv[ti * 3 * c + h * hs..][..hs];
                let keys: Vec<usize> = (first_key(ti, band)..=ti).collect();
                let scores: Vec<f64> = keys
                    .iter()
                    .map(|&t2| {
                        let k = &qkv[t2 * 3 * c + c + h * hs..][..hs];
                        q.iter().zip(k).map(|(a, b)| a * b).sum::<f64>() / (hs as f64).sqrt()
                    })
                    .collect();
                let z: f64 = scores.iter().map(|s| s.exp()).sum();
                for i in 0..hs {
                    let want: f64 = keys
                        .iter()
                        .zip(&scores)
                        .map(|(&t2, s)| s.exp() / z * qkv[t2 * 3 * c + 2 * c + h * hs + i])
                        .sum();
                    let got = out[ti * c + h * hs + i];
                    assert!((got - want).abs() < 1e-12, "{band:?} h{h} t{ti}: {got} vs {want}");
                }
            }
            // Loss = sum(out * g): dout = g.
            let mut dqkv = vec![0.0; qkv.len()];
            attention_backward(&mut dqkv, &g, &qkv, &out, &lse, t, c, nh, band);
            let loss = |qkv: &[f64]| run(qkv).0.iter().zip(&g).map(|(a, b)| a * b).sum::<f64>();
            let mut x = qkv.clone();
            for k in 0..60 {
                let i = (k * 7919 + 11) % qkv.len();
                let h = 1e-6;
                x[i] = qkv[i] + h;
                let up = loss(&x);
                x[i] = qkv[i] - h;
                let down = loss(&x);
                x[i] = qkv[i];
                let numeric = (up - down) / (2.0 * h);
                let err = (dqkv[i] - numeric).abs() / numeric.abs().max(1e-6);
                assert!(err < 1e-5, "{band:?} dqkv[{i}]: {} vs numeric {numeric}", dqkv[i]);
            }
        }
    }

    /// A two-layer f32 model with a band of 40 over T = 96, B = 2, and its tokens and targets.
    fn banded_model() -> (GptConfig, Params, Vec<u32>, Vec<u32>, usize, usize) {
        let cfg = GptConfig { attention_band: Some(40), ..GptConfig::new(96, 300, 2, 2, 32, 64) };
        let (b, t) = (2, 96);
        let tokens: Vec<u32> = (0..b * t).map(|i| ((i * 13 + 5) % 300) as u32).collect();
        let targets: Vec<u32> = (0..b * t).map(|i| ((i * 29 + 3) % 300) as u32).collect();
        (cfg, Params::gpt2_init(cfg, 9), tokens, targets, b, t)
    }

    #[test]
    fn gradients_are_identical_on_one_and_two_threads_and_the_workspace_is_carved_exactly() {
        let (cfg, p, tokens, targets, b, t) = banded_model();
        let on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| gradients(&cfg, &p.data, &tokens, &targets, b, t))
        };
        let (one, two) = (on(1), on(2));
        assert_eq!(one.0.to_bits(), two.0.to_bits());
        assert!(one.1.iter().zip(&two.1).all(|(x, y)| x.to_bits() == y.to_bits()), "gradients differ by thread count");
        assert!(one.1.iter().any(|&g| g != 0.0));
        // The size table accounts for every element, and the logits sit where carving puts them.
        let (layer, global) = act_sizes(&cfg, b, t);
        let mut ws = Workspace::<f32>::new(cfg, b, t);
        let mut buf = vec![0.0f32; ws.acts.len()];
        let acts = carve(&mut buf, &cfg, b, t);
        assert_eq!(acts.logits.len(), b * t * cfg.padded_vocab_size);
        assert_eq!(acts.lse.len(), b * t);
        assert_eq!(ws.acts.len(), cfg.num_layers * layer.iter().sum::<usize>() + global.iter().sum::<usize>());
        ws.forward(&p.data, &tokens, None);
        let (logits, _) = forward(&p, &tokens, None, b, t);
        assert_eq!(ws.logits(), &logits[..]);
    }

    /// Every kernel at every instruction-set level this CPU has (an AVX-512 machine runs all
    /// three): the loss, every gradient and the parameters after two AdamW steps, bit for bit.
    #[test]
    fn every_level_gives_the_same_bits() {
        use shards::cpu::Simd;
        let (cfg, p, tokens, targets, b, t) = banded_model();
        let run = || {
            let (loss, grads) = gradients(&cfg, &p.data, &tokens, &targets, b, t);
            let mut params = p.data.clone();
            let mut state = crate::optim::AdamState::new(&cfg);
            state.update(&crate::optim::AdamW::default(), &mut params, &grads, 1e-3);
            state.update_scaled(&crate::optim::AdamW::default(), &mut params, &grads, 1e-3, 0.5);
            (loss, grads, params)
        };
        let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<u32>>();
        let mut seen = Vec::new();
        for level in Simd::available() {
            crate::simd::force(level);
            let (loss, grads, params) = run();
            crate::simd::unforce();
            seen.push((level, loss.to_bits(), bits(&grads), bits(&params)));
        }
        for (level, loss, grads, params) in &seen[1..] {
            assert_eq!(*loss, seen[0].1, "loss at {level:?}");
            assert!(*grads == seen[0].2, "gradients at {level:?} differ from scalar");
            assert!(*params == seen[0].3, "AdamW at {level:?} differs from scalar");
        }
        assert!(seen.len() >= 2 || shards::cpu::detected() == Simd::Scalar, "{seen:?}", seen = seen.len());
        if shards::cpu::detected() < Simd::Avx512 {
            println!("every_level_gives_the_same_bits: no AVX-512 on this CPU; scalar and AVX2 compared");
        }
    }

    /// A small f64 model with parameters away from their initial symmetries (LayerNorm gains
    /// not 1, biases not 0), for finite differences.
    fn f64_model() -> (GptConfig, Vec<f64>, Vec<u32>, Vec<u32>, usize, usize) {
        // Layer 1 uses a band of 3 (GPT-3's alternating sparse attention), so both kinds of
        // layer are checked.
        let cfg = GptConfig { attention_band: Some(3), ..GptConfig::new(8, 40, 2, 2, 8, 8) };
        let p = Params::gpt2_init(cfg, 3);
        let params: Vec<f64> = p
            .data
            .iter()
            .enumerate()
            .map(|(i, &x)| x as f64 * 10.0 + 0.05 * (((i * 7919) % 97) as f64 / 97.0 - 0.5))
            .collect();
        let (b, t) = (2, 8);
        let tokens: Vec<u32> = (0..b * t).map(|i| ((i * 13 + 5) % 40) as u32).collect();
        let targets: Vec<u32> = (0..b * t).map(|i| ((i * 29 + 3) % 40) as u32).collect();
        (cfg, params, tokens, targets, b, t)
    }

    #[test]
    fn gradients_match_finite_differences_in_f64() {
        let (cfg, mut params, tokens, targets, b, t) = f64_model();
        let (_, grads) = gradients(&cfg, &params, &tokens, &targets, b, t);
        let mut ws = Workspace::new(cfg, b, t);
        let mut loss_at = |params: &[f64]| ws.forward(params, &tokens, Some(&targets)).unwrap_or(f64::NAN);
        // Every tensor: a spread of its elements (skipping the vocabulary padding).
        let mut at = 0;
        let mut checked = 0;
        for (param, size) in cfg.param_sizes() {
            let real = if param == Param::Wte { cfg.vocab_size * cfg.channels } else { size };
            for k in 0..6 {
                let i = at + (k * 7919 + 13) % real;
                let h = 1e-5;
                let keep = params[i];
                params[i] = keep + h;
                let up = loss_at(&params);
                params[i] = keep - h;
                let down = loss_at(&params);
                params[i] = keep;
                let numeric = (up - down) / (2.0 * h);
                // Relative error, or absolute below 1e-5 (some gradients are exactly zero: a constant
                // added to every key leaves the softmax unchanged).
                let err = (grads[i] - numeric).abs() / numeric.abs().max(grads[i].abs()).max(1e-5);
                assert!(err < 1e-4, "{param:?}[{}]: backward {} vs numeric {numeric}", i - at, grads[i]);
                checked += 1;
            }
            at += size;
        }
        assert_eq!(checked, 16 * 6);
        // Padding rows of wte get no gradient.
        let wte = tensor(&cfg, Param::Wte);
        assert!(grads[wte][cfg.vocab_size * cfg.channels..].iter().all(|&g| g == 0.0));
    }
}
