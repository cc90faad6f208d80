//! xxh3-64 checksums of whole files, as recorded in manifests (16 lowercase hex digits).

use std::io::Read;

use xxhash_rust::xxh3::Xxh3;

use crate::error::{Result, ShardError};
use crate::storage::Loc;

/// Formats a 64-bit checksum the way manifests store it.
pub fn hex64(h: u64) -> String {
    format!("{h:016x}")
}

/// xxh3-64 of a byte slice, as hex.
pub fn xxh3_hex(bytes: &[u8]) -> String {
    hex64(xxhash_rust::xxh3::xxh3_64(bytes))
}

/// Streams a file and returns (bytes, xxh3-64 hex).
pub fn file_checksum(loc: &Loc) -> Result<(u64, String)> {
    let mut r = loc.open()?;
    let mut h = Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf).map_err(|e| ShardError::io(crate::At::byte(loc.to_string(), n), e))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((n, hex64(h.digest())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_checksum_equals_one_shot() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
        let loc = Loc::local(dir.path().join("f"));
        loc.write_atomic(&data).unwrap();
        let (n, h) = file_checksum(&loc).unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(h, xxh3_hex(&data));
        assert_eq!(h.len(), 16);
    }
}
