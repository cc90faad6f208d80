//! The GPT's forward pass on the CPU, layer by layer in llm.c's manner (encoder, LayerNorm,
//! matmul, causal attention, GELU tanh, residual, final LayerNorm, tied logits, cross-entropy),
//! fp32, rayon across rows. A reference for correctness first: the matmul is a plain dot-product
//! kernel that the compiler vectorizes, to be replaced by a tuned GEMM with the backward pass.

use rayon::prelude::*;

use crate::model::{Param, Params};

/// out (N, C) = wte[token] + wpe[position], for `tokens` of B sequences of T.
pub fn encoder(out: &mut [f32], tokens: &[u32], wte: &[f32], wpe: &[f32], t: usize, c: usize) {
    out.par_chunks_mut(c).enumerate().for_each(|(i, o)| {
        let (tok, pos) = (tokens[i] as usize, i % t);
        for ((o, w), p) in o.iter_mut().zip(&wte[tok * c..(tok + 1) * c]).zip(&wpe[pos * c..(pos + 1) * c]) {
            *o = w + p;
        }
    });
}

/// LayerNorm over the last dimension (eps 1e-5, biased variance), as PyTorch.
pub fn layernorm(out: &mut [f32], inp: &[f32], weight: &[f32], bias: &[f32], c: usize) {
    out.par_chunks_mut(c).zip(inp.par_chunks(c)).for_each(|(o, x)| {
        let mean = x.iter().map(|&v| v as f64).sum::<f64>() / c as f64;
        let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / c as f64;
        let rstd = 1.0 / (var + 1e-5).sqrt();
        for i in 0..c {
            o[i] = (((x[i] as f64 - mean) * rstd) as f32) * weight[i] + bias[i];
        }
    });
}

/// out (N, OC) = inp (N, C) . weight (OC, C)^T + bias.
pub fn matmul(out: &mut [f32], inp: &[f32], weight: &[f32], bias: Option<&[f32]>, c: usize, oc: usize) {
    out.par_chunks_mut(oc).zip(inp.par_chunks(c)).for_each(|(o, x)| {
        for (j, oj) in o.iter_mut().enumerate() {
            *oj = bias.map_or(0.0, |b| b[j]) + dot(x, &weight[j * c..(j + 1) * c]);
        }
    });
}

/// A dot product with eight independent accumulators (vectorizes).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Causal multi-head attention: qkv (B, T, 3C) -> out (B, T, C), one query row at a time
/// (no T x T matrix kept).
pub fn attention(out: &mut [f32], qkv: &[f32], t: usize, c: usize, nh: usize) {
    let hs = c / nh;
    let scale = 1.0 / (hs as f32).sqrt();
    out.par_chunks_mut(c).enumerate().for_each(|(row, o)| {
        let (bi, ti) = (row / t, row % t);
        let mut att = vec![0.0f32; ti + 1];
        for h in 0..nh {
            let q = &qkv[(bi * t + ti) * 3 * c + h * hs..][..hs];
            let mut max = f32::NEG_INFINITY;
            for (t2, a) in att.iter_mut().enumerate() {
                let k = &qkv[(bi * t + t2) * 3 * c + c + h * hs..][..hs];
                *a = dot(q, k) * scale;
                max = max.max(*a);
            }
            let mut sum = 0.0;
            for a in att.iter_mut() {
                *a = (*a - max).exp();
                sum += *a;
            }
            let oh = &mut o[h * hs..(h + 1) * hs];
            oh.fill(0.0);
            for (t2, a) in att.iter().enumerate() {
                let v = &qkv[(bi * t + t2) * 3 * c + 2 * c + h * hs..][..hs];
                let w = a / sum;
                for (x, y) in oh.iter_mut().zip(v) {
                    *x += w * y;
                }
            }
        }
    });
}

/// GELU, tanh approximation (GPT-2's).
pub fn gelu(out: &mut [f32], inp: &[f32]) {
    const S: f32 = 0.797_884_6; // sqrt(2 / pi)
    out.par_iter_mut().zip(inp.par_iter()).for_each(|(o, &x)| {
        *o = 0.5 * x * (1.0 + (S * (x + 0.044_715 * x * x * x)).tanh());
    });
}

/// The logits (B*T, Vp) and, with targets, the mean cross-entropy over the real vocabulary.
pub fn forward(p: &Params, tokens: &[u32], targets: Option<&[u32]>, b: usize, t: usize) -> (Vec<f32>, Option<f32>) {
    let cfg = p.config;
    let (c, l, nh, vp, v) = (cfg.channels, cfg.num_layers, cfg.num_heads, cfg.padded_vocab_size, cfg.vocab_size);
    let n = b * t;
    assert!(t <= cfg.max_seq_len && tokens.len() == n, "B x T tokens, T <= max_seq_len");
    let mut x = vec![0.0f32; n * c];
    encoder(&mut x, tokens, p.get(Param::Wte), p.get(Param::Wpe), t, c);
    let (mut ln, mut qkv, mut att, mut proj) =
        (vec![0.0; n * c], vec![0.0; n * 3 * c], vec![0.0; n * c], vec![0.0; n * c]);
    let (mut fc, mut fcg) = (vec![0.0; n * 4 * c], vec![0.0; n * 4 * c]);
    let layer = |param: Param, i: usize, size: usize| &p.get(param)[i * size..(i + 1) * size];
    for i in 0..l {
        layernorm(&mut ln, &x, layer(Param::Ln1W, i, c), layer(Param::Ln1B, i, c), c);
        matmul(&mut qkv, &ln, layer(Param::QkvW, i, 3 * c * c), Some(layer(Param::QkvB, i, 3 * c)), c, 3 * c);
        attention(&mut att, &qkv, t, c, nh);
        matmul(&mut proj, &att, layer(Param::AttProjW, i, c * c), Some(layer(Param::AttProjB, i, c)), c, c);
        x.par_iter_mut().zip(proj.par_iter()).for_each(|(a, b)| *a += b);
        layernorm(&mut ln, &x, layer(Param::Ln2W, i, c), layer(Param::Ln2B, i, c), c);
        matmul(&mut fc, &ln, layer(Param::FcW, i, 4 * c * c), Some(layer(Param::FcB, i, 4 * c)), c, 4 * c);
        gelu(&mut fcg, &fc);
        matmul(&mut proj, &fcg, layer(Param::FcProjW, i, 4 * c * c), Some(layer(Param::FcProjB, i, c)), 4 * c, c);
        x.par_iter_mut().zip(proj.par_iter()).for_each(|(a, b)| *a += b);
    }
    layernorm(&mut ln, &x, p.get(Param::LnfW), p.get(Param::LnfB), c);
    let mut logits = vec![0.0f32; n * vp];
    matmul(&mut logits, &ln, p.get(Param::Wte), None, c, vp);
    let loss = targets.map(|y| {
        let losses: Vec<f64> = logits
            .par_chunks(vp)
            .zip(y.par_iter())
            .map(|(row, &target)| {
                let row = &row[..v];
                let max = row.iter().fold(f32::NEG_INFINITY, |m, &z| m.max(z)) as f64;
                let lse = max + row.iter().map(|&z| (z as f64 - max).exp()).sum::<f64>().ln();
                lse - row[target as usize] as f64
            })
            .collect();
        (losses.iter().sum::<f64>() / n as f64) as f32
    });
    (logits, loss)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::GptConfig;

    #[test]
    fn matmul_and_layernorm_match_f64_references() {
        let (n, c, oc) = (5, 19, 7);
        let inp: Vec<f32> = (0..n * c).map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0).collect();
        let w: Vec<f32> = (0..oc * c).map(|i| ((i * 13 % 17) as f32 - 8.0) / 9.0).collect();
        let bias: Vec<f32> = (0..oc).map(|i| i as f32 / 10.0).collect();
        let mut out = vec![0.0; n * oc];
        matmul(&mut out, &inp, &w, Some(&bias), c, oc);
        for r in 0..n {
            for j in 0..oc {
                let want: f64 =
                    bias[j] as f64 + (0..c).map(|k| inp[r * c + k] as f64 * w[j * c + k] as f64).sum::<f64>();
                assert!((out[r * oc + j] as f64 - want).abs() < 1e-4, "{r} {j}");
            }
        }
        let ones = vec![1.0; c];
        let zeros = vec![0.0; c];
        let mut ln = vec![0.0; n * c];
        layernorm(&mut ln, &inp, &ones, &zeros, c);
        for row in ln.chunks(c) {
            let mean: f32 = row.iter().sum::<f32>() / c as f32;
            let var: f32 = row.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / c as f32;
            assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-3, "{mean} {var}");
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
        let loss = loss.unwrap();
        // At initialization the logits are small: the loss is close to ln(vocab).
        assert!((loss - (300f32).ln()).abs() < 0.1, "loss {loss}");
        // Changing the last token changes no earlier position's logits (causality).
        let mut changed = tokens.clone();
        changed[t - 1] = 5;
        let (logits2, _) = forward(&p, &changed, None, b, t);
        let vp = cfg.padded_vocab_size;
        assert_eq!(&logits[..(t - 1) * vp], &logits2[..(t - 1) * vp]);
        assert_ne!(&logits[(t - 1) * vp..t * vp], &logits2[(t - 1) * vp..t * vp]);
        // Same result on one thread (rows are independent; no reduction order changes).
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        assert_eq!(one.install(|| forward(&p, &tokens, Some(&targets), b, t)).0, logits);
    }
}
