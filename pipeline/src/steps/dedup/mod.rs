//! Dedup: exact and MinHash-LSH near-duplicate removal within and across corpora (GPT-3 step
//! 5), four steps of the registry over the documents of an earlier stage (`[dedup] input`),
//! sharing the `[dedup]` table:
//!
//! 1. `dedup_signatures`, sliced, one unit per input shard: per document the exact key
//!    (xxh3-128 of the normalized text) and the LSH band keys of its MinHash signature
//!    (`minhash`), written as a table (`part-N.parquet`, format `dedup_signatures`) and, per
//!    band and key range, sorted (key, document) side tables.
//! 2. `dedup_buckets`, sliced, one unit per (band or exact key, key range): the sorted side
//!    tables merged, candidate pairs (documents sharing a key) written out.
//! 3. `dedup_clusters`, global (skipped when its fingerprint matches): candidates verified by
//!    exact Jaccard on their feature sets (re-read from the input shards, for the documents in
//!    candidate pairs only), union-find into clusters, one representative kept per cluster: a
//!    document of an index source if the cluster has one (index sources, e.g. WebText, are
//!    never removed), else the highest quality score, then the smallest id. Writes
//!    `removals.parquet`, then `report.json` (the marker); refuses to remove more than
//!    `max_removal`. Memory: about n x (64 + id bytes) bytes for the n documents in candidate
//!    pairs, plus their feature sets.
//! 4. `dedup`, sliced, one unit per input shard: the input's documents minus the removed ones;
//!    ledger rows carry the reason, cluster id, representative id and Jaccard.

pub mod clusters;
pub mod corpus;
pub mod exchange;
pub mod minhash;

use std::cmp::Reverse;
#[cfg(test)]
use std::collections::BTreeSet;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use shards::arrow::array::{Array, ArrayRef, BooleanArray, Float64Array, StringArray, UInt32Array, UInt64Array};
use shards::arrow::compute::filter_record_batch;
use shards::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use shards::arrow::record_batch::RecordBatch;
use shards::parquet_io::{ParquetSink, ParquetSource};
use shards::{At, DocReader, DocWriter, FileEntry, LedgerEntry, LedgerWriter, Loc, Manifest, WriteOptions, str_col};

use crate::core::error::{StageError, arrow_err};
use crate::core::slice::TaskSlice;
use crate::core::stage::{Global, GlobalReport, MANIFEST, Stage, TaskReport};
use crate::steps::dedup::clusters::{Layout, route_pair};
use crate::steps::dedup::corpus::Corpus;
use crate::steps::dedup::exchange::ExchangeWriter;
use crate::steps::dedup::minhash::{Hasher, Words, exact_key, feature_set, shingles};
#[cfg(test)]
use crate::steps::dedup::minhash::{jaccard, normalize};
use crate::steps::{Outcome, Produces, Shape, Step, StepCtx, StepReport, need};
use crate::text::features::DEFAULT_NUM_FEATURES;

/// The final stage's name (and directory under `run.out`).
pub const STAGE: &str = "dedup";
/// The signature stage's name and directory.
pub const SIGNATURES: &str = "dedup_signatures";
/// The bucket stage's name and directory.
pub const BUCKETS: &str = "dedup_buckets";
/// The clusters step's directory.
pub const CLUSTERS: &str = "dedup_clusters";
const SIG_FORMAT: &str = "dedup_signatures";
const KEYS_FORMAT: &str = "dedup_keys";
/// Entries per batch of each side table the bucket stage merges.
const MERGE_BATCH: usize = 4096;
const REMOVALS_FORMAT: &str = "dedup_removals";

/// `dedup_signatures`: exact keys, MinHash signatures and sorted band keys per input shard.
pub static SIGNATURES_STEP: Step = Step {
    name: SIGNATURES,
    table: "dedup",
    input: Some("quality_filter"),
    shape: Shape::Sliced,
    produces: Produces::Tables,
    about: "dedup, 1 of 4: exact keys, MinHash signatures and sorted LSH band keys per input shard",
    run: |ctx| {
        let rep = one_step(ctx, DedupStep::Signatures)?.signatures.ok_or_else(not_run)?;
        Ok(Outcome::units(rep, "documents", "signed"))
    },
};

/// `dedup_buckets`: candidate pairs per band and key range.
pub static BUCKETS_STEP: Step = Step {
    name: BUCKETS,
    table: "dedup",
    input: Some(SIGNATURES),
    shape: Shape::Sliced,
    produces: Produces::Tables,
    about: "dedup, 2 of 4: candidate pairs from equal band keys (per band and key range)",
    run: |ctx| {
        let rep = one_step(ctx, DedupStep::Buckets)?.buckets.ok_or_else(not_run)?;
        Ok(Outcome::units(rep, "candidate pairs", "written"))
    },
};

/// `dedup_clusters`: verification, union-find and representatives (a global step).
pub static CLUSTERS_STEP: Step = Step {
    name: CLUSTERS,
    table: "dedup",
    input: Some(BUCKETS),
    shape: Shape::Sliced,
    produces: Produces::Files,
    about: "dedup, 3 of 4: verify candidate pairs by Jaccard, cluster, choose what to remove",
    run: |ctx| {
        let c = one_step(ctx, DedupStep::Clusters)?.clusters.ok_or_else(not_run)?;
        let text = c.render();
        Ok(Outcome { report: StepReport::Clusters(c), complete: true, up_to_date: false, text, points_to: None })
    },
};

/// `dedup`: the input minus the removed documents.
pub static FILTER_STEP: Step = Step {
    name: STAGE,
    table: "dedup",
    input: Some(CLUSTERS),
    shape: Shape::Sliced,
    produces: Produces::Documents,
    about: "dedup, 4 of 4: the input minus exact and near duplicates (ledgered with their cluster)",
    run: |ctx| {
        let rep = one_step(ctx, DedupStep::Filter)?.filter.ok_or_else(not_run)?;
        Ok(Outcome::units(rep, "documents", "kept"))
    },
};

fn one_step(ctx: &StepCtx, step: DedupStep) -> Result<DedupRun, StageError> {
    run(need(&ctx.recipe.dedup, "dedup")?, ctx.seed(), &ctx.out, ctx.slice, Some(step))
}

fn not_run() -> StageError {
    StageError::Usage("dedup: the step did not run".into())
}

impl ClusterReport {
    /// One line: what the clusters step removed and how it got there.
    pub fn render(&self) -> String {
        format!(
            "dedup    {} documents: {} exact and {} near duplicates removed ({} candidate pairs over {} documents, {} joined; {} without features) ({:.2} s)\n",
            self.docs,
            self.exact_duplicates,
            self.near_duplicates,
            self.candidate_pairs,
            self.candidate_docs,
            self.verified_pairs,
            self.docs_without_features,
            self.seconds
        )
    }
}

/// Which features a signature is taken over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DedupMode {
    /// GPT-3: the quality classifier's HashingTF index set, Spark MinHashLSH (tables of 1 hash).
    #[default]
    Gpt3,
    /// Word n-grams of the normalized text, bands x rows universal hashes.
    Shingles,
}

/// `[dedup]` in a recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DedupConfig {
    /// The stage whose documents are deduplicated (a directory under `run.out`).
    #[serde(default = "default_input")]
    pub input: String,
    #[serde(default)]
    pub mode: DedupMode,
    /// Remove exact duplicates (after normalization) too.
    #[serde(default = "yes")]
    pub exact: bool,
    /// Lowercase in normalization (exact keys and shingles).
    #[serde(default = "yes")]
    pub lowercase: bool,
    /// `gpt3`: Spark's numHashTables (GPT-3: 10) and HashingTF size.
    #[serde(default = "default_tables")]
    pub num_hash_tables: usize,
    #[serde(default = "default_num_features")]
    pub num_features: u32,
    /// `shingles`: words per n-gram, bands and rows per band (datatrove's 14 x 8).
    #[serde(default = "default_ngram")]
    pub ngram: usize,
    #[serde(default = "default_bands")]
    pub bands: usize,
    #[serde(default = "default_rows")]
    pub rows: usize,
    /// Verify candidates by exact Jaccard similarity on their feature sets.
    #[serde(default = "yes")]
    pub verify: bool,
    /// Minimum Jaccard similarity of a verified pair (Spark: 1 - the distance threshold).
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// Sources never removed (e.g. `webtext`): target documents near-duplicating them are.
    #[serde(default)]
    pub index_sources: Vec<String>,
    /// Key ranges each band's keys are split into: bucket units = (bands + 1) x ranges.
    #[serde(default = "default_key_ranges")]
    pub key_ranges: usize,
    /// Fail rather than remove more than this fraction of the documents.
    #[serde(default = "default_max_removal")]
    pub max_removal: f64,
    /// Memory per clusters unit, in MiB: documents are split into groups of about a quarter
    /// of this much input, and the graph into as many partitions.
    #[serde(default = "default_memory_mb")]
    pub memory_mb: usize,
    /// Exactly this many groups and partitions instead (0: from `memory_mb`).
    #[serde(default)]
    pub partitions: usize,
    /// Incremental dedup: earlier runs (their `run.out`, in dump order) whose documents are an
    /// index this run's are checked against. Their `dedup_signatures` (signatures and sorted
    /// band keys) and dedup input shards are read, never recomputed or changed: an index
    /// document is never removed, and a document of this run near-duplicating one is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub index: Vec<String>,
    /// Dump order within this run: sources named here are deduplicated dump by dump, each
    /// against the earlier ones (which win) and within itself, exactly as incremental runs
    /// over `index` would do. A shard takes the dump of the listed source it holds; other
    /// sources' documents in it go with it, and shards with none of them come first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dumps: Vec<String>,
}

fn default_input() -> String {
    SIGNATURES_STEP.input.unwrap_or_default().to_string()
}
fn yes() -> bool {
    true
}
fn default_tables() -> usize {
    10
}
fn default_num_features() -> u32 {
    DEFAULT_NUM_FEATURES
}
fn default_ngram() -> usize {
    5
}
fn default_bands() -> usize {
    14
}
fn default_rows() -> usize {
    8
}
fn default_threshold() -> f64 {
    0.8
}
fn default_key_ranges() -> usize {
    1
}
fn default_max_removal() -> f64 {
    0.5
}
fn default_memory_mb() -> usize {
    2048
}

impl DedupConfig {
    /// The settings a signature table depends on (and the seed): what the signature stage is
    /// fingerprinted by, and what an index run must share with this one.
    fn signature_config(&self, seed: u64) -> serde_json::Value {
        serde_json::json!({
            "mode": self.mode, "exact": self.exact, "lowercase": self.lowercase,
            "num_hash_tables": self.num_hash_tables, "num_features": self.num_features, "ngram": self.ngram,
            "bands": self.bands, "rows": self.rows, "key_ranges": self.key_ranges, "seed": seed,
        })
    }
    fn hasher(&self, seed: u64) -> Hasher {
        match self.mode {
            DedupMode::Gpt3 => Hasher::spark(self.num_hash_tables, seed as i64),
            DedupMode::Shingles => Hasher::universal(self.bands, self.rows, seed),
        }
    }
    /// A document's exact key, feature count and band keys, from its text and `words` (its
    /// normalization, done here): the signature is taken over the feature set, or (shingles)
    /// over the n-gram hashes in text order with repeats, which give the same signature
    /// without sorting. No band keys for a document without features.
    fn keys_of(&self, hasher: &Hasher, text: &str, words: &mut Words) -> (u128, u32, Vec<u64>) {
        words.normalize(text, self.lowercase);
        let exact = exact_key(words.text());
        let set;
        let features: &[u64] = match self.mode {
            DedupMode::Gpt3 => {
                set = feature_set(text, self.num_features);
                &set
            }
            DedupMode::Shingles => words.shingle_hashes(self.ngram),
        };
        let keys = if features.is_empty() { Vec::new() } else { hasher.band_keys(&hasher.signature(features)) };
        (exact, features.len() as u32, keys)
    }
    /// A document's feature set in this mode (sorted, unique: for exact Jaccard).
    fn set_of(&self, text: &str, normalized: &str) -> Vec<u64> {
        match self.mode {
            DedupMode::Gpt3 => feature_set(text, self.num_features),
            DedupMode::Shingles => shingles(normalized, self.ngram),
        }
    }
}

fn sig_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("row", DataType::UInt32, false),
        Field::new("id", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("score", DataType::Float64, true),
        Field::new("exact_hi", DataType::UInt64, false),
        Field::new("exact_lo", DataType::UInt64, false),
        // Features the signature was taken over (shingles: n-grams, repeats counted).
        Field::new("features", DataType::UInt32, false),
    ]))
}

/// A side table of sorted (key, document) entries: one per signature unit, band and key range.
fn keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("key", DataType::UInt64, false), Field::new("doc", DataType::UInt64, false)]))
}

fn removals_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("unit", DataType::UInt32, false),
        Field::new("row", DataType::UInt32, false),
        Field::new("id", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("cluster_id", DataType::UInt64, false),
        Field::new("duplicate_of", DataType::Utf8, false),
        Field::new("jaccard", DataType::Float64, true),
    ]))
}

/// A document's global number: its signature unit (= input shard) and row.
fn gid(unit: usize, row: u32) -> u64 {
    ((unit as u64) << 32) | row as u64
}

/// The name of a (band, key range) side table; band `None` is the exact-text key.
fn side_name(band: Option<usize>, range: usize) -> String {
    match band {
        Some(b) => format!("b{b:03}-r{range:03}"),
        None => format!("exact-r{range:03}"),
    }
}

/// Which of `ranges` equal key ranges a key falls in.
fn range_of(key: u64, ranges: usize) -> usize {
    ((key as u128 * ranges as u128) >> 64) as usize
}

/// A column of a table, downcast, or an error naming the file.
fn column<T: Clone + 'static>(b: &RecordBatch, name: &str, at: &Loc) -> Result<T, StageError> {
    b.column_by_name(name).and_then(|c| c.as_any().downcast_ref::<T>().cloned()).ok_or_else(|| StageError::Input {
        at: At::file(at.to_string()),
        msg: format!("column {name:?} missing or of another type"),
    })
}

/// One step of `grist dedup`, for `--step`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DedupStep {
    Signatures,
    Buckets,
    Clusters,
    Filter,
}

/// What `grist dedup` did (`None`: the step was not run).
#[derive(Debug, Clone, Serialize)]
pub struct DedupRun {
    pub signatures: Option<TaskReport>,
    pub buckets: Option<TaskReport>,
    pub clusters: Option<ClusterReport>,
    pub filter: Option<TaskReport>,
}

/// Runs the steps for one task slice: signatures for the slice; when they are all complete,
/// the bucket units of the slice; when those are complete, the clusters step (once;
/// deterministic, so concurrent tasks write the same files); then the filter for the slice.
/// A task that finds an earlier step incomplete stops there: run the slices again (completed
/// units are skipped) until every task reports the filter complete. With `only`, just that
/// step runs, and an incomplete earlier step is an error.
pub fn run(
    cfg: &DedupConfig,
    seed: u64,
    run_out: &Loc,
    slice: TaskSlice,
    only: Option<DedupStep>,
) -> Result<DedupRun, StageError> {
    let input_dir = run_out.join(&cfg.input);
    let input = Manifest::read(&input_dir.join(MANIFEST))?;
    let (sig_dir, buckets_dir, clusters_dir) =
        (run_out.join(SIGNATURES), run_out.join(BUCKETS), run_out.join(CLUSTERS));
    let wants = |s: DedupStep| only.is_none_or(|o| o == s);
    let ready = |dir: &Loc, step: &str| -> Result<bool, StageError> {
        let done = dir.join(MANIFEST).exists()?;
        if !done && only.is_some() {
            return Err(StageError::Recipe(format!(
                "dedup: the {step} step is not complete in {dir}\nhint: run `grist dedup --step {step}` for every task first"
            )));
        }
        Ok(done)
    };
    let mut out = DedupRun { signatures: None, buckets: None, clusters: None, filter: None };
    if wants(DedupStep::Signatures) {
        out.signatures = Some(signatures(cfg, seed, &input, &input_dir, &sig_dir, slice)?);
    }
    if only == Some(DedupStep::Signatures) || !ready(&sig_dir, "signatures")? {
        return Ok(out);
    }
    let corpus = Corpus::open(cfg, seed, &input, &input_dir, &sig_dir)?;
    let layout = Layout::new(cfg, &corpus.bytes());
    if wants(DedupStep::Buckets) {
        out.buckets = Some(buckets(cfg, &corpus, &buckets_dir, &layout, slice)?);
    }
    if only == Some(DedupStep::Buckets) || !ready(&buckets_dir, "buckets")? {
        return Ok(out);
    }
    if wants(DedupStep::Clusters) || wants(DedupStep::Filter) {
        out.clusters = Some(match completed_clusters(cfg, seed, &buckets_dir, &clusters_dir)? {
            Some(r) => r,
            None if only == Some(DedupStep::Filter) => {
                return Err(StageError::Recipe(format!(
                    "dedup: the clusters step is not complete in {clusters_dir}\nhint: run `grist dedup --step clusters` once first"
                )));
            }
            None => run_clusters(cfg, seed, &corpus, &buckets_dir, &clusters_dir, &layout, slice)?,
        });
    }
    if wants(DedupStep::Filter) {
        let report = out.clusters.as_ref().expect("the clusters step ran or was complete");
        out.filter = Some(filter(&input, &input_dir, &corpus, &clusters_dir, report, &run_out.join(STAGE), slice)?);
    }
    Ok(out)
}

fn signatures(
    cfg: &DedupConfig,
    seed: u64,
    input: &Manifest,
    input_dir: &Loc,
    out: &Loc,
    slice: TaskSlice,
) -> Result<TaskReport, StageError> {
    let stage = Stage::per_input_file(SIGNATURES, out.clone(), cfg.signature_config(seed), input);
    let hasher = cfg.hasher(seed);
    let bands = hasher.bands();
    stage.run(slice, |ctx| {
        let start = Instant::now();
        let entry = &input.outputs[ctx.unit];
        let src_loc = input_dir.join(&entry.path);
        entry.verify(&src_loc)?;
        let reader = DocReader::open(&src_loc)?;
        let has_score = reader.schema().field_with_name("quality_score").is_ok();
        let mut cols = vec!["id", "source", "text"];
        if has_score {
            cols.push("quality_score");
        }
        let (out_loc, _) = ctx.shard();
        let (ledger_loc, _) = ctx.ledger();
        let mut sink = ParquetSink::create(&out_loc, sig_schema(), SIG_FORMAT, 1, WriteOptions::default(), &["id"])?;
        let ledger = LedgerWriter::create(&ledger_loc, WriteOptions::default())?;
        let mut m = ctx.manifest();
        // (key, doc) per band (and the exact key last), sorted at the end of the unit; past
        // `memory_mb / 2` of entries, sorted runs go to a spill file beside the output.
        let mut keyed: Vec<Vec<(u64, u64)>> = vec![Vec::new(); bands + cfg.exact as usize];
        let mut spill = KeySpill::new(out, &ctx.stem(), keyed.len());
        let limit = (cfg.memory_mb << 20) / 2 / 16;
        let mut row = 0u32;
        for batch in reader.batches(Some(&cols), 4096)? {
            let b = batch?;
            let (ids, sources, texts) = (str_col(&b, "id")?, str_col(&b, "source")?, str_col(&b, "text")?);
            let scores = b.column_by_name("quality_score").and_then(|c| c.as_any().downcast_ref::<Float64Array>());
            let per_doc: Vec<(u128, u32, Vec<u64>)> = (0..b.num_rows())
                .into_par_iter()
                .map_init(Words::default, |words, i| cfg.keys_of(&hasher, texts.value(i), words))
                .collect();
            let n = b.num_rows();
            for (i, d) in per_doc.iter().enumerate() {
                let g = gid(ctx.unit, row + i as u32);
                for (j, &k) in d.2.iter().enumerate() {
                    keyed[j].push((k, g));
                }
                if cfg.exact {
                    keyed[bands].push(((d.0 >> 64) as u64, g));
                }
            }
            if keyed.iter().map(Vec::len).sum::<usize>() > limit {
                spill.add(&mut keyed)?;
            }
            m.count("docs_without_features", per_doc.iter().filter(|d| d.1 == 0).count() as u64);
            let mut per_source: BTreeMap<&str, u64> = BTreeMap::new();
            for i in 0..n {
                *per_source.entry(sources.value(i)).or_default() += 1;
            }
            for (source, docs) in per_source {
                m.count(&format!("docs_source_{source}"), docs);
            }
            let cols: Vec<ArrayRef> = vec![
                Arc::new(UInt32Array::from_iter_values(row..row + n as u32)),
                Arc::new(StringArray::from_iter_values((0..n).map(|i| ids.value(i)))),
                Arc::new(StringArray::from_iter_values((0..n).map(|i| sources.value(i)))),
                Arc::new(Float64Array::from_iter((0..n).map(|i| scores.map(|s| s.value(i))))),
                Arc::new(UInt64Array::from_iter_values(per_doc.iter().map(|d| (d.0 >> 64) as u64))),
                Arc::new(UInt64Array::from_iter_values(per_doc.iter().map(|d| d.0 as u64))),
                Arc::new(UInt32Array::from_iter_values(per_doc.iter().map(|d| d.1))),
            ];
            let rb = RecordBatch::try_new(sig_schema(), cols).map_err(arrow_err(&out_loc))?;
            sink.write(&rb)?;
            row += n as u32;
            m.accounting.docs_in += n as u64;
            m.accounting.docs_out += n as u64;
        }
        // The band (and exact) keys, sorted, one side table per band and key range.
        for (j, mut entries) in keyed.into_iter().enumerate() {
            entries.sort_unstable();
            let band = (j < bands).then_some(j);
            let mut merged = spill.merged(j, entries)?.peekable();
            for r in 0..cfg.key_ranges {
                let (loc, name) = ctx.side(&side_name(band, r));
                let mut side = ParquetSink::create(&loc, keys_schema(), KEYS_FORMAT, 1, WriteOptions::default(), &[])?;
                let mut chunk: Vec<(u64, u64)> = Vec::with_capacity(1 << 16);
                loop {
                    let next = match merged.peek() {
                        Some(Ok(e)) if range_of(e.0, cfg.key_ranges) == r => Some(*e),
                        Some(Err(_)) => return Err(merged.next().and_then(Result::err).expect("peeked an error")),
                        _ => None,
                    };
                    if next.is_some() {
                        merged.next();
                        chunk.extend(next);
                    }
                    if chunk.len() == 1 << 16 || (next.is_none() && !chunk.is_empty()) {
                        let cols: Vec<ArrayRef> = vec![
                            Arc::new(UInt64Array::from_iter_values(chunk.iter().map(|e| e.0))),
                            Arc::new(UInt64Array::from_iter_values(chunk.iter().map(|e| e.1))),
                        ];
                        side.write(&RecordBatch::try_new(keys_schema(), cols).map_err(arrow_err(&loc))?)?;
                        chunk.clear();
                    }
                    if next.is_none() {
                        break;
                    }
                }
                let rows = side.finish()?;
                m.side.push(FileEntry::describe(&loc, name, rows)?);
            }
        }
        if spill.spilled() {
            m.count("key_spills", 1);
        }
        let rows = sink.finish()?;
        let ledger_rows = ledger.finish()?;
        ctx.record_files(&mut m, entry, &src_loc, rows, ledger_rows)?;
        m.timings.insert("signature_seconds".into(), start.elapsed().as_secs_f64());
        Ok(m)
    })
}

/// Sorted runs of (key, doc) entries per band, spilled beside a stage's output so that the
/// signature step's memory stays bounded whatever the size of an input shard; removed when
/// dropped.
struct KeySpill {
    dir: Option<std::path::PathBuf>,
    /// The unit's file stem: the spill is a hidden temporary a rerun of the unit cleans up.
    stem: String,
    file: Option<(std::fs::File, std::path::PathBuf)>,
    end: u64,
    /// Per band: (byte offset, entries) of each run.
    runs: Vec<Vec<(u64, u64)>>,
}

impl Drop for KeySpill {
    fn drop(&mut self) {
        if let Some((_, path)) = &self.file {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A band's (key, doc) entries in order, as [`KeySpill::merged`] gives them.
type KeyStream<'a> = Box<dyn Iterator<Item = Result<(u64, u64), StageError>> + 'a>;

static KEY_SPILLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl KeySpill {
    fn new(dir: &Loc, stem: &str, bands: usize) -> KeySpill {
        KeySpill {
            dir: dir.as_local().map(std::path::Path::to_path_buf),
            stem: stem.to_string(),
            file: None,
            end: 0,
            runs: vec![Vec::new(); bands],
        }
    }
    fn spilled(&self) -> bool {
        self.file.is_some()
    }
    fn io_err(&self, e: std::io::Error) -> StageError {
        let dir = self.dir.clone().unwrap_or_else(std::env::temp_dir);
        StageError::Input {
            at: At::file(dir.display().to_string()),
            msg: format!(
                "cannot use the signature spill file: {e}\nhint: free disk space there or raise dedup.memory_mb"
            ),
        }
    }
    /// Sorts every band's held entries and appends them as one run each.
    fn add(&mut self, keyed: &mut [Vec<(u64, u64)>]) -> Result<(), StageError> {
        use std::io::Write;
        if self.file.is_none() {
            let dir = self.dir.clone().unwrap_or_else(std::env::temp_dir);
            std::fs::create_dir_all(&dir).map_err(|e| self.io_err(e))?;
            let n = KEY_SPILLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = dir.join(format!(".{}.signature-spill-{}-{n}.tmp", self.stem, std::process::id()));
            let file = std::fs::File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| self.io_err(e))?;
            self.file = Some((file, path));
        }
        let (file, _) = self.file.as_ref().expect("opened above");
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        for (j, entries) in keyed.iter_mut().enumerate() {
            if entries.is_empty() {
                continue;
            }
            entries.par_sort_unstable();
            for (k, d) in entries.iter() {
                out.write_all(&k.to_le_bytes())
                    .and_then(|_| out.write_all(&d.to_le_bytes()))
                    .map_err(|e| self.io_err(e))?;
            }
            self.runs[j].push((self.end, entries.len() as u64));
            self.end += 16 * entries.len() as u64;
            *entries = Vec::new();
        }
        out.flush().map_err(|e| self.io_err(e))
    }
    /// Band `j`'s entries in order: its spilled runs merged with `held` (sorted).
    fn merged(&self, j: usize, held: Vec<(u64, u64)>) -> Result<KeyStream<'_>, StageError> {
        let Some((file, path)) = &self.file else { return Ok(Box::new(held.into_iter().map(Ok))) };
        struct RunReader<'a> {
            file: &'a std::fs::File,
            path: &'a std::path::Path,
            at: u64,
            left: u64,
            buf: std::collections::VecDeque<(u64, u64)>,
        }
        impl RunReader<'_> {
            fn next(&mut self) -> Result<Option<(u64, u64)>, StageError> {
                use std::os::unix::fs::FileExt;
                if self.buf.is_empty() && self.left > 0 {
                    let n = self.left.min(1 << 14);
                    let mut bytes = vec![0u8; 16 * n as usize];
                    self.file.read_exact_at(&mut bytes, self.at).map_err(|e| StageError::Input {
                        at: At::byte(self.path.display().to_string(), self.at),
                        msg: format!("cannot read back the signature spill file: {e}"),
                    })?;
                    let le = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
                    self.buf.extend(bytes.chunks_exact(16).map(|c| (le(&c[..8]), le(&c[8..]))));
                    self.at += 16 * n;
                    self.left -= n;
                }
                Ok(self.buf.pop_front())
            }
        }
        let mut readers: Vec<RunReader> = self.runs[j]
            .iter()
            .map(|&(at, n)| RunReader { file, path, at, left: n, buf: Default::default() })
            .collect();
        let mut held = held.into_iter().peekable();
        let mut heads: Vec<Option<(u64, u64)>> = Vec::with_capacity(readers.len());
        for r in &mut readers {
            heads.push(r.next()?);
        }
        Ok(Box::new(std::iter::from_fn(move || {
            let best = (0..heads.len()).filter(|&i| heads[i].is_some()).min_by_key(|&i| heads[i]);
            match (best, held.peek()) {
                (Some(i), h) if h.is_none_or(|h| heads[i].is_some_and(|x| x <= *h)) => {
                    let out = heads[i];
                    match readers[i].next() {
                        Ok(next) => heads[i] = next,
                        Err(e) => return Some(Err(e)),
                    }
                    out.map(Ok)
                }
                _ => held.next().map(Ok),
            }
        })))
    }
}

/// One sorted side table being merged.
struct Run {
    batches: shards::parquet_io::Batches,
    keys: UInt64Array,
    docs: UInt64Array,
    i: usize,
    loc: Loc,
    /// Added to every document: the gid of the table's run's unit 0 (index runs first).
    offset: u64,
}

impl Run {
    fn open(loc: Loc, first_unit: usize) -> Result<Option<Run>, StageError> {
        let batches = ParquetSource::open(&loc, KEYS_FORMAT, 1)?.batches(None, MERGE_BATCH)?;
        let mut run = Run {
            batches,
            keys: UInt64Array::from(Vec::<u64>::new()),
            docs: UInt64Array::from(Vec::<u64>::new()),
            i: 0,
            loc,
            offset: gid(first_unit, 0),
        };
        Ok(run.refill()?.then_some(run))
    }
    /// Loads the next non-empty batch; false at the end.
    fn refill(&mut self) -> Result<bool, StageError> {
        for batch in self.batches.by_ref() {
            let b = batch?;
            if b.num_rows() > 0 {
                self.keys = column(&b, "key", &self.loc)?;
                self.docs = column(&b, "doc", &self.loc)?;
                self.i = 0;
                return Ok(true);
            }
        }
        Ok(false)
    }
    fn head(&self) -> (u64, u64) {
        (self.keys.value(self.i), self.docs.value(self.i) + self.offset)
    }
    /// Moves past the head; false when the run is exhausted.
    fn advance(&mut self) -> Result<bool, StageError> {
        self.i += 1;
        if self.i < self.keys.len() {
            return Ok(true);
        }
        self.refill()
    }
}

/// The bucket stage: one unit per (band, key range), and per key range for the exact keys.
/// Each unit merges the sorted side tables of every signature unit, the index runs' and this
/// run's (memory: one batch of `MERGE_BATCH` entries per signature unit) and writes the
/// candidate pairs of each run of equal keys: (first, x) and (previous, x) for every later
/// member x, except pairs of two index documents (their runs decided them).
fn buckets(
    cfg: &DedupConfig,
    corpus: &Corpus,
    out: &Loc,
    layout: &Layout,
    slice: TaskSlice,
) -> Result<TaskReport, StageError> {
    let own = corpus.runs.last().expect("a corpus has this run's signatures");
    let sig_units = own.manifest.units as usize;
    let bands = match cfg.mode {
        DedupMode::Gpt3 => cfg.num_hash_tables,
        DedupMode::Shingles => cfg.bands,
    };
    let mut plan_units: Vec<(Option<usize>, usize)> = Vec::new();
    for band in (0..bands).map(Some).chain(cfg.exact.then_some(None)) {
        for r in 0..cfg.key_ranges {
            plan_units.push((band, r));
        }
    }
    // Per unit: (the signature run, a side table of it).
    let side_files: Vec<Vec<(&corpus::Signatures, &FileEntry)>> = plan_units
        .iter()
        .map(|&(band, r)| {
            let suffix = format!(".side-{}.parquet", side_name(band, r));
            let tables = |run| corpus_tables(run, &suffix);
            corpus.runs.iter().flat_map(tables).collect()
        })
        .collect();
    let stage = Stage {
        name: BUCKETS.to_string(),
        dir: out.clone(),
        config: serde_json::json!({
            "signatures": own.manifest.fingerprint, "sig_units": sig_units, "layout": layout.describe(),
            "corpus": corpus.describe(),
        }),
        units: plan_units.iter().map(|(b, r)| serde_json::json!([b, r])).collect(),
        unit_bytes: side_files.iter().map(|fs| fs.iter().map(|f| f.1.bytes).sum()).collect(),
    };
    let first_own = corpus.first_own_layer();
    let decided = |a: u64, b: u64| corpus.layer(a).max(corpus.layer(b)) < first_own;
    stage.run(slice, |ctx| {
        let start = Instant::now();
        let exact = plan_units[ctx.unit].0.is_none();
        let mut m = ctx.manifest();
        let mut runs: Vec<Run> = Vec::new();
        for (run, f) in &side_files[ctx.unit] {
            let loc = run.dir.join(&f.path);
            f.verify(&loc)?;
            m.inputs.push(FileEntry { path: loc.to_string(), ..(*f).clone() });
            runs.extend(Run::open(loc, run.first_unit)?);
        }
        let (ledger_loc, ledger_name) = ctx.ledger();
        let ledger = LedgerWriter::create(&ledger_loc, WriteOptions::default())?;
        let mut heap: BinaryHeap<Reverse<(u64, u64, usize)>> =
            runs.iter().enumerate().map(|(i, r)| Reverse((r.head().0, r.head().1, i))).collect();
        let limit = (cfg.memory_mb << 20) / 8;
        let (mut pairs, mut needs) = (
            ExchangeWriter::new(layout.k(), limit, out, &ctx.stem()),
            ExchangeWriter::new(layout.k(), limit, out, &ctx.stem()),
        );
        let mut rows = 0u64;
        // The current run of equal keys: its key, first and previous member.
        let mut current: Option<(u64, u64, u64)> = None;
        while let Some(Reverse((key, doc, i))) = heap.pop() {
            match current {
                Some((k, first, prev)) if k == key => {
                    let with = if prev == first { vec![first] } else { vec![first, prev] };
                    for a in with.into_iter().filter(|&a| !decided(a, doc)) {
                        route_pair(layout, &mut pairs, &mut needs, a, doc, exact)?;
                        rows += 1;
                    }
                    current = Some((k, first, doc));
                }
                _ => current = Some((key, doc, doc)),
            }
            if runs[i].advance()? {
                let (k, d) = runs[i].head();
                heap.push(Reverse((k, d, i)));
            }
        }
        pairs.finish_side(ctx, &mut m, "pairs")?;
        needs.finish_side(ctx, &mut m, "needs")?;
        let ledger_rows = ledger.finish()?;
        m.accounting.docs_in = rows;
        m.accounting.docs_out = rows;
        m.counters.insert("candidate_pairs".into(), rows);
        m.ledgers.push(FileEntry::describe(&ledger_loc, ledger_name, ledger_rows)?);
        m.timings.insert("merge_seconds".into(), start.elapsed().as_secs_f64());
        ctx.progress.inc(ctx.stage.unit_bytes[ctx.unit]);
        Ok(m)
    })
}

/// The side tables of one signature run whose names end with `suffix`.
fn corpus_tables<'a>(
    run: &'a corpus::Signatures,
    suffix: &str,
) -> impl Iterator<Item = (&'a corpus::Signatures, &'a FileEntry)> + 'a {
    let suffix = suffix.to_string();
    run.manifest.side.iter().filter(move |f| f.path.ends_with(&suffix)).map(move |f| (run, f))
}

/// Where the clusters step decides dump `layer`: its own directory when the run has one dump,
/// `dump-LLL` under it when it has several.
fn layer_dir(corpus: &Corpus, clusters_dir: &Loc, layer: u32) -> Loc {
    match corpus.own_layers().len() {
        0 | 1 => clusters_dir.clone(),
        _ => clusters_dir.join(&format!("dump-{layer:03}")),
    }
}

/// The clusters step: once per dump of this run (see [`corpus`]), then, with several dumps,
/// their reports and removals merged into the step's own.
fn run_clusters(
    cfg: &DedupConfig,
    seed: u64,
    corpus: &Corpus,
    buckets_dir: &Loc,
    clusters_dir: &Loc,
    layout: &Layout,
    slice: TaskSlice,
) -> Result<ClusterReport, StageError> {
    let layers = corpus.own_layers();
    if layers.len() <= 1 {
        let layer = layers.first().copied().unwrap_or(corpus.first_own_layer());
        let global = clusters_global(cfg, seed, buckets_dir, clusters_dir, None)?;
        return clusters::run(cfg, corpus, layer, buckets_dir, &global, layout, slice);
    }
    let start = Instant::now();
    let mut reports: Vec<ClusterReport> = Vec::new();
    for &layer in layers {
        let global = clusters_global(cfg, seed, buckets_dir, &layer_dir(corpus, clusters_dir, layer), Some(layer))?;
        reports.push(match global.completed() {
            Some(r) => r,
            None => clusters::run(cfg, corpus, layer, buckets_dir, &global, layout, slice)?,
        });
    }
    let dirs: Vec<(usize, Loc)> =
        (corpus.own..corpus.units.len()).map(|u| (u, layer_dir(corpus, clusters_dir, corpus.units[u].layer))).collect();
    let removals_xxh3 = clusters::write_removals_table(&clusters_dir.join(REMOVALS), &dirs)?;
    let global = clusters_global(cfg, seed, buckets_dir, clusters_dir, None)?;
    let mut all = ClusterReport {
        fingerprint: global.fingerprint.clone(),
        docs: 0,
        removed: 0,
        exact_duplicates: 0,
        near_duplicates: 0,
        candidate_pairs: 0,
        candidate_docs: 0,
        verified_pairs: 0,
        docs_without_features: 0,
        sources: BTreeMap::new(),
        removals_xxh3,
        cluster_sizes: BTreeMap::new(),
        largest: Vec::new(),
        seconds: start.elapsed().as_secs_f64(),
    };
    for r in reports {
        all.docs += r.docs;
        all.removed += r.removed;
        all.exact_duplicates += r.exact_duplicates;
        all.near_duplicates += r.near_duplicates;
        all.candidate_pairs += r.candidate_pairs;
        all.candidate_docs += r.candidate_docs;
        all.verified_pairs += r.verified_pairs;
        all.docs_without_features += r.docs_without_features;
        for (s, (d, x)) in r.sources {
            let e = all.sources.entry(s).or_default();
            (e.0, e.1) = (e.0 + d, e.1 + x);
        }
        for (size, n) in r.cluster_sizes {
            *all.cluster_sizes.entry(size).or_default() += n;
        }
        all.largest.extend(r.largest);
    }
    all.largest.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    all.largest.truncate(5);
    global.finish(&all)?;
    Ok(all)
}

/// What the clusters step found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterReport {
    /// xxh3 of the config, seed and candidate files: a report with the same one is current.
    pub fingerprint: String,
    pub docs: u64,
    pub removed: u64,
    pub exact_duplicates: u64,
    pub near_duplicates: u64,
    /// Candidate pairs from the bucket stage (with repeats across bands), the documents in
    /// them, and the pairs verification confirmed.
    pub candidate_pairs: u64,
    pub candidate_docs: u64,
    pub verified_pairs: u64,
    /// Documents with no feature (too short for an n-gram): exact dedup only.
    pub docs_without_features: u64,
    /// Per source: documents and removed documents.
    pub sources: BTreeMap<String, (u64, u64)>,
    /// xxh3 of `removals.parquet` as this report's run wrote it: the filter uses the table only
    /// when it still is that file, so removals are bound to the config that computed them.
    #[serde(default)]
    pub removals_xxh3: String,
    /// Cluster size -> number of clusters (sizes >= 2).
    pub cluster_sizes: BTreeMap<u64, u64>,
    /// The largest clusters: size, representative id and the start of its text.
    pub largest: Vec<(u64, String, String)>,
    pub seconds: f64,
}

#[cfg(test)]
/// A document of a candidate pair, as the clusters step holds it.
#[derive(Default)]
struct Doc {
    gid: u64,
    id: String,
    source: u16,
    score: f64,
    exact: u128,
}

fn cluster_fingerprint(
    cfg: &DedupConfig,
    seed: u64,
    buckets_dir: &Loc,
    layer: Option<u32>,
) -> Result<String, StageError> {
    let m = Manifest::read(&buckets_dir.join(MANIFEST))?;
    let files: Vec<&str> = m.side.iter().map(|f| f.xxh3.as_str()).collect();
    let mut doc = serde_json::json!({ "config": cfg, "seed": seed, "pairs": files, "buckets": m.fingerprint });
    if let Some(layer) = layer {
        doc["dump"] = layer.into();
    }
    Ok(format!("{:016x}", xxhash_rust::xxh3::xxh3_64(doc.to_string().as_bytes())))
}

impl GlobalReport for ClusterReport {
    fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// The clusters step's report (its marker) and the removals table it writes first.
const CLUSTERS_REPORT: &str = "report.json";
/// The removals table of the clusters step (what the filter removes, with cluster and reason).
pub const REMOVALS: &str = "removals.parquet";

/// The clusters step's marker in `dir`: of the whole step, or of dump `layer` of several.
fn clusters_global(
    cfg: &DedupConfig,
    seed: u64,
    buckets_dir: &Loc,
    dir: &Loc,
    layer: Option<u32>,
) -> Result<Global<'static>, StageError> {
    Ok(Global {
        dir: dir.clone(),
        fingerprint: cluster_fingerprint(cfg, seed, buckets_dir, layer)?,
        report: CLUSTERS_REPORT,
        files: &[REMOVALS],
    })
}

fn completed_clusters(
    cfg: &DedupConfig,
    seed: u64,
    buckets_dir: &Loc,
    dir: &Loc,
) -> Result<Option<ClusterReport>, StageError> {
    Ok(clusters_global(cfg, seed, buckets_dir, dir, None)?.completed())
}

#[cfg(test)]
/// Union-find with path halving; the smaller index becomes the root (deterministic).
struct Dsu(Vec<u32>);

#[cfg(test)]
impl Dsu {
    fn find(&mut self, mut x: u32) -> u32 {
        while self.0[x as usize] != x {
            let p = self.0[self.0[x as usize] as usize];
            self.0[x as usize] = p;
            x = p;
        }
        x
    }
    fn union(&mut self, a: u32, b: u32) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            self.0[hi as usize] = lo;
        }
    }
}

#[cfg(test)]
/// Streams every candidate pair of the bucket stage, in unit order.
fn for_each_pair(
    buckets_dir: &Loc,
    m: &Manifest,
    mut f: impl FnMut(u64, u64, bool) -> Result<(), StageError>,
) -> Result<(), StageError> {
    for file in m.side.iter().filter(|f| f.path.ends_with(".side-pairs.exch")) {
        let loc = buckets_dir.join(&file.path);
        let dests = (0..).map_while(|d| exchange::read_block(&loc, d).ok());
        for words in dests {
            for w in words.chunks_exact(3) {
                f(w[0], w[1], w[2] == 1)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
/// The one-process clusters algorithm the distributed step replaced, kept as the tests'
/// reference: union-find over every candidate pair, memory growing with the documents in them.
fn clusters(
    cfg: &DedupConfig,
    seed: u64,
    input: &Manifest,
    input_dir: &Loc,
    sig_dir: &Loc,
    buckets_dir: &Loc,
    dir: &Loc,
) -> Result<ClusterReport, StageError> {
    let start = Instant::now();
    let fingerprint = cluster_fingerprint(cfg, seed, buckets_dir, None)?;
    let bm = Manifest::read(&buckets_dir.join(MANIFEST))?;
    // Pass 1 over the pairs: the documents in them, numbered densely in gid order.
    let mut candidate_pairs = 0u64;
    let mut involved: BTreeSet<u64> = BTreeSet::new();
    for_each_pair(buckets_dir, &bm, |a, b, _| {
        candidate_pairs += 1;
        involved.insert(a);
        involved.insert(b);
        Ok(())
    })?;
    let dense: BTreeMap<u64, u32> = involved.iter().enumerate().map(|(i, &g)| (g, i as u32)).collect();
    drop(involved);
    // The signature tables, streamed: per-source counts for all, details for the involved.
    let sm = Manifest::read(&sig_dir.join(MANIFEST))?;
    let mut docs: Vec<Doc> = (0..dense.len()).map(|_| Doc::default()).collect();
    let mut source_names: Vec<String> = Vec::new();
    let mut sources: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut n = 0u64;
    for (unit, f) in sm.outputs.iter().enumerate() {
        let loc = sig_dir.join(&f.path);
        for batch in ParquetSource::open(&loc, SIG_FORMAT, 1)?.batches(None, 65536)? {
            let b = batch?;
            let rows: UInt32Array = column(&b, "row", &loc)?;
            let (ids, srcs) = (str_col(&b, "id")?, str_col(&b, "source")?);
            let score: Float64Array = column(&b, "score", &loc)?;
            let (hi, lo): (UInt64Array, UInt64Array) = (column(&b, "exact_hi", &loc)?, column(&b, "exact_lo", &loc)?);
            for i in 0..b.num_rows() {
                n += 1;
                let s = srcs.value(i);
                sources.entry(s.to_string()).or_default().0 += 1;
                let g = gid(unit, rows.value(i));
                let Some(&k) = dense.get(&g) else { continue };
                let source = match source_names.iter().position(|x| x == s) {
                    Some(p) => p,
                    None => {
                        source_names.push(s.to_string());
                        source_names.len() - 1
                    }
                } as u16;
                docs[k as usize] = Doc {
                    gid: g,
                    id: ids.value(i).to_string(),
                    source,
                    score: if score.is_null(i) { f64::NEG_INFINITY } else { score.value(i) },
                    exact: ((hi.value(i) as u128) << 64) | lo.value(i) as u128,
                };
            }
        }
    }
    // Feature sets of the involved documents, re-read from the input, to verify pairs.
    let needs_sets = cfg.verify && !docs.is_empty();
    let sets: Vec<Vec<u64>> = if needs_sets { read_sets(cfg, input, input_dir, &docs)? } else { Vec::new() };
    // Pass 2 over the pairs: union the confirmed ones. Pairs already in one cluster add
    // nothing, so they are not verified again; the clusters do not depend on pair order.
    let mut dsu = Dsu((0..docs.len() as u32).collect());
    let mut verified = 0u64;
    for_each_pair(buckets_dir, &bm, |a, b, exact| {
        let (a, b) = (dense[&a], dense[&b]);
        if dsu.find(a) == dsu.find(b) {
            return Ok(());
        }
        let ok = if exact {
            docs[a as usize].exact == docs[b as usize].exact
        } else {
            !cfg.verify || jaccard(&sets[a as usize], &sets[b as usize]) >= cfg.threshold
        };
        if ok {
            dsu.union(a, b);
            verified += 1;
        }
        Ok(())
    })?;
    // Clusters and their representatives.
    let mut members: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for k in 0..docs.len() as u32 {
        let r = dsu.find(k);
        members.entry(r).or_default().push(k);
    }
    let is_index = |d: &Doc| cfg.index_sources.iter().any(|s| *s == source_names[d.source as usize]);
    let mut removals: Vec<(u32, &'static str, u32, Option<f64>)> = Vec::new(); // (doc, reason, rep, jaccard)
    let mut cluster_sizes: BTreeMap<u64, u64> = BTreeMap::new();
    let mut largest: Vec<(u64, u32)> = Vec::new();
    for group in members.values().filter(|m| m.len() > 1) {
        *cluster_sizes.entry(group.len() as u64).or_default() += 1;
        let better = |a: &u32, b: &u32| {
            let (da, db) = (&docs[*a as usize], &docs[*b as usize]);
            (is_index(db), db.score)
                .partial_cmp(&(is_index(da), da.score))
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(da.id.cmp(&db.id))
        };
        let mut sorted = group.clone();
        sorted.sort_by(better);
        let rep = sorted[0];
        largest.push((group.len() as u64, rep));
        for &k in &sorted[1..] {
            let d = &docs[k as usize];
            if is_index(d) {
                continue;
            }
            let exact = docs[rep as usize].exact == d.exact;
            let j = if exact {
                Some(1.0)
            } else if needs_sets {
                Some(jaccard(&sets[k as usize], &sets[rep as usize]))
            } else {
                None
            };
            removals.push((k, if exact { "exact_duplicate" } else { "near_duplicate" }, rep, j));
        }
    }
    let removed = removals.len() as u64;
    if n > 0 && removed as f64 > cfg.max_removal * n as f64 {
        return Err(StageError::Recipe(format!(
            "dedup would remove {removed} of {n} documents ({:.1}%), more than dedup.max_removal = {:.1}%\nhint: this is usually a configuration mistake (a low threshold, verify = false with few rows per band, or an input of templated pages); check {} and raise max_removal only if the removals are right",
            100.0 * removed as f64 / n as f64,
            100.0 * cfg.max_removal,
            dir
        )));
    }
    removals.sort_by_key(|r| docs[r.0 as usize].gid);
    let sink_loc = dir.join(REMOVALS);
    let mut sink = ParquetSink::create(&sink_loc, removals_schema(), REMOVALS_FORMAT, 1, WriteOptions::default(), &[])?;
    for chunk in removals.chunks(65536) {
        let doc = |r: &(u32, &str, u32, Option<f64>)| &docs[r.0 as usize];
        let cols: Vec<ArrayRef> = vec![
            Arc::new(UInt32Array::from_iter_values(chunk.iter().map(|r| (doc(r).gid >> 32) as u32))),
            Arc::new(UInt32Array::from_iter_values(chunk.iter().map(|r| doc(r).gid as u32))),
            Arc::new(StringArray::from_iter_values(chunk.iter().map(|r| doc(r).id.as_str()))),
            Arc::new(StringArray::from_iter_values(chunk.iter().map(|r| r.1))),
            Arc::new(UInt64Array::from_iter_values(chunk.iter().map(|r| docs[r.2 as usize].gid))),
            Arc::new(StringArray::from_iter_values(chunk.iter().map(|r| docs[r.2 as usize].id.as_str()))),
            Arc::new(Float64Array::from_iter(chunk.iter().map(|r| r.3))),
        ];
        sink.write(&RecordBatch::try_new(removals_schema(), cols).map_err(arrow_err(&sink_loc))?)?;
    }
    sink.finish()?;
    let (_, removals_xxh3) = shards::checksum::file_checksum(&sink_loc)?;
    for r in &removals {
        sources.entry(source_names[docs[r.0 as usize].source as usize].clone()).or_default().1 += 1;
    }
    largest.sort_by(|a, b| b.0.cmp(&a.0).then(docs[a.1 as usize].id.cmp(&docs[b.1 as usize].id)));
    largest.truncate(5);
    let wanted: Vec<&Doc> = largest.iter().map(|l| &docs[l.1 as usize]).collect();
    let snippets: BTreeMap<u64, String> =
        read_texts(input, input_dir, &wanted)?.into_iter().map(|(g, t)| (g, t.chars().take(300).collect())).collect();
    let report = ClusterReport {
        fingerprint,
        docs: n,
        removed,
        exact_duplicates: removals.iter().filter(|r| r.1 == "exact_duplicate").count() as u64,
        near_duplicates: removals.iter().filter(|r| r.1 == "near_duplicate").count() as u64,
        candidate_pairs,
        candidate_docs: docs.len() as u64,
        verified_pairs: verified,
        docs_without_features: sm.counters.get("docs_without_features").copied().unwrap_or(0),
        sources,
        removals_xxh3,
        cluster_sizes,
        largest: largest
            .iter()
            .map(|(size, k)| {
                let d = &docs[*k as usize];
                (*size, d.id.clone(), snippets.get(&d.gid).cloned().unwrap_or_default())
            })
            .collect(),
        seconds: start.elapsed().as_secs_f64(),
    };
    clusters_global(cfg, seed, buckets_dir, dir, None)?.finish(&report)?;
    Ok(report)
}

#[cfg(test)]
/// The feature sets of `docs` (in their order), re-read from the input shards.
fn read_sets(cfg: &DedupConfig, input: &Manifest, input_dir: &Loc, docs: &[Doc]) -> Result<Vec<Vec<u64>>, StageError> {
    let texts: BTreeMap<u64, String> =
        read_texts(input, input_dir, &docs.iter().collect::<Vec<_>>())?.into_iter().collect();
    Ok(docs
        .par_iter()
        .map(|d| {
            let t = texts.get(&d.gid).map(String::as_str).unwrap_or_default();
            cfg.set_of(t, &normalize(t, cfg.lowercase))
        })
        .collect())
}

#[cfg(test)]
/// The texts of `wanted` documents by gid, reading only the input shards that hold them.
fn read_texts(input: &Manifest, input_dir: &Loc, wanted: &[&Doc]) -> Result<Vec<(u64, String)>, StageError> {
    let mut by_unit: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
    for d in wanted {
        by_unit.entry((d.gid >> 32) as u32).or_default().insert(d.gid as u32);
    }
    let mut out = Vec::with_capacity(wanted.len());
    for (unit, rows) in by_unit {
        let f = &input.outputs[unit as usize];
        let mut row = 0u32;
        for batch in DocReader::open(&input_dir.join(&f.path))?.batches(Some(&["text"]), 8192)? {
            let b = batch?;
            let text = str_col(&b, "text")?;
            for i in 0..b.num_rows() {
                if rows.contains(&row) {
                    out.push((gid(unit as usize, row), text.value(i).to_string()));
                }
                row += 1;
            }
        }
    }
    Ok(out)
}

/// A removed document: reason, cluster id, representative id, measured Jaccard.
type Removal = (String, u64, String, Option<f64>);

/// The removals of input shard `unit` by row, from the clusters step's table for that shard
/// (checked against the checksum its phase recorded: a changed table is refused).
fn unit_removals(clusters_dir: &Loc, unit: usize) -> Result<BTreeMap<u32, Removal>, StageError> {
    let (loc, f) = clusters::unit_removals(clusters_dir, unit)?;
    f.verify(&loc)?;
    let mut removed = BTreeMap::new();
    for batch in ParquetSource::open(&loc, REMOVALS_FORMAT, 1)?.batches(None, 65536)? {
        let b = batch?;
        let row: UInt32Array = column(&b, "row", &loc)?;
        let (reason, dup) = (str_col(&b, "reason")?, str_col(&b, "duplicate_of")?);
        let cluster: UInt64Array = column(&b, "cluster_id", &loc)?;
        let jac: Float64Array = column(&b, "jaccard", &loc)?;
        for i in 0..b.num_rows() {
            let j = (!jac.is_null(i)).then(|| jac.value(i));
            removed.insert(row.value(i), (reason.value(i).to_string(), cluster.value(i), dup.value(i).to_string(), j));
        }
    }
    Ok(removed)
}

fn filter(
    input: &Manifest,
    input_dir: &Loc,
    corpus: &Corpus,
    clusters_dir: &Loc,
    report: &ClusterReport,
    out: &Loc,
    slice: TaskSlice,
) -> Result<TaskReport, StageError> {
    let stage =
        Stage::per_input_file(STAGE, out.clone(), serde_json::json!({ "removals_xxh3": report.removals_xxh3 }), input);
    stage.run(slice, |ctx| {
        let entry = &input.outputs[ctx.unit];
        let src_loc = input_dir.join(&entry.path);
        entry.verify(&src_loc)?;
        let unit = corpus.own + ctx.unit;
        let gone = unit_removals(&layer_dir(corpus, clusters_dir, corpus.units[unit].layer), unit)?;
        let reader = DocReader::open(&src_loc)?;
        let schema = reader.schema().clone();
        let (shard_loc, _) = ctx.shard();
        let (ledger_loc, _) = ctx.ledger();
        let mut writer = DocWriter::create(&shard_loc, schema, WriteOptions::default())?;
        let mut ledger = LedgerWriter::create(&ledger_loc, WriteOptions::default())?;
        let mut m = ctx.manifest();
        let mut row = 0u32;
        for batch in reader.batches(None, 4096)? {
            let b = batch?;
            let (ids, sources) = (str_col(&b, "id")?, str_col(&b, "source")?);
            let mut keep = Vec::with_capacity(b.num_rows());
            for i in 0..b.num_rows() {
                match gone.get(&row) {
                    Some((reason, cluster, rep, j)) => {
                        ledger.push(LedgerEntry {
                            id: ids.value(i).to_string(),
                            source: sources.value(i).to_string(),
                            stage: STAGE.to_string(),
                            reason: reason.clone(),
                            detail: j.map(|j| format!("jaccard {j:.4}")),
                            cluster_id: Some(*cluster),
                            duplicate_of: Some(rep.clone()),
                            ..LedgerEntry::default()
                        })?;
                        m.count(&format!("{reason}_{}", sources.value(i)), 1);
                        keep.push(false);
                    }
                    None => keep.push(true),
                }
                row += 1;
            }
            let kept = filter_record_batch(&b, &BooleanArray::from(keep)).map_err(arrow_err(&shard_loc))?;
            m.accounting.docs_in += b.num_rows() as u64;
            m.accounting.docs_out += kept.num_rows() as u64;
            m.accounting.docs_ledger += (b.num_rows() - kept.num_rows()) as u64;
            writer.write(&kept)?;
        }
        let rows = writer.finish()?;
        let ledger_rows = ledger.finish()?;
        ctx.record_files(&mut m, entry, &src_loc, rows, ledger_rows)?;
        Ok(m)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shards::docs::{Doc as Document, doc_batch, doc_schema};

    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// id, source, text, quality score.
    type Row = (String, String, String, Option<f64>);

    /// An input stage of `units` shards: random pages, chains of pages each one word away from
    /// the last (so the ends are joined only through the chain), exact copies, copies on an
    /// index source, tied and missing quality scores; every copy in a random shard.
    fn corpus(run_out: &std::path::Path, units: usize) {
        let mut r = 7u64;
        let mut next = |n: u64| {
            r = mix(r);
            r % n
        };
        let word = |i: u64| format!("w{}x{}", i % 997, i % 13);
        let mut docs: Vec<(String, String, Option<f64>)> = Vec::new();
        for page in 0..150 {
            let mut words: Vec<u64> = (0..60 + next(60)).map(|_| next(5000)).collect();
            let kind = page % 5;
            let copies = match kind {
                0 => 12, // a chain
                1 => 3,  // exact copies
                2 => 2,  // an index copy and a crawl copy
                _ => 1,
            };
            for c in 0..copies {
                if kind == 0 && c > 0 {
                    let at = next(words.len() as u64) as usize;
                    words[at] = next(5000);
                }
                let text: Vec<String> = words.iter().map(|&w| word(w)).collect();
                let source = if kind == 2 && c == 0 { "webtext" } else { "cc" };
                let score = match next(4) {
                    0 => None,
                    s => Some(s as f64 / 4.0),
                };
                docs.push((source.to_string(), text.join(" "), score));
            }
        }
        let mut shards: Vec<Vec<Row>> = vec![Vec::new(); units];
        for (i, (source, text, score)) in docs.into_iter().enumerate() {
            // Ids out of gid order, so ties on the score are broken by id, not position.
            shards[next(units as u64) as usize].push((format!("d{:05}", mix(i as u64) % 100_000), source, text, score));
        }
        write_input(run_out, &shards);
    }

    /// An `ingest` stage of these shards in `run_out`.
    fn write_input(run_out: &std::path::Path, shards: &[Vec<Row>]) {
        let units = shards.len();
        let dir = Loc::local(run_out.join("ingest"));
        let schema = doc_schema(vec![Field::new("quality_score", DataType::Float64, true)]);
        let mut m = Manifest::new("ingest", units as u64, "test".into(), serde_json::json!({}));
        for (u, rows) in shards.iter().enumerate() {
            let name = format!("part-{u:05}.parquet");
            let loc = dir.join(&name);
            let mut w = DocWriter::create(&loc, schema.clone(), WriteOptions::default()).unwrap();
            let ds: Vec<Document> = rows
                .iter()
                .map(|(id, source, text, _)| Document {
                    id: id.clone(),
                    source: source.clone(),
                    url: None,
                    text: text.clone(),
                })
                .collect();
            let scores: ArrayRef = Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.3)));
            w.write(&doc_batch(&schema, &ds, vec![scores]).unwrap()).unwrap();
            let n = w.finish().unwrap();
            m.outputs.push(FileEntry::describe(&loc, name, n).unwrap());
            m.accounting.docs_in += n;
            m.accounting.docs_out += n;
        }
        m.write(&dir.join(MANIFEST)).unwrap();
    }

    fn config(mode: DedupMode, partitions: usize, verify: bool) -> DedupConfig {
        let mut cfg: DedupConfig = toml::from_str("input = \"ingest\"").unwrap();
        cfg.mode = mode;
        cfg.partitions = partitions;
        cfg.verify = verify;
        cfg.index_sources = vec!["webtext".into()];
        cfg.max_removal = 0.9;
        if mode == DedupMode::Shingles {
            (cfg.ngram, cfg.bands, cfg.rows, cfg.threshold) = (3, 20, 5, 0.75);
        }
        cfg
    }

    /// Every row of a removals table.
    fn removal_rows(loc: &std::path::Path) -> Vec<String> {
        let loc = Loc::local(loc);
        let mut rows = Vec::new();
        for batch in ParquetSource::open(&loc, REMOVALS_FORMAT, 1).unwrap().batches(None, 65536).unwrap() {
            let b = batch.unwrap();
            for i in 0..b.num_rows() {
                let row: Vec<String> = (0..b.num_columns())
                    .map(|c| shards::arrow::util::display::array_value_to_string(b.column(c), i).unwrap())
                    .collect();
                rows.push(row.join("|"));
            }
        }
        rows
    }

    /// Incremental dedup equals dedup of both dumps at once under the rule "earlier dumps
    /// win": dump A alone, then dump B with A's run as its index, removes exactly what one run
    /// over A and B with `dumps = [A, B]` removes (the same rows, reasons, clusters,
    /// representatives and Jaccards), and writes the same kept shards; B's run signs only B's
    /// shards. Without the dump order, the one run removes something else (an A document in
    /// favour of a B one), so the rule is what makes them equal.
    #[test]
    fn incremental_dedup_across_dumps_equals_one_run_over_the_dumps_in_order() {
        let dir = tempfile::tempdir().unwrap();
        // The test corpus's documents, dealt into 4 shards of dump A and 3 of dump B.
        corpus(&dir.path().join("all"), 7);
        let mut shards: Vec<Vec<Row>> = Vec::new();
        for u in 0..7 {
            let loc = Loc::local(dir.path().join(format!("all/ingest/part-{u:05}.parquet")));
            let mut rows = Vec::new();
            for batch in DocReader::open(&loc).unwrap().batches(None, 4096).unwrap() {
                let b = batch.unwrap();
                let (ids, srcs, texts) =
                    (str_col(&b, "id").unwrap(), str_col(&b, "source").unwrap(), str_col(&b, "text").unwrap());
                let score: Float64Array = column(&b, "quality_score", &loc).unwrap();
                for i in 0..b.num_rows() {
                    let source = match srcs.value(i) {
                        "cc" if u < 4 => "cc-a",
                        "cc" => "cc-b",
                        s => s,
                    };
                    let sc = (!score.is_null(i)).then(|| score.value(i));
                    rows.push((ids.value(i).to_string(), source.to_string(), texts.value(i).to_string(), sc));
                }
            }
            shards.push(rows);
        }
        let [a, b, ab, plain] = ["a", "b", "ab", "plain"].map(|n| dir.path().join(n));
        write_input(&a, &shards[..4]);
        write_input(&b, &shards[4..]);
        write_input(&ab, &shards);
        write_input(&plain, &shards);
        let base = config(DedupMode::Shingles, 2, true);
        let dedup = |run_out: &std::path::Path, cfg: &DedupConfig, tasks: usize| {
            for t in 0..tasks {
                run(cfg, 42, &Loc::local(run_out), TaskSlice::new(t, tasks).unwrap(), None).unwrap();
            }
            // Again, as a task that finds every step complete.
            run(cfg, 42, &Loc::local(run_out), TaskSlice::ALL, None).unwrap().clusters.unwrap()
        };
        let ra = dedup(&a, &base, 1);
        let rb = dedup(&b, &DedupConfig { index: vec![a.to_string_lossy().into()], ..base.clone() }, 2);
        let rab = dedup(&ab, &DedupConfig { dumps: vec!["cc-a".into(), "cc-b".into()], ..base.clone() }, 1);
        let rplain = dedup(&plain, &base, 1);

        let removals = |run: &std::path::Path| removal_rows(&run.join("dedup_clusters").join(REMOVALS));
        let (in_a, in_b, in_ab) = (removals(&a), removals(&b), removals(&ab));
        assert!(in_b.iter().any(|r| r.contains("|d")), "B has removals");
        assert_eq!([in_a.clone(), in_b.clone()].concat(), in_ab, "incremental != one run over the dumps in order");
        assert_eq!(ra.removed + rb.removed, rab.removed);
        assert_eq!((rab.docs, ra.docs, rb.docs), (ra.docs + rb.docs, ra.docs, rb.docs));
        // Some of B's documents are removed as duplicates of A's (the index at work).
        let a_ids: BTreeSet<String> = shards[..4].iter().flatten().map(|r| r.0.clone()).collect();
        let reps_in_a = in_b.iter().filter(|r| a_ids.contains(r.split('|').nth(5).unwrap())).count();
        assert!(reps_in_a > 3, "B removals citing A documents: {reps_in_a}");
        // Without the order, one run removes other documents: the rule is what makes them equal.
        assert!(removals(&plain) != in_ab, "the dump order changed nothing: the test proves nothing");
        assert!(rplain.removed > 0);
        // The kept shards and ledgers: A's and B's are the one run's, shard for shard.
        let files = |run: &std::path::Path| -> Vec<Vec<u8>> {
            let m = Manifest::read(&Loc::local(run.join(STAGE).join(MANIFEST))).unwrap();
            m.outputs.iter().chain(&m.ledgers).map(|f| std::fs::read(run.join(STAGE).join(&f.path)).unwrap()).collect()
        };
        let (fa, fb, fab) = (files(&a), files(&b), files(&ab));
        assert_eq!(fab.len(), fa.len() + fb.len());
        let (shards_ab, ledgers_ab) = fab.split_at(7);
        assert!(shards_ab[..4] == fa[..4] && shards_ab[4..] == fb[..3], "kept shards differ");
        assert!(ledgers_ab[..4] == fa[4..] && ledgers_ab[4..] == fb[3..], "ledgers differ");
        // B's run signed B's shards only; its buckets read A's keys.
        let sig_b = Manifest::read(&Loc::local(b.join(SIGNATURES).join(MANIFEST))).unwrap();
        assert_eq!(sig_b.units, 3);
        // An index signed with other settings is refused, naming it.
        let other = DedupConfig { index: vec![a.to_string_lossy().into()], bands: 10, ..base.clone() };
        let e = run(&other, 42, &Loc::local(&b), TaskSlice::ALL, None).unwrap_err().to_string();
        assert!(e.contains("other settings") && e.contains(&*a.to_string_lossy()), "{e}");
        // So is an index whose input shard changed after its dedup.
        let shard = a.join("ingest/part-00002.parquet");
        let mut bytes = std::fs::read(&shard).unwrap();
        bytes.extend_from_slice(b"junk");
        std::fs::write(&shard, bytes).unwrap();
        let cfg_b = DedupConfig { index: vec![a.to_string_lossy().into()], partitions: 3, ..base.clone() };
        let e = run(&cfg_b, 42, &Loc::local(&b), TaskSlice::ALL, None).unwrap_err().to_string();
        assert!(e.contains("part-00002.parquet") && e.contains("changed after its dedup"), "{e}");
    }

    /// Spilled runs merged with the held remainder give every entry in order, and the
    /// spill file is gone when the spill is dropped.
    #[test]
    fn signature_key_spill_merges_runs_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut spill = KeySpill::new(&Loc::local(dir.path()), "part-00000", 2);
        let mut all: Vec<Vec<(u64, u64)>> = vec![Vec::new(); 2];
        let mut keyed: Vec<Vec<(u64, u64)>> = vec![Vec::new(); 2];
        let mut r = 1u64;
        for round in 0..7 {
            for _ in 0..(round * 3000 + 17) {
                r = mix(r);
                let (band, e) = ((r % 2) as usize, (r % 50_000, r >> 40));
                keyed[band].push(e);
                all[band].push(e);
            }
            if round < 6 {
                spill.add(&mut keyed).unwrap();
            }
        }
        assert!(spill.spilled() && spill.runs[0].len() == 6);
        for (j, held) in keyed.into_iter().enumerate() {
            let mut held = held;
            held.sort_unstable();
            let got: Vec<(u64, u64)> = spill.merged(j, held).unwrap().map(Result::unwrap).collect();
            all[j].sort_unstable();
            assert_eq!(got, all[j]);
        }
        drop(spill);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    /// The distributed clusters step against the one-process union-find it replaced, on a
    /// corpus with chains: the same removals table (byte for byte) and report, for 1 to 8
    /// groups and 1 to 3 tasks running at once, in both modes and without verification; and
    /// the filter's output the same for every layout.
    #[test]
    fn distributed_clusters_equal_the_one_process_algorithm() {
        let dir = tempfile::tempdir().unwrap();
        let mut outputs: BTreeMap<String, Vec<(String, Vec<u8>)>> = BTreeMap::new();
        let cases = [
            (DedupMode::Shingles, 1, 1, true),
            (DedupMode::Shingles, 3, 3, true),
            (DedupMode::Shingles, 8, 2, true),
            (DedupMode::Gpt3, 4, 3, true),
            (DedupMode::Shingles, 3, 2, false),
            // Automatic groups of a tiny memory budget: one per shard, every writer spilling.
            (DedupMode::Shingles, 0, 3, true),
        ];
        for (i, &(mode, k, tasks, verify)) in cases.iter().enumerate() {
            let run_out = dir.path().join(format!("run{i}"));
            corpus(&run_out, 9);
            let mut cfg = config(mode, k, verify);
            if k == 0 {
                cfg.memory_mb = 0;
            }
            let out = Loc::local(&run_out);
            for step in [DedupStep::Signatures, DedupStep::Buckets] {
                run(&cfg, 42, &out, TaskSlice::ALL, Some(step)).unwrap();
            }
            let reports: Vec<ClusterReport> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..tasks)
                    .map(|t| {
                        let (cfg, out) = (&cfg, &out);
                        s.spawn(move || {
                            let slice = TaskSlice::new(t, tasks).unwrap();
                            run(cfg, 42, out, slice, Some(DedupStep::Clusters)).unwrap().clusters.unwrap()
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let input = Manifest::read(&out.join("ingest").join(MANIFEST)).unwrap();
            let reference = clusters(
                &cfg,
                42,
                &input,
                &out.join("ingest"),
                &out.join(SIGNATURES),
                &out.join(BUCKETS),
                &out.join("reference"),
            )
            .unwrap();
            assert!(reference.removed > 20 && reference.near_duplicates > 0, "{i}: {reference:?}");
            if mode == DedupMode::Shingles && verify {
                assert!(reference.cluster_sizes.keys().any(|&s| s >= 10), "{i}: chains are clusters: {reference:?}");
            }
            let bytes = |p: &str| std::fs::read(run_out.join(p)).unwrap();
            assert!(
                bytes("dedup_clusters/removals.parquet") == bytes("reference/removals.parquet"),
                "case {i}: the removals differ from the one-process algorithm's"
            );
            for r in &reports {
                let strip = |r: &ClusterReport| {
                    let mut v = serde_json::to_value(r).unwrap();
                    v["seconds"] = 0.into();
                    v
                };
                assert_eq!(strip(r), strip(&reference), "case {i}");
            }
            run(&cfg, 42, &out, TaskSlice::ALL, Some(DedupStep::Filter)).unwrap();
            let m = Manifest::read(&out.join(STAGE).join(MANIFEST)).unwrap();
            assert_eq!(m.accounting.docs_ledger, reference.removed);
            let files =
                m.outputs.iter().chain(&m.ledgers).map(|f| (f.path.clone(), bytes(&format!("dedup/{}", f.path))));
            let key = format!("{mode:?}-{verify}");
            match outputs.get(&key) {
                Some(first) => {
                    assert!(first == &files.collect::<Vec<_>>(), "case {i}: the filter output depends on the layout")
                }
                None => {
                    outputs.insert(key, files.collect());
                }
            }
        }
        // The spilling signature step wrote the same sorted key tables.
        let sides = |run: &str| -> Vec<(String, Vec<u8>)> {
            let d = dir.path().join(run).join(SIGNATURES);
            let m = Manifest::read(&Loc::local(d.join(MANIFEST))).unwrap();
            m.side.iter().map(|f| (f.path.clone(), std::fs::read(d.join(&f.path)).unwrap())).collect()
        };
        let spilled = Manifest::read(&Loc::local(dir.path().join("run5").join(SIGNATURES).join(MANIFEST))).unwrap();
        assert!(spilled.counters["key_spills"] > 0);
        assert!(sides("run0") == sides("run5"), "spilled signature keys differ");
    }
}
