//! Training windows from llm.c token shards. A window is T+1 consecutive tokens of one shard
//! (inputs and targets shifted by one) starting at a multiple of T, so consecutive windows
//! share one token, as llm.c reads them. Each epoch visits every window once, in an order that
//! is a function of the seed and the epoch alone: a keyed Feistel permutation of the window
//! indices (cycle-walked to the exact count), so the order needs no memory however many
//! windows there are. The cursor (epoch, windows consumed) is the whole data state: a run
//! resumed from it reads exactly the windows it would have read. Data-parallel workers split
//! each global batch by stride: worker r of R takes its positions r, r + R, ...; the global
//! batch, and so the data order, does not depend on R.

use shards::permutation::{Permutation, mix};
use shards::{Loc, ShardError, TokenShard};

#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    #[error(transparent)]
    Shard(#[from] ShardError),
    #[error("no training windows: the shards hold {tokens} tokens, too few for one window of T+1 = {need}")]
    TooFew { tokens: usize, need: usize },
    #[error("no token shards given\nhint: run `grist tokenize` (and `grist blend`) first")]
    NoShards,
    #[error("invalid loader settings: {0}")]
    Settings(String),
}

/// Where the loader is: the epoch and the windows of it already consumed. Saved in
/// checkpoints for exact resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cursor {
    pub epoch: u64,
    pub offset: u64,
}

/// The windows of a set of shards, and their order per epoch.
#[derive(Debug)]
pub struct DataLoader {
    shards: Vec<TokenShard>,
    t: usize,
    /// starts[i]: the first window index of shard i; starts[shards] = the window count.
    starts: Vec<u64>,
    seed: u64,
    cursor: Cursor,
}

impl DataLoader {
    /// Opens `locs` (each checked: magic, version, length, and every token below `vocab`, so
    /// a bad token is found at the start naming its file and offset, not at the step that
    /// reaches it) for windows of `t` + 1 tokens.
    pub fn new(locs: &[Loc], t: usize, seed: u64, vocab: usize) -> Result<DataLoader, LoaderError> {
        if t == 0 {
            return Err(LoaderError::Settings("T = 0".into()));
        }
        if locs.is_empty() {
            return Err(LoaderError::NoShards);
        }
        let shards = locs
            .iter()
            .map(|l| TokenShard::open(l).and_then(|s| s.check_vocab(vocab).map(|()| s)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut starts = vec![0u64];
        for s in &shards {
            let windows = if s.len() > t { (s.len() - 1) / t } else { 0 };
            starts.push(starts[starts.len() - 1] + windows as u64);
        }
        if starts[shards.len()] == 0 {
            let tokens = shards.iter().map(|s| s.len()).sum();
            return Err(LoaderError::TooFew { tokens, need: t + 1 });
        }
        Ok(DataLoader { shards, t, starts, seed, cursor: Cursor::default() })
    }

    /// Windows per epoch.
    pub fn windows(&self) -> u64 {
        self.starts[self.shards.len()]
    }

    pub fn cursor(&self) -> Cursor {
        self.cursor
    }

    /// Restores a saved cursor (from a checkpoint).
    pub fn set_cursor(&mut self, c: Cursor) -> Result<(), LoaderError> {
        if c.offset >= self.windows() {
            return Err(LoaderError::Settings(format!("cursor {c:?} is past the {} windows", self.windows())));
        }
        self.cursor = c;
        Ok(())
    }

    /// The window at position `i` of `epoch`'s order.
    pub fn window_at(&self, epoch: u64, i: u64) -> u64 {
        Permutation::new(self.windows(), self.seed, epoch).at(i)
    }

    /// The next global batch of `n` windows, advancing the cursor past all of it (into the next
    /// epoch when this one runs out); returns the windows of worker `rank` of `world`.
    pub fn next_batch(&mut self, n: usize, rank: usize, world: usize) -> Result<Vec<u64>, LoaderError> {
        if world == 0 || rank >= world {
            return Err(LoaderError::Settings(format!("rank {rank} of {world} workers")));
        }
        let total = self.windows();
        let mut perm = Permutation::new(total, self.seed, self.cursor.epoch);
        let mut mine = Vec::with_capacity(n.div_ceil(world));
        for j in 0..n {
            if self.cursor.offset == total {
                self.cursor = Cursor { epoch: self.cursor.epoch + 1, offset: 0 };
                perm = Permutation::new(total, self.seed, self.cursor.epoch);
            }
            if j % world == rank {
                mine.push(perm.at(self.cursor.offset));
            }
            self.cursor.offset += 1;
        }
        if self.cursor.offset == total {
            self.cursor = Cursor { epoch: self.cursor.epoch + 1, offset: 0 };
        }
        Ok(mine)
    }

    /// Fills `inputs` and `targets` (each `windows.len()` x T, row-major) from the windows.
    pub fn fill(&self, windows: &[u64], inputs: &mut [u32], targets: &mut [u32]) -> Result<(), LoaderError> {
        let t = self.t;
        assert!(inputs.len() == windows.len() * t && targets.len() == inputs.len(), "inputs and targets hold B x T");
        let mut buf = vec![0u32; t + 1];
        for (k, &w) in windows.iter().enumerate() {
            let shard = self.starts.partition_point(|&s| s <= w) - 1;
            let at = (w - self.starts[shard]) as usize * t;
            self.shards[shard].read_into(at, &mut buf)?;
            inputs[k * t..(k + 1) * t].copy_from_slice(&buf[..t]);
            targets[k * t..(k + 1) * t].copy_from_slice(&buf[1..]);
        }
        Ok(())
    }

    /// A fingerprint of the training data: every shard's name and length, and its first and
    /// last 4,096 tokens (cheap at any scale; a checkpoint resumes only on the same data).
    pub fn fingerprint(&self) -> Result<String, LoaderError> {
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        let mut eat = |x: u64| h = mix(h ^ x);
        for s in &self.shards {
            let name = s.path().rsplit('/').next().unwrap_or_default();
            name.bytes().for_each(|b| eat(b as u64));
            eat(s.len() as u64);
            let k = s.len().min(4096);
            let mut buf = vec![0u32; k];
            s.read_into(0, &mut buf)?;
            buf.iter().for_each(|&t| eat(t as u64));
            s.read_into(s.len() - k, &mut buf)?;
            buf.iter().for_each(|&t| eat(t as u64));
        }
        Ok(format!("{h:016x}"))
    }

    /// The shards' paths and token counts.
    pub fn shard_lens(&self) -> Vec<(String, usize)> {
        self.shards.iter().map(|s| (s.path().to_string(), s.len())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shards::TokenWidth;
    use shards::tokens::write_tokens;

    fn shards(dir: &tempfile::TempDir, lens: &[u32]) -> Vec<Loc> {
        let mut start = 0;
        lens.iter()
            .enumerate()
            .map(|(i, &n)| {
                let loc = Loc::local(dir.path().join(format!("s{i}.bin")));
                write_tokens(&loc, TokenWidth::U16, &(start..start + n).collect::<Vec<_>>()).unwrap();
                start += n;
                loc
            })
            .collect()
    }

    #[test]
    fn windows_are_t_plus_one_tokens_within_a_shard_and_an_epoch_covers_them_all() {
        let dir = tempfile::tempdir().unwrap();
        // 4 windows of T = 8 in shard 0 (33 tokens: 32 + 1), 2 in shard 1 (20), none in shard 2.
        let locs = shards(&dir, &[33, 20, 5]);
        let mut dl = DataLoader::new(&locs, 8, 7, 1 << 16).unwrap();
        assert_eq!(dl.windows(), 6);
        let mut all = dl.next_batch(6, 0, 1).unwrap();
        assert_eq!(dl.cursor(), Cursor { epoch: 1, offset: 0 });
        let (mut x, mut y) = (vec![0; 6 * 8], vec![0; 6 * 8]);
        dl.fill(&all, &mut x, &mut y).unwrap();
        for (row, &w) in all.iter().enumerate() {
            let first = if w < 4 { w as u32 * 8 } else { 33 + (w as u32 - 4) * 8 };
            assert_eq!(x[row * 8..(row + 1) * 8], (first..first + 8).collect::<Vec<_>>()[..]);
            assert_eq!(y[row * 8..(row + 1) * 8], (first + 1..first + 9).collect::<Vec<_>>()[..]);
        }
        all.sort_unstable();
        assert_eq!(all, [0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn workers_split_each_batch_disjointly_and_the_order_ignores_the_worker_count() {
        let dir = tempfile::tempdir().unwrap();
        let locs = shards(&dir, &[801, 401]);
        let (t, seed, batch) = (4, 3, 12);
        let mut one = DataLoader::new(&locs, t, seed, 1 << 16).unwrap();
        let mut three: Vec<DataLoader> = (0..3).map(|_| DataLoader::new(&locs, t, seed, 1 << 16).unwrap()).collect();
        // 300 windows: 30 batches of 12 cross an epoch boundary (25 batches per epoch).
        for _ in 0..30 {
            let global = one.next_batch(batch, 0, 1).unwrap();
            let parts: Vec<Vec<u64>> =
                three.iter_mut().enumerate().map(|(r, d)| d.next_batch(batch, r, 3).unwrap()).collect();
            let mut union: Vec<u64> = parts.concat();
            union.sort_unstable();
            let mut want = global.clone();
            want.sort_unstable();
            assert_eq!(union, want, "the workers' windows are the global batch, each once");
            assert!(three.iter().all(|d| d.cursor() == one.cursor()));
        }
        assert_eq!(one.cursor(), Cursor { epoch: 1, offset: 60 });
        // Resume: a loader set to a saved cursor reads what the original reads next.
        let saved = one.cursor();
        let next = one.next_batch(batch, 0, 1).unwrap();
        let mut resumed = DataLoader::new(&locs, t, seed, 1 << 16).unwrap();
        resumed.set_cursor(saved).unwrap();
        assert_eq!(resumed.next_batch(batch, 0, 1).unwrap(), next);
    }

    #[test]
    fn refuses_bad_shards_and_settings_with_the_file_named() {
        let dir = tempfile::tempdir().unwrap();
        let locs = shards(&dir, &[5]);
        let e = DataLoader::new(&locs, 8, 0, 1 << 16).unwrap_err().to_string();
        assert!(e.contains("too few") && e.contains("9"), "{e}");
        assert!(matches!(DataLoader::new(&[], 4, 0, 1 << 16), Err(LoaderError::NoShards)));
        let good = shards(&dir, &[100]);
        let mut dl = DataLoader::new(&good, 4, 0, 1 << 16).unwrap();
        assert!(dl.next_batch(4, 2, 2).is_err());
        assert!(dl.set_cursor(Cursor { epoch: 0, offset: 25 }).is_err());
        // Wrong magic, and a truncated shard.
        let bytes = std::fs::read(dir.path().join("s0.bin")).unwrap();
        let bad = dir.path().join("bad.bin");
        let mut wrong = bytes.clone();
        wrong[0] ^= 0xff;
        std::fs::write(&bad, &wrong).unwrap();
        let e = DataLoader::new(&[Loc::local(&bad)], 4, 0, 1 << 16).unwrap_err().to_string();
        assert!(e.contains("bad.bin"), "{e}");
        std::fs::write(&bad, &bytes[..bytes.len() - 3]).unwrap();
        let e = DataLoader::new(&[Loc::local(&bad)], 4, 0, 1 << 16).unwrap_err().to_string();
        assert!(e.contains("bad.bin"), "{e}");
        // A token outside the vocabulary is found when the shard is opened, with its offset:
        // shard 0 holds 0..100, so token 90 is the first >= 90, at byte 1024 + 2 * 90.
        let e = DataLoader::new(&good, 4, 0, 90).unwrap_err().to_string();
        assert!(e.contains("s0.bin (byte 1204)") && e.contains("token 90") && e.contains("vocabulary of 90"), "{e}");
        assert!(DataLoader::new(&good, 4, 0, 100).is_ok());
    }
}
