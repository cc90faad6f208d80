//! The decompressors by magic (gzip, zstd, xz, bzip2, plain) on arbitrary bytes, read to at
//! most 16 MiB; and a round trip: what grist's gzip and zstd writers compress decodes back.
#![no_main]

use std::io::{Read, Write};

use libfuzzer_sys::fuzz_target;
use pipeline::formats::codec;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = codec::decompress(data, 27) {
        let mut out = Vec::new();
        let _ = r.take(16 << 20).read_to_end(&mut out);
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    let gz = gz.finish().unwrap();
    let mut back = Vec::new();
    codec::decompress(&gz[..], 27).unwrap().read_to_end(&mut back).unwrap();
    assert_eq!(back, data);
    let z = zstd::encode_all(data, 1).unwrap();
    back.clear();
    codec::decompress(&z[..], 27).unwrap().read_to_end(&mut back).unwrap();
    assert_eq!(back, data);
});
