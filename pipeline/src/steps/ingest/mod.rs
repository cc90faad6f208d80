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
use crate::formats::{codec, html, warc};
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

/// One input file in the plan.
#[derive(Debug, Clone)]
pub struct InputFile {
    pub source: String,
    pub loc: Loc,
    /// Path within the source (relative to the configured path), used in ids.
    pub rel: String,
    pub bytes: u64,
    /// Modification time (ns since the epoch) where the storage has one; in the fingerprint,
    /// so an input rewritten in place redoes its unit.
    pub modified: Option<i64>,
    pub format: InputFormat,
}

/// Expands the sources into the plan: units of input files, deterministic for given inputs.
pub fn plan(cfg: &IngestConfig) -> Result<(Vec<Vec<InputFile>>, u64), StageError> {
    let mut units: Vec<Vec<InputFile>> = Vec::new();
    let mut skipped = 0u64;
    for source in &cfg.sources {
        let mut files = Vec::new();
        for path in &source.paths {
            let (found, skip) = expand(source, path)?;
            files.extend(found);
            skipped += skip;
        }
        // Overlapping paths (a folder and a pattern inside it) name a file once; two different
        // files with the same path within the source would get the same document ids.
        let mut seen_locs = std::collections::BTreeSet::new();
        files.retain(|f| seen_locs.insert(f.loc.to_string()));
        let mut rels = std::collections::BTreeMap::new();
        for f in &files {
            if let Some(other) = rels.insert(f.rel.clone(), f.loc.to_string()) {
                return Err(StageError::Input {
                    at: At::file(f.loc.to_string()),
                    msg: format!(
                        "source `{}` has two files at path `{}` (also {other}); document ids would collide\nhint: rename one, or list them under separate sources",
                        source.name, f.rel
                    ),
                });
            }
        }
        if files.is_empty() {
            return Err(StageError::Input {
                at: At::file(source.paths.join(", ")),
                msg: format!(
                    "source `{}` matched no input files\nhint: check the paths in [[ingest.sources]]",
                    source.name
                ),
            });
        }
        // Pack consecutive files of one source into units of about `unit_bytes`.
        let mut current: Vec<InputFile> = Vec::new();
        let mut current_bytes = 0u64;
        for f in files {
            if !current.is_empty() && current_bytes + f.bytes > cfg.unit_bytes {
                units.push(std::mem::take(&mut current));
                current_bytes = 0;
            }
            current_bytes += f.bytes;
            current.push(f);
        }
        if !current.is_empty() {
            units.push(current);
        }
    }
    Ok((units, skipped))
}

fn expand(source: &SourceConfig, path: &str) -> Result<(Vec<InputFile>, u64), StageError> {
    let (base, pattern) = split_pattern(path);
    let root = Loc::parse(&base)?;
    let listed = if pattern.is_none() && root.exists()? { vec![root.clone()] } else { root.list()? };
    if listed.is_empty() {
        return Err(StageError::Input { at: At::file(path), msg: "no such file or folder, or it is empty".into() });
    }
    let root_str = root.to_string();
    let mut out = Vec::new();
    let mut skipped = 0;
    for loc in listed {
        let full = loc.to_string();
        let rel = full.strip_prefix(&root_str).map(|r| r.trim_start_matches('/')).filter(|r| !r.is_empty());
        let rel = rel.map(str::to_string).unwrap_or_else(|| loc.file_name());
        if let Some(p) = &pattern
            && !glob_match(p, &rel)
        {
            continue;
        }
        let format = match source.format {
            InputFormat::Auto => match detect_format(&loc.file_name()) {
                Some(f) => f,
                None => {
                    tracing::warn!(file = %loc, "skipping a file whose extension names no input format");
                    skipped += 1;
                    continue;
                }
            },
            f => f,
        };
        let (bytes, modified) = loc.stat()?;
        out.push(InputFile { source: source.name.clone(), bytes, modified, loc, rel, format });
    }
    Ok((out, skipped))
}

/// Splits `dir/*.jsonl.gz` into (`dir`, Some(`*.jsonl.gz`)); paths without wildcards are whole.
fn split_pattern(path: &str) -> (String, Option<String>) {
    match path.rsplit_once('/') {
        Some((dir, last)) if last.contains(['*', '?']) => (dir.to_string(), Some(last.to_string())),
        None if path.contains(['*', '?']) => (".".to_string(), Some(path.to_string())),
        _ => (path.to_string(), None),
    }
}

/// Shell-style match of `*` and `?` against a file's relative path; neither crosses `/`.
fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None; // (pattern index after '*', name index it matched up to)
    while ni < n.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi + 1, ni));
            pi += 1;
        } else if pi < p.len() && (p[pi] == n[ni] || (p[pi] == '?' && n[ni] != '/')) {
            pi += 1;
            ni += 1;
        } else if let Some((after, matched)) = star
            && n[matched] != '/'
        {
            star = Some((after, matched + 1));
            pi = after;
            ni = matched + 1;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

fn detect_format(name: &str) -> Option<InputFormat> {
    let name = name.to_ascii_lowercase();
    let stem = [".gz", ".zst", ".zstd", ".xz", ".bz2"].iter().find_map(|c| name.strip_suffix(c)).unwrap_or(&name);
    let ext = stem.rsplit_once('.').map(|(_, e)| e)?;
    match ext {
        "jsonl" | "json" | "ndjson" => Some(InputFormat::Jsonl),
        "txt" | "text" | "md" => Some(InputFormat::Text),
        "warc" | "wet" | "arc" => Some(InputFormat::Warc),
        "parquet" => Some(InputFormat::Parquet),
        _ => None,
    }
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
    let (units, skipped_files) = plan(cfg)?;
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
    let plan_json = units
        .iter()
        .map(|files| {
            serde_json::Value::Array(
                files.iter().map(|f| serde_json::json!([f.source, f.loc.to_string(), f.bytes, f.modified])).collect(),
            )
        })
        .collect();
    let stage = Stage {
        name: STAGE.to_string(),
        dir: out.clone(),
        config,
        plan: plan_json,
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

/// Accumulates one unit's documents and ledger entries.
struct UnitSink {
    schema: SchemaRef,
    docs: DocWriter,
    ledger: LedgerWriter,
    batch: Vec<Doc>,
    files: Vec<String>,
    offsets: Vec<u64>,
    metas: Vec<Meta>,
    batch_bytes: usize,
    manifest: Manifest,
    strict: bool,
    abort: Option<(u64, Arc<AtomicU64>)>,
    webtext: Option<Arc<Webtext>>,
}

impl UnitSink {
    fn keep(&mut self, mut doc: Doc, file: &str, offset: u64, meta: Meta) -> Result<(), StageError> {
        if let Some(w) = &self.webtext
            && w.from.contains(&doc.source)
            && let Some(key) = doc.url.as_deref().and_then(crate::text::urls::normalize)
            && w.keys.contains(&crate::text::urls::key_hash(&key))
        {
            doc.source = w.source.clone();
            self.manifest.count("webtext_matched", 1);
        }
        self.batch_bytes += doc.text.len();
        self.batch.push(doc);
        self.files.push(file.to_string());
        self.offsets.push(offset);
        self.metas.push(meta);
        self.manifest.accounting.docs_in += 1;
        self.manifest.accounting.docs_out += 1;
        if self.batch.len() >= BATCH_DOCS || self.batch_bytes >= BATCH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Ledgers a record that is bad input (fails the run under `strict`).
    fn reject(&mut self, file: &InputFile, offset: u64, reason: &str, detail: String) -> Result<(), StageError> {
        let id = doc_id(&file.source, &file.rel, offset);
        self.reject_id(file, id, offset, reason, detail)
    }

    /// [`Self::reject`] for a record whose id is known (WARC records).
    fn reject_id(
        &mut self,
        file: &InputFile,
        id: String,
        offset: u64,
        reason: &str,
        detail: String,
    ) -> Result<(), StageError> {
        if self.strict {
            return Err(StageError::Input {
                at: At::byte(file.loc.to_string(), offset),
                msg: format!("{reason}: {detail}\nhint: without `strict` such records go to the ledger"),
            });
        }
        self.filter_id(file, id, offset, reason, detail)
    }

    /// Ledgers a well-formed record that a rule removes (never an error).
    fn filter_id(
        &mut self,
        file: &InputFile,
        id: String,
        offset: u64,
        reason: &str,
        detail: String,
    ) -> Result<(), StageError> {
        self.manifest.accounting.docs_in += 1;
        self.manifest.accounting.docs_ledger += 1;
        self.manifest.count(reason, 1);
        self.ledger.push(LedgerEntry {
            id,
            source: file.source.clone(),
            stage: STAGE.to_string(),
            reason: reason.to_string(),
            detail: Some(detail),
            location: Some(format!("{}@{offset}", file.rel)),
            ..LedgerEntry::default()
        })?;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StageError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let extra: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(self.files.iter())),
            Arc::new(UInt64Array::from_iter_values(self.offsets.iter().copied())),
            Arc::new(StringArray::from_iter(self.metas.iter().map(|m| m.date.as_deref()))),
            Arc::new(StringArray::from_iter(self.metas.iter().map(|m| m.language.as_deref()))),
        ];
        let batch = doc_batch(&self.schema, &self.batch, extra)?;
        self.docs.write(&batch)?;
        if let Some((limit, written)) = &self.abort {
            let before = written.fetch_add(self.batch.len() as u64, Ordering::SeqCst);
            if before + self.batch.len() as u64 >= *limit {
                tracing::error!("{} reached: aborting as a kill would", env::TEST_ABORT_AFTER_DOCS);
                std::process::abort();
            }
        }
        self.batch.clear();
        self.files.clear();
        self.offsets.clear();
        self.metas.clear();
        self.batch_bytes = 0;
        Ok(())
    }
}

/// The stable id of a WARC capture, from its record id.
pub fn capture_id(record_id: &str) -> String {
    format!("{:032x}", xxh3_128(record_id.trim().as_bytes()))
}

/// Reads one WARC/WET file: documents from `conversion` and HTML `response` records,
/// ledger entries for everything that could have been a document and is not.
fn read_warc<R: BufRead>(
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
fn check_not_arc(head: &[u8], path: &str) -> Result<(), StageError> {
    if head.starts_with(b"filedesc://") {
        return Err(StageError::Input {
            at: At::byte(path, 0),
            msg: "a legacy ARC file, not WARC\nhint: convert it to WARC first (e.g. warcio's `arc2warc`)".into(),
        });
    }
    Ok(())
}

/// WARC record types that are not documents, counted by name; anything else is `warc_other`.
const NON_DOCUMENT_TYPES: &[&str] = &["warcinfo", "request", "metadata", "revisit", "resource", "continuation"];

fn warc_item(
    item: warc::WarcItem,
    file: &InputFile,
    cfg: &IngestConfig,
    sink: &mut UnitSink,
    records: &mut u64,
) -> Result<(), StageError> {
    {
        match item {
            warc::WarcItem::Skipped { bytes, .. } => sink.manifest.count("warc_bytes_skipped_after_record", bytes),
            warc::WarcItem::Bad { offset, stream_offset, reason, detail } => {
                *records += 1;
                // Ids from the decompressed position: members can hold several records.
                let id = doc_id(&file.source, &file.rel, stream_offset);
                sink.reject_id(file, id, offset, reason, detail)?;
            }
            warc::WarcItem::Record(rec) => {
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

fn warc_record(
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
        let mut counted = warc::Counted::new(BufReader::with_capacity(1 << 16, raw));
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
            records += 1;
            sink.reject(file, offset, "corrupt_input", detail)?;
        }
    }
    let (bytes, xxh3) = raw.finish();
    Ok(FileEntry { path, rows: records, bytes, xxh3 })
}

enum ReadFailure {
    /// The input stream failed at this decompressed offset.
    Io(io::Error, u64),
    Stage(StageError),
}

impl From<StageError> for ReadFailure {
    fn from(e: StageError) -> Self {
        ReadFailure::Stage(e)
    }
}

/// Whitespace-separated words, counting no further than `limit` (the rule only needs to
/// know whether a text reaches `min_words`, and long documents are the common case).
fn word_count(text: &str, limit: usize) -> usize {
    text.split_whitespace().take(limit).count()
}

/// Applies the rules every ingested text passes: not empty, at least `min_words` words.
fn admit(
    text: String,
    url: Option<String>,
    file: &InputFile,
    offset: u64,
    cfg: &IngestConfig,
    sink: &mut UnitSink,
) -> Result<(), StageError> {
    let id = doc_id(&file.source, &file.rel, offset);
    admit_id(Doc { id, source: file.source.clone(), url, text }, Meta::default(), file, offset, cfg, sink)
}

fn admit_id(
    doc: Doc,
    meta: Meta,
    file: &InputFile,
    offset: u64,
    cfg: &IngestConfig,
    sink: &mut UnitSink,
) -> Result<(), StageError> {
    if doc.text.len() as u64 > cfg.max_doc_bytes {
        return sink.filter_id(
            file,
            doc.id,
            offset,
            "too_large",
            format!("{} bytes > max_doc_bytes {}", doc.text.len(), cfg.max_doc_bytes),
        );
    }
    if doc.text.trim_start().is_empty() {
        return sink.filter_id(file, doc.id, offset, "empty", format!("{} bytes of whitespace", doc.text.len()));
    }
    let words = word_count(&doc.text, cfg.min_words);
    if words < cfg.min_words {
        return sink.filter_id(
            file,
            doc.id,
            offset,
            "too_short",
            format!("{words} words < min_words {}", cfg.min_words),
        );
    }
    sink.keep(doc, &file.rel, offset, meta)
}

fn read_jsonl(
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
        let mut value: serde_json::Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                sink.reject(file, at, "malformed_json", e.to_string())?;
                continue;
            }
        };
        let url = field(&value, &source.url_field).and_then(|v| v.as_str()).map(str::to_string);
        // Take the text out of the parsed record rather than copying it.
        let Some(serde_json::Value::String(doc_text)) = field_mut(&mut value, &source.text_field).map(std::mem::take)
        else {
            sink.reject(file, at, "missing_text", format!("no string field `{}`", source.text_field))?;
            continue;
        };
        admit(doc_text, url, file, at, cfg, sink)?;
    }
}

/// One document per file, or (with `split_bytes`) pieces that end at the first paragraph
/// break (a blank line, LF or CRLF) after every `split_bytes`. Streams: memory stays at one
/// piece, and a piece over `max_doc_bytes` is ledgered (`too_large`) without being held.
fn read_text(
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
fn skip_line(reader: &mut dyn BufRead) -> io::Result<u64> {
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
fn read_parquet(
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

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A dotted-path field of a JSON object.
fn field<'a>(v: &'a serde_json::Value, path: &str) -> Option<&'a serde_json::Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

fn field_mut<'a>(v: &'a mut serde_json::Value, path: &str) -> Option<&'a mut serde_json::Value> {
    path.split('.').try_fold(v, |v, k| v.get_mut(k))
}

#[cfg(test)]
mod tests {
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

    #[test]
    fn dotted_fields() {
        let v: serde_json::Value = serde_json::json!({"text": "t", "metadata": {"url": "u"}});
        assert_eq!(field(&v, "metadata.url").and_then(|v| v.as_str()), Some("u"));
        assert!(field(&v, "metadata.nope").is_none());
    }
}
