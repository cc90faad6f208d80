//! Fuzzes the WARC reader and the HTTP/charset layer with arbitrary bytes, as a plain stream
//! and wrapped in gzip (whole and cut short). Any panic, hang or unbounded allocation is a bug:
//! bad input must come out as `WarcItem::Bad` or an error. And nothing disappears: on a plain
//! stream every byte is inside exactly one item (a record's span, a bad or skipped stretch),
//! in order, or is blank space after the last one.
#![no_main]

use std::io::{Cursor, Write};

use libfuzzer_sys::fuzz_target;
use pipeline::formats::warc::{Counted, GzMembers, Plain, WarcItem, WarcReader};

/// Drains a reader; returns the stream bytes its items cover.
fn drain<S: pipeline::formats::warc::WarcSource>(r: WarcReader<S>) -> u64 {
    let mut covered = 0;
    for item in r {
        covered += match &item {
            Ok(WarcItem::Record(rec)) => rec.span,
            Ok(WarcItem::Bad { bytes, .. } | WarcItem::Skipped { bytes, .. }) => *bytes,
            Err(_) => 0,
        };
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
    covered
}

fuzz_target!(|data: &[u8]| {
    let covered = drain(WarcReader::new(Plain(Counted::new(Cursor::new(data))))) as usize;
    assert!(covered <= data.len(), "items cover {covered} of {} bytes", data.len());
    assert!(data[covered..].iter().all(u8::is_ascii_whitespace), "bytes {covered}.. are in no item");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = gz.write_all(data);
    let gz = gz.finish().unwrap_or_default();
    drain(WarcReader::new(GzMembers::new(Counted::new(Cursor::new(&gz[..])))));
    let cut = &gz[..gz.len() * 2 / 3];
    drain(WarcReader::new(GzMembers::new(Counted::new(Cursor::new(cut)))));
    // Raw bytes that happen to start like gzip exercise the member resynchronization.
    drain(WarcReader::new(GzMembers::new(Counted::new(Cursor::new(data)))));
});
