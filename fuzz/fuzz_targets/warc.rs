//! Fuzzes the WARC reader and the HTTP/charset layer with arbitrary bytes, as a plain stream
//! and wrapped in gzip (whole and cut short). Any panic, hang or unbounded allocation is a bug:
//! bad input must come out as `WarcItem::Bad` or an error.
#![no_main]

use std::io::{Cursor, Write};

use libfuzzer_sys::fuzz_target;
use pipeline::formats::warc::{Counted, GzMembers, Plain, WarcItem, WarcReader};

fn drain<S: pipeline::formats::warc::WarcSource>(r: WarcReader<S>) {
    for item in r.take(10_000) {
        match item {
            Ok(WarcItem::Record(rec)) => {
                let _ = rec.target_uri();
                if let Ok(resp) = pipeline::formats::html::parse_http(&rec.block) {
                    let _ = pipeline::formats::html::decode_html(&resp.body, resp.header("content-type"));
                }
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    drain(WarcReader::new(Plain(Counted::new(Cursor::new(data)))));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = gz.write_all(data);
    let gz = gz.finish().unwrap_or_default();
    drain(WarcReader::new(GzMembers::new(Counted::new(Cursor::new(&gz[..])))));
    let cut = &gz[..gz.len() * 2 / 3];
    drain(WarcReader::new(GzMembers::new(Counted::new(Cursor::new(cut)))));
    // Raw bytes that happen to start like gzip exercise the member resynchronization.
    drain(WarcReader::new(GzMembers::new(Counted::new(Cursor::new(data)))));
});
