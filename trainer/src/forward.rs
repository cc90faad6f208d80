//! The GPT on the CPU, layer by layer in llm.c's manner, each layer's forward beside its
//! backward (a reference: activations are separate buffers, not yet one carved allocation): encoder, LayerNorm, matmul, causal attention, GELU (tanh), residual, tied logits,
//! fused softmax + cross-entropy over the real vocabulary. Generic over the float type so that
//! the same code runs in f32 (training) and f64 (finite-difference gradient checks). Rows run in
//! parallel with rayon; every reduction across rows is taken in row order, so results do not
//! depend on the thread count. A reference first: the matmul is a plain dot-product kernel the
//! compiler vectorizes, to be replaced by a tuned GEMM.

use std::iter::Sum;

use num_traits::Float;
use rayon::prelude::*;

use crate::model::{GptConfig, Param, Params};

/// The float types the model runs in.
pub trait Real: Float + Sum + Send + Sync + std::fmt::Debug + 'static {}
impl Real for f32 {}
impl Real for f64 {}

fn r<T: Real>(x: f64) -> T {
    T::from(x).unwrap_or_else(T::nan)
}

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
    out.par_chunks_mut(c).zip(inp.par_chunks(c)).zip(mean.par_iter_mut().zip(rstd.par_iter_mut())).for_each(
        |((o, x), (m, s))| {
            let n = r::<T>(c as f64);
            let mu = x.iter().copied().sum::<T>() / n;
            let var = x.iter().map(|&v| (v - mu) * (v - mu)).sum::<T>() / n;
            let rs = T::one() / (var + r(1e-5)).sqrt();
            for i in 0..c {
                o[i] = (x[i] - mu) * rs * w[i] + b[i];
            }
            (*m, *s) = (mu, rs);
        },
    );
}

/// Accumulates dinp (per row), dw and db (in row order).
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
        let (x, d, mu, rs) = (&inp[row * c..][..c], &dout[row * c..][..c], mean[row], rstd[row]);
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
    });
    for row in 0..dout.len() / c {
        let (x, d) = (&inp[row * c..][..c], &dout[row * c..][..c]);
        for i in 0..c {
            let norm = (x[i] - mean[row]) * rstd[row];
            db[i] = db[i] + d[i];
            dw[i] = dw[i] + norm * d[i];
        }
    }
}

// ---------------------------------------------------------------- matmul
/// dst (m, n) = (dst if `accumulate`) + lhs (m, k) . rhs (k, n), the operands given by row and
/// column strides, through the `gemm` crate (runtime-dispatched AVX-512/AVX2/FMA kernels, rayon
/// threads). Each output element is reduced over k in a fixed blocked order whatever the
/// thread count.
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
    if m == 0 || n == 0 {
        return;
    }
    let last = |rs: usize, cs: usize, rows: usize, cols: usize| (rows - 1) * rs + (cols.max(1) - 1) * cs;
    assert!(dst.len() > last(n, 1, m, n), "gemm: destination too small");
    if k > 0 {
        assert!(
            lhs.len() > last(lhs_rs, lhs_cs, m, k) && rhs.len() > last(rhs_rs, rhs_cs, k, n),
            "gemm: operand too small"
        );
    }
    let threads = rayon::current_num_threads();
    let par = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    // SAFETY: every index the kernel touches, (rows - 1) * row stride + (cols - 1) * column
    // stride, lies inside its slice (checked above); dst does not alias lhs or rhs (a `&mut`
    // and two `&` slices).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            par,
        );
    }
}

/// out (N, OC) = inp (N, C) . w (OC, C)^T + bias.
pub fn matmul_forward<T: Real>(out: &mut [T], inp: &[T], w: &[T], bias: Option<&[T]>, c: usize, oc: usize) {
    let n = out.len() / oc;
    match bias {
        Some(b) => out.par_chunks_mut(oc).for_each(|o| o.copy_from_slice(b)),
        None => out.iter_mut().for_each(|x| *x = T::zero()),
    }
    // rhs (C, OC) is w transposed: element (i, j) at w[j * C + i].
    mm((n, oc, c), out, true, inp, (c, 1), w, (1, c));
}

/// Accumulates dinp += dout . w, dw += dout^T . inp, dbias += column sums of dout (in row
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
    mm((n, c, oc), dinp, true, dout, (oc, 1), w, (c, 1));
    // lhs (OC, N) is dout transposed: element (j, r) at dout[r * OC + j].
    mm((oc, c, n), dw, true, dout, (1, oc), inp, (c, 1));
    if let Some(db) = dbias {
        db.par_iter_mut().enumerate().for_each(|(j, b)| {
            for row in 0..n {
                *b = *b + dout[row * oc + j];
            }
        });
    }
}

/// A dot product with eight independent accumulators (vectorizes for f32).
fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::zero(); 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] = acc[k] + x[k] * y[k];
        }
    }
    let mut s: T = acc.iter().copied().sum();
    for (&x, &y) in ra.iter().zip(rb) {
        s = s + x * y;
    }
    s
}

// ---------------------------------------------------------------- attention
/// The first position query `ti` attends to: 0 (dense), or the start of its band.
fn first_key(ti: usize, band: Option<usize>) -> usize {
    band.map_or(0, |w| (ti + 1).saturating_sub(w))
}

/// Causal multi-head attention: qkv (B, T, 3C) -> out (B, T, C); keeps the attention
/// probabilities att (B, NH, T, T) (row t filled up to t, zero outside) for the backward
/// pass. With `band`, query t attends only to positions t - band + 1 ..= t (GPT-3's locally
/// banded sparse attention), computing only those scores.
pub fn attention_forward<T: Real>(
    out: &mut [T],
    att: &mut [T],
    qkv: &[T],
    t: usize,
    c: usize,
    nh: usize,
    band: Option<usize>,
) {
    let hs = c / nh;
    let scale = T::one() / r::<T>(hs as f64).sqrt();
    // One (b, h, t) row of att per task: the rows are disjoint.
    att.par_chunks_mut(t).enumerate().for_each(|(idx, a)| {
        let (bi, h, ti) = (idx / (nh * t), (idx / t) % nh, idx % t);
        let t0 = first_key(ti, band);
        let q = &qkv[(bi * t + ti) * 3 * c + h * hs..][..hs];
        let mut max = T::neg_infinity();
        for t2 in t0..=ti {
            let k = &qkv[(bi * t + t2) * 3 * c + c + h * hs..][..hs];
            a[t2] = dot(q, k) * scale;
            max = max.max(a[t2]);
        }
        let mut sum = T::zero();
        for x in &mut a[t0..=ti] {
            *x = (*x - max).exp();
            sum = sum + *x;
        }
        for (t2, x) in a.iter_mut().enumerate() {
            *x = if (t0..=ti).contains(&t2) { *x / sum } else { T::zero() };
        }
    });
    out.par_chunks_mut(c).enumerate().for_each(|(row, o)| {
        let (bi, ti) = (row / t, row % t);
        for h in 0..nh {
            let a = &att[((bi * nh + h) * t + ti) * t..][..t];
            let oh = &mut o[h * hs..(h + 1) * hs];
            oh.iter_mut().for_each(|x| *x = T::zero());
            for (t2, &w) in a.iter().enumerate().take(ti + 1).skip(first_key(ti, band)) {
                let v = &qkv[(bi * t + t2) * 3 * c + 2 * c + h * hs..][..hs];
                for (x, &y) in oh.iter_mut().zip(v) {
                    *x = *x + w * y;
                }
            }
        }
    });
}

/// Accumulates dqkv from dout, per (batch, head), in time order.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward<T: Real>(
    dqkv: &mut [T],
    dout: &[T],
    qkv: &[T],
    att: &[T],
    t: usize,
    c: usize,
    nh: usize,
    band: Option<usize>,
) {
    let hs = c / nh;
    let scale = T::one() / r::<T>(hs as f64).sqrt();
    let b = dout.len() / (t * c);
    // Each batch row's dqkv slice is touched only by that batch: parallel over batches.
    dqkv.par_chunks_mut(t * 3 * c).enumerate().take(b).for_each(|(bi, dq)| {
        let mut datt = vec![T::zero(); t];
        for h in 0..nh {
            for ti in 0..t {
                let a = &att[((bi * nh + h) * t + ti) * t..][..t];
                let d = &dout[(bi * t + ti) * c + h * hs..][..hs];
                let t0 = first_key(ti, band);
                // out = sum_t2 a[t2] v[t2]: grads for a and v.
                for t2 in t0..=ti {
                    let v = &qkv[(bi * t + t2) * 3 * c + 2 * c + h * hs..][..hs];
                    datt[t2] = dot(d, v);
                    let dv = &mut dq[t2 * 3 * c + 2 * c + h * hs..][..hs];
                    for (x, &y) in dv.iter_mut().zip(d) {
                        *x = *x + a[t2] * y;
                    }
                }
                // Softmax backward: dpre = a * (datt - sum(a * datt)).
                let s: T = (t0..=ti).map(|t2| a[t2] * datt[t2]).sum();
                let q = &qkv[(bi * t + ti) * 3 * c + h * hs..][..hs];
                for t2 in t0..=ti {
                    let dpre = a[t2] * (datt[t2] - s) * scale;
                    let k = &qkv[(bi * t + t2) * 3 * c + c + h * hs..][..hs];
                    for i in 0..hs {
                        dq[ti * 3 * c + h * hs + i] = dq[ti * 3 * c + h * hs + i] + dpre * k[i];
                        dq[t2 * 3 * c + c + h * hs + i] = dq[t2 * 3 * c + c + h * hs + i] + dpre * q[i];
                    }
                }
            }
        }
    });
}

// ---------------------------------------------------------------- gelu
fn gelu_consts<T: Real>() -> (T, T) {
    (r((2.0 / std::f64::consts::PI).sqrt()), r(0.044715))
}

/// GELU, tanh approximation (GPT-2's).
pub fn gelu_forward<T: Real>(out: &mut [T], inp: &[T]) {
    let (s, k) = gelu_consts::<T>();
    let half = r::<T>(0.5);
    out.par_iter_mut().zip(inp.par_iter()).for_each(|(o, &x)| {
        *o = half * x * (T::one() + (s * (x + k * x * x * x)).tanh());
    });
}

/// Accumulates dinp.
pub fn gelu_backward<T: Real>(dinp: &mut [T], inp: &[T], dout: &[T]) {
    let (s, k) = gelu_consts::<T>();
    let (half, three) = (r::<T>(0.5), r::<T>(3.0));
    dinp.par_iter_mut().zip(inp.par_iter().zip(dout.par_iter())).for_each(|(di, (&x, &d))| {
        let u = s * (x + k * x * x * x);
        let th = u.tanh();
        let sech2 = T::one() - th * th;
        let grad = half * (T::one() + th) + half * x * sech2 * s * (T::one() + three * k * x * x);
        *di = *di + grad * d;
    });
}

// ---------------------------------------------------------------- the model
/// What the backward pass needs from the forward pass.
pub struct Activations<T> {
    b: usize,
    t: usize,
    /// Per layer: the residual stream entering it, ln1 and its stats, qkv, att, attention out,
    /// the residual after attention, ln2 and its stats, fc, gelu(fc).
    layers: Vec<LayerActs<T>>,
    lnf: Vec<T>,
    lnf_mean: Vec<T>,
    lnf_rstd: Vec<T>,
    residual: Vec<T>,
    /// Softmax probabilities over the padded vocabulary (padding 0).
    probs: Vec<T>,
}

struct LayerActs<T> {
    x_in: Vec<T>,
    ln1: Vec<T>,
    ln1_mean: Vec<T>,
    ln1_rstd: Vec<T>,
    qkv: Vec<T>,
    att: Vec<T>,
    atty: Vec<T>,
    x_mid: Vec<T>,
    ln2: Vec<T>,
    ln2_mean: Vec<T>,
    ln2_rstd: Vec<T>,
    fc: Vec<T>,
    fcg: Vec<T>,
}

/// Where a parameter tensor lies in a flat parameter (or gradient) buffer.
fn tensor(cfg: &GptConfig, p: Param) -> std::ops::Range<usize> {
    let mut at = 0;
    for (q, n) in cfg.param_sizes() {
        if q == p {
            return at..at + n;
        }
        at += n;
    }
    0..0
}

/// Forward pass over `params` (laid out as `Params`): logits (B*T, Vp), the mean loss when
/// targets are given, and the activations for `backward`.
pub fn forward_with<T: Real>(
    cfg: &GptConfig,
    params: &[T],
    tokens: &[u32],
    targets: Option<&[u32]>,
    b: usize,
    t: usize,
) -> (Vec<T>, Option<T>, Activations<T>) {
    let (c, l, nh, vp, v) = (cfg.channels, cfg.num_layers, cfg.num_heads, cfg.padded_vocab_size, cfg.vocab_size);
    let n = b * t;
    assert!(t <= cfg.max_seq_len && tokens.len() == n, "B x T tokens, T <= max_seq_len");
    let w = |p: Param| &params[tensor(cfg, p)];
    let lw = |p: Param, i: usize, size: usize| &w(p)[i * size..(i + 1) * size];
    let zeros = |k: usize| vec![T::zero(); k];
    let mut x = zeros(n * c);
    encoder_forward(&mut x, tokens, w(Param::Wte), w(Param::Wpe), t, c);
    let mut layers = Vec::with_capacity(l);
    for i in 0..l {
        let mut a = LayerActs {
            x_in: x.clone(),
            ln1: zeros(n * c),
            ln1_mean: zeros(n),
            ln1_rstd: zeros(n),
            qkv: zeros(n * 3 * c),
            att: zeros(b * nh * t * t),
            atty: zeros(n * c),
            x_mid: zeros(n * c),
            ln2: zeros(n * c),
            ln2_mean: zeros(n),
            ln2_rstd: zeros(n),
            fc: zeros(n * 4 * c),
            fcg: zeros(n * 4 * c),
        };
        layernorm_forward(
            &mut a.ln1,
            &mut a.ln1_mean,
            &mut a.ln1_rstd,
            &x,
            lw(Param::Ln1W, i, c),
            lw(Param::Ln1B, i, c),
            c,
        );
        matmul_forward(&mut a.qkv, &a.ln1, lw(Param::QkvW, i, 3 * c * c), Some(lw(Param::QkvB, i, 3 * c)), c, 3 * c);
        attention_forward(&mut a.atty, &mut a.att, &a.qkv, t, c, nh, cfg.band_of(i));
        let mut proj = zeros(n * c);
        matmul_forward(&mut proj, &a.atty, lw(Param::AttProjW, i, c * c), Some(lw(Param::AttProjB, i, c)), c, c);
        a.x_mid = x.iter().zip(&proj).map(|(&p, &q)| p + q).collect();
        layernorm_forward(
            &mut a.ln2,
            &mut a.ln2_mean,
            &mut a.ln2_rstd,
            &a.x_mid,
            lw(Param::Ln2W, i, c),
            lw(Param::Ln2B, i, c),
            c,
        );
        matmul_forward(&mut a.fc, &a.ln2, lw(Param::FcW, i, 4 * c * c), Some(lw(Param::FcB, i, 4 * c)), c, 4 * c);
        gelu_forward(&mut a.fcg, &a.fc);
        matmul_forward(&mut proj, &a.fcg, lw(Param::FcProjW, i, 4 * c * c), Some(lw(Param::FcProjB, i, c)), 4 * c, c);
        x = a.x_mid.iter().zip(&proj).map(|(&p, &q)| p + q).collect();
        layers.push(a);
    }
    let (mut lnf, mut lnf_mean, mut lnf_rstd) = (zeros(n * c), zeros(n), zeros(n));
    layernorm_forward(&mut lnf, &mut lnf_mean, &mut lnf_rstd, &x, w(Param::LnfW), w(Param::LnfB), c);
    let mut logits = zeros(n * vp);
    matmul_forward(&mut logits, &lnf, w(Param::Wte), None, c, vp);
    // Softmax over the real vocabulary (padding columns get probability 0).
    let mut probs = zeros(n * vp);
    probs.par_chunks_mut(vp).zip(logits.par_chunks(vp)).for_each(|(p, z)| {
        let max = z[..v].iter().fold(T::neg_infinity(), |m, &x| m.max(x));
        let mut sum = T::zero();
        for i in 0..v {
            p[i] = (z[i] - max).exp();
            sum = sum + p[i];
        }
        for x in &mut p[..v] {
            *x = *x / sum;
        }
    });
    let loss = targets.map(|y| {
        let total: T = probs.chunks(vp).zip(y).map(|(p, &target)| -p[target as usize].ln()).sum();
        total / r(n as f64)
    });
    let acts = Activations { b, t, layers, lnf, lnf_mean, lnf_rstd, residual: x, probs };
    (logits, loss, acts)
}

/// Gradients of the mean loss with respect to every parameter (laid out as `Params`). Takes
/// the activations: the softmax buffer becomes the logits' gradient in place.
pub fn backward<T: Real>(
    cfg: &GptConfig,
    params: &[T],
    mut acts: Activations<T>,
    tokens: &[u32],
    targets: &[u32],
) -> Vec<T> {
    let (c, l, nh, vp) = (cfg.channels, cfg.num_layers, cfg.num_heads, cfg.padded_vocab_size);
    let (b, t) = (acts.b, acts.t);
    let n = b * t;
    let mut grads = vec![T::zero(); params.len()];
    let range = |p: Param| tensor(cfg, p);
    let w = |p: Param| &params[range(p)];
    let zeros = |k: usize| vec![T::zero(); k];
    // Fused softmax + cross-entropy: dlogits = (p - onehot) / N.
    let inv_n = T::one() / r(n as f64);
    let mut dlogits = std::mem::take(&mut acts.probs);
    dlogits.par_chunks_mut(vp).zip(targets.par_iter()).for_each(|(d, &y)| {
        d[y as usize] = d[y as usize] - T::one();
        d.iter_mut().for_each(|x| *x = *x * inv_n);
    });
    let mut dlnf = zeros(n * c);
    {
        let g = &mut grads[range(Param::Wte)];
        matmul_backward(&mut dlnf, g, None, &dlogits, &acts.lnf, w(Param::Wte), c, vp);
    }
    let mut dx = zeros(n * c);
    let stats = (&acts.lnf_mean[..], &acts.lnf_rstd[..]);
    let lnf = (range(Param::LnfW), range(Param::LnfB));
    norm_backward(&mut grads, params, lnf, &mut dx, &dlnf, &acts.residual, stats);
    for i in (0..l).rev() {
        let a = &acts.layers[i];
        let sl = |p: Param, size: usize| {
            let r = range(p);
            r.start + i * size..r.start + (i + 1) * size
        };
        let lin = |pw: Param, pb: Param, cin: usize, cout: usize| (sl(pw, cin * cout), sl(pb, cout), cin, cout);
        let norm = |pw: Param, pb: Param| (sl(pw, c), sl(pb, c));
        // x_out = x_mid + fcproj(gelu(fc(ln2(x_mid)))).
        let mut dfcg = zeros(n * 4 * c);
        linear_backward(&mut grads, params, lin(Param::FcProjW, Param::FcProjB, 4 * c, c), &mut dfcg, &dx, &a.fcg);
        let mut dfc = zeros(n * 4 * c);
        gelu_backward(&mut dfc, &a.fc, &dfcg);
        let mut dln2 = zeros(n * c);
        linear_backward(&mut grads, params, lin(Param::FcW, Param::FcB, c, 4 * c), &mut dln2, &dfc, &a.ln2);
        let mut dmid = dx.clone();
        let stats = (&a.ln2_mean[..], &a.ln2_rstd[..]);
        norm_backward(&mut grads, params, norm(Param::Ln2W, Param::Ln2B), &mut dmid, &dln2, &a.x_mid, stats);
        // x_mid = x_in + attproj(attention(qkv(ln1(x_in)))).
        let mut datty = zeros(n * c);
        linear_backward(&mut grads, params, lin(Param::AttProjW, Param::AttProjB, c, c), &mut datty, &dmid, &a.atty);
        let mut dqkv = zeros(n * 3 * c);
        attention_backward(&mut dqkv, &datty, &a.qkv, &a.att, t, c, nh, cfg.band_of(i));
        let mut dln1 = zeros(n * c);
        linear_backward(&mut grads, params, lin(Param::QkvW, Param::QkvB, c, 3 * c), &mut dln1, &dqkv, &a.ln1);
        let mut din = dmid;
        let stats = (&a.ln1_mean[..], &a.ln1_rstd[..]);
        norm_backward(&mut grads, params, norm(Param::Ln1W, Param::Ln1B), &mut din, &dln1, &a.x_in, stats);
        dx = din;
    }
    let (wte, wpe) = (range(Param::Wte), range(Param::Wpe));
    let (mut gte, mut gpe) = (grads[wte.clone()].to_vec(), grads[wpe.clone()].to_vec());
    encoder_backward(&mut gte, &mut gpe, &dx, tokens, t, c);
    grads[wte].copy_from_slice(&gte);
    grads[wpe].copy_from_slice(&gpe);
    grads
}

type Range = std::ops::Range<usize>;

/// A weight's and its bias's gradients: two disjoint ranges of one buffer, the weight first.
fn weight_and_bias<'a, T>(grads: &'a mut [T], w: &Range, b: &Range) -> (&'a mut [T], &'a mut [T]) {
    let (head, tail) = grads.split_at_mut(b.start);
    (&mut head[w.clone()], &mut tail[..b.len()])
}

/// A linear layer's backward pass: dinp, and the weight and bias gradients accumulated in place.
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

/// The f32 forward pass over `Params`: logits (B*T, Vp) and, with targets, the mean loss.
pub fn forward(p: &Params, tokens: &[u32], targets: Option<&[u32]>, b: usize, t: usize) -> (Vec<f32>, Option<f32>) {
    let (logits, loss, _) = forward_with(&p.config, &p.data, tokens, targets, b, t);
    (logits, loss)
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
        let (mut out, mut att) = (vec![0.0; 2 * t * c], vec![0.0; 2 * nh * t * t]);
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
        let (mut dense, mut att2) = (vec![0.0; 2 * t * c], vec![0.0; 2 * nh * t * t]);
        attention_forward(&mut dense, &mut att2, &qkv, t, c, nh, None);
        let (mut wide, mut att3) = (vec![0.0; 2 * t * c], vec![0.0; 2 * nh * t * t]);
        attention_forward(&mut wide, &mut att3, &qkv, t, c, nh, Some(t));
        assert_eq!(dense, wide);
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
        let (_, _, acts) = forward_with(&cfg, &params, &tokens, Some(&targets), b, t);
        let grads = backward(&cfg, &params, acts, &tokens, &targets);
        let loss_at = |params: &[f64]| forward_with(&cfg, params, &tokens, Some(&targets), b, t).1.unwrap_or(f64::NAN);
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
