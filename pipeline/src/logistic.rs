//! L2-regularized logistic regression on sparse rows (hashed features), by L-BFGS with a
//! backtracking line search. The objective is linfa-logistic's, so the two agree on a dense
//! problem: sum_i c_i * softplus(-y_i z_i) + alpha/2 * |w|^2, z_i = b + w . x_i, y_i in {-1, +1},
//! c_i a per-class weight (1 by default), the bias not regularized.
//! Deterministic: per-row work runs in parallel, every sum is taken in row order.

use rayon::prelude::*;

/// Rows of a sparse design matrix (CSR): row r is `indices[indptr[r]..indptr[r+1]]` with values.
#[derive(Debug, Clone, Default)]
pub struct SparseRows {
    indptr: Vec<usize>,
    indices: Vec<u32>,
    values: Vec<f32>,
}

impl SparseRows {
    pub fn new() -> Self {
        SparseRows { indptr: vec![0], indices: Vec::new(), values: Vec::new() }
    }
    /// Appends a row of (feature index, value) pairs.
    pub fn push(&mut self, row: &[(u32, f32)]) {
        for &(i, v) in row {
            self.indices.push(i);
            self.values.push(v);
        }
        self.indptr.push(self.indices.len());
    }
    pub fn len(&self) -> usize {
        self.indptr.len() - 1
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.indptr[r], self.indptr[r + 1]);
        (&self.indices[a..b], &self.values[a..b])
    }
    /// Stored entries.
    pub fn nnz(&self) -> usize {
        self.indices.len()
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
    (0..x.len())
        .into_par_iter()
        .map(|r| {
            let (idx, val) = x.row(r);
            b + idx.iter().zip(val).map(|(&i, &v)| w[i as usize] * v as f64).sum::<f64>()
        })
        .collect()
}

/// Objective and gradient at `p` = (w, b); `grad` has the same length as `p`.
fn objective(x: &SparseRows, y: &[bool], cfg: &LrConfig, p: &[f64], grad: &mut [f64]) -> f64 {
    let dim = p.len() - 1;
    let (w, b) = (&p[..dim], p[dim]);
    let z = logits(x, w, b);
    // Per row: loss and d(loss)/dz, computed in parallel, summed in row order.
    let per_row: Vec<(f64, f64)> = z
        .par_iter()
        .zip(y.par_iter())
        .map(|(&z, &pos)| {
            let (s, c) = if pos { (1.0, cfg.pos_weight) } else { (-1.0, 1.0) };
            (c * softplus(-s * z), -c * s * sigmoid(-s * z))
        })
        .collect();
    grad.iter_mut().for_each(|g| *g = 0.0);
    let mut loss = 0.0;
    for (r, &(l, dz)) in per_row.iter().enumerate() {
        loss += l;
        let (idx, val) = x.row(r);
        for (&i, &v) in idx.iter().zip(val) {
            grad[i as usize] += dz * v as f64;
        }
        grad[dim] += dz;
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
        if decrease.abs() <= 1e-12 * f.abs().max(1.0) {
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
        let mut x = SparseRows::new();
        let mut y = Vec::new();
        for i in 0..400u32 {
            let pos = i % 3 == 0;
            let signal = if pos { 7 } else { 11 };
            x.push(&[(signal, 1.0), (i % 5 + 20, 2.0), (30 + i % 7, 1.0)]);
            y.push(pos);
        }
        let cfg = LrConfig { alpha: 0.1, ..LrConfig::default() };
        let fit1 = fit(&x, &y, 64, &cfg);
        assert!(fit1.weights[7] > 1.0 && fit1.weights[11] < -1.0, "{:?}", &fit1.weights[..12]);
        let z = logits(&x, &fit1.weights, fit1.bias);
        assert_eq!(roc_auc(&z, &y), 1.0);
        let fit2 = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(|| fit(&x, &y, 64, &cfg));
        assert_eq!(fit1.weights, fit2.weights, "same result on 1 thread");
    }
}
