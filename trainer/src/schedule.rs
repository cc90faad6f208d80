//! GPT-3's schedules, counted in tokens as the paper counts them: the learning rate warms up
//! linearly over `warmup_tokens`, then decays on a cosine to `min_fraction` of its peak at
//! `decay_tokens` and stays there; the batch grows linearly from `ramp_start_tokens` to the
//! full batch over the first `ramp_tokens` tokens, in whole micro-batches.

/// The learning rate schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    pub peak: f64,
    pub warmup_tokens: u64,
    pub decay_tokens: u64,
    /// The floor, as a fraction of the peak (GPT-3: 0.1).
    pub min_fraction: f64,
}

impl LrSchedule {
    /// The rate for a step that starts after `tokens` tokens. Warmup counts the step's own
    /// batch, so the first step trains at a small positive rate (not 0).
    pub fn at(&self, tokens: u64, step_tokens: u64) -> f64 {
        let floor = self.peak * self.min_fraction;
        if tokens < self.warmup_tokens {
            let done = (tokens + step_tokens).min(self.warmup_tokens) as f64;
            return self.peak * done / self.warmup_tokens as f64;
        }
        if tokens >= self.decay_tokens {
            return floor;
        }
        let span = (self.decay_tokens - self.warmup_tokens).max(1) as f64;
        let progress = (tokens - self.warmup_tokens) as f64 / span;
        floor + (self.peak - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

/// The batch-size ramp, in sequences.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchRamp {
    /// The full batch, in sequences (a multiple of `micro_batch`).
    pub full: usize,
    /// The first batch, in sequences (0 or `full`: no ramp).
    pub start: usize,
    /// Tokens over which the batch grows to `full`.
    pub ramp_tokens: u64,
    /// Sequences per forward pass: every batch is a whole number of micro-batches.
    pub micro_batch: usize,
}

impl BatchRamp {
    /// Sequences in the batch of a step that starts after `tokens` tokens.
    pub fn at(&self, tokens: u64) -> usize {
        let mb = self.micro_batch.max(1);
        if self.start == 0 || self.start >= self.full || tokens >= self.ramp_tokens {
            return self.full;
        }
        let f = tokens as f64 / self.ramp_tokens.max(1) as f64;
        let exact = self.start as f64 + (self.full - self.start) as f64 * f;
        ((exact as usize) / mb * mb).clamp(mb, self.full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lr_warms_up_linearly_then_follows_the_cosine_to_ten_percent() {
        let s = LrSchedule { peak: 6e-4, warmup_tokens: 1000, decay_tokens: 11_000, min_fraction: 0.1 };
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(s.at(0, 100), 6e-4 * 0.1), "first step: {}", s.at(0, 100));
        assert!(close(s.at(400, 100), 6e-4 * 0.5));
        assert!(close(s.at(1000, 100), 6e-4), "peak at the end of warmup");
        // Halfway through the decay: floor + (peak - floor) / 2.
        assert!(close(s.at(6000, 100), 0.6e-4 + 5.4e-4 * 0.5));
        // A quarter: floor + (peak - floor) (1 + cos(pi/4)) / 2.
        let q = 0.6e-4 + 5.4e-4 * 0.5 * (1.0 + std::f64::consts::FRAC_1_SQRT_2);
        assert!(close(s.at(3500, 100), q));
        assert!(close(s.at(11_000, 100), 0.6e-4) && close(s.at(50_000, 100), 0.6e-4), "the floor after decay");
        let mut last = f64::INFINITY;
        for t in (1000..11_000).step_by(500) {
            assert!(s.at(t, 100) <= last);
            last = s.at(t, 100);
        }
    }

    #[test]
    fn batch_ramps_linearly_in_whole_micro_batches() {
        let r = BatchRamp { full: 64, start: 8, ramp_tokens: 1_000_000, micro_batch: 4 };
        assert_eq!(r.at(0), 8);
        // A quarter of the way: 8 + 56/4 = 22 -> 20 (whole micro-batches).
        assert_eq!(r.at(250_000), 20);
        assert_eq!(r.at(500_000), 36);
        assert_eq!(r.at(999_999), 60);
        assert_eq!(r.at(1_000_000), 64);
        assert_eq!(r.at(5_000_000), 64);
        let mut last = 0;
        for t in (0..1_000_000).step_by(10_000) {
            let b = r.at(t);
            assert!(b >= last && b.is_multiple_of(4) && b >= 4);
            last = b;
        }
        assert_eq!(BatchRamp { start: 0, ..r }.at(0), 64, "no ramp");
        assert_eq!(BatchRamp { start: 1, ..r }.at(0), 4, "never below one micro-batch");
    }
}
