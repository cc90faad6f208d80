//! Peak memory on hostile input, measured: this binary holds one test so that the process's
//! peak resident set (`VmHWM`) is this test's alone. Each input is built first, then the peak is
//! reset to the current resident set; the readers must stay within a few MiB of it however much
//! the input claims.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};

use pipeline::formats::{codec, jsonl, warc};

/// Peak resident memory of this process, in MiB.
fn peak_rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 =
        s.lines().find(|l| l.starts_with("VmHWM:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    kib / 1024.0
}

fn record(uri: &str, body: &str, claimed: Option<u64>) -> Vec<u8> {
    format!(
        "WARC/1.0\r\nWARC-Type: conversion\r\nWARC-Target-URI: {uri}\r\nContent-Length: {}\r\n\r\n{body}\r\n\r\n",
        claimed.unwrap_or(body.len() as u64)
    )
    .into_bytes()
}

#[test]
fn hostile_inputs_cost_megabytes_not_what_they_claim() {
    if !std::path::Path::new("/proc/self/status").exists() {
        println!("skipping: no /proc/self/status to read peak memory from");
        return;
    }
    // 1. A 13-byte zstd frame that declares a 2 GiB window and no content size.
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    enc.long_distance_matching(true).unwrap();
    enc.window_log(31).unwrap();
    enc.write_all(b"tiny").unwrap();
    let frame = enc.finish().unwrap();
    assert_eq!(frame[5] >> 3, 21, "window descriptor: 2^(10 + 21) bytes");
    // 2. A WARC whose first record claims 900,000,000 bytes, then 24 MiB of records.
    let page = "w".repeat(8000);
    let mut crawl = record("http://x/liar", "short", Some(900_000_000));
    for i in 0..3000 {
        crawl.extend(record(&format!("http://x/{i}"), &page, None));
    }
    // 3. A JSON line whose text comes after 8 MiB of nested arrays.
    let nested = format!("{{\"n\": {}{}, \"text\": \"kept\"}}", "[".repeat(4 << 20), "]".repeat(4 << 20));

    // Reset the peak to the current resident set (Linux: `5` to clear_refs), so building the
    // inputs above does not hide what the readers use.
    if std::fs::write("/proc/self/clear_refs", "5").is_err() {
        println!("skipping: cannot reset the peak resident set (/proc/self/clear_refs)");
        return;
    }
    // 4. A page of 20,000 nested elements (quadratic for the Readability pass).
    let deep = format!("<html><body>{}x{}</body></html>", "<div>".repeat(20_000), "</div>".repeat(20_000));
    let base = peak_rss_mib();
    let mut out = Vec::new();
    codec::decompress(&frame[..], 31).unwrap().read_to_end(&mut out).unwrap();
    assert_eq!(out, b"tiny");
    let after_zstd = peak_rss_mib();

    let reader = warc::open(warc::Counted::new(std::io::Cursor::new(crawl))).unwrap();
    let mut records = 0;
    for item in reader {
        if let warc::WarcItem::Record(r) = item.unwrap() {
            assert_eq!(r.block.len(), page.len());
            records += 1;
        }
    }
    assert_eq!(records, 3000);
    let after_warc = peak_rss_mib();

    assert_eq!(jsonl::extract(&nested, &["text"]).unwrap().values, [Some("kept".to_string())]);
    let after_json = peak_rss_mib();
    let refused = pipeline::formats::html::extract_text(&deep, None).unwrap_err();
    assert_eq!(refused.reason, "too_deeply_nested");
    let after_html = peak_rss_mib();
    println!(
        "peak RSS: baseline {base:.1} MiB; +{:.1} after a 2 GiB-window zstd frame, +{:.1} after a 900 MB WARC claim over 24 MiB of records, +{:.1} after an 8 MiB nested JSON line, +{:.1} after a page nested 20,000 deep",
        after_zstd - base,
        after_warc - base,
        after_json - base,
        after_html - base
    );
    assert!(after_html - base < 16.0, "peak memory grew {:.1} MiB", after_html - base);
}
