//! Batches of (inputs, targets) from token shards, with llm.c's DataLoader semantics:
//! each of `world` processes reads B*T+1 consecutive tokens at its own offset, all advance
//! by B*T*world, and a shard too short for the next read moves everyone to the next shard
//! (wrapping around after the last). Not a shuffler: shards are shuffled when written.

use shards::{Loc, ShardError, TokenShard};

/// Dimension letters: B = batch size (sequences), T = sequence length (tokens).
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    #[error(transparent)]
    Shard(#[from] ShardError),
    #[error(
        "{path}: {len} tokens, too few for one step of {need} (B*T*world + 1)\nhint: use smaller B or T, fewer processes, or larger shards"
    )]
    ShardTooSmall { path: String, len: usize, need: usize },
    #[error("no token shards given\nhint: run `grist tokenize` first")]
    NoShards,
    #[error("invalid loader settings: {0}")]
    Settings(String),
}

/// Where the loader is: shard index and token position. Saved in checkpoints for exact resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub shard: usize,
    pub position: usize,
}

/// Streams batches for one process of `world`.
#[derive(Debug)]
pub struct DataLoader {
    shards: Vec<TokenShard>,
    b: usize,
    t: usize,
    rank: usize,
    world: usize,
    cursor: Cursor,
    buf: Vec<u32>, // (B*T + 1)
}

impl DataLoader {
    pub fn new(locs: &[Loc], b: usize, t: usize, rank: usize, world: usize) -> Result<DataLoader, LoaderError> {
        if b == 0 || t == 0 || world == 0 || rank >= world {
            return Err(LoaderError::Settings(format!("B={b}, T={t}, rank={rank}, world={world}")));
        }
        if locs.is_empty() {
            return Err(LoaderError::NoShards);
        }
        let need = b * t * world + 1;
        let shards = locs
            .iter()
            .map(|l| {
                let s = TokenShard::open(l)?;
                if s.len() < need {
                    return Err(LoaderError::ShardTooSmall { path: s.path().to_string(), len: s.len(), need });
                }
                Ok(s)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut dl =
            DataLoader { shards, b, t, rank, world, cursor: Cursor { shard: 0, position: 0 }, buf: vec![0; b * t + 1] };
        dl.reset();
        Ok(dl)
    }

    /// Back to the first shard.
    pub fn reset(&mut self) {
        self.cursor = Cursor { shard: 0, position: self.b * self.t * self.rank };
    }

    pub fn cursor(&self) -> Cursor {
        self.cursor
    }

    /// Restores a saved cursor (from a checkpoint).
    pub fn set_cursor(&mut self, c: Cursor) -> Result<(), LoaderError> {
        let ok = c.shard < self.shards.len() && c.position + self.b * self.t < self.shards[c.shard].len();
        if !ok {
            return Err(LoaderError::Settings(format!("cursor {c:?} is outside the shards")));
        }
        self.cursor = c;
        Ok(())
    }

    /// Fills `inputs` and `targets` (each B*T, row-major (B, T)) with the next batch.
    pub fn next_batch(&mut self, inputs: &mut [u32], targets: &mut [u32]) {
        let n = self.b * self.t;
        assert_eq!((inputs.len(), targets.len()), (n, n), "inputs and targets must hold B*T tokens");
        let shard = &self.shards[self.cursor.shard];
        shard.read_into(self.cursor.position, &mut self.buf);
        inputs.copy_from_slice(&self.buf[..n]);
        targets.copy_from_slice(&self.buf[1..]);
        self.cursor.position += n * self.world;
        // Every rank tests the whole world's next span (from rank 0's offset), so all ranks
        // move to the next shard on the same step.
        let base = self.cursor.position - n * self.rank;
        if base + n * self.world + 1 > shard.len() {
            self.cursor.shard = (self.cursor.shard + 1) % self.shards.len();
            self.cursor.position = n * self.rank;
        }
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
    fn targets_are_inputs_shifted_and_ranks_interleave() {
        let dir = tempfile::tempdir().unwrap();
        let locs = shards(&dir, &[100, 50]);
        let (b, t) = (2, 4);
        let mut r0 = DataLoader::new(&locs, b, t, 0, 2).unwrap();
        let mut r1 = DataLoader::new(&locs, b, t, 1, 2).unwrap();
        let (mut x, mut y) = (vec![0; 8], vec![0; 8]);
        r0.next_batch(&mut x, &mut y);
        assert_eq!(x, (0..8).collect::<Vec<_>>());
        assert_eq!(y, (1..9).collect::<Vec<_>>());
        r1.next_batch(&mut x, &mut y);
        assert_eq!(x, (8..16).collect::<Vec<_>>());
        r0.next_batch(&mut x, &mut y);
        assert_eq!(x[0], 16);
    }

    #[test]
    fn moves_to_next_shard_and_wraps_and_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let locs = shards(&dir, &[20, 20]);
        let mut dl = DataLoader::new(&locs, 1, 8, 0, 1).unwrap();
        let (mut x, mut y) = (vec![0; 8], vec![0; 8]);
        let mut firsts = Vec::new();
        for _ in 0..5 {
            dl.next_batch(&mut x, &mut y);
            firsts.push(x[0]);
        }
        // Shard 0 gives reads at 0 and 8 (16+9 > 20), then shard 1 (tokens 20..40), then wrap.
        assert_eq!(firsts, [0, 8, 20, 28, 0]);
        let saved = dl.cursor();
        dl.next_batch(&mut x, &mut y);
        let want = x.clone();
        dl.set_cursor(saved).unwrap();
        dl.next_batch(&mut x, &mut y);
        assert_eq!(x, want);
    }

    #[test]
    fn ranks_change_shards_on_the_same_step() {
        let dir = tempfile::tempdir().unwrap();
        // 92 tokens, B*T = 8, world 2: after 5 steps rank 0 would still fit (80 + 9 <= 92)
        // while rank 1 would not (88 + 9 > 92); both must move together.
        let locs = shards(&dir, &[92, 40]);
        let mut ranks: Vec<DataLoader> = (0..2).map(|r| DataLoader::new(&locs, 1, 8, r, 2).unwrap()).collect();
        let (mut x, mut y) = (vec![0; 8], vec![0; 8]);
        for _ in 0..12 {
            let shards: Vec<usize> = ranks.iter().map(|r| r.cursor().shard).collect();
            assert_eq!(shards[0], shards[1]);
            for r in ranks.iter_mut() {
                r.next_batch(&mut x, &mut y);
            }
        }
    }

    #[test]
    fn rejects_small_shards_and_bad_settings() {
        let dir = tempfile::tempdir().unwrap();
        let locs = shards(&dir, &[10]);
        let e = DataLoader::new(&locs, 2, 8, 0, 1).unwrap_err().to_string();
        assert!(e.contains("s0.bin") && e.contains("too few"), "{e}");
        assert!(DataLoader::new(&locs, 1, 4, 2, 2).is_err());
        assert!(matches!(DataLoader::new(&[], 1, 4, 0, 1), Err(LoaderError::NoShards)));
    }
}
