//! The WARC reader on real files from `../shared/data/web` (record counts from its README),
//! including the malformed fixtures of warcio and resiliparse. Skips without GRIST_TEST_DATA.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use pipeline::formats::warc::{Counted, GzMembers, Plain, WarcItem, WarcReader};

fn data(test: &str) -> Option<PathBuf> {
    match std::env::var("GRIST_TEST_DATA") {
        Ok(d) => Some(PathBuf::from(d).join("web")),
        Err(_) => {
            println!("skipping {test}: GRIST_TEST_DATA is not set");
            None
        }
    }
}

/// (records by type, bad items by reason) of a file.
fn scan(path: PathBuf) -> (BTreeMap<String, usize>, BTreeMap<String, usize>, Vec<WarcItem>) {
    let bytes = std::fs::read(&path).unwrap();
    let gz = bytes.starts_with(&[0x1f, 0x8b]);
    let src = Counted::new(std::io::Cursor::new(bytes));
    let items: Vec<WarcItem> = if gz {
        WarcReader::new(GzMembers::new(src)).map(|i| i.unwrap()).collect()
    } else {
        WarcReader::new(Plain(src)).map(|i| i.unwrap()).collect()
    };
    let (mut types, mut bad) = (BTreeMap::new(), BTreeMap::new());
    for i in &items {
        match i {
            WarcItem::Record(r) => *types.entry(r.record_type()).or_default() += 1,
            WarcItem::Bad { reason, .. } => *bad.entry(reason.to_string()).or_default() += 1,
            WarcItem::Skipped { .. } => *bad.entry("skipped".to_string()).or_default() += 1,
        }
    }
    (types, bad, items)
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[test]
fn record_counts_of_real_crawls() {
    let Some(web) = data("record_counts_of_real_crawls") else { return };
    let (t, b, items) = scan(web.join("cc2020-34.warc.gz"));
    assert_eq!(t, counts(&[("warcinfo", 1), ("request", 17), ("response", 16), ("metadata", 16)]));
    assert!(b.is_empty());
    // One gzip member per record: offsets strictly increase, the first is 0.
    let offsets: Vec<u64> = items.iter().map(|i| if let WarcItem::Record(r) = i { r.offset } else { 0 }).collect();
    assert_eq!(offsets[0], 0);
    assert!(offsets.windows(2).all(|w| w[0] < w[1]));

    let (t, _, _) = scan(web.join("dolma-sample-0000.warc.gz"));
    assert_eq!(t, counts(&[("warcinfo", 1), ("request", 22), ("response", 22), ("metadata", 1), ("resource", 2)]));
    let (t, _, _) = scan(web.join("dolma-sample-0001.warc.gz"));
    assert_eq!(t, counts(&[("warcinfo", 1), ("request", 15), ("response", 15), ("metadata", 1), ("resource", 2)]));
    let (t, b, items) = scan(web.join("clueweb-quirk.warc.gz"));
    assert_eq!(t, counts(&[("warcinfo", 1), ("response", 29)]));
    assert!(b.is_empty());
    assert!(items.iter().all(|i| matches!(i, WarcItem::Record(r) if r.version == "WARC/0.18")));
}

#[test]
fn warc_and_wet_of_one_capture_agree() {
    let Some(web) = data("warc_and_wet_of_one_capture_agree") else { return };
    let (_, _, warc) = scan(web.join("whirlwind.warc.gz"));
    let (_, _, wet) = scan(web.join("whirlwind.warc.wet.gz"));
    let find = |items: &[WarcItem], kind: &str| -> pipeline::formats::warc::WarcRecord {
        items
            .iter()
            .find_map(|i| match i {
                WarcItem::Record(r) if r.record_type() == kind => Some(r.clone()),
                _ => None,
            })
            .unwrap()
    };
    let (resp, conv) = (find(&warc, "response"), find(&wet, "conversion"));
    assert_eq!(resp.target_uri(), conv.target_uri());
    assert_eq!(resp.header("WARC-Date"), conv.header("WARC-Date"));
    assert_eq!(resp.header("WARC-Record-ID"), conv.header("WARC-Refers-To"));
    assert_eq!(conv.header("WARC-Identified-Content-Language"), Some("spa"));
    assert_eq!(conv.block.len(), 4456);
}

#[test]
fn malformed_fixtures_behave_as_documented() {
    let Some(web) = data("malformed_fixtures_behave_as_documented") else { return };
    let edge = web.join("edge");
    let six = counts(&[("warcinfo", 2), ("request", 2), ("response", 1), ("revisit", 1)]);
    for f in ["example.warc.gz", "example.warc"] {
        let (t, b, _) = scan(edge.join(f));
        assert_eq!((&t, b.len()), (&six, 0), "{f}");
    }
    // warcio: 4 records and a warning "record not followed by newline" (the response's
    // Content-Length stops short of its body). Here: the same 4 records, the response flagged,
    // and the rest of its body reported as skipped bytes, not as a record.
    let (t, b, items) = scan(edge.join("example-trunc.warc"));
    assert_eq!(t, counts(&[("warcinfo", 2), ("response", 1), ("request", 1)]), "{b:?} {items:?}");
    assert_eq!(b, counts(&[("skipped", 1)]));
    assert!(
        items.iter().any(|i| matches!(i, WarcItem::Record(r) if r.missing_trailer && r.record_type() == "response"))
    );
    // warcio refuses a whole file gzipped as one member ("non-chunked gzip file"); every record
    // is still readable, so here they are read (all with the member's offset, 0).
    for f in ["example-bad-non-chunked.warc.gz", "example-bad.warc.gz.bad"] {
        let (t, b, items) = scan(edge.join(f));
        assert!(t.values().sum::<usize>() >= 4 && b.is_empty(), "{f}: {t:?} {b:?}");
        assert!(items.iter().all(|i| matches!(i, WarcItem::Record(r) if r.offset == 0)), "{f}");
    }
    // Members that do not line up with records: the decompressed stream is still valid WARC.
    let (t, b, _) = scan(edge.join("example-wrong-chunks.warc.gz"));
    assert!(t.contains_key("response") && b.is_empty(), "{t:?} {b:?}");
    // Target URIs with spaces and wget's <...> wrapping.
    let (_, _, items) = scan(edge.join("example-wget-bad-target-uri.warc.gz"));
    assert!(
        items.iter().any(|i| matches!(i, WarcItem::Record(r) if r.target_uri() == Some("http://example.com/"))),
        "{items:?}"
    );
    let (_, _, items) = scan(edge.join("example-space-in-target-uri.warc.gz"));
    assert!(
        items
            .iter()
            .any(|i| matches!(i, WarcItem::Record(r) if r.target_uri() == Some("file:///example with spaces.png")))
    );
    // A clipped gzip: the partial record is reported as truncated, never a panic.
    let (t, b, _) = scan(edge.join("resiliparse-clipped.warc.gz"));
    assert_eq!((t.len(), b.get("truncated_gzip")), (0, Some(&1)));
    // ARC files are not WARC: every line is reported, nothing is taken as a record.
    for f in ["bad.arc", "example-space-in-url.arc"] {
        let (t, b, _) = scan(edge.join(f));
        assert!(t.is_empty() && b.contains_key("malformed_record"), "{f}: {t:?} {b:?}");
    }
}
