//! L2-regularized logistic regression on sparse rows (hashed features), by L-BFGS with a
//! backtracking line search. The objective is linfa-logistic's, so the two agree on a dense
//! problem: sum_i c_i * softplus(-y_i z_i) + alpha/2 * |w|^2, z_i = b + w . x_i, y_i in {-1, +1},
//! c_i a per-class weight (1 by default), the bias not regularized.
//! Deterministic: rows are split into ranges that depend only on the row count, each range's
//! loss and gradient are summed in row order, and the ranges are combined in order, so the
//! result is the same on any number of threads. The design may live in a spill file
//! (`RowsBuilder::spilling`), which bounds memory for millions of documents.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;

/// Bytes per stored entry: feature index (u32 LE) then value (f32 LE).
const ENTRY: usize = 8;

/// Rows of a sparse design matrix (CSR), read-only: row r holds the entries
/// `indptr[r]..indptr[r+1]`, in memory or in a memory-mapped spill file.
#[derive(Debug)]
pub struct SparseRows {
    indptr: Vec<u64>,
    data: Data,
}

#[derive(Debug)]
enum Data {
    Mem(Vec<u8>),
    Map(memmap2::Mmap),
}

impl SparseRows {
    /// An in-memory design from rows of (feature index, value) pairs.
    pub fn from_rows<'a>(rows: impl IntoIterator<Item = &'a [(u32, f32)]>) -> SparseRows {
        let mut b = RowsBuilder::in_memory();
        for r in rows {
            b.push_mem(r);
        }
        SparseRows { indptr: b.indptr, data: Data::Mem(b.buf) }
    }
    pub fn len(&self) -> usize {
        self.indptr.len() - 1
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Row `r` as (feature index, value) pairs.
    pub fn row(&self, r: usize) -> impl Iterator<Item = (u32, f32)> + '_ {
        let bytes = match &self.data {
            Data::Mem(v) => &v[..],
            Data::Map(m) => &m[..],
        };
        let (a, b) = (self.indptr[r] as usize * ENTRY, self.indptr[r + 1] as usize * ENTRY);
        bytes[a..b]
            .chunks_exact(ENTRY)
            .map(|e| (u32::from_le_bytes([e[0], e[1], e[2], e[3]]), f32::from_le_bytes([e[4], e[5], e[6], e[7]])))
    }
    /// Stored entries.
    pub fn nnz(&self) -> u64 {
        self.indptr.last().copied().unwrap_or(0)
    }
    /// Drops the pages of rows `range` of a spilled design from this process's memory: they
    /// stay in the page cache and are read back on the next pass, so resident memory stays at
    /// about the rows being worked on, not the whole design (a no-op in memory).
    pub fn release(&self, range: std::ops::Range<usize>) {
        if let Data::Map(m) = &self.data {
            let (a, b) = (self.indptr[range.start] as usize * ENTRY, self.indptr[range.end] as usize * ENTRY);
            if b > a {
                // SAFETY: a read-only mapping of a file nobody writes (see `finish`): dropped
                // pages are read back from the file, unchanged, on the next access.
                let _ = unsafe { m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, a, b - a) };
            }
        }
    }
    /// Whether the entries live in a spill file rather than in memory.
    pub fn spilled(&self) -> bool {
        matches!(self.data, Data::Map(_))
    }
}

/// Builds a `SparseRows` row by row, keeping at most `mem_limit` bytes of entries in memory:
/// past that, entries go to a spill file that is memory-mapped when the design is finished
/// (and unlinked at once, so nothing is left behind). Memory then is the row index (8 bytes a
/// row) plus what the page cache holds; the solver reads the rows in order, once per pass.
#[derive(Debug)]
pub struct RowsBuilder {
    indptr: Vec<u64>,
    buf: Vec<u8>,
    mem_limit: usize,
    spill_dir: Option<PathBuf>,
    spill: Option<SpillFile>,
}

impl RowsBuilder {
    /// A builder that never spills.
    pub fn in_memory() -> RowsBuilder {
        RowsBuilder { indptr: vec![0], buf: Vec::new(), mem_limit: usize::MAX, spill_dir: None, spill: None }
    }
    /// A builder that spills into `dir` past `mem_limit` bytes of entries.
    pub fn spilling(dir: &Path, mem_limit: usize) -> RowsBuilder {
        RowsBuilder { spill_dir: Some(dir.to_path_buf()), mem_limit, ..RowsBuilder::in_memory() }
    }
    fn push_mem(&mut self, row: &[(u32, f32)]) {
        for &(i, v) in row {
            self.buf.extend_from_slice(&i.to_le_bytes());
            self.buf.extend_from_slice(&v.to_le_bytes());
        }
        let last = self.indptr.last().copied().unwrap_or(0);
        self.indptr.push(last + row.len() as u64);
    }
    /// Appends a row of (feature index, value) pairs.
    pub fn push(&mut self, row: &[(u32, f32)]) -> io::Result<()> {
        self.push_mem(row);
        if self.buf.len() >= self.mem_limit.min(if self.spill.is_some() { 8 << 20 } else { usize::MAX }) {
            self.flush()?;
        }
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        if self.spill.is_none() {
            let Some(dir) = &self.spill_dir else { return Ok(()) };
            std::fs::create_dir_all(dir)?;
            static SEQ: AtomicUsize = AtomicUsize::new(0);
            let path = dir.join(format!(".design-{}-{}.tmp", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed)));
            // Read and write: the finished file is mapped for reading.
            let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
            self.spill = Some(SpillFile(Some(BufWriter::with_capacity(1 << 20, file)), path));
        }
        if let Some(SpillFile(Some(w), _)) = &mut self.spill {
            w.write_all(&self.buf)?;
            // The first flush empties a buffer of `mem_limit`: give that memory back, since
            // from now on at most 8 MiB are held between flushes.
            self.buf = Vec::with_capacity((8 << 20) + (64 << 10));
        }
        Ok(())
    }
    pub fn len(&self) -> usize {
        self.indptr.len() - 1
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The finished design.
    pub fn finish(mut self) -> io::Result<SparseRows> {
        let Some(mut spill) = self.spill.take() else {
            return Ok(SparseRows { indptr: self.indptr, data: Data::Mem(self.buf) });
        };
        let Some(w) = spill.0.take() else { return Err(io::Error::other("spill file already closed")) };
        let mut file = w.into_inner().map_err(|e| e.into_error())?;
        file.write_all(&self.buf)?;
        file.flush()?;
        // SAFETY: the file is ours alone (created by `flush`, unlinked when `spill` drops right
        // after mapping) and is never written again while mapped.
        let map = unsafe { memmap2::Mmap::map(&file) }?;
        drop(spill);
        Ok(SparseRows { indptr: self.indptr, data: Data::Map(map) })
    }
}

/// A spill file, removed when dropped (a failed or abandoned build leaves nothing behind).
#[derive(Debug)]
struct SpillFile(Option<BufWriter<File>>, PathBuf);

impl Drop for SpillFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.1);
    }
}

/// Solver settings.
#[derive(Debug, Clone, Copy)]
pub struct LrConfig {
    /// L2 strength (linfa-logistic's `alpha`).
    pub alpha: f64,
    pub max_iters: usize,
    /// Stop when the largest gradient component is below this.
    pub grad_tol: f64,
    /// L-BFGS history length.
    pub history: usize,
    /// Weight of each positive row's loss (negatives weigh 1): balances unequal classes.
    pub pos_weight: f64,
}

impl Default for LrConfig {
    fn default() -> Self {
        LrConfig { alpha: 1.0, max_iters: 200, grad_tol: 1e-5, history: 10, pos_weight: 1.0 }
    }
}

/// A fitted model.
#[derive(Debug, Clone)]
pub struct LrFit {
    pub weights: Vec<f64>,
    pub bias: f64,
    pub iterations: usize,
    /// Final objective value.
    pub loss: f64,
}

fn softplus(x: f64) -> f64 {
    if x > 0.0 { x + (-x).exp().ln_1p() } else { x.exp().ln_1p() }
}

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// The logit of every row.
pub fn logits(x: &SparseRows, w: &[f64], b: f64) -> Vec<f64> {
    let parts: Vec<Vec<f64>> = partitions(x.len(), 0)
        .into_par_iter()
        .map(|range| {
            let z = range.clone().map(|r| b + x.row(r).map(|(i, v)| w[i as usize] * v as f64).sum::<f64>()).collect();
            x.release(range);
            z
        })
        .collect();
    parts.concat()
}

/// Row ranges whose partial gradients are summed in order: a function of the row count and
/// dimension only, so results do not depend on the thread count. At most 64 ranges, of at
/// least 4096 rows, and at most 256 MiB of partial gradients at a time.
fn partitions(rows: usize, dim: usize) -> Vec<std::ops::Range<usize>> {
    let by_mem = ((256usize << 20) / (8 * (dim + 1))).max(1);
    let k = rows.div_ceil(4096).clamp(1, 64).min(by_mem);
    let per = rows.div_ceil(k).max(1);
    (0..rows).step_by(per).map(|a| a..(a + per).min(rows)).collect()
}

/// Objective and gradient at `p` = (w, b); `grad` has the same length as `p`.
fn objective(x: &SparseRows, y: &[bool], cfg: &LrConfig, p: &[f64], grad: &mut [f64]) -> f64 {
    let dim = p.len() - 1;
    let (w, b) = (&p[..dim], p[dim]);
    let parts: Vec<(f64, Vec<f64>)> = partitions(x.len(), dim)
        .into_par_iter()
        .map(|range| {
            let mut g = vec![0.0; dim + 1];
            let mut loss = 0.0;
            for r in range.clone() {
                let z = b + x.row(r).map(|(i, v)| w[i as usize] * v as f64).sum::<f64>();
                let (s, c) = if y[r] { (1.0, cfg.pos_weight) } else { (-1.0, 1.0) };
                loss += c * softplus(-s * z);
                let dz = -c * s * sigmoid(-s * z);
                for (i, v) in x.row(r) {
                    g[i as usize] += dz * v as f64;
                }
                g[dim] += dz;
            }
            x.release(range);
            (loss, g)
        })
        .collect();
    grad.iter_mut().for_each(|g| *g = 0.0);
    let mut loss = 0.0;
    for (l, g) in &parts {
        loss += l;
        grad.iter_mut().zip(g).for_each(|(a, b)| *a += b);
    }
    let mut reg = 0.0;
    for j in 0..dim {
        reg += w[j] * w[j];
        grad[j] += cfg.alpha * w[j];
    }
    loss + 0.5 * cfg.alpha * reg
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Fits weights over `dim` features. `y[r]` is true for positive rows.
pub fn fit(x: &SparseRows, y: &[bool], dim: usize, cfg: &LrConfig) -> LrFit {
    fit_monitored(x, y, dim, cfg, |_, _, _| false)
}

/// `fit`, calling `monitor(iteration, params, objective)` after every iteration with the
/// parameters (weights then bias); it returns true to stop (early stopping).
pub fn fit_monitored(
    x: &SparseRows,
    y: &[bool],
    dim: usize,
    cfg: &LrConfig,
    mut monitor: impl FnMut(usize, &[f64], f64) -> bool,
) -> LrFit {
    assert_eq!(x.len(), y.len(), "one label per row");
    let n = dim + 1;
    let mut p = vec![0.0; n];
    let mut g = vec![0.0; n];
    let mut f = objective(x, y, cfg, &p, &mut g);
    let mut s_hist: Vec<Vec<f64>> = Vec::new();
    let mut y_hist: Vec<Vec<f64>> = Vec::new();
    let mut iterations = 0;
    let mut g_new = vec![0.0; n];
    let mut p_new = vec![0.0; n];
    while iterations < cfg.max_iters {
        if g.iter().fold(0.0f64, |m, v| m.max(v.abs())) < cfg.grad_tol {
            break;
        }
        // Two-loop recursion: d = -H g.
        let mut q = g.clone();
        let mut alphas = Vec::with_capacity(s_hist.len());
        for (s, yv) in s_hist.iter().zip(&y_hist).rev() {
            let rho = 1.0 / dot(yv, s);
            let a = rho * dot(s, &q);
            q.iter_mut().zip(yv).for_each(|(qi, yi)| *qi -= a * yi);
            alphas.push((a, rho));
        }
        let gamma = match (s_hist.last(), y_hist.last()) {
            (Some(s), Some(yv)) => dot(s, yv) / dot(yv, yv),
            _ => 1.0 / g.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12),
        };
        q.iter_mut().for_each(|v| *v *= gamma);
        for ((s, yv), (a, rho)) in s_hist.iter().zip(&y_hist).zip(alphas.into_iter().rev()) {
            let beta = rho * dot(yv, &q);
            q.iter_mut().zip(s).for_each(|(qi, si)| *qi += (a - beta) * si);
        }
        let d: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut slope = dot(&g, &d);
        let d = if slope >= 0.0 {
            // Not a descent direction (numerical trouble): restart from steepest descent.
            s_hist.clear();
            y_hist.clear();
            slope = -dot(&g, &g);
            g.iter().map(|v| -v).collect()
        } else {
            d
        };
        // Backtracking line search with the Armijo condition.
        let mut step = 1.0;
        let mut f_new;
        loop {
            p_new.iter_mut().zip(&p).zip(&d).for_each(|((pn, pi), di)| *pn = pi + step * di);
            f_new = objective(x, y, cfg, &p_new, &mut g_new);
            if f_new <= f + 1e-4 * step * slope || step < 1e-12 {
                break;
            }
            step *= 0.5;
        }
        let s: Vec<f64> = p_new.iter().zip(&p).map(|(a, b)| a - b).collect();
        let yv: Vec<f64> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
        if dot(&s, &yv) > 1e-12 {
            s_hist.push(s);
            y_hist.push(yv);
            if s_hist.len() > cfg.history {
                s_hist.remove(0);
                y_hist.remove(0);
            }
        }
        let decrease = f - f_new;
        std::mem::swap(&mut p, &mut p_new);
        std::mem::swap(&mut g, &mut g_new);
        f = f_new;
        iterations += 1;
        if monitor(iterations, &p, f) || decrease.abs() <= 1e-12 * f.abs().max(1.0) {
            break;
        }
    }
    let bias = p[dim];
    p.truncate(dim);
    LrFit { weights: p, bias, iterations, loss: f }
}

/// ROC AUC of scores against labels (ties count half), by ranks: O(n log n).
pub fn roc_auc(scores: &[f64], y: &[bool]) -> f64 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum, mut i) = (0.0, 0);
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let mid = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += (i..=j).filter(|&k| y[order[k]]).count() as f64 * mid;
        i = j + 1;
    }
    let pos = y.iter().filter(|&&v| v).count() as f64;
    let neg = y.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return f64::NAN;
    }
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_perfect_random_and_inverted_scores() {
        let y = [false, false, true, true];
        assert_eq!(roc_auc(&[0.1, 0.2, 0.8, 0.9], &y), 1.0);
        assert_eq!(roc_auc(&[0.9, 0.8, 0.2, 0.1], &y), 0.0);
        assert_eq!(roc_auc(&[0.5, 0.5, 0.5, 0.5], &y), 0.5);
    }

    #[test]
    fn learns_a_separating_feature_deterministically() {
        let mut rows = Vec::new();
        let mut y = Vec::new();
        for i in 0..400u32 {
            let pos = i % 3 == 0;
            let signal = if pos { 7 } else { 11 };
            rows.push(vec![(signal, 1.0), (i % 5 + 20, 2.0), (30 + i % 7, 1.0)]);
            y.push(pos);
        }
        let x = SparseRows::from_rows(rows.iter().map(|r| &r[..]));
        let cfg = LrConfig { alpha: 0.1, ..LrConfig::default() };
        let fit1 = fit(&x, &y, 64, &cfg);
        assert!(fit1.weights[7] > 1.0 && fit1.weights[11] < -1.0, "{:?}", &fit1.weights[..12]);
        let z = logits(&x, &fit1.weights, fit1.bias);
        assert_eq!(roc_auc(&z, &y), 1.0);
        let fit2 = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(|| fit(&x, &y, 64, &cfg));
        assert_eq!(fit1.weights, fit2.weights, "same result on 1 thread");

        // A design spilled to disk (limit 64 bytes) gives bit-identical results.
        let dir = tempfile::tempdir().unwrap();
        let mut b = RowsBuilder::spilling(dir.path(), 64);
        for r in &rows {
            b.push(r).unwrap();
        }
        let spilled = b.finish().unwrap();
        assert!(spilled.spilled() && spilled.nnz() == x.nnz());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the spill file is unlinked");
        let fit3 = fit(&spilled, &y, 64, &cfg);
        assert_eq!(fit1.weights, fit3.weights, "same result from the spilled design");
        // Twice over the spilled design (its pages released after each range): the same logits.
        let (w, b) = (&fit1.weights[..], fit1.bias);
        let z_mem = logits(&x, w, b);
        assert_eq!(logits(&spilled, w, b), z_mem);
        assert_eq!(logits(&spilled, w, b), z_mem);
    }

    #[test]
    fn partitions_cover_rows_and_ignore_threads() {
        for rows in [0usize, 1, 4095, 4097, 1_000_000] {
            let p = partitions(rows, 1 << 18);
            assert_eq!(p.iter().map(|r| r.len()).sum::<usize>(), rows);
            assert!(p.windows(2).all(|w| w[0].end == w[1].start));
            assert!(p.len() <= 64);
        }
    }
}
