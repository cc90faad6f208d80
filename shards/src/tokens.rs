//! Token shards in llm.c's format: a 256 x int32 little-endian header (magic 20240520,
//! version, token count), then the tokens. Version 1 stores uint16 tokens (what llm.c and
//! modded-nanogpt read); version 2 is grist's extension for vocabularies over 65,535 and
//! stores uint32 tokens. Not a tokenizer: this module only stores ids.

use std::io::{BufWriter, Seek, SeekFrom, Write};

use crate::error::{At, Result, ShardError};
use crate::storage::{AtomicFile, Loc, Remote};

/// `header[0]` of every token shard (llm.c's `20240520`).
pub const TOKEN_MAGIC: i32 = 20240520;
/// `header[1]` for uint16 tokens (llm.c's only version).
pub const VERSION_U16: i32 = 1;
/// `header[1]` for uint32 tokens (grist's extension).
pub const VERSION_U32: i32 = 2;
/// Header size in int32s.
pub const HEADER_INTS: usize = 256;
/// Header size in bytes.
pub const HEADER_BYTES: usize = HEADER_INTS * 4;
/// Largest token count one shard can record (`header[2]` is an int32).
pub const MAX_TOKENS: u64 = i32::MAX as u64;

/// Bytes per token in a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenWidth {
    U16,
    U32,
}

impl TokenWidth {
    /// The narrowest width that holds ids below `vocab_size`.
    pub fn for_vocab(vocab_size: usize) -> TokenWidth {
        if vocab_size <= 1 << 16 { TokenWidth::U16 } else { TokenWidth::U32 }
    }
    pub fn bytes(self) -> usize {
        match self {
            TokenWidth::U16 => 2,
            TokenWidth::U32 => 4,
        }
    }
    fn version(self) -> i32 {
        match self {
            TokenWidth::U16 => VERSION_U16,
            TokenWidth::U32 => VERSION_U32,
        }
    }
}

/// Streams tokens into a shard; visible only after [`TokenWriter::finish`].
pub struct TokenWriter {
    out: BufWriter<AtomicFile>,
    width: TokenWidth,
    count: u64,
    loc: Loc,
}

impl TokenWriter {
    pub fn create(loc: &Loc, width: TokenWidth) -> Result<TokenWriter> {
        let mut out = BufWriter::with_capacity(1 << 20, loc.create()?);
        out.write_all(&header(width, 0)).map_err(|e| ShardError::io(At::file(loc.to_string()), e))?;
        Ok(TokenWriter { out, width, count: 0, loc: loc.clone() })
    }

    /// Appends tokens. Fails if a token does not fit the width or the shard would exceed
    /// [`MAX_TOKENS`].
    pub fn write(&mut self, tokens: &[u32]) -> Result<()> {
        let at = || At::file(self.loc.to_string());
        if self.count + tokens.len() as u64 > MAX_TOKENS {
            return Err(ShardError::invalid(
                at(),
                format!("a token shard holds at most {MAX_TOKENS} tokens; start a new shard"),
            ));
        }
        match self.width {
            TokenWidth::U16 => {
                let mut buf = Vec::with_capacity(tokens.len() * 2);
                for &t in tokens {
                    let t16 = u16::try_from(t).map_err(|_| {
                        ShardError::invalid(
                            at(),
                            format!("token id {t} does not fit a uint16 shard; use TokenWidth::U32"),
                        )
                    })?;
                    buf.extend_from_slice(&t16.to_le_bytes());
                }
                self.out.write_all(&buf).map_err(|e| ShardError::io(at(), e))?;
            }
            TokenWidth::U32 => {
                let mut buf = Vec::with_capacity(tokens.len() * 4);
                for &t in tokens {
                    buf.extend_from_slice(&t.to_le_bytes());
                }
                self.out.write_all(&buf).map_err(|e| ShardError::io(at(), e))?;
            }
        }
        self.count += tokens.len() as u64;
        Ok(())
    }

    /// Tokens written so far.
    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Patches the token count into the header and makes the shard visible.
    pub fn finish(self) -> Result<u64> {
        let at = At::file(self.loc.to_string());
        let mut file = self.out.into_inner().map_err(|e| ShardError::io(at.clone(), e.into_error()))?;
        file.seek(SeekFrom::Start(0)).map_err(|e| ShardError::io(at.clone(), e))?;
        file.write_all(&header(self.width, self.count)).map_err(|e| ShardError::io(at, e))?;
        file.commit()?;
        Ok(self.count)
    }
}

fn header(width: TokenWidth, count: u64) -> Vec<u8> {
    let mut h = [0i32; HEADER_INTS];
    h[0] = TOKEN_MAGIC;
    h[1] = width.version();
    h[2] = count as i32;
    h.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Writes a whole shard in one call.
pub fn write_tokens(loc: &Loc, width: TokenWidth, tokens: &[u32]) -> Result<()> {
    let mut w = TokenWriter::create(loc, width)?;
    w.write(tokens)?;
    w.finish().map(|_| ())
}

enum Data {
    Mmap(memmap2::Mmap),
    /// A local shard read by positioned reads (`TokenShard::open_unmapped`): nothing of it
    /// stays in this process's memory between reads.
    File(std::fs::File),
    /// An object-store shard, read by ranges.
    Remote(Remote),
}

/// A validated token shard: memory-mapped when local, read by ranges when remote.
pub struct TokenShard {
    data: Data,
    width: TokenWidth,
    len: usize,
    path: String,
}

impl std::fmt::Debug for TokenShard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenShard")
            .field("path", &self.path)
            .field("width", &self.width)
            .field("len", &self.len)
            .finish()
    }
}

impl TokenShard {
    /// Opens a shard, checking magic, version and that the length matches the header. A local
    /// shard is memory-mapped; one on an object store is read by ranged GETs through a small
    /// block cache (at most `REMOTE_CACHE_BLOCKS` x `REMOTE_BLOCK`), so memory does not grow
    /// with the shard.
    pub fn open(loc: &Loc) -> Result<TokenShard> {
        Self::open_as(loc, true)
    }

    /// Opens a shard like `open`, but a local one is read by positioned reads instead of being
    /// mapped: for scattered reads over many shards (the blend), whose mapped pages would
    /// otherwise all count as this process's resident memory.
    pub fn open_unmapped(loc: &Loc) -> Result<TokenShard> {
        Self::open_as(loc, false)
    }

    fn open_as(loc: &Loc, mapped: bool) -> Result<TokenShard> {
        let path = loc.to_string();
        let io = |e: std::io::Error| ShardError::io(At::file(path.clone()), e);
        let open = |p: &std::path::Path| {
            std::fs::File::open(p).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => ShardError::NotFound {
                    at: At::file(path.clone()),
                    hint: "run `grist tokenize` first, or check the path".into(),
                },
                _ => io(e),
            })
        };
        let (data, width, len) = match loc.as_local() {
            Some(p) if !mapped => {
                use std::os::unix::fs::FileExt;
                let f = open(p)?;
                let size = f.metadata().map_err(io)?.len();
                let mut head = vec![0u8; (HEADER_BYTES as u64).min(size) as usize];
                f.read_exact_at(&mut head, 0).map_err(io)?;
                let (width, len) = validate(&head, size, &path)?;
                (Data::File(f), width, len)
            }
            Some(p) => {
                let f = open(p)?;
                // SAFETY: the map is read-only and grist never modifies a committed shard
                // in place (writes go to a temporary name and are renamed). Another process
                // truncating the file while it is mapped would be a misuse outside our control.
                let m = unsafe { memmap2::Mmap::map(&f) }.map_err(io)?;
                let (width, len) = validate(&m, m.len() as u64, &path)?;
                (Data::Mmap(m), width, len)
            }
            None => {
                let size = loc.size()?;
                let head = loc.read_range(0, (HEADER_BYTES as u64).min(size))?;
                let (width, len) = validate(&head, size, &path)?;
                let remote = Remote::new(loc, size);
                (Data::Remote(remote), width, len)
            }
        };
        Ok(TokenShard { data, width, len, path })
    }

    /// Bytes fetched from the object store so far and the most held at once (0 for a local,
    /// memory-mapped shard).
    pub fn remote_bytes(&self) -> (u64, u64) {
        match &self.data {
            Data::Remote(r) => r.stats(),
            Data::Mmap(_) | Data::File(_) => (0, 0),
        }
    }

    pub fn width(&self) -> TokenWidth {
        self.width
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Token `i`. Panics if `i >= len()`, like slice indexing; an error only when an object
    /// store read fails.
    pub fn get(&self, i: usize) -> Result<u32> {
        assert!(i < self.len, "token {i} of a shard of {}", self.len);
        let mut one = [0u32];
        self.read_into(i, &mut one)?;
        Ok(one[0])
    }

    /// Copies tokens `start..start + out.len()` into `out` (widened to u32). Panics past the
    /// end, like slice indexing; an error only when an object store read fails.
    pub fn read_into(&self, start: usize, out: &mut [u32]) -> Result<()> {
        assert!(start + out.len() <= self.len, "tokens {start}..{} of a shard of {}", start + out.len(), self.len);
        let w = self.width.bytes();
        let widen = |src: &[u8], out: &mut [u32]| match self.width {
            TokenWidth::U16 => {
                for (o, c) in out.iter_mut().zip(src.chunks_exact(2)) {
                    *o = u16::from_le_bytes([c[0], c[1]]) as u32;
                }
            }
            TokenWidth::U32 => {
                for (o, c) in out.iter_mut().zip(src.chunks_exact(4)) {
                    *o = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
            }
        };
        match &self.data {
            Data::Mmap(m) => {
                let body = &m[HEADER_BYTES..];
                widen(&body[w * start..w * (start + out.len())], out);
            }
            Data::Remote(r) => {
                // In pieces of at most 1 MiB, so the staging buffer stays small.
                let per = (1 << 20) / w;
                for (k, chunk) in out.chunks_mut(per).enumerate() {
                    let mut buf = vec![0u8; chunk.len() * w];
                    r.read((HEADER_BYTES + w * (start + k * per)) as u64, &mut buf)?;
                    widen(&buf, chunk);
                }
            }
            Data::File(f) => {
                use std::os::unix::fs::FileExt;
                let per = (1 << 20) / w;
                for (k, chunk) in out.chunks_mut(per).enumerate() {
                    let mut buf = vec![0u8; chunk.len() * w];
                    let at = (HEADER_BYTES + w * (start + k * per)) as u64;
                    f.read_exact_at(&mut buf, at).map_err(|e| ShardError::io(At::byte(self.path.clone(), at), e))?;
                    widen(&buf, chunk);
                }
            }
        }
        Ok(())
    }

    /// Checks every token is below `vocab`: an error naming the file, the first bad token's
    /// byte offset and value otherwise. One pass over the mapped file, 1 Mi tokens at a time
    /// (a chunk's maximum first: the common all-good case vectorizes).
    pub fn check_vocab(&self, vocab: usize) -> Result<()> {
        const CHUNK: usize = 1 << 20;
        let mut buf = vec![0u32; CHUNK.min(self.len)];
        let mut start = 0;
        while start < self.len {
            let n = CHUNK.min(self.len - start);
            self.read_into(start, &mut buf[..n])?;
            if buf[..n].iter().copied().max().unwrap_or(0) as usize >= vocab {
                let i = buf[..n].iter().position(|&t| t as usize >= vocab).unwrap_or(0);
                let offset = (HEADER_BYTES + (start + i) * self.width.bytes()) as u64;
                return Err(ShardError::Invalid {
                    at: At::byte(self.path.clone(), offset),
                    msg: format!(
                        "token {} (number {} of the shard) is outside the model's vocabulary of {vocab}\nhint: the shard was made with another tokenizer, or is damaged; retokenize it",
                        buf[i],
                        start + i
                    ),
                });
            }
            start += n;
        }
        Ok(())
    }

    /// All tokens, widened to u32.
    pub fn to_vec(&self) -> Result<Vec<u32>> {
        let mut v = vec![0; self.len];
        self.read_into(0, &mut v)?;
        Ok(v)
    }
}

/// Checks the header `b` (at least the header's bytes of the file) against the file's `size`.
fn validate(b: &[u8], size: u64, path: &str) -> Result<(TokenWidth, usize)> {
    if b.len() < HEADER_BYTES {
        return Err(ShardError::Truncated { at: At::file(path), expected: HEADER_BYTES as u64, got: b.len() as u64 });
    }
    let int = |i: usize| i32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
    if int(0) != TOKEN_MAGIC {
        return Err(ShardError::BadMagic {
            at: At::byte(path, 0),
            expected: TOKEN_MAGIC.to_string(),
            got: int(0).to_string(),
            hint: "not an llm.c token shard; token shards are written by `grist tokenize`",
        });
    }
    let width = match int(1) {
        VERSION_U16 => TokenWidth::U16,
        VERSION_U32 => TokenWidth::U32,
        v if v > VERSION_U32 => {
            return Err(ShardError::NewerVersion {
                at: At::byte(path, 4),
                what: "token shard",
                got: v as u64,
                max: VERSION_U32 as u64,
            });
        }
        v => {
            return Err(ShardError::UnsupportedVersion {
                at: At::byte(path, 4),
                what: "token shard",
                got: v as u64,
                hint: "versions 1 (uint16) and 2 (uint32) exist",
            });
        }
    };
    let count = int(2);
    if count < 0 {
        return Err(ShardError::invalid(At::byte(path, 8), format!("negative token count {count}")));
    }
    let expected = HEADER_BYTES as u64 + count as u64 * width.bytes() as u64;
    if size != expected {
        return Err(if size < expected {
            ShardError::Truncated { at: At::file(path), expected, got: size }
        } else {
            ShardError::invalid(
                At::byte(path, expected),
                format!("{} bytes after the {count} tokens the header announces", size - expected),
            )
        });
    }
    Ok((width, count as usize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{REMOTE_BLOCK, REMOTE_CACHE_BLOCKS};

    fn tmp(dir: &tempfile::TempDir, name: &str) -> Loc {
        Loc::local(dir.path().join(name))
    }

    #[test]
    fn round_trip_both_widths() {
        let dir = tempfile::tempdir().unwrap();
        let toks: Vec<u32> = (0..10_000u32).map(|i| (i * 7919) % 50257).collect();
        write_tokens(&tmp(&dir, "a.bin"), TokenWidth::U16, &toks).unwrap();
        let s = TokenShard::open(&tmp(&dir, "a.bin")).unwrap();
        assert_eq!((s.width(), s.len()), (TokenWidth::U16, toks.len()));
        assert_eq!(s.to_vec().unwrap(), toks);
        assert_eq!(s.get(9_999).unwrap(), toks[9_999]);

        let big: Vec<u32> = vec![0, 65_535, 65_536, 100_276, u32::MAX];
        write_tokens(&tmp(&dir, "b.bin"), TokenWidth::U32, &big).unwrap();
        let s = TokenShard::open(&tmp(&dir, "b.bin")).unwrap();
        assert_eq!(s.to_vec().unwrap(), big);
        assert_eq!(std::fs::metadata(dir.path().join("b.bin")).unwrap().len(), 1024 + 20);
        // Read by positioned reads instead of a mapping: the same tokens, in any piece.
        for name in ["a.bin", "b.bin"] {
            let (mapped, unmapped) =
                (TokenShard::open(&tmp(&dir, name)).unwrap(), TokenShard::open_unmapped(&tmp(&dir, name)).unwrap());
            assert_eq!((unmapped.width(), unmapped.len()), (mapped.width(), mapped.len()));
            assert_eq!(unmapped.to_vec().unwrap(), mapped.to_vec().unwrap());
            let mut piece = vec![0u32; 3];
            unmapped.read_into(2, &mut piece).unwrap();
            assert_eq!(piece, mapped.to_vec().unwrap()[2..5]);
        }
    }

    #[test]
    fn u16_rejects_large_ids() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_tokens(&tmp(&dir, "c.bin"), TokenWidth::U16, &[1, 70_000]).unwrap_err().to_string();
        assert!(err.contains("70000"), "{err}");
        assert!(!dir.path().join("c.bin").exists(), "a failed write must leave no file");
    }

    #[test]
    fn rejects_bad_magic_version_truncation_and_trailing_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let loc = tmp(&dir, "t.bin");
        write_tokens(&loc, TokenWidth::U16, &[1, 2, 3, 4]).unwrap();
        let good = std::fs::read(dir.path().join("t.bin")).unwrap();

        let mut bad = good.clone();
        bad[0] ^= 1;
        loc.write_atomic(&bad).unwrap();
        let e = TokenShard::open(&loc).unwrap_err();
        assert!(matches!(e, ShardError::BadMagic { .. }), "{e}");
        assert!(e.to_string().contains("t.bin"));

        let mut bad = good.clone();
        bad[4] = 9;
        loc.write_atomic(&bad).unwrap();
        assert!(matches!(TokenShard::open(&loc), Err(ShardError::NewerVersion { .. })));

        loc.write_atomic(&good[..good.len() - 1]).unwrap();
        let e = TokenShard::open(&loc).unwrap_err();
        assert!(matches!(e, ShardError::Truncated { expected: 1032, got: 1031, .. }), "{e}");
        let e = TokenShard::open_unmapped(&loc).unwrap_err();
        assert!(matches!(e, ShardError::Truncated { expected: 1032, got: 1031, .. }), "{e}");

        loc.write_atomic(&good[..100]).unwrap();
        assert!(matches!(TokenShard::open(&loc), Err(ShardError::Truncated { expected: 1024, .. })));
        assert!(matches!(TokenShard::open_unmapped(&loc), Err(ShardError::Truncated { expected: 1024, .. })));

        let mut long = good.clone();
        long.extend_from_slice(&[0, 0]);
        loc.write_atomic(&long).unwrap();
        assert!(matches!(TokenShard::open(&loc), Err(ShardError::Invalid { .. })));
    }

    #[test]
    fn remote_shards_read_the_same() {
        let loc = Loc::parse("memory://tokens-test/s.bin").unwrap();
        write_tokens(&loc, TokenWidth::U16, &[5, 6, 7]).unwrap();
        assert_eq!(TokenShard::open(&loc).unwrap().to_vec().unwrap(), [5, 6, 7]);
    }

    /// A remote shard 12x the cache is read by ranges: every token right, in order and at
    /// random, never more than the cache held, and a sequential pass fetches each byte once.
    #[test]
    fn remote_shards_stream_in_bounded_memory() {
        let loc = Loc::parse("memory://tokens-test/big.bin").unwrap();
        let n = (12 * REMOTE_CACHE_BLOCKS as u64 * REMOTE_BLOCK / 2) as usize + 12_345;
        let toks: Vec<u32> = (0..n as u64).map(|i| (i.wrapping_mul(0x9e37_79b9) >> 7) as u32 % 50_257).collect();
        write_tokens(&loc, TokenWidth::U16, &toks).unwrap();
        let s = TokenShard::open(&loc).unwrap();
        assert_eq!(s.len(), n);
        let mut buf = vec![0u32; 777_777];
        let mut at = 0;
        while at < n {
            let k = buf.len().min(n - at);
            s.read_into(at, &mut buf[..k]).unwrap();
            assert!(buf[..k] == toks[at..at + k], "tokens {at}..{} differ", at + k);
            at += k;
        }
        let size = (HEADER_BYTES + 2 * n) as u64;
        let (fetched, peak) = s.remote_bytes();
        assert!(fetched >= size - HEADER_BYTES as u64 && fetched <= size, "{fetched} of {size}");
        assert!(peak <= REMOTE_CACHE_BLOCKS as u64 * REMOTE_BLOCK, "held {peak}");
        let mut r = 3u64;
        for _ in 0..200 {
            r = crate::permutation::mix(r);
            let i = (r % n as u64) as usize;
            assert_eq!(s.get(i).unwrap(), toks[i]);
        }
        assert!(s.remote_bytes().1 <= REMOTE_CACHE_BLOCKS as u64 * REMOTE_BLOCK);
        s.check_vocab(50_257).unwrap();
        // A remote shard shorter than its header says is refused at open.
        let short = Loc::parse("memory://tokens-test/short.bin").unwrap();
        let bytes = loc.read().unwrap();
        short.write_atomic(&bytes[..bytes.len() - 2]).unwrap();
        assert!(matches!(TokenShard::open(&short), Err(ShardError::Truncated { .. })));
    }
}
