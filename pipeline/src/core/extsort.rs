//! An external sort of fixed-width records: records of `W` little-endian `u64` words, ordered
//! by their words (lexicographically), held in memory up to a byte budget and spilled past it
//! as sorted runs into one temporary file, then read back merged. The file is unlinked as soon
//! as it is created (only the open handle names it), so a crash at any moment leaves nothing
//! behind. Memory: the budget while pushing; one read buffer per run while merging.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bytes read from a run at a time while merging.
const RUN_BUFFER: usize = 1 << 16;

/// Records pushed, then read back sorted.
pub struct ExtSort<const W: usize> {
    held: Vec<[u64; W]>,
    limit: usize,
    spill: Option<io::BufWriter<File>>,
    /// (first byte, records) of each spilled run.
    runs: Vec<(u64, u64)>,
    end: u64,
    dir: PathBuf,
    stem: String,
}

impl<const W: usize> ExtSort<W> {
    /// A sort holding up to `memory_bytes` of records (at least 1,024 records) before it
    /// spills a run into a temporary file in `dir` (whose name starts with `.{stem}`).
    pub fn new(dir: &Path, stem: &str, memory_bytes: usize) -> ExtSort<W> {
        let limit = (memory_bytes / (8 * W)).max(1024);
        ExtSort {
            held: Vec::new(),
            limit,
            spill: None,
            runs: Vec::new(),
            end: 0,
            dir: dir.to_path_buf(),
            stem: stem.to_string(),
        }
    }

    /// Adds a record.
    pub fn push(&mut self, r: [u64; W]) -> io::Result<()> {
        self.held.push(r);
        if self.held.len() >= self.limit {
            self.spill_held()?;
        }
        Ok(())
    }

    /// Runs spilled so far.
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    fn spill_held(&mut self) -> io::Result<()> {
        self.held.sort_unstable();
        if self.spill.is_none() {
            let file = unlinked_file(&self.dir, &self.stem)?;
            self.spill = Some(io::BufWriter::with_capacity(RUN_BUFFER, file));
        }
        let w = self.spill.as_mut().ok_or_else(|| io::Error::other("no spill file"))?;
        for r in &self.held {
            for x in r {
                w.write_all(&x.to_le_bytes())?;
            }
        }
        let n = self.held.len() as u64;
        self.runs.push((self.end, n));
        self.end += n * 8 * W as u64;
        self.held.clear();
        self.held.shrink_to(0);
        Ok(())
    }

    /// The records in order.
    pub fn sorted(mut self) -> io::Result<Sorted<W>> {
        let Some(mut w) = self.spill.take() else {
            self.held.sort_unstable();
            return Ok(Sorted::Held(std::mem::take(&mut self.held).into_iter()));
        };
        if !self.held.is_empty() {
            self.spill = Some(w);
            self.spill_held()?;
            w = self.spill.take().ok_or_else(|| io::Error::other("no spill file"))?;
        }
        w.flush()?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        let mut runs: Vec<Run<W>> =
            self.runs.iter().map(|&(at, n)| Run { at, left: n, buf: Vec::new(), pos: 0 }).collect();
        let mut heap = BinaryHeap::new();
        for (i, run) in runs.iter_mut().enumerate() {
            if let Some(r) = run.next(&file)? {
                heap.push(Reverse((r, i)));
            }
        }
        Ok(Sorted::Merged { file, runs, heap })
    }
}

/// A new temporary file in `dir` (created there as `.{stem}.{pid}.{n}.tmp`), unlinked at once:
/// the returned handle keeps it, and nothing outlives the process, however it ends.
pub fn unlinked_file(dir: &Path, stem: &str) -> io::Result<File> {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!(".{stem}.{}.{n}.tmp", std::process::id()));
    let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

/// One spilled run being merged.
pub struct Run<const W: usize> {
    at: u64,
    left: u64,
    buf: Vec<u8>,
    pos: usize,
}

impl<const W: usize> Run<W> {
    fn next(&mut self, file: &File) -> io::Result<Option<[u64; W]>> {
        if self.pos == self.buf.len() {
            if self.left == 0 {
                return Ok(None);
            }
            let n = (RUN_BUFFER / (8 * W)).max(1).min(self.left as usize);
            self.buf.resize(n * 8 * W, 0);
            file.read_exact_at(&mut self.buf, self.at)?;
            self.at += self.buf.len() as u64;
            self.left -= n as u64;
            self.pos = 0;
        }
        let mut r = [0u64; W];
        for (i, x) in r.iter_mut().enumerate() {
            let b = &self.buf[self.pos + 8 * i..self.pos + 8 * i + 8];
            *x = u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
        }
        self.pos += 8 * W;
        Ok(Some(r))
    }
}

/// The sorted records of an [`ExtSort`].
pub enum Sorted<const W: usize> {
    Held(std::vec::IntoIter<[u64; W]>),
    Merged { file: File, runs: Vec<Run<W>>, heap: BinaryHeap<Reverse<([u64; W], usize)>> },
}

impl<const W: usize> Iterator for Sorted<W> {
    type Item = io::Result<[u64; W]>;

    fn next(&mut self) -> Option<io::Result<[u64; W]>> {
        match self {
            Sorted::Held(it) => it.next().map(Ok),
            Sorted::Merged { file, runs, heap } => {
                let Reverse((r, i)) = heap.pop()?;
                match runs[i].next(file) {
                    Ok(Some(next)) => heap.push(Reverse((next, i))),
                    Ok(None) => {}
                    Err(e) => return Some(Err(e)),
                }
                Some(Ok(r))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(n: u64) -> Vec<[u64; 2]> {
        (0..n).map(|i| [crate::core::rng::DocRng::new(7, "t", &i.to_string()).next_u64() % 1000, i]).collect()
    }

    #[test]
    fn spilled_and_held_sorts_give_the_same_order() {
        let dir = tempfile::tempdir().unwrap();
        let input = records(10_000);
        let mut want = input.clone();
        want.sort_unstable();
        for budget in [1 << 30, 16 * 1024, 16 * 3000] {
            let mut s = ExtSort::<2>::new(dir.path(), "t", budget);
            for r in &input {
                s.push(*r).unwrap();
            }
            let runs = s.runs();
            let got: Vec<[u64; 2]> = s.sorted().unwrap().map(Result::unwrap).collect();
            assert_eq!(got, want, "budget {budget} ({runs} runs)");
            assert_eq!(runs > 0, budget < 1 << 20, "budget {budget}: {runs} runs");
        }
        // The spill file is unlinked: nothing is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn an_empty_sort_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ExtSort::<3>::new(dir.path(), "t", 0).sorted().unwrap().count(), 0);
    }
}
