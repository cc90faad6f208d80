//! `grist decontaminate`: GPT-3 Appendix C's rule against benchmark test sets.
//!
//! Grams are `n` (13) consecutive words, a word being a whitespace-delimited token lowercased
//! with every character that is not alphanumeric removed (tokens left empty are skipped).
//! A training document's grams that occur in a benchmark are cut out together with `window`
//! (200) characters on each side; what remains is split into pieces, pieces shorter than
//! `min_piece` (200) characters are dropped, and a document split into more than `max_pieces`
//! (10) pieces is dropped entirely. Grams found in more than `max_doc_frequency` (10) training
//! documents are boilerplate and ignored. The pieces of a cut document stay one document,
//! joined by a blank line, so accounting stays per document; every cut is recorded in a side
//! table (`part-N.side-cuts.parquet`: id, benchmark, gram, character span).
//!
//! Two sliced stages: `decontaminate_hits` counts, per input shard, the training documents
//! containing each benchmark gram; `decontaminate` sums those counts, then cuts. Memory: the
//! benchmark grams as 8-byte hashes (about 16 bytes each in the map) plus one document.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::BufRead;
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use shards::arrow::array::{ArrayRef, BooleanArray, StringArray, UInt64Array};
use shards::arrow::compute::filter_record_batch;
use shards::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use shards::arrow::record_batch::RecordBatch;
use shards::parquet_io::{ParquetSink, ParquetSource};
use shards::{At, DocReader, DocWriter, LedgerEntry, LedgerWriter, Loc, Manifest, WriteOptions, str_col};
use xxhash_rust::xxh3::xxh3_64;

use crate::core::error::{StageError, arrow_err};
use crate::core::slice::TaskSlice;
use crate::core::stage::{MANIFEST, Stage, TaskReport};
use crate::formats::codec::decompress;
use crate::steps::{Outcome as StepOutcome, Produces, Shape, Step, need};

/// The cutting stage's name and directory.
pub const STAGE: &str = "decontaminate";
/// The counting stage's name and directory.
pub const HITS: &str = "decontaminate_hits";
/// Manifest counters of the cuts: documents with at least one cut, and gram hits per
/// benchmark (`hits_<benchmark>`). Written and read only here; see [`CleanReport`].
const DOCUMENTS_CUT: &str = "documents_cut";
const HITS_PREFIX: &str = "hits_";

/// `decontaminate_hits`: benchmark gram counts per input shard.
pub static HITS_STEP: Step = Step {
    name: HITS,
    table: "decontaminate",
    input: Some("dedup"),
    shape: Shape::Sliced,
    produces: Produces::Tables,
    about: "decontaminate, 1 of 2: count the training documents each benchmark 13-gram occurs in",
    run: |ctx| {
        let rep = count_hits(need(&ctx.recipe.decontaminate, HITS_STEP.table)?, &ctx.out, ctx.slice)?;
        Ok(StepOutcome::units(rep, "gram counts", "written"))
    },
};

/// `decontaminate`: the cuts.
pub static STEP: Step = Step {
    name: STAGE,
    table: "decontaminate",
    input: Some("dedup"),
    shape: Shape::Sliced,
    produces: Produces::Documents,
    about: "decontaminate, 2 of 2: cut benchmark 13-grams out of documents (GPT-3 Appendix C)",
    run: |ctx| {
        let rep = cut(need(&ctx.recipe.decontaminate, STEP.table)?, &ctx.out, ctx.slice)?;
        let dir = ctx.dir(STAGE);
        StepOutcome::units(rep, "documents", "kept")
            .then(|| Ok(CleanReport::read(&Manifest::read(&dir.join(MANIFEST))?)?.render()))
    },
};

/// What `decontaminate` did, from its manifest.
#[derive(Debug, Clone, Serialize)]
pub struct CleanReport {
    /// Documents with at least one benchmark passage cut out.
    pub documents_cut: u64,
    /// Documents removed (split into too many pieces, or nothing long enough left).
    pub documents_removed: u64,
    /// Benchmark gram hits in the kept text, per benchmark.
    pub gram_hits: BTreeMap<String, u64>,
}

impl CleanReport {
    /// Reads the report of a `decontaminate` manifest (an error for another stage's).
    pub fn read(m: &Manifest) -> Result<CleanReport, StageError> {
        crate::core::stage::expect_stage(m, STAGE)?;
        // Counters are sparse: one that never counted is absent, which means zero.
        Ok(CleanReport {
            documents_cut: m.counters.get(DOCUMENTS_CUT).copied().unwrap_or(0),
            documents_removed: m.accounting.docs_ledger,
            gram_hits: m
                .counters
                .iter()
                .filter_map(|(k, v)| k.strip_prefix(HITS_PREFIX).map(|b| (b.to_string(), *v)))
                .collect(),
        })
    }

    /// One line: `decontam 14 documents cut, 0 removed; benchmark gram hits: sample-bench 308`.
    pub fn render(&self) -> String {
        let hits: Vec<String> = self.gram_hits.iter().map(|(b, v)| format!("{b} {v}")).collect();
        format!(
            "decontam {} documents cut, {} removed; benchmark gram hits: {}\n",
            self.documents_cut,
            self.documents_removed,
            if hits.is_empty() { "none".to_string() } else { hits.join(", ") }
        )
    }
}
const HITS_FORMAT: &str = "decontam_hits";
const CUTS_FORMAT: &str = "decontam_cuts";

/// One benchmark: JSON-lines files and the fields whose text is the test data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Benchmark {
    pub name: String,
    pub paths: Vec<String>,
    #[serde(default = "default_fields")]
    pub fields: Vec<String>,
}

fn default_fields() -> Vec<String> {
    vec!["text".into()]
}

/// `[decontaminate]` in a recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecontamConfig {
    /// The stage whose documents are cleaned (a directory under `run.out`).
    #[serde(default = "default_input")]
    pub input: String,
    pub benchmarks: Vec<Benchmark>,
    #[serde(default = "default_n")]
    pub n: usize,
    /// Characters removed on each side of a colliding gram.
    #[serde(default = "default_200")]
    pub window: usize,
    /// Pieces shorter than this (characters) are dropped.
    #[serde(default = "default_200")]
    pub min_piece: usize,
    /// Documents split into more pieces than this are dropped.
    #[serde(default = "default_10")]
    pub max_pieces: usize,
    /// Grams in more training documents than this are ignored (boilerplate).
    #[serde(default = "default_10_docs")]
    pub max_doc_frequency: u64,
}

fn default_input() -> String {
    HITS_STEP.input.unwrap_or_default().to_string()
}
fn default_n() -> usize {
    13
}
fn default_200() -> usize {
    200
}
fn default_10() -> usize {
    10
}
fn default_10_docs() -> u64 {
    10
}

/// A word as Appendix C compares words: lowercase, alphanumeric characters only.
fn gram_word(token: &str) -> String {
    token.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

/// The words of a text with their character spans `[start, end)` in the original text.
fn words(text: &str) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    let (mut start, mut chars, mut token) = (0usize, 0usize, String::new());
    for c in text.chars() {
        if c.is_whitespace() {
            if !token.is_empty() {
                let w = gram_word(&token);
                if !w.is_empty() {
                    out.push((w, start, chars));
                }
                token.clear();
            }
            start = chars + 1;
        } else {
            token.push(c);
        }
        chars += 1;
    }
    let w = gram_word(&token);
    if !w.is_empty() {
        out.push((w, start, chars));
    }
    out
}

/// The words of a text as the matcher sees them: each word's xxh3 (8 little-endian bytes a
/// word, so a gram's hash is the xxh3 of its words' bytes) and its character span. One pass,
/// no allocation per word.
pub struct Words {
    bytes: Vec<u8>,
    spans: Vec<(usize, usize)>,
}

impl Words {
    pub fn of(text: &str) -> Words {
        let mut out = Words { bytes: Vec::with_capacity(text.len() + 8), spans: Vec::new() };
        let (mut start, mut chars, mut word) = (0usize, 0usize, String::new());
        let mut push = |word: &mut String, start: usize, end: usize| {
            if !word.is_empty() {
                out.bytes.extend_from_slice(&xxh3_64(word.as_bytes()).to_le_bytes());
                out.spans.push((start, end));
                word.clear();
            }
        };
        for c in text.chars() {
            if c.is_whitespace() {
                push(&mut word, start, chars);
                start = chars + 1;
            } else if c.is_ascii() {
                if c.is_ascii_alphanumeric() {
                    word.push(c.to_ascii_lowercase());
                }
            } else if c.is_alphanumeric() {
                word.extend(c.to_lowercase());
            }
            chars += 1;
        }
        push(&mut word, start, chars);
        out
    }
    fn len(&self) -> usize {
        self.spans.len()
    }
    /// The hash of the `n` words from word `i`.
    fn gram(&self, i: usize, n: usize) -> u64 {
        xxh3_64(&self.bytes[8 * i..8 * (i + n)])
    }
}

/// The hash of n words (as `Words::gram` computes it).
fn gram_hash(words: &[(String, usize, usize)]) -> u64 {
    let bytes: Vec<u8> = words.iter().flat_map(|w| xxh3_64(w.0.as_bytes()).to_le_bytes()).collect();
    xxh3_64(&bytes)
}

/// The benchmark grams: hash -> (benchmark index, the gram's words).
#[derive(Debug, Default)]
pub struct BenchmarkGrams {
    pub names: Vec<String>,
    pub grams: HashMap<u64, (u16, String)>,
    /// Per benchmark: items read, and items too short to have a gram.
    pub items: Vec<(u64, u64)>,
}

impl BenchmarkGrams {
    /// Reads every benchmark's files (JSON lines, any codec) into gram hashes.
    pub fn load(cfg: &DecontamConfig) -> Result<BenchmarkGrams, StageError> {
        let mut out = BenchmarkGrams::default();
        for (bi, b) in cfg.benchmarks.iter().enumerate() {
            out.names.push(b.name.clone());
            let (mut items, mut short) = (0u64, 0u64);
            for p in &b.paths {
                let loc = Loc::parse(p)?;
                let io_err = |off: u64, e: std::io::Error| StageError::Input {
                    at: At::byte(p.clone(), off),
                    msg: format!("cannot read benchmark {}: {e}", b.name),
                };
                let mut r = decompress(std::io::BufReader::new(loc.open()?), 31).map_err(|e| io_err(0, e))?;
                let (mut line, mut offset, mut no) = (Vec::new(), 0u64, 0u64);
                loop {
                    line.clear();
                    let k = r.read_until(b'\n', &mut line).map_err(|e| io_err(offset, e))?;
                    if k == 0 {
                        break;
                    }
                    no += 1;
                    let at = offset;
                    offset += k as u64;
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let v: serde_json::Value = serde_json::from_slice(&line).map_err(|e| StageError::Input {
                        at: At::byte(p.clone(), at),
                        msg: format!(
                            "benchmark {} line {no}: not JSON: {e} (offsets count decompressed bytes)",
                            b.name
                        ),
                    })?;
                    items += 1;
                    let mut any = false;
                    for f in &b.fields {
                        let Some(text) = v.get(f).and_then(|t| t.as_str()) else { continue };
                        let ws = words(text);
                        for win in ws.windows(cfg.n) {
                            any = true;
                            let gram = win.iter().map(|w| w.0.as_str()).collect::<Vec<_>>().join(" ");
                            out.grams.entry(gram_hash(win)).or_insert((bi as u16, gram));
                        }
                    }
                    short += !any as u64;
                }
            }
            out.items.push((items, short));
        }
        Ok(out)
    }

    /// The colliding grams of a document: (hash, first word index), in text order.
    fn hits(&self, ws: &Words, n: usize) -> Vec<(u64, usize)> {
        if ws.len() < n {
            return Vec::new();
        }
        (0..=ws.len() - n).map(|i| (ws.gram(i, n), i)).filter(|(h, _)| self.grams.contains_key(h)).collect()
    }
}

/// What happened to one document.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// No colliding gram (after ignoring boilerplate grams).
    Clean,
    /// Cut: the pieces kept, joined by a blank line, and the cuts (gram hash, char span).
    Cut { text: String, cuts: Vec<(u64, usize, usize)> },
    /// Removed: too many pieces, or every piece too short; the first colliding gram.
    Removed { reason: &'static str, gram: u64, pieces: usize },
}

/// Appendix C on one document, ignoring the grams in `ignore`.
pub fn clean(cfg: &DecontamConfig, bench: &BenchmarkGrams, ignore: &BTreeSet<u64>, text: &str) -> Outcome {
    let ws = Words::of(text);
    let hits: Vec<(u64, usize)> = bench.hits(&ws, cfg.n).into_iter().filter(|(h, _)| !ignore.contains(h)).collect();
    if hits.is_empty() {
        return Outcome::Clean;
    }
    let total = text.chars().count();
    // Removed character ranges, merged.
    let mut cut: Vec<(usize, usize)> = Vec::new();
    let mut cuts = Vec::with_capacity(hits.len());
    for &(h, i) in &hits {
        let (s, e) = (ws.spans[i].0, ws.spans[i + cfg.n - 1].1);
        cuts.push((h, s, e));
        let (a, b) = (s.saturating_sub(cfg.window), (e + cfg.window).min(total));
        match cut.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => cut.push((a, b)),
        }
    }
    let mut pieces: Vec<(usize, usize)> = Vec::new();
    let mut at = 0;
    for &(a, b) in &cut {
        if a > at {
            pieces.push((at, a));
        }
        at = b;
    }
    if at < total {
        pieces.push((at, total));
    }
    if pieces.len() > cfg.max_pieces {
        return Outcome::Removed { reason: "contaminated_too_many_pieces", gram: hits[0].0, pieces: pieces.len() };
    }
    let kept: Vec<(usize, usize)> = pieces.iter().copied().filter(|(a, b)| b - a >= cfg.min_piece).collect();
    if kept.is_empty() {
        return Outcome::Removed { reason: "contaminated_no_piece_left", gram: hits[0].0, pieces: pieces.len() };
    }
    // Character positions to byte offsets.
    let offsets: Vec<usize> = text.char_indices().map(|(b, _)| b).chain([text.len()]).collect();
    let text = kept.iter().map(|&(a, b)| &text[offsets[a]..offsets[b]]).collect::<Vec<_>>().join("\n\n");
    Outcome::Cut { text, cuts }
}

fn hits_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("gram", DataType::UInt64, false),
        Field::new("docs", DataType::UInt64, false),
    ]))
}

fn cuts_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("benchmark", DataType::Utf8, false),
        Field::new("gram", DataType::Utf8, false),
        Field::new("start", DataType::UInt64, false),
        Field::new("end", DataType::UInt64, false),
    ]))
}

/// The decontamination config as manifests record it: the recipe table, plus the benchmark
/// files' sizes and times (they are inputs: a changed benchmark redoes both steps).
fn stage_config(cfg: &DecontamConfig) -> Result<serde_json::Value, StageError> {
    let mut config = serde_json::to_value(cfg).map_err(|e| StageError::Recipe(e.to_string()))?;
    let mut stats = Vec::new();
    for b in &cfg.benchmarks {
        for p in &b.paths {
            stats.push(serde_json::json!([p, Loc::parse(p)?.stat()?]));
        }
    }
    config["benchmark_files"] = stats.into();
    Ok(config)
}

/// The benchmark grams, loaded and timed.
fn load_grams(cfg: &DecontamConfig) -> Result<BenchmarkGrams, StageError> {
    let start = Instant::now();
    let bench = BenchmarkGrams::load(cfg)?;
    tracing::info!(grams = bench.grams.len(), seconds = start.elapsed().as_secs_f64(), "benchmark grams loaded");
    Ok(bench)
}

/// `decontaminate_hits` for one slice: per input shard, the training documents each
/// benchmark gram occurs in.
pub fn count_hits(cfg: &DecontamConfig, run_out: &Loc, slice: TaskSlice) -> Result<TaskReport, StageError> {
    let input_dir = run_out.join(&cfg.input);
    let input = Manifest::read(&input_dir.join(MANIFEST))?;
    let bench = load_grams(cfg)?;
    let config = stage_config(cfg)?;
    let hits_stage = Stage::per_input_file(HITS, run_out.join(HITS), config, &input);
    hits_stage.run(slice, |ctx| {
        let entry = &input.outputs[ctx.unit];
        let src_loc = input_dir.join(&entry.path);
        entry.verify(&src_loc)?;
        let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
        let mut docs = 0u64;
        for batch in DocReader::open(&src_loc)?.batches(Some(&["text"]), 4096)? {
            let b = batch?;
            let text = str_col(&b, "text")?;
            let per_doc: Vec<BTreeSet<u64>> = (0..b.num_rows())
                .into_par_iter()
                .map(|i| bench.hits(&Words::of(text.value(i)), cfg.n).into_iter().map(|h| h.0).collect())
                .collect();
            for set in per_doc {
                for h in set {
                    *counts.entry(h).or_default() += 1;
                }
            }
            docs += b.num_rows() as u64;
        }
        let (out_loc, _) = ctx.shard();
        let (ledger_loc, _) = ctx.ledger();
        let mut sink = ParquetSink::create(&out_loc, hits_schema(), HITS_FORMAT, 1, WriteOptions::default(), &[])?;
        let cols: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from_iter_values(counts.keys().copied())),
            Arc::new(UInt64Array::from_iter_values(counts.values().copied())),
        ];
        sink.write(&RecordBatch::try_new(hits_schema(), cols).map_err(arrow_err(&out_loc))?)?;
        let rows = sink.finish()?;
        let ledger_rows = LedgerWriter::create(&ledger_loc, WriteOptions::default())?.finish()?;
        let mut m = ctx.manifest();
        m.accounting.docs_in = rows;
        m.accounting.docs_out = rows;
        m.count("documents_scanned", docs);
        ctx.record_files(&mut m, entry, &src_loc, rows, ledger_rows)?;
        Ok(m)
    })
}

/// `decontaminate` for one slice: the cuts, once every `decontaminate_hits` unit is complete
/// (an incomplete one is an error: run it for every task first).
pub fn cut(cfg: &DecontamConfig, run_out: &Loc, slice: TaskSlice) -> Result<TaskReport, StageError> {
    let input_dir = run_out.join(&cfg.input);
    let input = Manifest::read(&input_dir.join(MANIFEST))?;
    let hits_manifest = run_out.join(HITS).join(MANIFEST);
    if !hits_manifest.exists()? {
        return Err(StageError::Usage(format!(
            "decontaminate: the {HITS} step is not complete in {}\nhint: run `grist run RECIPE --stage {HITS}` for every task first",
            run_out.join(HITS)
        )));
    }
    let bench = load_grams(cfg)?;
    let mut config = stage_config(cfg)?;
    // Training-document frequency of every colliding gram; the frequent ones are boilerplate.
    let hm = Manifest::read(&run_out.join(HITS).join(MANIFEST))?;
    let mut freq: BTreeMap<u64, u64> = BTreeMap::new();
    for f in &hm.outputs {
        let loc = run_out.join(HITS).join(&f.path);
        for batch in ParquetSource::open(&loc, HITS_FORMAT, 1)?.batches(None, 65536)? {
            let b = batch?;
            let col = |name: &str| {
                b.column_by_name(name).and_then(|c| c.as_any().downcast_ref::<UInt64Array>().cloned()).ok_or_else(
                    || StageError::Input { at: At::file(loc.to_string()), msg: format!("column {name:?} missing") },
                )
            };
            let (g, d) = (col("gram")?, col("docs")?);
            for i in 0..b.num_rows() {
                *freq.entry(g.value(i)).or_default() += d.value(i);
            }
        }
    }
    let ignore: BTreeSet<u64> = freq.iter().filter(|(_, d)| **d > cfg.max_doc_frequency).map(|(&g, _)| g).collect();
    // A unit's cuts depend on the benchmarks (in the config), its own input (its plan entry)
    // and the ignored grams: their digest, not the hits stage's, so that a new input shard
    // that leaves the boilerplate set as it was redoes only its own unit.
    let mut digest = xxhash_rust::xxh3::Xxh3::new();
    ignore.iter().for_each(|g| digest.update(&g.to_le_bytes()));
    config["ignored_grams"] = format!("{:016x}", digest.digest()).into();
    let stage = Stage::per_input_file(STAGE, run_out.join(STAGE), config, &input);
    stage.run(slice, |ctx| {
        let entry = &input.outputs[ctx.unit];
        let src_loc = input_dir.join(&entry.path);
        entry.verify(&src_loc)?;
        let reader = DocReader::open(&src_loc)?;
        let schema = reader.schema().clone();
        let (shard_loc, _) = ctx.shard();
        let (ledger_loc, _) = ctx.ledger();
        let (cuts_loc, cuts_name) = ctx.side("cuts");
        let mut writer = DocWriter::create(&shard_loc, schema.clone(), WriteOptions::default())?;
        let mut ledger = LedgerWriter::create(&ledger_loc, WriteOptions::default())?;
        let mut cuts_sink =
            ParquetSink::create(&cuts_loc, cuts_schema(), CUTS_FORMAT, 1, WriteOptions::default(), &[])?;
        let mut m = ctx.manifest();
        m.count("boilerplate_grams_ignored", ignore.len() as u64);
        let gram_of = |h: u64| bench.grams.get(&h).cloned().unwrap_or((0, String::new()));
        for batch in reader.batches(None, 4096)? {
            let b = batch?;
            let (ids, sources, texts) = (str_col(&b, "id")?, str_col(&b, "source")?, str_col(&b, "text")?);
            let outcomes: Vec<Outcome> =
                (0..b.num_rows()).into_par_iter().map(|i| clean(cfg, &bench, &ignore, texts.value(i))).collect();
            let mut keep = Vec::with_capacity(b.num_rows());
            let mut new_text: Vec<String> = Vec::with_capacity(b.num_rows());
            let (mut cut_ids, mut cut_bench, mut cut_gram, mut cut_start, mut cut_end) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for (i, o) in outcomes.into_iter().enumerate() {
                match o {
                    Outcome::Clean => {
                        keep.push(true);
                        new_text.push(texts.value(i).to_string());
                    }
                    Outcome::Cut { text, cuts } => {
                        keep.push(true);
                        new_text.push(text);
                        m.count(DOCUMENTS_CUT, 1);
                        for (h, s, e) in cuts {
                            let (bi, gram) = gram_of(h);
                            m.count(&format!("{HITS_PREFIX}{}", bench.names[bi as usize]), 1);
                            cut_ids.push(ids.value(i).to_string());
                            cut_bench.push(bench.names[bi as usize].clone());
                            cut_gram.push(gram);
                            cut_start.push(s as u64);
                            cut_end.push(e as u64);
                        }
                    }
                    Outcome::Removed { reason, gram, pieces } => {
                        keep.push(false);
                        new_text.push(String::new());
                        let (bi, g) = gram_of(gram);
                        m.count(&format!("{HITS_PREFIX}{}", bench.names[bi as usize]), 1);
                        ledger.push(LedgerEntry {
                            id: ids.value(i).to_string(),
                            source: sources.value(i).to_string(),
                            stage: STAGE.to_string(),
                            reason: reason.to_string(),
                            detail: Some(format!("{}: \"{g}\" ({pieces} pieces)", bench.names[bi as usize])),
                            ..LedgerEntry::default()
                        })?;
                    }
                }
            }
            // The text column replaced by the cut texts, then the removed rows filtered out.
            let idx = schema.index_of("text").map_err(arrow_err(&shard_loc))?;
            let mut cols: Vec<ArrayRef> = b.columns().to_vec();
            cols[idx] = Arc::new(StringArray::from_iter_values(new_text.iter()));
            let full = RecordBatch::try_new(schema.clone(), cols).map_err(arrow_err(&shard_loc))?;
            let kept = filter_record_batch(&full, &BooleanArray::from(keep)).map_err(arrow_err(&shard_loc))?;
            m.accounting.docs_in += b.num_rows() as u64;
            m.accounting.docs_out += kept.num_rows() as u64;
            m.accounting.docs_ledger += (b.num_rows() - kept.num_rows()) as u64;
            writer.write(&kept)?;
            if !cut_ids.is_empty() {
                let cols: Vec<ArrayRef> = vec![
                    Arc::new(StringArray::from_iter_values(cut_ids.iter())),
                    Arc::new(StringArray::from_iter_values(cut_bench.iter())),
                    Arc::new(StringArray::from_iter_values(cut_gram.iter())),
                    Arc::new(UInt64Array::from_iter_values(cut_start)),
                    Arc::new(UInt64Array::from_iter_values(cut_end)),
                ];
                cuts_sink.write(&RecordBatch::try_new(cuts_schema(), cols).map_err(arrow_err(&cuts_loc))?)?;
            }
        }
        let rows = writer.finish()?;
        let ledger_rows = ledger.finish()?;
        let cut_rows = cuts_sink.finish()?;
        m.side.push(shards::FileEntry::describe(&cuts_loc, cuts_name, cut_rows)?);
        ctx.record_files(&mut m, entry, &src_loc, rows, ledger_rows)?;
        Ok(m)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> DecontamConfig {
        DecontamConfig {
            input: "x".into(),
            benchmarks: Vec::new(),
            n: 13,
            window: 200,
            min_piece: 200,
            max_pieces: 10,
            max_doc_frequency: 10,
        }
    }

    fn bench_of(text: &str, n: usize) -> BenchmarkGrams {
        let mut b = BenchmarkGrams { names: vec!["b".into()], ..Default::default() };
        for w in words(text).windows(n) {
            b.grams.insert(gram_hash(w), (0, String::new()));
        }
        b
    }

    #[test]
    fn fast_words_hash_like_the_slow_ones() {
        for t in ["Janet\u{2019}s ducks, lay  16 eggs! -- ok", "ÀB ΣΑΣ x\ty\n\nz", "", "  ", "a b c d"] {
            let (slow, fast) = (words(t), Words::of(t));
            assert_eq!(slow.len(), fast.len(), "{t:?}");
            for n in 1..=slow.len() {
                for i in 0..=slow.len() - n {
                    assert_eq!(gram_hash(&slow[i..i + n]), fast.gram(i, n), "{t:?} {i} {n}");
                    assert_eq!((slow[i].1, slow[i + n - 1].2), (fast.spans[i].0, fast.spans[i + n - 1].1));
                }
            }
        }
    }

    #[test]
    fn words_lowercase_and_drop_punctuation() {
        let w = words("Janet\u{2019}s ducks, lay  16 eggs! -- ok");
        let s: Vec<&str> = w.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(s, ["janets", "ducks", "lay", "16", "eggs", "ok"]);
        assert_eq!((w[1].1, w[1].2), (8, 14), "character span of \"ducks,\"");
    }

    #[test]
    fn a_planted_passage_is_cut_with_its_windows() {
        let passage = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen";
        let bench = bench_of(passage, 13);
        let left = "a".repeat(500) + " ";
        let right = " ".to_string() + &"b".repeat(500);
        let doc = format!("{left}{passage}{right}");
        let p = left.chars().count();
        let e = p + passage.chars().count();
        match clean(&cfg(), &bench, &BTreeSet::new(), &doc) {
            Outcome::Cut { text, cuts } => {
                let chars: Vec<char> = doc.chars().collect();
                let want = format!(
                    "{}\n\n{}",
                    chars[..p - 200].iter().collect::<String>(),
                    chars[e + 200..].iter().collect::<String>()
                );
                assert_eq!(text, want);
                assert_eq!((cuts[0].1, cuts.last().unwrap().2), (p, e));
            }
            o => panic!("{o:?}"),
        }
        // A short left piece (< 200 characters) is dropped.
        let doc2 = format!("{}{passage}{right}", "c".repeat(250) + " ");
        match clean(&cfg(), &bench, &BTreeSet::new(), &doc2) {
            Outcome::Cut { text, .. } => assert!(text.starts_with('b') || text.trim_start().starts_with('b'), "{text}"),
            o => panic!("{o:?}"),
        }
        // Ignored (boilerplate) grams cut nothing.
        let all: BTreeSet<u64> = bench.grams.keys().copied().collect();
        assert_eq!(clean(&cfg(), &bench, &all, &doc), Outcome::Clean);
    }

    #[test]
    fn many_pieces_or_none_left_remove_the_document() {
        let passage = "one two three four five six seven eight nine ten eleven twelve thirteen";
        let bench = bench_of(passage, 13);
        // 11 planted passages separated by long filler: 12 pieces > 10.
        let filler = format!(" {} ", "z".repeat(600));
        let doc = (0..11).map(|_| passage).collect::<Vec<_>>().join(&filler);
        let doc = format!("{}{doc}{}", "y".repeat(600) + " ", " ".to_string() + &"x".repeat(600));
        assert!(matches!(
            clean(&cfg(), &bench, &BTreeSet::new(), &doc),
            Outcome::Removed { reason: "contaminated_too_many_pieces", pieces: 12, .. }
        ));
        // The passage alone: nothing left.
        assert!(matches!(
            clean(&cfg(), &bench, &BTreeSet::new(), passage),
            Outcome::Removed { reason: "contaminated_no_piece_left", .. }
        ));
    }
}
