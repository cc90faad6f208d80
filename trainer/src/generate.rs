//! Sampling text from a model: temperature and top-k over the real vocabulary (the padding
//! columns are never candidates), deterministic for a seed. Each new token runs the model on
//! the last T tokens (the context window), as GPT-2 samples.

use crate::backend::{Backend, BackendError};

/// How to sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// 0 picks the most likely token (greedy).
    pub temperature: f32,
    /// Only the k most likely tokens are candidates (0: all).
    pub top_k: usize,
    pub seed: u64,
}

/// A SplitMix64 stream of uniform draws in [0, 1).
struct Draws(u64);

impl Draws {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Picks a token from one position's logits (the real vocabulary only).
pub fn pick(logits: &[f32], vocab: usize, s: &Sampling, u: f64) -> u32 {
    let z = &logits[..vocab];
    let mut order: Vec<u32> = (0..vocab as u32).collect();
    // Most likely first; ties by id, so the order is total.
    order.sort_unstable_by(|&a, &b| z[b as usize].total_cmp(&z[a as usize]).then(a.cmp(&b)));
    if s.temperature <= 0.0 {
        return order[0];
    }
    let k = if s.top_k == 0 { vocab } else { s.top_k.min(vocab) };
    let top = &order[..k];
    let max = z[top[0] as usize] as f64;
    let weights: Vec<f64> = top.iter().map(|&i| ((z[i as usize] as f64 - max) / s.temperature as f64).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut acc = 0.0;
    for (&i, w) in top.iter().zip(&weights) {
        acc += w / total;
        if u < acc {
            return i;
        }
    }
    top[k - 1]
}

/// Continues `prompt` by up to `n` tokens, stopping early after `stop` (e.g. `<|endoftext|>`).
pub fn generate(
    backend: &mut dyn Backend,
    prompt: &[u32],
    n: usize,
    s: &Sampling,
    stop: Option<u32>,
) -> Result<Vec<u32>, BackendError> {
    let cfg = *backend.config();
    let t = cfg.max_seq_len;
    if prompt.is_empty() {
        return Err(BackendError::Shape("an empty prompt (start with <|endoftext|> for none)".into()));
    }
    let mut seq = prompt.to_vec();
    let mut draws = Draws(s.seed ^ 0xD1B5_4A32_D192_ED03);
    let mut logits = vec![0.0f32; cfg.padded_vocab_size];
    let mut window = vec![0u32; t];
    for _ in 0..n {
        let ctx = &seq[seq.len().saturating_sub(t)..];
        // Positions past the context are filler; attention is causal, so they do not matter.
        window[..ctx.len()].copy_from_slice(ctx);
        window[ctx.len()..].iter_mut().for_each(|x| *x = 0);
        backend.forward(&window, None, 1, t)?;
        backend.logits_row(ctx.len() - 1, &mut logits)?;
        let next = pick(&logits, cfg.vocab_size, s, draws.next());
        seq.push(next);
        if Some(next) == stop {
            break;
        }
    }
    Ok(seq[prompt.len()..].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuBackend;
    use crate::model::{GptConfig, Params};

    #[test]
    fn sampling_is_seeded_respects_top_k_and_never_picks_padding() {
        let vocab = 10;
        // Padding columns hold the largest logits: they must still never be picked.
        let mut logits = vec![0.0f32; 16];
        logits[..vocab].copy_from_slice(&[1.0, 5.0, 4.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0]);
        logits[vocab..].iter_mut().for_each(|x| *x = 100.0);
        let greedy = Sampling { temperature: 0.0, top_k: 0, seed: 1 };
        assert_eq!(pick(&logits, vocab, &greedy, 0.5), 1);
        let top2 = Sampling { temperature: 1.0, top_k: 2, seed: 1 };
        for i in 0..100 {
            let t = pick(&logits, vocab, &top2, i as f64 / 100.0);
            assert!(t == 1 || t == 2, "top-2 gave {t}");
        }
        // With all candidates and a high temperature, every real token appears; none past vocab.
        let hot = Sampling { temperature: 50.0, top_k: 0, seed: 1 };
        let mut seen = [false; 10];
        for i in 0..1000 {
            seen[pick(&logits, vocab, &hot, i as f64 / 1000.0) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));

        let cfg = GptConfig::new(16, 50, 1, 2, 16, 64);
        let mut m = CpuBackend::new(Params::gpt2_init(cfg, 2));
        let s = Sampling { temperature: 1.0, top_k: 10, seed: 7 };
        let a = generate(&mut m, &[3, 4, 5], 30, &s, None).unwrap();
        let b = generate(&mut m, &[3, 4, 5], 30, &s, None).unwrap();
        let c = generate(&mut m, &[3, 4, 5], 30, &Sampling { seed: 8, ..s }, None).unwrap();
        assert_eq!(a.len(), 30, "runs past the context of 16");
        assert_eq!(a, b, "the same seed gives the same text");
        assert_ne!(a, c, "another seed gives another");
        assert!(a.iter().all(|&x| x < 50), "no padding token (Vp = 64)");
        let greedy = Sampling { temperature: 0.0, ..s };
        let g = generate(&mut m, &[3], 5, &greedy, None).unwrap();
        assert_eq!(generate(&mut m, &[3], 5, &greedy, Some(g[0])).unwrap(), [g[0]], "stops after the stop token");
    }
}
