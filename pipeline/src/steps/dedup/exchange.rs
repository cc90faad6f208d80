//! Exchange files: how one phase of the distributed clusters step hands records to the units
//! of the next (a shuffle, as Spark and datatrove do it, through files).
//!
//! A producer unit writes one file with one block per destination unit; a consumer reads its
//! block from every producer's file, and nothing else. Records are little-endian `u64` words;
//! what a record is (fixed pairs, or length-prefixed sets and strings) is up to the phase.
//!
//! ```text
//! magic    b"GRISTEX1"
//! dests    u64                          number of blocks
//! index    dests x (start, words, xxh3) start and length in words from the data's start,
//!                                       xxh3-64 of the block's bytes
//! data     u64 words, block after block
//! ```
//! Every block is checked against its xxh3 when read, so a damaged file is an error naming
//! the file, the block and its byte offset, never wrong records.

use shards::{At, FileEntry, Loc, Manifest, ShardError};

use crate::core::error::StageError;
use crate::core::stage::UnitCtx;

const MAGIC: &[u8; 8] = b"GRISTEX1";
/// The file extension of exchange files (`part-N.side-KIND.exch`), by which `grist inspect
/// --verify` knows to check them with [`check`].
pub const EXTENSION: &str = "exch";
/// Words of the header before the index.
const HEAD: usize = 2;

/// Records of one producer unit, by destination. Held in memory up to a limit, past which the
/// blocks so far are appended to a spill file beside the output (removed when the writer is
/// dropped); [`ExchangeWriter::finish`] then streams each destination's pieces in order.
pub struct ExchangeWriter {
    blocks: Vec<Vec<u64>>,
    held: usize,
    limit: usize,
    spill_dir: Option<std::path::PathBuf>,
    stem: String,
    spill: Option<Spill>,
    written: u64,
}

/// Spilled pieces: per destination, (byte offset, words) in the spill file.
struct Spill {
    file: std::fs::File,
    path: std::path::PathBuf,
    pieces: Vec<Vec<(u64, u64)>>,
    end: u64,
}

impl Drop for Spill {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

static SPILLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl ExchangeWriter {
    /// A writer with `dests` blocks that holds at most `limit_bytes` before spilling into
    /// `dir` (when it is local; else the system's temporary directory), in a hidden temporary
    /// named after the unit's file `stem` (so a rerun of the unit cleans up a killed one's).
    pub fn new(dests: usize, limit_bytes: usize, dir: &Loc, stem: &str) -> ExchangeWriter {
        ExchangeWriter {
            blocks: vec![Vec::new(); dests],
            held: 0,
            limit: (limit_bytes / 8).max(1 << 10),
            spill_dir: dir.as_local().map(std::path::Path::to_path_buf),
            stem: stem.to_string(),
            spill: None,
            written: 0,
        }
    }
    /// Appends one record (its words) to `dest`'s block.
    pub fn push(&mut self, dest: usize, words: &[u64]) -> Result<(), StageError> {
        self.blocks[dest].extend_from_slice(words);
        self.held += words.len();
        self.written += words.len() as u64;
        if self.held > self.limit {
            self.spill_now()?;
        }
        Ok(())
    }
    /// Appends `bytes` to `dest`'s block as a length word and the bytes padded to whole words.
    pub fn push_bytes(&mut self, dest: usize, bytes: &[u8]) -> Result<(), StageError> {
        let mut words = Vec::with_capacity(1 + bytes.len().div_ceil(8));
        words.push(bytes.len() as u64);
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            words.push(u64::from_le_bytes(w));
        }
        self.push(dest, &words)
    }
    /// Whether any block went to the spill file.
    pub fn spilled(&self) -> bool {
        self.spill.is_some()
    }
    fn spill_now(&mut self) -> Result<(), StageError> {
        use std::io::Write;
        let dir = self.spill_dir.clone().unwrap_or_else(std::env::temp_dir);
        let io = |e: std::io::Error| StageError::Input {
            at: At::file(dir.display().to_string()),
            msg: format!(
                "cannot write an exchange spill file: {e}\nhint: free disk space there or raise dedup.memory_mb"
            ),
        };
        if self.spill.is_none() {
            std::fs::create_dir_all(&dir).map_err(io)?;
            let n = SPILLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = dir.join(format!(".{}.exchange-spill-{}-{n}.tmp", self.stem, std::process::id()));
            let file = std::fs::File::options().read(true).write(true).create_new(true).open(&path).map_err(io)?;
            self.spill = Some(Spill { file, path, pieces: vec![Vec::new(); self.blocks.len()], end: 0 });
        }
        let spill = self.spill.as_mut().expect("created above");
        let mut out = std::io::BufWriter::with_capacity(1 << 20, &spill.file);
        for (d, block) in self.blocks.iter_mut().enumerate() {
            if block.is_empty() {
                continue;
            }
            let bytes = words_as_bytes(block);
            out.write_all(&bytes).map_err(io)?;
            spill.pieces[d].push((spill.end, block.len() as u64));
            spill.end += bytes.len() as u64;
            *block = Vec::new();
        }
        out.flush().map_err(io)?;
        self.held = 0;
        Ok(())
    }
    /// Writes this unit's exchange file of `kind` (`part-N.side-KIND.exch`) and records it
    /// among the unit's side files.
    pub fn finish_side(self, ctx: &UnitCtx, m: &mut Manifest, kind: &str) -> Result<(), StageError> {
        let (loc, name) = ctx.side_file(kind, EXTENSION);
        let words = self.finish(&loc)?;
        m.side.push(FileEntry::describe(&loc, name, words)?);
        Ok(())
    }
    /// Writes the file atomically; returns the number of words written.
    pub fn finish(self, loc: &Loc) -> Result<u64, StageError> {
        use std::io::Write;
        let dests = self.blocks.len();
        let read_piece = |spill: &Spill, (at, words): (u64, u64)| -> Result<Vec<u8>, StageError> {
            use std::os::unix::fs::FileExt;
            let mut buf = vec![0u8; (words * 8) as usize];
            spill.file.read_exact_at(&mut buf, at).map_err(|e| StageError::Input {
                at: At::byte(spill.path.display().to_string(), at),
                msg: format!("cannot read back an exchange spill file: {e}"),
            })?;
            Ok(buf)
        };
        // Each block's length and checksum over its spilled pieces and its held words.
        let mut index: Vec<(u64, u64, u64)> = Vec::with_capacity(dests);
        let mut start = 0u64;
        for (d, block) in self.blocks.iter().enumerate() {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            let mut words = 0u64;
            if let Some(spill) = &self.spill {
                for &piece in &spill.pieces[d] {
                    h.update(&read_piece(spill, piece)?);
                    words += piece.1;
                }
            }
            h.update(&words_as_bytes(block));
            words += block.len() as u64;
            index.push((start, words, h.digest()));
            start += words;
        }
        let mut f = loc.create()?;
        let io = |e: std::io::Error| StageError::Shard(ShardError::io(At::file(loc.to_string()), e));
        let mut head: Vec<u8> = Vec::with_capacity(8 * (HEAD + 3 * dests));
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&(dests as u64).to_le_bytes());
        for (s, n, x) in &index {
            for w in [*s, *n, *x] {
                head.extend_from_slice(&w.to_le_bytes());
            }
        }
        f.write_all(&head).map_err(io)?;
        for (d, block) in self.blocks.iter().enumerate() {
            if let Some(spill) = &self.spill {
                for &piece in &spill.pieces[d] {
                    f.write_all(&read_piece(spill, piece)?).map_err(io)?;
                }
            }
            f.write_all(&words_as_bytes(block)).map_err(io)?;
        }
        f.commit()?;
        Ok(self.written)
    }
}

fn words_as_bytes(words: &[u64]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn bad(loc: &Loc, offset: u64, msg: String) -> StageError {
    StageError::Input { at: At::byte(loc.to_string(), offset), msg }
}

/// Reads `dest`'s block of the exchange file at `loc` (checked against its xxh3).
pub fn read_block(loc: &Loc, dest: usize) -> Result<Vec<u64>, StageError> {
    let le = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
    let head = |bytes: &[u8]| -> Result<(u64, u64, u64), StageError> {
        if bytes.len() < 8 * HEAD || &bytes[..8] != MAGIC {
            return Err(bad(loc, 0, "not a grist exchange file (wrong magic)".into()));
        }
        let dests = le(&bytes[8..16]);
        if dest as u64 >= dests {
            return Err(bad(loc, 8, format!("has {dests} blocks, block {dest} was asked for")));
        }
        let at = 8 * (HEAD + 3 * dest);
        let e = bytes.get(at..at + 24).ok_or_else(|| bad(loc, at as u64, "index cut short".into()))?;
        let data = 8 * (HEAD as u64 + 3 * dests);
        Ok((data.saturating_add(le(&e[..8]).saturating_mul(8)), le(&e[8..16]), le(&e[16..24])))
    };
    let (offset, words, xxh3, block) = match loc.as_local() {
        Some(path) => {
            use std::io::{Read, Seek, SeekFrom};
            let io = |e: std::io::Error| StageError::Shard(ShardError::io(At::file(loc.to_string()), e));
            let mut f = std::fs::File::open(path).map_err(io)?;
            let len = f.metadata().map_err(io)?.len();
            let mut first = vec![0u8; 16];
            f.read_exact(&mut first).map_err(|_| bad(loc, 0, "shorter than its header".into()))?;
            let dests = if &first[..8] == MAGIC { le(&first[8..16]) } else { 0 };
            let index_end = 8u64.saturating_mul(HEAD as u64 + 3 * dests.min(len / 24 + 1));
            if index_end > len {
                return Err(bad(loc, 8, format!("index of {dests} blocks is longer than the file ({len} bytes)")));
            }
            let mut index = vec![0u8; (8 * (HEAD + 3 * (dest + 1))).min(index_end as usize)];
            f.seek(SeekFrom::Start(0)).map_err(io)?;
            f.read_exact(&mut index).map_err(io)?;
            let (offset, words, xxh3) = head(&index)?;
            let end = offset.checked_add(words.saturating_mul(8)).filter(|&e| e <= len);
            let Some(_) = end else {
                return Err(bad(loc, offset, format!("block {dest} of {words} words runs past the end ({len} bytes)")));
            };
            let mut block = vec![0u8; (words * 8) as usize];
            f.seek(SeekFrom::Start(offset)).map_err(io)?;
            f.read_exact(&mut block).map_err(io)?;
            (offset, words, xxh3, block)
        }
        None => {
            // Object stores: the whole object (exchange files are per unit, bounded by it).
            let bytes = loc.read()?;
            let (offset, words, xxh3) = head(&bytes)?;
            let range = usize::try_from(offset)
                .ok()
                .and_then(|o| Some(o..o.checked_add(usize::try_from(words).ok()?.checked_mul(8)?)?));
            let Some(block) = range.and_then(|r| bytes.get(r)) else {
                return Err(bad(loc, offset, format!("block {dest} of {words} words runs past the end")));
            };
            (offset, words, xxh3, block.to_vec())
        }
    };
    if xxhash_rust::xxh3::xxh3_64(&block) != xxh3 {
        return Err(bad(
            loc,
            offset,
            format!("block {dest} ({words} words) does not match its checksum: the file is damaged"),
        ));
    }
    Ok(block.chunks_exact(8).map(le).collect())
}

/// Checks a whole exchange file (header, index, every block's checksum); returns its words.
pub fn check(loc: &Loc) -> Result<u64, StageError> {
    let le = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
    let bytes = loc.read()?;
    if bytes.len() < 8 * HEAD || &bytes[..8] != MAGIC {
        return Err(bad(loc, 0, "not a grist exchange file (wrong magic)".into()));
    }
    let dests = le(&bytes[8..16]);
    let data = 8u64.saturating_mul(HEAD as u64).saturating_add(dests.saturating_mul(24));
    if data > bytes.len() as u64 {
        return Err(bad(loc, 8, format!("index of {dests} blocks is longer than the file ({} bytes)", bytes.len())));
    }
    let mut words = 0u64;
    for d in 0..dests as usize {
        let e = &bytes[8 * (HEAD + 3 * d)..8 * (HEAD + 3 * d) + 24];
        let (start, n, x) = (le(&e[..8]), le(&e[8..16]), le(&e[16..]));
        let from = data.saturating_add(start.saturating_mul(8));
        let Some(block) = usize::try_from(from)
            .ok()
            .zip(usize::try_from(n.saturating_mul(8)).ok())
            .and_then(|(f, len)| bytes.get(f..f.checked_add(len)?))
        else {
            return Err(bad(loc, from, format!("block {d} of {n} words runs past the end")));
        };
        if xxhash_rust::xxh3::xxh3_64(block) != x {
            return Err(bad(
                loc,
                from,
                format!("block {d} ({n} words) does not match its checksum: the file is damaged"),
            ));
        }
        words += n;
    }
    if data + 8 * words != bytes.len() as u64 {
        return Err(bad(loc, data, format!("{} bytes, but its blocks account for {}", bytes.len(), data + 8 * words)));
    }
    Ok(words)
}

/// Reads length-prefixed bytes written by [`ExchangeWriter::push_bytes`] at `words[*at..]`,
/// moving `at` past them; `None` if the block ends first.
pub fn take_bytes(words: &[u64], at: &mut usize) -> Option<Vec<u8>> {
    let len = usize::try_from(*words.get(*at)?).ok()?;
    let n = len.div_ceil(8);
    let body = words.get(*at + 1..(*at + 1).checked_add(n)?)?;
    let mut out: Vec<u8> = body.iter().flat_map(|w| w.to_le_bytes()).collect();
    out.truncate(len);
    *at += 1 + n;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer over its memory limit spills, and its file is the same bytes as one that held
    /// everything; the spill file is gone afterwards.
    #[test]
    fn spilled_writers_write_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let here = Loc::local(dir.path());
        let (mut small, mut big) = (ExchangeWriter::new(5, 0, &here, "a"), ExchangeWriter::new(5, 1 << 30, &here, "b"));
        for i in 0..20_000u64 {
            let dest = (i * 7 % 5) as usize;
            for w in [&mut small, &mut big] {
                w.push(dest, &[i, i * i]).unwrap();
                if i % 1000 == 0 {
                    w.push_bytes(dest, format!("record {i}").as_bytes()).unwrap();
                }
            }
        }
        assert!(small.spilled() && !big.spilled());
        let (a, b) = (here.join("a.bin"), here.join("b.bin"));
        assert_eq!(small.finish(&a).unwrap(), big.finish(&b).unwrap());
        assert_eq!(std::fs::read(dir.path().join("a.bin")).unwrap(), std::fs::read(dir.path().join("b.bin")).unwrap());
        assert_eq!(read_block(&a, 3).unwrap(), read_block(&b, 3).unwrap());
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 2, "{left:?}");
    }

    #[test]
    fn blocks_round_trip_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let loc = Loc::local(dir.path().join("x.bin"));
        let mut w = ExchangeWriter::new(3, 1 << 20, &Loc::local(dir.path()), "part-00000");
        w.push(0, &[1, 2]).unwrap();
        w.push(2, &[7]).unwrap();
        w.push_bytes(2, b"hello, world").unwrap();
        w.push(0, &[3]).unwrap();
        assert_eq!(w.finish(&loc).unwrap(), 3 + 1 + 1 + 2);
        assert_eq!(check(&loc).unwrap(), 7);
        assert_eq!(read_block(&loc, 0).unwrap(), [1, 2, 3]);
        assert!(read_block(&loc, 1).unwrap().is_empty());
        let b = read_block(&loc, 2).unwrap();
        assert_eq!(b[0], 7);
        let mut at = 1;
        assert_eq!(take_bytes(&b, &mut at).unwrap(), b"hello, world");
        assert_eq!(at, b.len());
        assert!(take_bytes(&b, &mut at).is_none());
        let e = read_block(&loc, 3).unwrap_err().to_string();
        assert!(e.contains("has 3 blocks"), "{e}");
        // One flipped bit in block 2's data: that block is refused, block 0 still reads.
        let mut bytes = std::fs::read(dir.path().join("x.bin")).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(dir.path().join("x.bin"), &bytes).unwrap();
        assert_eq!(read_block(&loc, 0).unwrap(), [1, 2, 3]);
        let e = read_block(&loc, 2).unwrap_err().to_string();
        assert!(e.contains("x.bin") && e.contains("checksum"), "{e}");
        assert!(check(&loc).unwrap_err().to_string().contains("checksum"));
        // A lying index (a block past the end) and a wrong magic are errors, not panics.
        let mut lying = bytes.clone();
        lying[16 + 24 * 2 + 8..16 + 24 * 2 + 16].copy_from_slice(&u64::MAX.to_le_bytes());
        std::fs::write(dir.path().join("x.bin"), &lying).unwrap();
        assert!(read_block(&loc, 2).unwrap_err().to_string().contains("past the end"));
        std::fs::write(dir.path().join("x.bin"), b"GRISTEX0\x01\0\0\0\0\0\0\0").unwrap();
        assert!(read_block(&loc, 0).unwrap_err().to_string().contains("magic"));
        std::fs::write(dir.path().join("x.bin"), b"GRIS").unwrap();
        assert!(read_block(&loc, 0).is_err());
    }
}
