//! Common Crawl WARC and WET files into documents: `conversion` records as they are, HTML
//! `response` records extracted to text, every other record type and every bad stretch
//! ledgered with its reason and offset.

use super::*;

/// Reads one WARC/WET file: documents from `conversion` and HTML `response` records,
/// ledger entries for everything that could have been a document and is not.
pub(super) fn read_warc<R: BufRead>(
    raw: &mut warc::Counted<R>,
    file: &InputFile,
    cfg: &IngestConfig,
    sink: &mut UnitSink,
    records: &mut u64,
) -> Result<(), StageError> {
    let path = file.loc.to_string();
    let cannot_read =
        |e: io::Error, at: u64| StageError::Input { at: At::byte(path.clone(), at), msg: format!("cannot read: {e}") };
    let gz = raw.fill_buf().map_err(|e| cannot_read(e, 0))?.starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn Iterator<Item = io::Result<warc::WarcItem>> + '_> = if gz {
        let mut src = warc::GzMembers::new(warc::Counted::new(&mut *raw));
        // A decoding error here is left for the reader, which ledgers it.
        check_not_arc(src.fill_buf().unwrap_or_default(), &path)?;
        Box::new(warc::WarcReader::new(src))
    } else {
        check_not_arc(raw.fill_buf().map_err(|e| cannot_read(e, 0))?, &path)?;
        Box::new(warc::WarcReader::new(warc::Plain(warc::Counted::new(&mut *raw))))
    };
    let mut failure = None;
    for item in reader {
        match item {
            Ok(i) => warc_item(i, file, cfg, sink, records)?,
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    if let Some(e) = failure {
        return Err(cannot_read(e, raw.position()));
    }
    Ok(())
}

/// ARC (the format before WARC) starts with a `filedesc://` line.
pub(super) fn check_not_arc(head: &[u8], path: &str) -> Result<(), StageError> {
    if head.starts_with(b"filedesc://") {
        return Err(StageError::Input {
            at: At::byte(path, 0),
            msg: "a legacy ARC file, not WARC\nhint: convert it to WARC first (e.g. warcio's `arc2warc`)".into(),
        });
    }
    Ok(())
}

/// WARC record types that are not documents, counted by name; anything else is `warc_other`.
pub(super) const NON_DOCUMENT_TYPES: &[&str] =
    &["warcinfo", "request", "metadata", "revisit", "resource", "continuation"];

pub(super) fn warc_item(
    item: warc::WarcItem,
    file: &InputFile,
    cfg: &IngestConfig,
    sink: &mut UnitSink,
    records: &mut u64,
) -> Result<(), StageError> {
    {
        match item {
            warc::WarcItem::Skipped { bytes, .. } => {
                sink.manifest.count("warc_bytes_skipped_after_record", bytes);
                sink.manifest.count("warc_bytes_not_in_records", bytes);
            }
            warc::WarcItem::Bad { offset, stream_offset, bytes, reason, detail, gzip_skipped } => {
                sink.manifest.count("warc_bytes_not_in_records", bytes);
                if gzip_skipped > 0 {
                    sink.manifest.count("gzip_bytes_skipped", gzip_skipped);
                }
                *records += 1;
                // Ids from the decompressed position: members can hold several records.
                let id = doc_id(&file.source, &file.rel, stream_offset);
                sink.reject_id(file, id, offset, reason, detail)?;
            }
            warc::WarcItem::Record(rec) => {
                sink.manifest.count("warc_bytes_in_records", rec.span);
                let kind = rec.record_type();
                if rec.missing_trailer {
                    sink.manifest.count("warc_missing_trailer", 1);
                }
                if rec.short_length {
                    sink.manifest.count("warc_short_content_length", 1);
                }
                let html_resource = kind == "resource"
                    && rec.header("Content-Type").is_some_and(|t| t.to_ascii_lowercase().starts_with("text/html"));
                if kind != "conversion" && kind != "response" && !html_resource {
                    let name = if NON_DOCUMENT_TYPES.contains(&kind.as_str()) { kind.as_str() } else { "other" };
                    sink.manifest.count(&format!("warc_{name}"), 1);
                    return Ok(());
                }
                *records += 1;
                warc_record(rec, &kind, file, cfg, sink)?;
            }
        }
    }
    Ok(())
}

pub(super) fn warc_record(
    rec: warc::WarcRecord,
    kind: &str,
    file: &InputFile,
    cfg: &IngestConfig,
    sink: &mut UnitSink,
) -> Result<(), StageError> {
    let capture =
        if kind == "conversion" { rec.header("WARC-Refers-To") } else { None }.or(rec.header("WARC-Record-ID"));
    let id = match capture {
        Some(c) if !c.trim().is_empty() => capture_id(c),
        _ => doc_id(&file.source, &file.rel, rec.stream_offset),
    };
    let url = rec.target_uri().map(str::to_string);
    let meta = Meta {
        date: rec.header("WARC-Date").map(str::to_string),
        language: rec.header("WARC-Identified-Content-Language").map(str::to_string),
    };
    let offset = rec.offset;
    let text = if kind == "conversion" {
        match String::from_utf8(rec.block) {
            Ok(t) => t,
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                return sink.reject_id(
                    file,
                    id,
                    offset,
                    "invalid_utf8",
                    format!("invalid UTF-8 at byte {at} of the block"),
                );
            }
        }
    } else if kind == "resource" {
        // An HTML resource record: the block is the page itself, without HTTP headers.
        let (page, _) = html::decode_html(&rec.block, rec.header("Content-Type"));
        match html::extract_text(&page, url.as_deref()) {
            Ok(t) => t,
            Err(r) => return sink.filter_id(file, id, offset, r.reason, r.detail),
        }
    } else {
        let resp = match html::parse_http(&rec.block) {
            Ok(r) => r,
            Err(r) => return sink.filter_id(file, id, offset, r.reason, r.detail),
        };
        if resp.status != 200 {
            return sink.filter_id(file, id, offset, "http_status", format!("HTTP {}", resp.status));
        }
        let media = resp.media_type();
        let is_html = match media.as_deref() {
            Some("text/html") | Some("application/xhtml+xml") => true,
            None | Some("") => resp.body.iter().take(1024).any(|&b| b == b'<'),
            _ => false,
        };
        if !is_html {
            return sink.filter_id(
                file,
                id,
                offset,
                "not_html",
                format!("Content-Type: {}", media.unwrap_or_default()),
            );
        }
        let (page, _) = html::decode_html(&resp.body, resp.header("Content-Type"));
        match html::extract_text(&page, url.as_deref()) {
            Ok(t) => t,
            Err(r) => return sink.filter_id(file, id, offset, r.reason, r.detail),
        }
    };
    admit_id(Doc { id, source: file.source.clone(), url, text }, meta, file, offset, cfg, sink)
}
