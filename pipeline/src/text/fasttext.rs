//! fastText supervised models (`.bin` and quantized `.ftz`, format version 12), read and run
//! natively: the language identifiers `lid.176.bin`/`lid.176.ftz` that datatrove, CCNet and
//! FineWeb use, and any other fastText classifier. Prediction is fastText 0.9's, operation for
//! operation in f32: the line's words (split at fastText's whitespace, `</s>` at the end),
//! their character n-grams hashed into buckets (FNV-1a over signed bytes), word n-grams, the
//! average of their input rows (product-quantized rows decoded from their codes), then the
//! hierarchical softmax's tree search or the softmax, scores as fastText reports them
//! (`exp(log(p + 1e-5))` summed along the tree).
//!
//! Not training, not `.vec` files, not autotune. Every length and count in the file is checked
//! against the file's size before anything is allocated: a damaged or hostile model is an error
//! naming the byte offset.

use std::collections::HashMap;

/// The file's magic number and the only version written by fastText 0.9.
const MAGIC: i32 = 793_712_314;
const VERSION: i32 = 12;
const EOS: &[u8] = b"</s>";
const BOW: u8 = b'<';
const EOW: u8 = b'>';

/// A problem with a model file: what, and the byte offset where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fastText model, byte {offset}: {msg}")]
pub struct ModelError {
    pub offset: usize,
    pub msg: String,
}

/// The training arguments stored in the file (the ones prediction needs).
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    pub dim: usize,
    pub word_ngrams: usize,
    /// 1 hierarchical softmax, 2 negative sampling, 3 softmax, 4 one-vs-all.
    pub loss: i32,
    /// 3 = supervised.
    pub model: i32,
    pub bucket: usize,
    pub minn: usize,
    pub maxn: usize,
}

/// Product quantizer: `nsubq` sub-vectors of `dsub` values (the last of `lastdsub`), 256
/// centroids each.
#[derive(Debug)]
struct Pq {
    nsubq: usize,
    dsub: usize,
    lastdsub: usize,
    centroids: Vec<f32>,
}

impl Pq {
    const KSUB: usize = 256;

    fn centroid(&self, m: usize, i: u8) -> &[f32] {
        let i = i as usize;
        if m == self.nsubq - 1 {
            let at = m * Self::KSUB * self.dsub + i * self.lastdsub;
            &self.centroids[at..at + self.lastdsub]
        } else {
            let at = (m * Self::KSUB + i) * self.dsub;
            &self.centroids[at..at + self.dsub]
        }
    }
}

/// A matrix as the file stores it: dense f32 rows, or product-quantized codes.
#[derive(Debug)]
enum Matrix {
    Dense { rows: usize, cols: usize, data: Vec<f32> },
    Quant { rows: usize, codes: Vec<u8>, pq: Pq, norms: Option<(Vec<u8>, Pq)> },
}

impl Matrix {
    fn rows(&self) -> usize {
        match self {
            Matrix::Dense { rows, .. } | Matrix::Quant { rows, .. } => *rows,
        }
    }

    /// `x += row i` (fastText's `addRowToVector`).
    fn add_row(&self, x: &mut [f32], i: usize) {
        match self {
            Matrix::Dense { cols, data, .. } => {
                for (a, b) in x.iter_mut().zip(&data[i * cols..(i + 1) * cols]) {
                    *a += *b;
                }
            }
            Matrix::Quant { codes, pq, norms, .. } => {
                let alpha = match norms {
                    Some((nc, npq)) => npq.centroid(0, nc[i])[0],
                    None => 1.0,
                };
                let code = &codes[pq.nsubq * i..pq.nsubq * (i + 1)];
                for (m, &c) in code.iter().enumerate() {
                    let cen = pq.centroid(m, c);
                    for (n, v) in cen.iter().enumerate() {
                        x[m * pq.dsub + n] += alpha * v;
                    }
                }
            }
        }
    }

    /// `row i . x`, accumulated in f32 in column order (fastText's `dotRow`).
    fn dot_row(&self, x: &[f32], i: usize) -> f32 {
        match self {
            Matrix::Dense { cols, data, .. } => {
                let mut d = 0f32;
                for (a, b) in data[i * cols..(i + 1) * cols].iter().zip(x) {
                    d += a * b;
                }
                d
            }
            Matrix::Quant { codes, pq, norms, .. } => {
                // fastText: norm * sum over sub-quantizers of centroid . x, f32.
                let code = &codes[pq.nsubq * i..pq.nsubq * (i + 1)];
                let mut d = 0f32;
                for (m, &c) in code.iter().enumerate() {
                    for (n, v) in pq.centroid(m, c).iter().enumerate() {
                        d += v * x[m * pq.dsub + n];
                    }
                }
                match norms {
                    Some((nc, npq)) => d * npq.centroid(0, nc[i])[0],
                    None => d,
                }
            }
        }
    }
}

/// A node of the hierarchical softmax's Huffman tree.
#[derive(Debug, Clone, Copy)]
struct Node {
    left: i32,
    right: i32,
    count: i64,
}

/// A fastText supervised model.
#[derive(Debug)]
pub struct Model {
    pub args: Args,
    /// Words then labels, in the file's order.
    entries: Vec<Vec<u8>>,
    nwords: usize,
    ids: HashMap<Vec<u8>, usize>,
    /// Pruned models (quantized with a cutoff): bucket id -> kept row.
    pruned: Option<HashMap<i32, i32>>,
    input: Matrix,
    output: Matrix,
    tree: Vec<Node>,
    /// Each word's input rows: itself and its character n-grams.
    subwords: Vec<Vec<usize>>,
}

/// A reader over the file's bytes that checks every length against what is left.
struct Bytes<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Bytes<'a> {
    fn err(&self, msg: impl Into<String>) -> ModelError {
        ModelError { offset: self.at, msg: msg.into() }
    }
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ModelError> {
        if self.b.len() - self.at < n {
            return Err(
                self.err(format!("the file ends inside {what} ({n} bytes wanted, {} left)", self.b.len() - self.at))
            );
        }
        let s = &self.b[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    fn i32(&mut self, what: &str) -> Result<i32, ModelError> {
        let s = self.take(4, what)?;
        Ok(i32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn i64(&mut self, what: &str) -> Result<i64, ModelError> {
        let s = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(i64::from_le_bytes(a))
    }
    fn f64(&mut self, what: &str) -> Result<f64, ModelError> {
        Ok(f64::from_bits(self.i64(what)? as u64))
    }
    fn u8(&mut self, what: &str) -> Result<u8, ModelError> {
        Ok(self.take(1, what)?[0])
    }
    fn bool(&mut self, what: &str) -> Result<bool, ModelError> {
        Ok(self.u8(what)? != 0)
    }
    /// A count or size, non-negative and at most `max`.
    fn size(&mut self, what: &str, wide: bool, max: usize) -> Result<usize, ModelError> {
        let at = self.at;
        let v = if wide { self.i64(what)? } else { self.i32(what)? as i64 };
        if v < 0 || v as u64 > max as u64 {
            return Err(ModelError { offset: at, msg: format!("{what} is {v}, outside 0..={max}") });
        }
        Ok(v as usize)
    }
    fn f32s(&mut self, n: usize, what: &str) -> Result<Vec<f32>, ModelError> {
        let bytes = n.checked_mul(4).ok_or_else(|| self.err(format!("{what}: {n} values overflow")))?;
        let s = self.take(bytes, what)?;
        Ok(s.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }
    fn left(&self) -> usize {
        self.b.len() - self.at
    }
}

/// fastText's string hash: FNV-1a over the bytes taken as signed chars.
pub fn hash(s: &[u8]) -> u32 {
    let mut h: u32 = 2_166_136_261;
    for &b in s {
        h ^= b as i8 as i32 as u32;
        h = h.wrapping_mul(16_777_619);
    }
    h
}

fn read_pq(r: &mut Bytes) -> Result<Pq, ModelError> {
    let at = r.at;
    let dim = r.size("product quantizer dim", false, 1 << 16)?;
    let nsubq = r.size("product quantizer nsubq", false, 1 << 16)?;
    let dsub = r.size("product quantizer dsub", false, 1 << 16)?;
    let lastdsub = r.size("product quantizer lastdsub", false, 1 << 16)?;
    if nsubq == 0 || dsub == 0 || (nsubq - 1) * dsub + lastdsub != dim {
        return Err(ModelError {
            offset: at,
            msg: format!("product quantizer of dim {dim} with {nsubq} x {dsub} (last {lastdsub}) does not add up"),
        });
    }
    let centroids = r.f32s(dim * Pq::KSUB, "product quantizer centroids")?;
    Ok(Pq { nsubq, dsub, lastdsub, centroids })
}

fn read_matrix(r: &mut Bytes, quant: bool, dim: usize) -> Result<Matrix, ModelError> {
    if !quant {
        let at = r.at;
        let rows = r.size("matrix rows", true, r.left())?;
        let cols = r.size("matrix columns", true, 1 << 16)?;
        if cols != dim {
            return Err(ModelError { offset: at, msg: format!("matrix of {cols} columns in a model of dim {dim}") });
        }
        let n = rows.checked_mul(cols).filter(|n| n / 4 <= r.left()).ok_or_else(|| ModelError {
            offset: at,
            msg: format!("a {rows} x {cols} matrix does not fit in what is left of the file"),
        })?;
        let data = r.f32s(n, "matrix values")?;
        return Ok(Matrix::Dense { rows, cols, data });
    }
    let qnorm = r.bool("quantized norm flag")?;
    let at = r.at;
    let rows = r.size("quantized matrix rows", true, r.left())?;
    let cols = r.size("quantized matrix columns", true, 1 << 16)?;
    if cols != dim {
        return Err(ModelError { offset: at, msg: format!("matrix of {cols} columns in a model of dim {dim}") });
    }
    let codesize = r.size("code size", false, r.left())?;
    let codes = r.take(codesize, "codes")?.to_vec();
    let pq = read_pq(r)?;
    if pq.nsubq.checked_mul(rows) != Some(codesize) || (pq.nsubq - 1) * pq.dsub + pq.lastdsub != dim {
        return Err(ModelError {
            offset: at,
            msg: format!("{codesize} codes for {rows} rows of {} sub-vectors", pq.nsubq),
        });
    }
    let norms = if qnorm {
        let nc = r.take(rows, "norm codes")?.to_vec();
        let npq = read_pq(r)?;
        Some((nc, npq))
    } else {
        None
    };
    Ok(Matrix::Quant { rows, codes, pq, norms })
}

impl Model {
    /// Reads a model from its bytes (`.bin` or `.ftz`).
    pub fn from_bytes(b: &[u8]) -> Result<Model, ModelError> {
        let mut r = Bytes { b, at: 0 };
        if r.i32("magic")? != MAGIC {
            return Err(ModelError { offset: 0, msg: "not a fastText model (wrong magic number)".into() });
        }
        let v = r.i32("version")?;
        if v != VERSION {
            return Err(ModelError { offset: 4, msg: format!("format version {v}; this reader knows {VERSION}") });
        }
        let dim = r.size("dim", false, 1 << 16)?;
        let _ws = r.i32("ws")?;
        let _epoch = r.i32("epoch")?;
        let _min_count = r.i32("minCount")?;
        let _neg = r.i32("neg")?;
        let word_ngrams = r.size("wordNgrams", false, 64)?;
        let loss = r.i32("loss")?;
        let model = r.i32("model")?;
        let bucket = r.size("bucket", false, i32::MAX as usize)?;
        let minn = r.size("minn", false, 64)?;
        let maxn = r.size("maxn", false, 64)?;
        let _lr_update = r.i32("lrUpdateRate")?;
        let _t = r.f64("t")?;
        if model != 3 {
            return Err(
                r.err(format!("model type {model}: not a classifier (3, supervised); word vectors have no labels"))
            );
        }
        if !(1..=4).contains(&loss) {
            return Err(r.err(format!("loss {loss}: fastText knows 1 (hs), 2 (ns), 3 (softmax), 4 (ova)")));
        }
        let args = Args { dim, word_ngrams, loss, model, bucket, minn, maxn };
        // The dictionary: every entry takes at least 10 bytes, which bounds the counts.
        let size = r.size("dictionary size", false, r.left() / 10)?;
        let nwords = r.size("word count", false, size)?;
        let nlabels = r.size("label count", false, size)?;
        if nwords + nlabels != size {
            return Err(r.err(format!("{nwords} words + {nlabels} labels != {size} entries")));
        }
        let _ntokens = r.i64("token count")?;
        let at = r.at;
        let prune_size = r.i64("pruned index size")?;
        if prune_size > (r.left() / 8) as i64 {
            return Err(ModelError { offset: at, msg: format!("pruned index of {prune_size} pairs does not fit") });
        }
        let mut entries = Vec::with_capacity(size);
        let mut counts = Vec::with_capacity(size);
        for i in 0..size {
            let rest = &r.b[r.at..];
            let len = memchr::memchr(0, rest).ok_or_else(|| r.err(format!("entry {i}: no end to its word")))?;
            let word = r.take(len + 1, "entry")?[..len].to_vec();
            let count = r.i64("entry count")?;
            let kind = r.u8("entry type")?;
            if (kind == 0) != (i < nwords) || kind > 1 {
                return Err(r.err(format!("entry {i} is of type {kind}; words come first, then labels")));
            }
            entries.push(word);
            counts.push(count);
        }
        let pruned = if prune_size >= 0 {
            let mut m = HashMap::with_capacity(prune_size as usize);
            for _ in 0..prune_size {
                let (a, b) = (r.i32("pruned index")?, r.i32("pruned index")?);
                if b < 0 {
                    return Err(r.err(format!("pruned index maps bucket {a} to row {b}")));
                }
                m.insert(a, b);
            }
            Some(m)
        } else {
            None
        };
        let quant = r.bool("quantized flag")?;
        let input = read_matrix(&mut r, quant, dim)?;
        let qout = r.bool("quantized output flag")?;
        let output = read_matrix(&mut r, quant && qout, dim)?;
        if output.rows() != nlabels && model == 3 {
            return Err(r.err(format!("{} output rows for {nlabels} labels", output.rows())));
        }
        if nlabels == 0 {
            return Err(r.err("a supervised model without labels"));
        }
        let ids = entries[..nwords].iter().enumerate().map(|(i, w)| (w.clone(), i)).collect();
        let mut m = Model { args, entries, nwords, ids, pruned, input, output, tree: Vec::new(), subwords: Vec::new() };
        // Every input row index must exist: words, and buckets (after pruning).
        let rows = m.input.rows();
        let max_bucket_row = match &m.pruned {
            Some(p) => p.values().copied().max().map_or(0, |v| v.max(0) as usize + 1),
            None => m.args.bucket,
        };
        if nwords + max_bucket_row > rows {
            return Err(r.err(format!("{rows} input rows for {nwords} words and {max_bucket_row} buckets")));
        }
        m.subwords = (0..nwords)
            .map(|i| {
                let mut v = vec![i];
                if m.entries[i] != EOS {
                    let mut w = Vec::with_capacity(m.entries[i].len() + 2);
                    w.push(BOW);
                    w.extend_from_slice(&m.entries[i]);
                    w.push(EOW);
                    m.char_ngrams(&w, &mut v);
                }
                v
            })
            .collect();
        if m.args.loss == 1 {
            m.tree = huffman(&counts[nwords..]);
        }
        Ok(m)
    }

    /// Reads a model file.
    pub fn open(path: &std::path::Path) -> Result<Model, String> {
        let b = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Model::from_bytes(&b).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The labels (`__label__en` ...), in the model's order.
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.entries[self.nwords..].iter().map(|l| std::str::from_utf8(l).unwrap_or("?"))
    }

    fn push_hash(&self, out: &mut Vec<usize>, id: i64) {
        if id < 0 {
            return;
        }
        match &self.pruned {
            Some(p) if p.is_empty() => {}
            Some(p) => {
                if let Some(&to) = p.get(&(id as i32)) {
                    out.push(self.nwords + to as usize);
                }
            }
            None => out.push(self.nwords + id as usize),
        }
    }

    /// The character n-grams (`minn..=maxn` characters, UTF-8 aware) of `<word>`, as rows.
    fn char_ngrams(&self, w: &[u8], out: &mut Vec<usize>) {
        if self.args.maxn == 0 || self.args.bucket == 0 {
            return;
        }
        let cont = |b: u8| b & 0xC0 == 0x80;
        for i in 0..w.len() {
            if cont(w[i]) {
                continue;
            }
            let (mut j, mut n) = (i, 1);
            while j < w.len() && n <= self.args.maxn {
                j += 1;
                while j < w.len() && cont(w[j]) {
                    j += 1;
                }
                if n >= self.args.minn && !(n == 1 && (i == 0 || j == w.len())) {
                    let h = hash(&w[i..j]) % self.args.bucket as u32;
                    self.push_hash(out, h as i64);
                }
                n += 1;
            }
        }
    }

    /// The sum of one line's input rows and their number (fastText's `getLine` then
    /// `computeHidden` before the division), the rows added as they are found, in fastText's
    /// order (each word with its character n-grams, then the word n-grams), so that memory is
    /// a few bytes per word whatever the text's length.
    fn line_sum(&self, text: &str, sum: &mut [f32]) -> usize {
        let mut n = 0usize;
        let mut add = |rows: &[usize], sum: &mut [f32]| {
            for &r in rows {
                self.input.add_row(sum, r);
            }
            n += rows.len();
        };
        let mut hashes: Vec<i32> = Vec::new();
        let ws = |b: u8| matches!(b, b' ' | b'\n' | b'\r' | b'\t' | 0x0b | 0x0c | 0);
        let mut word = Vec::with_capacity(64);
        let mut rows = Vec::with_capacity(64);
        let mut one = |w: &[u8], sum: &mut [f32], hashes: &mut Vec<i32>| {
            let h = hash(w);
            match self.ids.get(w) {
                Some(&id) => add(&self.subwords[id], sum),
                None => {
                    if w != EOS {
                        word.clear();
                        word.push(BOW);
                        word.extend_from_slice(w);
                        word.push(EOW);
                        rows.clear();
                        self.char_ngrams(&word, &mut rows);
                        add(&rows, sum);
                    }
                }
            }
            hashes.push(h as i32);
        };
        // The words of one line, then `</s>` (the binding's "\n"); a "\n" inside ends the line.
        for w in text.as_bytes().split(|&b| b == b'\n').next().unwrap_or_default().split(|&b| ws(b)) {
            // Tokens with the label prefix are labels, not words (fastText's `getType`).
            if !w.is_empty() && !w.starts_with(b"__label__") {
                one(w, sum, &mut hashes);
            }
        }
        one(EOS, sum, &mut hashes);
        let wn = self.args.word_ngrams;
        let mut grams = Vec::new();
        for i in 0..hashes.len() {
            let mut h = hashes[i] as i64 as u64;
            for &x in hashes.iter().take((i + wn).min(hashes.len())).skip(i + 1) {
                h = h.wrapping_mul(116_049_371).wrapping_add(x as i64 as u64);
                grams.clear();
                self.push_hash(&mut grams, (h % self.args.bucket.max(1) as u64) as i64);
                add(&grams, sum);
            }
        }
        n
    }

    /// The `k` most likely labels of `text` (one line; a `\n` ends it) with fastText's
    /// probabilities, most likely first (`k = 0`: every label). As fastText's Python
    /// `predict(text, k)` with threshold 0.
    pub fn predict(&self, text: &str, k: usize) -> Vec<(&str, f32)> {
        let dim = self.args.dim;
        let mut hidden = vec![0f32; dim];
        let n = self.line_sum(text, &mut hidden);
        if n == 0 {
            return Vec::new();
        }
        let scale = (1.0 / n as f64) as f32;
        hidden.iter_mut().for_each(|x| *x *= scale);
        let osz = self.entries.len() - self.nwords;
        let k = if k == 0 { osz } else { k.min(osz) };
        let mut best: Vec<(f32, usize)> = Vec::with_capacity(k + 1);
        if self.args.loss == 1 {
            self.dfs(k, 2 * osz - 2, 0.0, &mut best, &hidden);
        } else if self.args.loss != 3 {
            // Negative sampling and one-vs-all: each label's own sigmoid (fastText's table).
            for i in 0..osz {
                push_best(&mut best, k, std_log(table_sigmoid(self.output.dot_row(&hidden, i))), i);
            }
        } else {
            // Softmax: output = W h, then softmax with the max subtracted (f32).
            let mut out: Vec<f32> = (0..osz).map(|i| self.output.dot_row(&hidden, i)).collect();
            let max = out.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut z = 0f32;
            for o in out.iter_mut() {
                *o = (*o - max).exp();
                z += *o;
            }
            for (i, o) in out.iter().enumerate() {
                let p = o / z;
                push_best(&mut best, k, std_log(p), i);
            }
        }
        best.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        best.into_iter().map(|(s, i)| (label_str(&self.entries[self.nwords + i]), s.exp())).collect()
    }

    fn dfs(&self, k: usize, node: usize, score: f32, best: &mut Vec<(f32, usize)>, hidden: &[f32]) {
        // threshold 0: std_log(0) is log(1e-5); scores below it cannot be kept.
        if score < std_log(0.0) {
            return;
        }
        if best.len() == k && best.iter().all(|b| score < b.0) {
            return;
        }
        let n = self.tree[node];
        if n.left == -1 && n.right == -1 {
            push_best(best, k, score, node);
            return;
        }
        let osz = self.entries.len() - self.nwords;
        let f = self.output.dot_row(hidden, node - osz);
        let f = (1.0 / (1.0 + (-f).exp()) as f64) as f32;
        self.dfs(k, n.left as usize, score + std_log(1.0 - f), best, hidden);
        self.dfs(k, n.right as usize, score + std_log(f), best, hidden);
    }
}

/// A dense supervised model in fastText's file format (version 12), without character or
/// word n-grams: `input` holds one row of `dim` values per word (`</s>` among them), `output`
/// one per label; `loss` 1 (hierarchical softmax) or 3 (softmax). Label counts order the
/// labels (most frequent first) as fastText's dictionary does. For models made rather than
/// trained (the built-in sample's language ID) and for tests.
pub fn dense_model_bytes(
    dim: usize,
    words: &[&str],
    labels: &[(&str, i64)],
    input: &[f32],
    output: &[f32],
    loss: i32,
) -> Vec<u8> {
    let mut b = Vec::new();
    let i32s = |b: &mut Vec<u8>, v: &[i32]| v.iter().for_each(|x| b.extend(x.to_le_bytes()));
    i32s(&mut b, &[MAGIC, VERSION]);
    // dim, ws, epoch, minCount, neg, wordNgrams, loss, model (supervised), bucket, minn, maxn,
    // lrUpdateRate, then t.
    i32s(&mut b, &[dim as i32, 5, 5, 1, 5, 1, loss, 3, 0, 0, 0, 100]);
    b.extend(1e-4f64.to_le_bytes());
    i32s(&mut b, &[(words.len() + labels.len()) as i32, words.len() as i32, labels.len() as i32]);
    b.extend((words.len() as i64).to_le_bytes());
    b.extend((-1i64).to_le_bytes());
    let entries = words.iter().map(|w| (*w, 1i64, 0u8)).chain(labels.iter().map(|(l, c)| (*l, *c, 1u8)));
    for (w, count, kind) in entries {
        b.extend(w.as_bytes());
        b.push(0);
        b.extend(count.to_le_bytes());
        b.push(kind);
    }
    for m in [input, output] {
        b.push(0);
        b.extend(((m.len() / dim.max(1)) as i64).to_le_bytes());
        b.extend((dim as i64).to_le_bytes());
        m.iter().for_each(|x| b.extend(x.to_le_bytes()));
    }
    b
}

fn label_str(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or("?")
}

/// fastText's `Loss::sigmoid`: a 513-entry table over [-8, 8], 0 and 1 outside.
fn table_sigmoid(x: f32) -> f32 {
    const MAX: f32 = 8.0;
    const SIZE: usize = 512;
    static TABLE: std::sync::OnceLock<Vec<f32>> = std::sync::OnceLock::new();
    let t = TABLE.get_or_init(|| {
        (0..=SIZE)
            .map(|i| {
                let x = (i as f32 * 2.0 * MAX) / SIZE as f32 - MAX;
                (1.0 / (1.0 + (-(x as f64)).exp())) as f32
            })
            .collect()
    });
    if x < -MAX {
        0.0
    } else if x > MAX {
        1.0
    } else {
        t[((x + MAX) * SIZE as f32 / MAX / 2.0) as usize]
    }
}

/// fastText's `std_log`: `log(x + 1e-5)` in double, returned as f32.
fn std_log(x: f32) -> f32 {
    ((x as f64) + 1e-5).ln() as f32
}

/// Keeps the `k` best (score, index) pairs, as fastText's heap does (a new pair enters when
/// there is room or it beats the worst).
fn push_best(best: &mut Vec<(f32, usize)>, k: usize, score: f32, i: usize) {
    if best.len() < k {
        best.push((score, i));
        return;
    }
    if let Some((w, _)) = best.iter().enumerate().min_by(|a, b| a.1.0.total_cmp(&b.1.0)).map(|(w, x)| (w, x.0))
        && score > best[w].0
    {
        best[w] = (score, i);
    }
}

/// fastText's Huffman tree over the label counts (sorted descending in the file).
fn huffman(counts: &[i64]) -> Vec<Node> {
    let osz = counts.len();
    let mut tree = vec![Node { left: -1, right: -1, count: 1_000_000_000_000_000 }; 2 * osz - 1];
    for (t, &c) in tree.iter_mut().zip(counts) {
        t.count = c;
    }
    let mut leaf = osz as i64 - 1;
    let mut node = osz;
    for i in osz..2 * osz - 1 {
        let mut mini = [0usize; 2];
        for m in &mut mini {
            if leaf >= 0 && tree[leaf as usize].count < tree[node].count {
                *m = leaf as usize;
                leaf -= 1;
            } else {
                *m = node;
                node += 1;
            }
        }
        tree[i].left = mini[0] as i32;
        tree[i].right = mini[1] as i32;
        tree[i].count = tree[mini[0]].count + tree[mini[1]].count;
    }
    tree
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model_bytes(
        loss: i32,
        words: &[&str],
        labels: &[(&str, i64)],
        input: &[[f32; 2]],
        output: &[[f32; 2]],
    ) -> Vec<u8> {
        let flat = |m: &[[f32; 2]]| m.iter().flatten().copied().collect::<Vec<f32>>();
        dense_model_bytes(2, words, labels, &flat(input), &flat(output), loss)
    }

    const WORDS: [&str; 3] = ["</s>", "hello", "bonjour"];
    const INPUT: [[f32; 2]; 3] = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]];

    #[test]
    fn softmax_predictions_are_worked_out_by_hand() {
        let b = model_bytes(3, &WORDS, &[("__label__en", 10), ("__label__fr", 5)], &INPUT, &[[2.0, 0.0], [0.0, 2.0]]);
        let m = Model::from_bytes(&b).unwrap();
        // "hello" and "</s>": hidden (0.5, 0); outputs (1, 0); softmax; fastText adds 1e-5.
        let p = m.predict("hello", 0);
        let en = 1.0 / (1.0 + (-1f64).exp());
        assert_eq!((p[0].0, p[1].0), ("__label__en", "__label__fr"));
        assert!((p[0].1 as f64 - (en + 1e-5)).abs() < 1e-6, "{p:?}");
        assert!((p[1].1 as f64 - (1.0 - en + 1e-5)).abs() < 1e-6, "{p:?}");
        // A word it does not know, without subwords, adds no row; a label token is no word.
        assert_eq!(m.predict("hello zzz __label__fr", 0), p);
        assert_eq!(m.predict("hello", 1).len(), 1);
        // Only the first line counts.
        assert_eq!(m.predict("hello\nbonjour bonjour", 0), p);
    }

    #[test]
    fn one_vs_all_takes_each_labels_sigmoid() {
        let b = model_bytes(4, &WORDS, &[("__label__en", 10), ("__label__fr", 5)], &INPUT, &[[2.0, 0.0], [0.0, 2.0]]);
        let m = Model::from_bytes(&b).unwrap();
        let p = m.predict("hello", 0);
        // sigmoid(1) and sigmoid(0) from the table (1/32 steps), plus fastText's 1e-5.
        assert_eq!(p[0].0, "__label__en");
        assert!((p[0].1 as f64 - 0.7310586).abs() < 2e-3 && (p[1].1 - 0.5).abs() < 2e-3, "{p:?}");
    }

    #[test]
    fn hierarchical_softmax_walks_the_tree() {
        // Two labels: the root (node 2) has fr (fewer) left and en right; P(en) = sigmoid(w.h).
        let b = model_bytes(1, &WORDS, &[("__label__en", 10), ("__label__fr", 5)], &INPUT, &[[2.0, 0.0], [0.0, 0.0]]);
        let m = Model::from_bytes(&b).unwrap();
        let p = m.predict("hello", 0);
        let en = 1.0 / (1.0 + (-1f64).exp());
        assert_eq!(p[0].0, "__label__en");
        assert!((p[0].1 as f64 - (en + 1e-5)).abs() < 1e-6, "{p:?}");
        assert!((p[1].1 as f64 - (1.0 - en + 1e-5)).abs() < 1e-6, "{p:?}");
    }

    #[test]
    fn truncated_and_lying_files_are_refused_where_they_lie() {
        let good =
            model_bytes(3, &WORDS, &[("__label__en", 10), ("__label__fr", 5)], &INPUT, &[[2.0, 0.0], [0.0, 2.0]]);
        for cut in [10, 60, 80, good.len() - 1] {
            let e = Model::from_bytes(&good[..cut]).unwrap_err();
            assert!(e.offset <= cut, "{cut}: {e}");
        }
        // A dictionary that claims a billion entries (its size is at byte 64).
        let mut b = good.clone();
        b[64..68].copy_from_slice(&1_000_000_000i32.to_le_bytes());
        let e = Model::from_bytes(&b).unwrap_err();
        assert!(e.msg.contains("dictionary size") && e.offset == 64, "{e}");
        // A matrix that claims more rows than the file holds.
        let mut b = good.clone();
        let at = b.len() - 16 - 16 - 1 - 16 - 16;
        b[at..at + 8].copy_from_slice(&(1i64 << 40).to_le_bytes());
        assert!(Model::from_bytes(&b).is_err());
    }

    #[test]
    fn the_hash_is_fnv1a_over_signed_bytes() {
        // fastText's Dictionary::hash of "" and "a", and of a byte >= 0x80 (sign-extended).
        assert_eq!(hash(b""), 2_166_136_261);
        assert_eq!(hash(b"a"), (2_166_136_261u32 ^ 0x61).wrapping_mul(16_777_619));
        assert_eq!(hash(&[0xC3]), (2_166_136_261u32 ^ 0xFFFF_FFC3).wrapping_mul(16_777_619));
    }

    #[test]
    fn huffman_pairs_the_two_smallest() {
        // counts 5, 3, 2 (sorted descending): 2+3 first (node 3), then node 3 and leaf 0 (a
        // leaf goes first only when strictly smaller) into the root.
        let t = huffman(&[5, 3, 2]);
        assert_eq!((t[3].left, t[3].right, t[3].count), (2, 1, 5));
        assert_eq!((t[4].left, t[4].right, t[4].count), (3, 0, 10));
    }

    #[test]
    fn damaged_files_are_errors_with_offsets() {
        assert_eq!(Model::from_bytes(b"").unwrap_err().offset, 0);
        let mut b = MAGIC.to_le_bytes().to_vec();
        b.extend(11i32.to_le_bytes());
        let e = Model::from_bytes(&b).unwrap_err();
        assert!(e.msg.contains("version 11"), "{e}");
        let mut b = MAGIC.to_le_bytes().to_vec();
        b.extend(VERSION.to_le_bytes());
        b.extend((-5i32).to_le_bytes());
        let e = Model::from_bytes(&b).unwrap_err();
        assert_eq!(e.offset, 8);
        assert!(e.msg.contains("dim is -5"), "{e}");
    }
}
