//! AdamW as GPT-3 trained with it: beta1 0.9, beta2 0.95, eps 1e-8, decoupled weight decay
//! (0.1) on the matrices only (token and position embeddings and the four weight matrices of
//! each block), not on biases or LayerNorm parameters. Moments are one allocation each, laid
//! out as the parameters.

use rayon::prelude::*;

use crate::model::{GptConfig, Param};

/// AdamW's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamW {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl Default for AdamW {
    fn default() -> Self {
        AdamW { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 }
    }
}

/// The optimizer's state: first and second moments, and the step count.
#[derive(Debug, Clone)]
pub struct AdamState {
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    pub step: u64,
    /// Per parameter element: whether weight decay applies (a matrix).
    decay: Vec<bool>,
}

impl AdamState {
    pub fn new(cfg: &GptConfig) -> AdamState {
        let mut decay = Vec::with_capacity(cfg.num_params());
        for (p, n) in cfg.param_sizes() {
            let matrix =
                matches!(p, Param::Wte | Param::Wpe | Param::QkvW | Param::AttProjW | Param::FcW | Param::FcProjW);
            decay.extend(std::iter::repeat_n(matrix, n));
        }
        let n = decay.len();
        AdamState { m: vec![0.0; n], v: vec![0.0; n], step: 0, decay }
    }

    /// The part of this state for parameter elements `range` (ZeRO-1: each rank keeps the
    /// moments of its shard only). AdamW is elementwise, so updating a shard with its moments
    /// gives the same bits as updating everything.
    pub fn shard(&self, range: std::ops::Range<usize>) -> AdamState {
        AdamState {
            m: self.m[range.clone()].to_vec(),
            v: self.v[range.clone()].to_vec(),
            step: self.step,
            decay: self.decay[range].to_vec(),
        }
    }

    /// One update of `params` by `grads` at learning rate `lr` (elementwise, so the result
    /// does not depend on the thread count).
    pub fn update(&mut self, opt: &AdamW, params: &mut [f32], grads: &[f32], lr: f32) {
        self.update_scaled(opt, params, grads, lr, 1.0);
    }

    /// One update by `grad_scale` x `grads` (gradient clipping scales below 1).
    pub fn update_scaled(&mut self, opt: &AdamW, params: &mut [f32], grads: &[f32], lr: f32, grad_scale: f32) {
        self.step += 1;
        let t = self.step as i32;
        let (c1, c2) = (1.0 - opt.beta1.powi(t), 1.0 - opt.beta2.powi(t));
        const CHUNK: usize = 1 << 14;
        let o = (opt.beta1, opt.beta2, opt.eps, opt.weight_decay);
        params
            .par_chunks_mut(CHUNK)
            .zip(grads.par_chunks(CHUNK))
            .zip(self.m.par_chunks_mut(CHUNK).zip(self.v.par_chunks_mut(CHUNK)))
            .zip(self.decay.par_chunks(CHUNK))
            .for_each(|(((p, g), (m, v)), decay)| adamw_chunk(p, g, m, v, decay, o, (c1, c2), lr, grad_scale));
    }
}

crate::multiversion! {
    /// AdamW on one chunk of the parameters (elementwise: the same bits at any chunking).
    #[allow(clippy::too_many_arguments)]
    fn adamw_chunk(
        p: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
        decay: &[bool],
        opt: (f32, f32, f32, f32),
        bias: (f32, f32),
        lr: f32,
        grad_scale: f32,
    ) {
        let (beta1, beta2, eps, weight_decay) = opt;
        let (c1, c2) = bias;
        let n = p.len();
        let (g, m, v, decay) = (&g[..n], &mut m[..n], &mut v[..n], &decay[..n]);
        for i in 0..n {
            let g = g[i] * grad_scale;
            m[i] = beta1 * m[i] + (1.0 - beta1) * g;
            v[i] = beta2 * v[i] + (1.0 - beta2) * g * g;
            let (mh, vh) = (m[i] / c1, v[i] / c2);
            let wd = if decay[i] { weight_decay * p[i] } else { 0.0 };
            p[i] -= lr * (mh / (vh.sqrt() + eps) + wd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::Workspace;
    use crate::model::Params;

    #[test]
    fn one_step_matches_the_formula_and_decays_matrices_only() {
        let cfg = GptConfig::new(4, 10, 1, 1, 4, 2);
        let mut s = AdamState::new(&cfg);
        let n = cfg.num_params();
        let mut p = vec![1.0f32; n];
        let g = vec![0.5f32; n];
        s.update(&AdamW::default(), &mut p, &g, 0.01);
        // Step 1: m^ = g, v^ = g^2, so the step is lr * (g / (|g| + eps) + wd * p).
        let wte = 0; // a matrix
        assert!((p[wte] - (1.0 - 0.01 * (1.0 + 0.1))).abs() < 1e-6, "{}", p[wte]);
        let lnf_b = n - 1; // a bias
        assert!((p[lnf_b] - (1.0 - 0.01)).abs() < 1e-6, "{}", p[lnf_b]);
    }

    #[test]
    fn a_tiny_model_overfits_one_batch() {
        let cfg = GptConfig::new(16, 64, 2, 2, 32, 64);
        let mut p = Params::gpt2_init(cfg, 5);
        let (b, t) = (2, 16);
        let tokens: Vec<u32> = (0..b * t).map(|i| ((i * 17 + 3) % 64) as u32).collect();
        let targets: Vec<u32> = (0..b * t).map(|i| ((i * 31 + 7) % 64) as u32).collect();
        let mut s = AdamState::new(&cfg);
        let opt = AdamW { weight_decay: 0.0, ..AdamW::default() };
        let mut first = None;
        let mut last = f32::NAN;
        let mut ws = Workspace::new(cfg, b, t);
        let mut g = vec![0.0; p.data.len()];
        for _ in 0..150 {
            let loss = ws.forward(&p.data, &tokens, Some(&targets));
            g.fill(0.0);
            ws.backward(&p.data, &mut g, &tokens, &targets, 1.0 / (b * t) as f32);
            s.update(&opt, &mut p.data, &g, 3e-3);
            last = loss.unwrap_or(f32::NAN);
            first.get_or_insert(last);
        }
        let first = first.unwrap_or(f32::NAN);
        assert!((first - (64f32).ln()).abs() < 0.2, "initial loss {first}");
        assert!(last < 0.05, "loss after 150 steps on one batch: {last}");
    }
}
