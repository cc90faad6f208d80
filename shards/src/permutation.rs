//! A permutation of `0..n` keyed by a seed and a stream number, computed position by position:
//! a 4-round Feistel network on the smallest even bit width covering `n`, cycle-walked back into
//! range. It needs no memory however large `n` is, so a shuffle of billions of items (training
//! windows per epoch, the copies of a blend) is never materialized or sorted. The trainer's data
//! order and the blend's mixture order both come from here; changing it changes both.

/// A permutation of `0..n` keyed by (seed, stream): for the trainer the stream is the epoch.
#[derive(Debug, Clone, Copy)]
pub struct Permutation {
    n: u64,
    half: u32,
    keys: [u64; 4],
}

/// SplitMix64's step (increment, then its finalizer): a bijective mix with full avalanche.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Permutation {
    pub fn new(n: u64, seed: u64, stream: u64) -> Permutation {
        let bits = (64 - n.saturating_sub(1).leading_zeros()).max(2);
        let half = bits.div_ceil(2);
        let base = mix(seed ^ mix(stream ^ 0x5EED));
        let keys = [mix(base), mix(base ^ 1), mix(base ^ 2), mix(base ^ 3)];
        Permutation { n, half, keys }
    }

    fn encrypt(&self, x: u64) -> u64 {
        let mask = (1u64 << self.half) - 1;
        let (mut l, mut r) = (x >> self.half, x & mask);
        for k in self.keys {
            (l, r) = (r, l ^ (mix(r ^ k) & mask));
        }
        (l << self.half) | r
    }

    fn decrypt(&self, y: u64) -> u64 {
        let mask = (1u64 << self.half) - 1;
        let (mut l, mut r) = (y >> self.half, y & mask);
        for k in self.keys.iter().rev() {
            (l, r) = (r ^ (mix(l ^ k) & mask), l);
        }
        (l << self.half) | r
    }

    /// The item at position `i` (`i < n`).
    pub fn at(&self, i: u64) -> u64 {
        let mut y = self.encrypt(i);
        while y >= self.n {
            y = self.encrypt(y);
        }
        y
    }

    /// The position of item `x` (`x < n`): the inverse of [`Permutation::at`], so a list can
    /// be scattered to its shuffled positions item by item.
    pub fn position(&self, x: u64) -> u64 {
        let mut i = self.decrypt(x);
        while i >= self.n {
            i = self.decrypt(i);
        }
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bijection_for_any_count_that_depends_on_seed_and_stream() {
        for n in [1u64, 2, 3, 7, 64, 100, 1000, 4097] {
            let p = Permutation::new(n, 42, 0);
            let mut seen: Vec<u64> = (0..n).map(|i| p.at(i)).collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..n).collect::<Vec<_>>(), "n = {n}");
        }
        let order = |seed, epoch| (0..100).map(|i| Permutation::new(100, seed, epoch).at(i)).collect::<Vec<_>>();
        assert_eq!(order(1, 0), order(1, 0));
        assert_ne!(order(1, 0), order(1, 1), "epochs differ");
        assert_ne!(order(1, 0), order(2, 0), "seeds differ");
        assert_ne!(order(1, 0), (0..100).collect::<Vec<_>>(), "shuffled");
    }

    #[test]
    fn position_inverts_at() {
        for n in [1u64, 2, 3, 5, 100, 1000, 4097, 1 << 20] {
            let p = Permutation::new(n, 9, 3);
            for i in (0..n).step_by((n / 997).max(1) as usize) {
                assert_eq!(p.position(p.at(i)), i, "n = {n}, i = {i}");
                assert_eq!(p.at(p.position(i)), i, "n = {n}, i = {i}");
            }
        }
    }
}
