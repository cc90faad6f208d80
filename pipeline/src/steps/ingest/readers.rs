//! The other readers: JSON lines (dotted field paths), one-document-per-file text (split at
//! paragraph breaks past `split_bytes`), and Parquet from any tool.

use super::*;

pub(super) fn read_jsonl(
    reader: &mut dyn BufRead,
    file: &InputFile,
    source: &SourceConfig,
    cfg: &IngestConfig,
    sink: &mut UnitSink,
    records: &mut u64,
) -> Result<(), ReadFailure> {
    let mut line = Vec::new();
    let mut offset = 0u64;
    loop {
        line.clear();
        // A line may hold a document of up to max_doc_bytes, JSON-escaped: allow twice that.
        let cap = cfg.max_doc_bytes.saturating_mul(2).saturating_add(1 << 16);
        let n = (&mut *reader).take(cap).read_until(b'\n', &mut line).map_err(|e| ReadFailure::Io(e, offset))?;
        if n == 0 {
            return Ok(());
        }
        let at = offset;
        offset += n as u64;
        if n as u64 == cap && !line.ends_with(b"\n") {
            offset += skip_line(reader).map_err(|e| ReadFailure::Io(e, at))?;
            *records += 1;
            sink.filter_id(
                file,
                doc_id(&file.source, &file.rel, at),
                at,
                "too_large",
                format!("a line longer than {cap} bytes"),
            )?;
            continue;
        }
        let body = trim_eol(&line);
        if body.iter().all(u8::is_ascii_whitespace) {
            continue; // a blank line is not a record
        }
        *records += 1;
        let text = match std::str::from_utf8(body) {
            Ok(t) => t,
            Err(e) => {
                sink.reject(
                    file,
                    at,
                    "invalid_utf8",
                    format!("invalid UTF-8 at byte {} of the line", e.valid_up_to()),
                )?;
                continue;
            }
        };
        // Only the two fields, never the record's value tree.
        let mut fields = match jsonl::extract(text, &[&source.text_field, &source.url_field]) {
            Ok(f) => f.values.into_iter(),
            Err(e) => {
                sink.reject(file, at, "malformed_json", e.to_string())?;
                continue;
            }
        };
        let (doc_text, url) = (fields.next().flatten(), fields.next().flatten());
        let Some(doc_text) = doc_text else {
            sink.reject(file, at, "missing_text", format!("no string field `{}`", source.text_field))?;
            continue;
        };
        admit(doc_text, url, file, at, cfg, sink)?;
    }
}

/// One document per file, or (with `split_bytes`) pieces that end at the first paragraph
/// break (a blank line, LF or CRLF) after every `split_bytes`. Streams: memory stays at one
/// piece, and a piece over `max_doc_bytes` is ledgered (`too_large`) without being held.
pub(super) fn read_text(
    reader: &mut dyn BufRead,
    file: &InputFile,
    source: &SourceConfig,
    cfg: &IngestConfig,
    sink: &mut UnitSink,
    records: &mut u64,
) -> Result<(), ReadFailure> {
    let cap = cfg.max_doc_bytes;
    let mut piece: Vec<u8> = Vec::new();
    let (mut piece_start, mut pos, mut oversize) = (0u64, 0u64, false);
    let mut line = Vec::new();
    let mut emit = |piece: &mut Vec<u8>, start: u64, oversize: bool, records: &mut u64| -> Result<(), StageError> {
        *records += 1;
        let bytes = std::mem::take(piece);
        if oversize {
            let id = doc_id(&file.source, &file.rel, start);
            return sink.filter_id(file, id, start, "too_large", format!("more than max_doc_bytes {cap} bytes"));
        }
        match String::from_utf8(bytes) {
            Ok(text) => admit(text, None, file, start, cfg, sink),
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                sink.reject(file, start, "invalid_utf8", format!("invalid UTF-8 at byte {at}"))
            }
        }
    };
    loop {
        line.clear();
        // A break is ledgered at the start of the piece it interrupts (that piece's id).
        let n =
            (&mut *reader).take(cap + 1).read_until(b'\n', &mut line).map_err(|e| ReadFailure::Io(e, piece_start))?;
        if n == 0 {
            break;
        }
        pos += n as u64;
        if !oversize && piece.len() + n > cap as usize {
            oversize = true;
            piece = Vec::new();
        }
        if !oversize {
            piece.extend_from_slice(&line);
        }
        let blank = trim_eol(&line).iter().all(u8::is_ascii_whitespace) && line.ends_with(b"\n");
        if source.split_bytes > 0 && blank && pos - piece_start >= source.split_bytes {
            emit(&mut piece, piece_start, oversize, records)?;
            piece_start = pos;
            oversize = false;
        }
    }
    if pos > piece_start || pos == 0 {
        emit(&mut piece, piece_start, oversize, records)?;
    }
    Ok(())
}

/// Consumes the rest of a line (through its `\n`); returns the bytes skipped.
pub(crate) fn skip_line(reader: &mut dyn BufRead) -> io::Result<u64> {
    let mut skipped = 0u64;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(skipped);
        }
        match memchr::memchr(b'\n', buf) {
            Some(i) => {
                reader.consume(i + 1);
                return Ok(skipped + i as u64 + 1);
            }
            None => {
                let n = buf.len();
                reader.consume(n);
                skipped += n as u64;
            }
        }
    }
}

/// Parquet from any tool: one document per row; `offset` is the row number.
pub(super) fn read_parquet(
    file: &InputFile,
    source: &SourceConfig,
    cfg: &IngestConfig,
    sink: &mut UnitSink,
    records: &mut u64,
) -> Result<(), StageError> {
    use shards::arrow::array::{Array, AsArray};
    let src = shards::parquet_io::ParquetSource::open_foreign(&file.loc)?;
    let has = |c: &str| src.schema().index_of(c).is_ok();
    if !has(&source.text_field) {
        return Err(StageError::Input {
            at: At::file(file.loc.to_string()),
            msg: format!("no column `{}`\nhint: set text_field for source `{}`", source.text_field, source.name),
        });
    }
    let with_url = has(&source.url_field);
    let columns: Vec<&str> =
        if with_url { vec![&source.text_field, &source.url_field] } else { vec![&source.text_field] };
    let as_utf8 = |a: &shards::arrow::array::ArrayRef| -> Result<shards::arrow::array::ArrayRef, StageError> {
        shards::arrow::compute::cast(a, &DataType::Utf8).map_err(|source| {
            StageError::Shard(shards::ShardError::Arrow { at: At::file(file.loc.to_string()), source })
        })
    };
    let mut row = 0u64;
    for batch in src.batches(Some(&columns), 4096)? {
        let b = batch?;
        let text = as_utf8(b.column(0))?;
        let text = text.as_string::<i32>();
        let url = if with_url { Some(as_utf8(b.column(1))?) } else { None };
        let url = url.as_ref().map(|u| u.as_string::<i32>());
        for i in 0..b.num_rows() {
            *records += 1;
            if text.is_null(i) {
                sink.reject(file, row, "missing_text", format!("null `{}`", source.text_field))?;
            } else {
                let u = url.filter(|u| u.is_valid(i)).map(|u| u.value(i).to_string());
                admit(text.value(i).to_string(), u, file, row, cfg, sink)?;
            }
            row += 1;
        }
    }
    Ok(())
}

pub(super) fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}
