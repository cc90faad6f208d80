//! `ingest`: Common Crawl WARC/WET, JSON lines (plain, gzip, zstd) and one-document-per-file
//! text folders, into document shards. The WARC format lives in `warc`, HTTP and HTML in
//! `html`; this module turns records into documents and ledger entries.
//!
//! Document ids are 32 hex digits of xxh3-128. For WARC/WET records: of the capture's record
//! id (`WARC-Record-ID` of a response, `WARC-Refers-To` of a WET conversion, which names that
//! same response), so a page has the same id whether it comes from the WARC or the WET. For
//! other inputs: of `source \0 path-within-source \0 byte-offset`, where the offset is that of
//! the record in the decompressed stream. Both are stable across runs, machines and slicings.
//! Columns `file` and `offset` keep the provenance (for WARC, `offset` is the compressed offset
//! of the record's gzip member, as in the Common Crawl index), so any document can be traced
//! to its bytes.

use std::io::{self, BufRead, BufReader, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use shards::arrow::array::{ArrayRef, StringArray, UInt64Array};
use shards::arrow::datatypes::{DataType, Field, SchemaRef};
use shards::{
    At, Doc, DocWriter, FileEntry, LedgerEntry, LedgerWriter, Loc, Manifest, WriteOptions, doc_batch, doc_schema,
};
use xxhash_rust::xxh3::xxh3_128;

use crate::core::error::StageError;
use crate::core::slice::TaskSlice;
use crate::core::stage::{Stage, TaskReport, UnitCtx};
use crate::formats::{codec, html, jsonl, warc};
use crate::steps::{Outcome, Produces, Shape, Step, StepCtx};
use shards::env;

/// Stage name.
/// `ingest`: curated and pre-extracted corpora into document shards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    pub sources: Vec<SourceConfig>,
    /// Documents with fewer whitespace-separated words go to the ledger (`too_short`).
    /// Empty and whitespace-only documents always do (`empty`).
    #[serde(default)]
    pub min_words: usize,
    /// Input files of one source are packed into units of about this many bytes; a unit
    /// is the smallest piece of work and becomes one output shard (bytes).
    #[serde(default = "default_unit_bytes")]
    pub unit_bytes: u64,
    /// Parquet row-group size in bytes of buffered data; bounds writer memory.
    #[serde(default = "default_row_group_bytes")]
    pub row_group_bytes: usize,
    /// Fail on the first bad record instead of writing it to the ledger.
    #[serde(default)]
    pub strict: bool,
    /// Documents longer than this (bytes of UTF-8) go to the ledger (`too_large`); bounds the
    /// memory one record can take (a line, a text file or piece, a page).
    #[serde(default = "default_max_doc_bytes")]
    pub max_doc_bytes: u64,
    /// WebText-style positives: crawled pages at URLs the `reddit` stage selected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webtext: Option<WebtextConfig>,
}

/// `[ingest.webtext]`: documents of the `from` sources whose normalized URL is among the
/// `reddit` stage's selected links are written with source `source` instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebtextConfig {
    /// The `reddit` stage output directory (default: `{run.out}/reddit`).
    #[serde(default)]
    pub urls: Option<String>,
    /// Sources whose documents are matched (crawl sources).
    pub from: Vec<String>,
    /// Source name given to matched documents.
    #[serde(default = "default_webtext_source")]
    pub source: String,
}

fn default_webtext_source() -> String {
    "webtext".into()
}

fn default_max_doc_bytes() -> u64 {
    128 << 20
}
fn default_unit_bytes() -> u64 {
    256 << 20
}
fn default_row_group_bytes() -> usize {
    64 << 20
}

/// One input corpus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Source name written into every document (`common_crawl`, `books1`, `wikipedia`, ...).
    pub name: String,
    /// Files, folders (walked recursively) or `*`/`?` patterns in the last path component.
    pub paths: Vec<String>,
    #[serde(default)]
    pub format: InputFormat,
    /// JSON field (or Parquet column) holding the text; dotted paths reach into JSON objects.
    #[serde(default = "default_text_field")]
    pub text_field: String,
    /// JSON field (or Parquet column) holding the URL, if any (`url`, `metadata.url`).
    #[serde(default = "default_url_field")]
    pub url_field: String,
    /// For one-document-per-file text: files longer than this many bytes are split into
    /// documents at the first paragraph break (a blank line) after every `split_bytes`.
    /// 0 keeps every file whole (a book is one document, as in GPT-3's book corpora).
    #[serde(default)]
    pub split_bytes: u64,
}

fn default_text_field() -> String {
    "text".into()
}
fn default_url_field() -> String {
    "url".into()
}

/// How to read a source's files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputFormat {
    /// By extension: `.jsonl`/`.json`/`.ndjson` are JSON lines, `.txt`/`.text`/`.md` are
    /// one document per file (any of them may end in `.gz` or `.zst`); `.warc`, `.wet`,
    /// `.arc` (optionally `.gz`) are WARC; `.parquet` is Parquet. Other files in a folder are
    /// skipped and counted (`skipped_files`).
    #[default]
    Auto,
    /// JSON lines: one object per line.
    Jsonl,
    /// One document per file.
    Text,
    /// WARC (`.warc`, `.warc.gz`) and WET (`.wet`, `.warc.wet.gz`) files: `conversion`
    /// records are documents as they are, HTML `response` records are extracted to text.
    Warc,
    /// Parquet files from any tool: one document per row, text in the `text_field` column.
    Parquet,
}

mod crawl;
mod readers;
mod sink;
mod units;

use crawl::*;
pub(crate) use readers::skip_line;
use readers::*;
use sink::*;
pub use units::{InputFile, input_units};

pub const STAGE: &str = "ingest";

/// `ingest`: every source of the recipe into document shards.
pub static STEP: Step = Step {
    name: STAGE,
    table: "ingest",
    input: None,
    shape: Shape::Sliced,
    produces: Produces::Documents,
    about: "read Common Crawl WARC/WET and curated corpora (JSON lines, text, Parquet) into document shards",
    run: step,
};

/// Runs ingest with the `reddit` step's URLs when the recipe asks for WebText.
fn step(ctx: &StepCtx) -> Result<Outcome, StageError> {
    let cfg = &ctx.recipe.ingest;
    let webtext_dir = match &cfg.webtext {
        Some(w) => Some(match &w.urls {
            Some(u) => Loc::parse(u)?,
            None => ctx.dir(crate::steps::reddit::STEP.name),
        }),
        None => None,
    };
    let rep = run(cfg, &ctx.dir(STAGE), ctx.slice, webtext_dir.as_ref())?;
    Ok(Outcome::units(rep, "documents", "kept"))
}
/// Documents buffered before a batch goes to the writer (also bounded by [`BATCH_BYTES`]).
const BATCH_DOCS: usize = 4096;
/// Text bytes buffered before a batch goes to the writer.
const BATCH_BYTES: usize = 8 << 20;

/// The columns `ingest` adds to the shared document columns.
pub fn schema() -> SchemaRef {
    doc_schema(vec![
        Field::new("file", DataType::Utf8, false),
        Field::new("offset", DataType::UInt64, false),
        Field::new("date", DataType::Utf8, true),
        Field::new("language", DataType::Utf8, true),
    ])
}

/// Per-document provenance beyond the shared columns.
#[derive(Debug, Clone, Default)]
struct Meta {
    /// `WARC-Date`, as written.
    date: Option<String>,
    /// `WARC-Identified-Content-Language` (ISO 639-3 codes, comma-separated).
    language: Option<String>,
}

/// The WebText join: matched documents of `from` sources are renamed to `source`.
struct Webtext {
    keys: std::collections::HashSet<u64>,
    from: Vec<String>,
    source: String,
}

/// Runs `ingest` for one task slice. `webtext_dir` is the `reddit` stage output to match
/// crawled pages against, when the recipe asks for WebText (`[ingest.webtext]`).
pub fn run(
    cfg: &IngestConfig,
    out: &Loc,
    slice: TaskSlice,
    webtext_dir: Option<&Loc>,
) -> Result<TaskReport, StageError> {
    let (units, skipped_files) = input_units(cfg)?;
    let mut config = serde_json::to_value(cfg).map_err(|e| StageError::Recipe(e.to_string()))?;
    let webtext = match (&cfg.webtext, webtext_dir) {
        (Some(w), Some(dir)) => {
            let (keys, fingerprint) = crate::steps::reddit::load_url_set(dir)?;
            tracing::info!(urls = keys.len(), "WebText URL set loaded");
            // The URLs are an input: a new reddit output redoes ingest.
            config["webtext_urls_fingerprint"] = serde_json::Value::String(fingerprint);
            Some(Arc::new(Webtext { keys, from: w.from.clone(), source: w.source.clone() }))
        }
        (Some(_), None) => {
            return Err(StageError::Recipe("ingest.webtext is set but no reddit output was given".into()));
        }
        _ => None,
    };
    // Units are fingerprinted one by one (see `core::stage`): each names its files and the
    // settings of its own source, and the stage config holds the rest, so that a new source
    // (a new crawl dump) or new files at the end of one redo only their own units.
    let mut source_of: std::collections::BTreeMap<&str, Vec<serde_json::Value>> = Default::default();
    for s in &cfg.sources {
        let mut v = serde_json::to_value(s).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.remove("paths");
        }
        source_of.entry(s.name.as_str()).or_default().push(v);
    }
    if let Some(o) = config.as_object_mut() {
        o.remove("sources");
    }
    let plan_json = units
        .iter()
        .map(|files| {
            let source = files.first().map(|f| source_of.get(f.source.as_str()).cloned().unwrap_or_default());
            let files: Vec<serde_json::Value> =
                files.iter().map(|f| serde_json::json!([f.source, f.loc.to_string(), f.bytes, f.modified])).collect();
            serde_json::json!({ "source": source, "files": files })
        })
        .collect();
    let stage = Stage {
        name: STAGE.to_string(),
        dir: out.clone(),
        config,
        units: plan_json,
        unit_bytes: units.iter().map(|u| u.iter().map(|f| f.bytes).sum()).collect(),
    };
    tracing::info!(units = units.len(), skipped_files, %slice, "ingest plan");
    let abort_after: Option<u64> = std::env::var(env::TEST_ABORT_AFTER_DOCS).ok().and_then(|v| v.parse().ok());
    let written = Arc::new(AtomicU64::new(0));
    stage.run(slice, |ctx| {
        let mut m =
            ingest_unit(cfg, &units[ctx.unit], ctx, abort_after.map(|n| (n, written.clone())), webtext.clone())?;
        if ctx.unit == 0 && skipped_files > 0 {
            m.count("skipped_files", skipped_files);
        }
        Ok(m)
    })
}

/// Ingests `paths` as one source `name` (default settings but `split_bytes`) into `out`, the
/// whole stage in this process (skipped where up to date), and returns its document shards:
/// how evaluation and reference sets outside a recipe's sources are read, with a ledger like any.
pub fn ingest_set(name: &str, paths: &[String], split_bytes: u64, out: &Loc) -> Result<Vec<Loc>, StageError> {
    let source = serde_json::json!({ "name": name, "paths": paths, "split_bytes": split_bytes });
    let cfg: IngestConfig = serde_json::from_value(serde_json::json!({ "sources": [source] }))
        .map_err(|e| StageError::Recipe(format!("set {name}: {e}")))?;
    run(&cfg, out, TaskSlice::ALL, None)?;
    let m = shards::Manifest::read(&out.join(crate::MANIFEST))?;
    Ok(m.outputs.iter().map(|f| out.join(&f.path)).collect())
}

/// The stable id of a WARC capture, from its record id.
pub fn capture_id(record_id: &str) -> String {
    format!("{:032x}", xxh3_128(record_id.trim().as_bytes()))
}

/// The stable id of the record at `offset` of `rel` in `source`.
pub fn doc_id(source: &str, rel: &str, offset: u64) -> String {
    let key = format!("{source}\0{rel}\0{offset}");
    format!("{:032x}", xxh3_128(key.as_bytes()))
}

fn ingest_unit(
    cfg: &IngestConfig,
    files: &[InputFile],
    ctx: &UnitCtx,
    abort: Option<(u64, Arc<AtomicU64>)>,
    webtext: Option<Arc<Webtext>>,
) -> Result<Manifest, StageError> {
    let start = Instant::now();
    let (shard_loc, shard_name) = ctx.shard();
    let (ledger_loc, ledger_name) = ctx.ledger();
    let opts = WriteOptions { row_group_bytes: cfg.row_group_bytes, ..WriteOptions::default() };
    let schema = schema();
    let mut sink = UnitSink {
        docs: DocWriter::create(&shard_loc, schema.clone(), opts)?,
        ledger: LedgerWriter::create(&ledger_loc, opts)?,
        schema,
        batch: Vec::new(),
        files: Vec::new(),
        offsets: Vec::new(),
        metas: Vec::new(),
        batch_bytes: 0,
        manifest: ctx.manifest(),
        strict: cfg.strict,
        abort,
        webtext,
    };
    for file in files {
        let entry = ingest_file(cfg, file, &mut sink)?;
        ctx.progress.inc(entry.bytes);
        sink.manifest.inputs.push(entry);
    }
    sink.flush()?;
    let mut m = sink.manifest;
    let rows = sink.docs.finish()?;
    let ledger_rows = sink.ledger.finish()?;
    m.outputs.push(FileEntry::describe(&shard_loc, shard_name, rows)?);
    m.ledgers.push(FileEntry::describe(&ledger_loc, ledger_name, ledger_rows)?);
    m.timings.insert("ingest_seconds".into(), start.elapsed().as_secs_f64());
    Ok(m)
}

fn ingest_file(cfg: &IngestConfig, file: &InputFile, sink: &mut UnitSink) -> Result<FileEntry, StageError> {
    let path = file.loc.to_string();
    let source = cfg
        .sources
        .iter()
        .find(|s| s.name == file.source)
        .ok_or_else(|| StageError::Recipe(format!("unknown source {}", file.source)))?;
    let mut records = 0u64;
    if file.format == InputFormat::Parquet {
        read_parquet(file, source, cfg, sink, &mut records)?;
        return Ok(FileEntry::describe(&file.loc, path, records)?);
    }
    let mut raw = codec::Tally::new(file.loc.open()?);
    if file.format == InputFormat::Warc {
        let mut counted = warc::Counted::new(BufReader::with_capacity(warc::INPUT_BUFFER, raw));
        read_warc(&mut counted, file, cfg, sink, &mut records)?;
        let (bytes, xxh3) = counted.into_inner().into_inner().finish();
        return Ok(FileEntry { path, rows: records, bytes, xxh3 });
    }
    let outcome = {
        match codec::decompress(BufReader::with_capacity(1 << 16, &mut raw), codec::DEFAULT_ZSTD_WINDOW_LOG) {
            Ok(mut reader) => match file.format {
                InputFormat::Text => read_text(&mut reader, file, source, cfg, sink, &mut records),
                InputFormat::Jsonl | InputFormat::Auto => {
                    read_jsonl(&mut reader, file, source, cfg, sink, &mut records)
                }
                InputFormat::Warc | InputFormat::Parquet => unreachable!("WARC and Parquet files are read above"),
            },
            Err(e) => Err(ReadFailure::Io(e, 0)),
        }
    };
    match outcome {
        Ok(()) => {}
        Err(ReadFailure::Stage(e)) => return Err(e),
        Err(ReadFailure::Io(e, _)) if raw.failed => {
            // The file itself could not be read (permissions, I/O error): not a property of
            // the data, so the run stops rather than ledgering the rest of the file.
            return Err(StageError::Input { at: At::byte(path, raw.bytes), msg: format!("cannot read: {e}") });
        }
        Err(ReadFailure::Io(e, offset)) => {
            // The stream broke (truncated or corrupt compression, unreadable file): what was
            // read before stays; the unreadable rest is one ledger entry at the break.
            let detail =
                format!("input unreadable from decompressed byte {offset} (compressed byte ~{}): {e}", raw.bytes);
            tracing::warn!(file = %path, "{detail}");
            let size = file.loc.size()?;
            sink.manifest.count("input_streams_broken", 1);
            sink.manifest.count("input_bytes_unread", size.saturating_sub(raw.bytes));
            records += 1;
            sink.reject(file, offset, "corrupt_input", detail)?;
        }
    }
    let (bytes, xxh3) = raw.finish();
    Ok(FileEntry { path, rows: records, bytes, xxh3 })
}

#[cfg(test)]
mod tests {
    use super::units::{detect_format, glob_match, split_pattern};
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*.jsonl.gz", "a.jsonl.gz"));
        assert!(glob_match("part-??.txt", "part-01.txt"));
        assert!(!glob_match("*.jsonl", "a.jsonl.gz"));
        assert!(!glob_match("*", "sub/x.txt"), "* must not cross folders");
        assert!(!glob_match("*.gz", "sub/x.gz"));
        assert!(glob_match("sub/*.gz", "sub/x.gz"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert_eq!(split_pattern("data/web/*.gz"), ("data/web".into(), Some("*.gz".into())));
        assert_eq!(split_pattern("data/web"), ("data/web".into(), None));
    }

    #[test]
    fn formats_by_extension() {
        assert_eq!(detect_format("a.jsonl.gz"), Some(InputFormat::Jsonl));
        assert_eq!(detect_format("A.JSON.ZST"), Some(InputFormat::Jsonl));
        assert_eq!(detect_format("book.txt"), Some(InputFormat::Text));
        assert_eq!(detect_format("README"), None);
        assert_eq!(detect_format("x.parquet"), Some(InputFormat::Parquet));
        assert_eq!(detect_format("CC-1.warc.wet.gz"), Some(InputFormat::Warc));
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        assert_eq!(doc_id("web", "a.jsonl", 0), doc_id("web", "a.jsonl", 0));
        assert_ne!(doc_id("web", "a.jsonl", 0), doc_id("web", "a.jsonl", 1));
        assert_ne!(doc_id("web", "a.jsonl", 0), doc_id("books", "a.jsonl", 0));
        assert_eq!(doc_id("web", "a.jsonl", 0).len(), 32);
    }

    #[test]
    fn word_counts_stop_at_the_limit() {
        assert_eq!(word_count("a b\u{3000}c\td", 10), 4);
        assert_eq!(word_count("a b c d e f", 3), 3);
        assert_eq!(word_count("   ", 5), 0);
    }
}
