//! Decompression by magic bytes, not by file name: gzip (any number of members), zstd (with a
//! window up to 2^31 bytes, as Pushshift's `--long=31` dumps need), xz and bzip2; anything
//! else is read as it is. Not a format reader: this yields bytes.

use std::io::{self, BufRead, BufReader};

/// Largest zstd window log accepted by default (2 GiB windows, Pushshift's `--long=31`).
pub const DEFAULT_ZSTD_WINDOW_LOG: u32 = 31;

/// The compression a stream starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Gzip,
    Zstd,
    Xz,
    Bzip2,
    Plain,
}

impl Codec {
    /// Recognizes a codec from the first bytes of a stream.
    pub fn sniff(head: &[u8]) -> Codec {
        if head.starts_with(&[0x1f, 0x8b]) {
            Codec::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Codec::Zstd
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Codec::Xz
        } else if head.starts_with(b"BZh") && head.get(3).is_some_and(|c| (b'1'..=b'9').contains(c)) {
            Codec::Bzip2
        } else {
            Codec::Plain
        }
    }
}

/// Counts and hashes (xxh3-64) the raw bytes of an input as they are read, and remembers
/// whether reading the file itself failed (as opposed to decoding its bytes). Every stage
/// records its inputs' size and checksum this way, without a second pass over the file.
pub struct Tally<R> {
    inner: R,
    /// Bytes read so far.
    pub bytes: u64,
    hash: xxhash_rust::xxh3::Xxh3,
    /// Whether a read of the underlying file failed.
    pub failed: bool,
}

impl<R: io::Read> Tally<R> {
    pub fn new(inner: R) -> Self {
        Tally { inner, bytes: 0, hash: xxhash_rust::xxh3::Xxh3::new(), failed: false }
    }

    /// Reads what is left (so the checksum covers the whole file) and returns (bytes, xxh3 hex).
    pub fn finish(mut self) -> (u64, String) {
        let _ = io::copy(&mut self, &mut io::sink());
        (self.bytes, shards::checksum::hex64(self.hash.digest()))
    }
}

impl<R: io::Read> io::Read for Tally<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf).inspect_err(|_| self.failed = true)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Wraps `r` in the decoder its first bytes call for. `zstd_window_log` caps the zstd window;
/// a frame that needs more fails with an error that says how to allow it.
pub fn decompress<'a, R: BufRead + 'a>(mut r: R, zstd_window_log: u32) -> io::Result<Box<dyn BufRead + 'a>> {
    const BUF: usize = 1 << 16;
    Ok(match Codec::sniff(r.fill_buf()?) {
        Codec::Gzip => Box::new(BufReader::with_capacity(BUF, flate2::bufread::MultiGzDecoder::new(r))),
        Codec::Zstd => {
            let mut d = zstd::stream::read::Decoder::with_buffer(r)?;
            d.window_log_max(zstd_window_log)?;
            Box::new(BufReader::with_capacity(BUF, ZstdHint { inner: d, window_log: zstd_window_log }))
        }
        Codec::Xz => Box::new(BufReader::with_capacity(BUF, xz2::bufread::XzDecoder::new_multi_decoder(r))),
        Codec::Bzip2 => Box::new(BufReader::with_capacity(BUF, bzip2::bufread::MultiBzDecoder::new(r))),
        Codec::Plain => Box::new(r),
    })
}

/// Turns zstd's "Frame requires too much memory" into an error that names the fix.
struct ZstdHint<R> {
    inner: R,
    window_log: u32,
}

impl<R: io::Read> io::Read for ZstdHint<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            if e.to_string().contains("too much memory") {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "zstd frame needs a larger window than 2^{} bytes ({e}); dumps made with `zstd --long=31` need window log 31",
                        self.window_log
                    ),
                )
            } else {
                e
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn roundtrip(compressed: Vec<u8>) -> Vec<u8> {
        let mut out = Vec::new();
        decompress(&compressed[..], DEFAULT_ZSTD_WINDOW_LOG).unwrap().read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn every_codec_by_magic() {
        let text = b"line one\nline two\n".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&text).unwrap();
        assert_eq!(roundtrip(gz.finish().unwrap()), text);
        assert_eq!(roundtrip(zstd::encode_all(&text[..], 3).unwrap()), text);
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 6);
        xz.write_all(&text).unwrap();
        assert_eq!(roundtrip(xz.finish().unwrap()), text);
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        bz.write_all(&text).unwrap();
        assert_eq!(roundtrip(bz.finish().unwrap()), text);
        assert_eq!(roundtrip(text.clone()), text);
    }

    #[test]
    fn a_long_window_frame_needs_the_window_allowed() {
        // A frame whose header declares a 2^27 window (the largest plain zstd accepts is 2^27).
        let data = vec![7u8; 1 << 20];
        let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        enc.long_distance_matching(true).unwrap();
        enc.window_log(27).unwrap();
        enc.write_all(&data).unwrap();
        let frame = enc.finish().unwrap();
        let mut out = Vec::new();
        let err = decompress(&frame[..], 20).unwrap().read_to_end(&mut out).unwrap_err().to_string();
        assert!(err.contains("window log 31"), "{err}");
        out.clear();
        decompress(&frame[..], 27).unwrap().read_to_end(&mut out).unwrap();
        assert_eq!(out.len(), data.len());
    }
}
