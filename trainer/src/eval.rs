//! Evaluating a model: the loss of held-out documents (and from it bits per byte), the loss of
//! completions after a context (multiple choice), greedy continuation (free-form answers), and
//! bootstrap confidence intervals over documents. Tokenizing and task formats are the caller's
//! (this crate never sees text); everything here is on token ids and sums in nats.
//!
//! Documents are scored one by one, as Paloma does: a document is `<|endoftext|>` followed by its
//! tokens, every token after the first is predicted, and a document longer than the context is
//! cut into consecutive windows of T predicted tokens (each window sees only its own tokens, as
//! llm.c's validation windows do). Sums are added per document in window order, so the figures
//! do not depend on how windows are batched.

use crate::backend::{Backend, BackendError};
use crate::generate::{Sampling, pick};

/// The summed loss of one document (or completion): nats over `tokens` predicted tokens.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Loss {
    pub nats: f64,
    pub tokens: usize,
}

impl Loss {
    /// Mean loss per token (nats); NaN for no tokens.
    pub fn mean(&self) -> f64 {
        self.nats / self.tokens as f64
    }
}

/// One row of a batch: `seq[at..at + len + 1]` gives `len` inputs and `len` targets.
struct Row<'a> {
    owner: usize,
    seq: &'a [u32],
    at: usize,
    len: usize,
}

/// Runs rows through the model in micro-batches of `mb` at context `t` and adds each row's
/// target losses (from position `skip` of the row on) to its owner, in row order.
fn score_rows(
    backend: &mut dyn Backend,
    rows: &[Row],
    skips: &[usize],
    mb: usize,
    t: usize,
    out: &mut [Loss],
) -> Result<(), BackendError> {
    let (mut x, mut y, mut losses) = (vec![0u32; mb * t], vec![0u32; mb * t], vec![0.0f32; mb * t]);
    for (c, chunk) in rows.chunks(mb).enumerate() {
        x.iter_mut().for_each(|v| *v = 0);
        y.iter_mut().for_each(|v| *v = 0);
        for (i, r) in chunk.iter().enumerate() {
            x[i * t..i * t + r.len].copy_from_slice(&r.seq[r.at..r.at + r.len]);
            y[i * t..i * t + r.len].copy_from_slice(&r.seq[r.at + 1..r.at + r.len + 1]);
        }
        backend.forward(&x, Some(&y), mb, t)?;
        backend.position_losses(&y, &mut losses)?;
        for (i, r) in chunk.iter().enumerate() {
            let skip = skips[c * mb + i];
            let row = &losses[i * t + skip..i * t + r.len];
            out[r.owner].nats += row.iter().map(|&l| l as f64).sum::<f64>();
            out[r.owner].tokens += row.len();
        }
    }
    Ok(())
}

/// The loss of every document. Each of `docs` is a whole token sequence, `<|endoftext|>` first:
/// its tokens after the first are predicted, in windows of up to T (the model's context) run in
/// micro-batches of `mb`. A sequence of fewer than two tokens has no loss (0 tokens).
pub fn document_losses(backend: &mut dyn Backend, docs: &[Vec<u32>], mb: usize) -> Result<Vec<Loss>, BackendError> {
    let t = backend.config().max_seq_len;
    let mb = mb.max(1);
    let mut rows = Vec::new();
    for (owner, seq) in docs.iter().enumerate() {
        let n = seq.len().saturating_sub(1);
        for at in (0..n).step_by(t) {
            rows.push(Row { owner, seq, at, len: (n - at).min(t) });
        }
    }
    let skips = vec![0; rows.len()];
    let mut out = vec![Loss::default(); docs.len()];
    score_rows(backend, &rows, &skips, mb, t, &mut out)?;
    Ok(out)
}

/// A context and a completion to score after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub context: Vec<u32>,
    pub completion: Vec<u32>,
}

/// The loss of each completion's tokens given its context. The sequence is
/// `context ++ completion` with its oldest tokens dropped to fit the context window (T + 1
/// tokens: T inputs, T targets), so a long few-shot prompt loses its first examples first. The
/// context must keep at least one token; a completion longer than T is refused. Rows are padded
/// to the longest of each micro-batch, rounded up to 16 (fewer workspace shapes).
pub fn completion_losses(
    backend: &mut dyn Backend,
    items: &[Completion],
    mb: usize,
) -> Result<Vec<Loss>, BackendError> {
    let t = backend.config().max_seq_len;
    let mb = mb.max(1);
    let mut seqs = Vec::with_capacity(items.len());
    for (i, it) in items.iter().enumerate() {
        if it.context.is_empty() || it.completion.is_empty() || it.completion.len() > t {
            return Err(BackendError::Shape(format!(
                "item {i}: a context of {} and a completion of {} tokens (both must be non-empty, the completion at most T = {t})",
                it.context.len(),
                it.completion.len()
            )));
        }
        let mut s = it.context.clone();
        s.extend_from_slice(&it.completion);
        let keep = s.len().min(t + 1);
        seqs.push(s.split_off(s.len() - keep));
    }
    let mut out = vec![Loss::default(); items.len()];
    // Micro-batches of rows in item order; each at the width of its longest row.
    for (c, group) in seqs.chunks(mb).enumerate() {
        let width = group.iter().map(|s| s.len() - 1).max().unwrap_or(1);
        let width = width.div_ceil(16).saturating_mul(16).min(t);
        let rows: Vec<Row> =
            group.iter().enumerate().map(|(i, s)| Row { owner: c * mb + i, seq: s, at: 0, len: s.len() - 1 }).collect();
        let skips: Vec<usize> =
            group.iter().enumerate().map(|(i, s)| (s.len() - 1) - items[c * mb + i].completion.len()).collect();
        score_rows(backend, &rows, &skips, group.len(), width, &mut out)?;
    }
    Ok(out)
}

/// The greedy continuation of `prompt` (its last T tokens are the context): up to `max_new`
/// tokens, stopping after `stop` returns true on the tokens generated so far.
pub fn greedy(
    backend: &mut dyn Backend,
    prompt: &[u32],
    max_new: usize,
    stop: &mut dyn FnMut(&[u32]) -> bool,
) -> Result<Vec<u32>, BackendError> {
    let cfg = *backend.config();
    let t = cfg.max_seq_len;
    if prompt.is_empty() {
        return Err(BackendError::Shape("an empty prompt (start with <|endoftext|> for none)".into()));
    }
    let greedy = Sampling { temperature: 0.0, top_k: 1, seed: 0 };
    let mut seq = prompt.to_vec();
    let mut logits = vec![0.0f32; cfg.padded_vocab_size];
    let mut out = Vec::new();
    while out.len() < max_new {
        let ctx = &seq[seq.len().saturating_sub(t)..];
        // Run at the context's own width (rounded up to 16): attention is causal, padding after
        // the last token changes nothing before it.
        let width = ctx.len().div_ceil(16).saturating_mul(16).min(t);
        let mut window = vec![0u32; width];
        window[..ctx.len()].copy_from_slice(ctx);
        backend.forward(&window, None, 1, width)?;
        backend.logits_row(ctx.len() - 1, &mut logits)?;
        let next = pick(&logits, cfg.vocab_size, &greedy, 0.0);
        seq.push(next);
        out.push(next);
        if stop(&out) {
            break;
        }
    }
    Ok(out)
}

/// Bits per byte of a set: its nats over its UTF-8 bytes, in bits (`nats / (bytes x ln 2)`),
/// which compares models with different tokenizers (Paloma's measure).
pub fn bits_per_byte(nats: f64, bytes: u64) -> f64 {
    nats / (bytes as f64 * std::f64::consts::LN_2)
}

/// A value and its 95% bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Interval {
    pub value: f64,
    pub lo: f64,
    pub hi: f64,
}

impl Interval {
    /// Whether the interval excludes `x` (for a difference: whether it is called).
    pub fn excludes(&self, x: f64) -> bool {
        x < self.lo || x > self.hi
    }
}

/// The draws of the bootstrap: SplitMix64 from `seed`, an index `floor(u x n)` from each
/// 53-bit uniform `u`. Resample r (r = 0 .. reps) takes the draws `r x n .. (r + 1) x n`.
pub struct Resampler {
    state: u64,
}

impl Resampler {
    pub fn new(seed: u64) -> Resampler {
        Resampler { state: seed }
    }

    /// The next index in `0..n`.
    pub fn index(&mut self, n: usize) -> usize {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let u = (z >> 11) as f64 / (1u64 << 53) as f64;
        ((u * n as f64) as usize).min(n - 1)
    }
}

/// The percentile bootstrap of a ratio of sums over items (documents): the value is
/// `scale x sum(num) / sum(den)`; each of `reps` resamples draws n items with replacement (see
/// [`Resampler`]) and computes the same ratio; the interval is the 2.5th and 97.5th percentiles
/// of the sorted resample values: `sorted[floor(0.025 x reps)]` and
/// `sorted[ceil(0.975 x reps) - 1]`. `num` may hold several columns (`nums`): the statistic is
/// `scale x (sum(nums[0]) - sum(nums[1])) / sum(den)` for two (a paired difference: the same
/// documents under two models), `scale x sum(nums[0]) / sum(den)` for one.
pub fn bootstrap(nums: &[&[f64]], den: &[f64], scale: f64, reps: usize, seed: u64) -> Interval {
    let n = den.len();
    let stat = |pick: &mut dyn FnMut() -> usize| {
        let (mut a, mut b, mut d) = (0.0, 0.0, 0.0);
        for _ in 0..n {
            let i = pick();
            a += nums[0][i];
            if let Some(second) = nums.get(1) {
                b += second[i];
            }
            d += den[i];
        }
        scale * (a - b) / d
    };
    let mut k = 0;
    let value = stat(&mut || {
        k += 1;
        k - 1
    });
    if n == 0 || reps == 0 {
        return Interval { value, lo: value, hi: value };
    }
    let mut draws = Resampler::new(seed);
    let mut values: Vec<f64> = (0..reps).map(|_| stat(&mut || draws.index(n))).collect();
    values.sort_by(f64::total_cmp);
    let lo = values[(0.025 * reps as f64).floor() as usize];
    let hi = values[((0.975 * reps as f64).ceil() as usize).clamp(1, reps) - 1];
    Interval { value, lo, hi }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuBackend;
    use crate::model::{GptConfig, Params};

    fn model() -> CpuBackend {
        CpuBackend::new(Params::gpt2_init(GptConfig::new(16, 50, 2, 2, 16, 64), 7))
    }

    /// Per-position losses of one sequence run alone at full width, by hand.
    fn by_hand(b: &mut CpuBackend, seq: &[u32]) -> Vec<f64> {
        let t = b.config().max_seq_len;
        let mut out = Vec::new();
        for at in (0..seq.len() - 1).step_by(t) {
            let len = (seq.len() - 1 - at).min(t);
            let (mut x, mut y) = (vec![0u32; t], vec![0u32; t]);
            x[..len].copy_from_slice(&seq[at..at + len]);
            y[..len].copy_from_slice(&seq[at + 1..at + len + 1]);
            b.forward(&x, Some(&y), 1, t).unwrap();
            let mut l = vec![0.0; t];
            b.position_losses(&y, &mut l).unwrap();
            out.extend(l[..len].iter().map(|&v| v as f64));
        }
        out
    }

    #[test]
    fn document_losses_are_the_sum_of_each_documents_own_windows_whatever_the_batch() {
        let mut b = model();
        let docs: Vec<Vec<u32>> = vec![
            (0..40).map(|i| (i * 7 % 49) as u32).collect(), // three windows: 16, 16, 7
            vec![49, 3],
            vec![49],
            (0..17).map(|i| (i * 3 % 50) as u32).collect(), // exactly one window of 16
        ];
        let one = document_losses(&mut b, &docs, 1).unwrap();
        let three = document_losses(&mut b, &docs, 3).unwrap();
        assert_eq!(one, three, "batching does not change a document's sums");
        for (d, l) in docs.iter().zip(&one) {
            if d.len() < 2 {
                assert_eq!(*l, Loss::default());
                continue;
            }
            let hand = by_hand(&mut b, d);
            assert_eq!(l.tokens, d.len() - 1);
            assert!((l.nats - hand.iter().sum::<f64>()).abs() < 1e-9, "{} vs {:?}", l.nats, hand);
        }
    }

    #[test]
    fn a_completion_is_scored_on_its_own_tokens_after_a_left_cut_context() {
        let mut b = model();
        let items = vec![
            Completion { context: vec![1, 2, 3], completion: vec![4, 5] },
            // 30 tokens: only the last T + 1 = 17 are kept.
            Completion { context: (0..26).map(|i| i % 50).collect(), completion: vec![9, 8, 7, 6] },
            Completion { context: vec![5], completion: vec![6] },
        ];
        let got = completion_losses(&mut b, &items, 2).unwrap();
        for (it, l) in items.iter().zip(&got) {
            let mut s = it.context.clone();
            s.extend(&it.completion);
            let s = &s[s.len().saturating_sub(17)..];
            let hand = by_hand(&mut b, s);
            let want: f64 = hand[hand.len() - it.completion.len()..].iter().sum();
            assert_eq!(l.tokens, it.completion.len());
            assert!((l.nats - want).abs() < 1e-4, "{} vs {want}", l.nats);
        }
        let bad = [Completion { context: vec![], completion: vec![1] }];
        assert!(completion_losses(&mut b, &bad, 1).unwrap_err().to_string().contains("item 0"));
    }

    #[test]
    fn greedy_takes_the_most_likely_token_each_step_and_stops_when_told() {
        let mut b = model();
        let prompt = [1u32, 2, 3];
        let got = greedy(&mut b, &prompt, 5, &mut |_| false).unwrap();
        assert_eq!(got.len(), 5);
        // By hand: argmax of the full-width forward at the last position.
        let mut seq = prompt.to_vec();
        let v = b.config().vocab_size;
        let mut logits = vec![0.0; b.config().padded_vocab_size];
        for &g in &got {
            let mut w = vec![0u32; 16];
            w[..seq.len()].copy_from_slice(&seq);
            b.forward(&w, None, 1, 16).unwrap();
            b.logits_row(seq.len() - 1, &mut logits).unwrap();
            let best = (0..v).max_by(|&i, &j| logits[i].total_cmp(&logits[j]).then(j.cmp(&i))).unwrap();
            assert_eq!(g, best as u32);
            seq.push(g);
        }
        let stopped = greedy(&mut b, &prompt, 5, &mut |out| out.len() == 2).unwrap();
        assert_eq!(stopped, got[..2]);
    }

    #[test]
    fn bits_per_byte_by_hand() {
        // 3 tokens of 2 nats each over 12 bytes: 6 / (12 ln 2) = 0.7213 bits per byte.
        assert!((bits_per_byte(6.0, 12) - 6.0 / (12.0 * 2f64.ln())).abs() < 1e-15);
        assert!((bits_per_byte(12.0 * 2f64.ln(), 12) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn the_bootstrap_is_the_documented_percentiles_of_the_documented_resamples() {
        let num: Vec<f64> = (0..50).map(|i| (i % 7) as f64 + 0.5).collect();
        let den: Vec<f64> = (0..50).map(|i| (i % 3 + 1) as f64).collect();
        let reps = 200;
        let got = bootstrap(&[&num], &den, 2.0, reps, 42);
        // The same procedure written out.
        let mut r = Resampler::new(42);
        let mut vals = Vec::new();
        for _ in 0..reps {
            let (mut a, mut d) = (0.0, 0.0);
            for _ in 0..50 {
                let i = r.index(50);
                a += num[i];
                d += den[i];
            }
            vals.push(2.0 * a / d);
        }
        vals.sort_by(f64::total_cmp);
        assert_eq!(got.lo, vals[5], "floor(0.025 x 200) = 5");
        assert_eq!(got.hi, vals[194], "ceil(0.975 x 200) - 1 = 194");
        let value = 2.0 * num.iter().sum::<f64>() / den.iter().sum::<f64>();
        assert!((got.value - value).abs() < 1e-12);
        assert!(got.lo < got.value && got.value < got.hi);
        // Identical items: no spread. A paired difference of a model with itself: exactly 0.
        let flat = bootstrap(&[&[1.0; 10]], &[2.0; 10], 1.0, 100, 1);
        assert_eq!((flat.lo, flat.value, flat.hi), (0.5, 0.5, 0.5));
        let same = bootstrap(&[&num, &num], &den, 1.0, 100, 1);
        assert_eq!((same.lo, same.value, same.hi), (0.0, 0.0, 0.0));
        assert!(!same.excludes(0.0));
        // A shift on every document: the paired interval excludes 0.
        let worse: Vec<f64> = num.iter().map(|x| x + 0.3).collect();
        assert!(bootstrap(&[&worse, &num], &den, 1.0, 200, 3).excludes(0.0));
    }
}
