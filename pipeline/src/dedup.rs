//! `grist dedup`: exact and MinHash-LSH near-duplicate removal within and across corpora
//! (GPT-3 step 5), in three steps over the documents of an earlier stage (`[dedup] input`):
//!
//! 1. `dedup_signatures`, a sliced stage, one unit per input shard: per document the exact key
//!    (xxh3-128 of the normalized text) and the LSH band keys of its MinHash signature
//!    (`minhash`), written as a table (`part-N.parquet`, format `dedup_signatures`).
//! 2. `dedup_clusters`, one global step (like quality training; skipped when its fingerprint
//!    matches): exact groups and LSH candidates (documents sharing a band key), candidates
//!    verified by exact Jaccard on their feature sets (re-read from the input shards, for the
//!    documents in candidate pairs only), union-find into clusters, one representative kept
//!    per cluster: a document of an index source if the cluster has one (index sources, e.g.
//!    WebText, are never removed), else the highest quality score, then the smallest id.
//!    Writes `removals.parquet` and `report.json`; refuses to remove more than `max_removal`.
//!    Memory: about n x (64 + id bytes + 8 x bands) bytes for n documents, plus the feature
//!    sets of the documents in candidate pairs.
//! 3. `dedup`, a sliced stage, one unit per input shard: the input's documents minus the
//!    removed ones; ledger rows carry the reason, cluster id, representative id and Jaccard.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use shards::arrow::array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Float64Array, StringArray, UInt32Array, UInt64Array,
};
use shards::arrow::compute::filter_record_batch;
use shards::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use shards::arrow::record_batch::RecordBatch;
use shards::parquet_io::{ParquetSink, ParquetSource};
use shards::{At, DocReader, DocWriter, LedgerEntry, LedgerWriter, Loc, Manifest, ShardError, WriteOptions, str_col};

use crate::error::StageError;
use crate::features::DEFAULT_NUM_FEATURES;
use crate::minhash::{Hasher, exact_key, feature_set, jaccard, normalize, shingle_hashes, shingles};
use crate::slice::TaskSlice;
use crate::stage::{MANIFEST, Stage, TaskReport};

/// The final stage's name (and directory under `run.out`).
pub const STAGE: &str = "dedup";
/// The signature stage's name and directory.
pub const SIGNATURES: &str = "dedup_signatures";
/// The clusters step's directory.
pub const CLUSTERS: &str = "dedup_clusters";
const SIG_FORMAT: &str = "dedup_signatures";
const REMOVALS_FORMAT: &str = "dedup_removals";

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
    /// Fail rather than remove more than this fraction of the documents.
    #[serde(default = "default_max_removal")]
    pub max_removal: f64,
}

fn default_input() -> String {
    crate::quality_filter::STAGE.to_string()
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
fn default_max_removal() -> f64 {
    0.5
}

impl DedupConfig {
    fn hasher(&self, seed: u64) -> Hasher {
        match self.mode {
            DedupMode::Gpt3 => Hasher::spark(self.num_hash_tables, seed as i64),
            DedupMode::Shingles => Hasher::universal(self.bands, self.rows, seed),
        }
    }
    /// The features a signature is taken over: the set, or (shingles) the n-gram hashes in text
    /// order with repeats, which give the same signature without sorting.
    fn features_of(&self, text: &str, normalized: &str) -> Vec<u64> {
        match self.mode {
            DedupMode::Gpt3 => feature_set(text, self.num_features),
            DedupMode::Shingles => shingle_hashes(normalized, self.ngram),
        }
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
        // The band keys, 8 bytes each little-endian; empty when the document has no features.
        Field::new("keys", DataType::Binary, false),
    ]))
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

fn arrow_err(at: &Loc) -> impl Fn(shards::arrow::error::ArrowError) -> StageError + '_ {
    move |source| StageError::Shard(ShardError::Arrow { at: At::file(at.to_string()), source })
}

/// What `grist dedup` did.
#[derive(Debug, Clone, Serialize)]
pub struct DedupRun {
    pub signatures: TaskReport,
    pub clusters: Option<ClusterReport>,
    pub filter: Option<TaskReport>,
}

/// Runs the three steps for one task slice: signatures for the slice; when they are complete,
/// the clusters step (once; deterministic, so concurrent tasks write the same files); then
/// the filter for the slice.
pub fn run(cfg: &DedupConfig, seed: u64, run_out: &Loc, slice: TaskSlice) -> Result<DedupRun, StageError> {
    let input_dir = run_out.join(&cfg.input);
    let input = Manifest::read(&input_dir.join(MANIFEST))?;
    let signatures = signatures(cfg, seed, &input, &input_dir, &run_out.join(SIGNATURES), slice)?;
    if !signatures.stage_complete {
        return Ok(DedupRun { signatures, clusters: None, filter: None });
    }
    let clusters_dir = run_out.join(CLUSTERS);
    let clusters = match completed_clusters(cfg, seed, &run_out.join(SIGNATURES), &clusters_dir)? {
        Some(r) => r,
        None => clusters(cfg, seed, &input, &input_dir, &run_out.join(SIGNATURES), &clusters_dir)?,
    };
    let filter = filter(&input, &input_dir, &clusters_dir, &run_out.join(STAGE), slice)?;
    Ok(DedupRun { signatures, clusters: Some(clusters), filter: Some(filter) })
}

fn signatures(
    cfg: &DedupConfig,
    seed: u64,
    input: &Manifest,
    input_dir: &Loc,
    out: &Loc,
    slice: TaskSlice,
) -> Result<TaskReport, StageError> {
    let mut config = serde_json::to_value(cfg).map_err(|e| StageError::Recipe(e.to_string()))?;
    config["seed"] = seed.into();
    let stage = Stage {
        name: SIGNATURES.to_string(),
        dir: out.clone(),
        config,
        plan: input.outputs.iter().map(|f| serde_json::json!([f.path, f.xxh3])).collect(),
        unit_bytes: input.outputs.iter().map(|f| f.bytes).collect(),
    };
    let hasher = cfg.hasher(seed);
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
        let mut sink =
            ParquetSink::create(&out_loc, sig_schema(), SIG_FORMAT, 1, WriteOptions::default(), &["id", "keys"])?;
        let ledger = LedgerWriter::create(&ledger_loc, WriteOptions::default())?;
        let mut m = ctx.manifest();
        let mut row = 0u32;
        for batch in reader.batches(Some(&cols), 4096)? {
            let b = batch?;
            let (ids, sources, texts) = (str_col(&b, "id")?, str_col(&b, "source")?, str_col(&b, "text")?);
            let scores = b.column_by_name("quality_score").and_then(|c| c.as_any().downcast_ref::<Float64Array>());
            let per_doc: Vec<(u128, u32, Vec<u8>)> = (0..b.num_rows())
                .into_par_iter()
                .map(|i| {
                    let norm = normalize(texts.value(i), cfg.lowercase);
                    let set = cfg.features_of(texts.value(i), &norm);
                    let keys = if set.is_empty() {
                        Vec::new()
                    } else {
                        hasher.band_keys(&hasher.signature(&set)).iter().flat_map(|k| k.to_le_bytes()).collect()
                    };
                    (exact_key(&norm), set.len() as u32, keys)
                })
                .collect();
            let n = b.num_rows();
            m.count("docs_without_features", per_doc.iter().filter(|d| d.1 == 0).count() as u64);
            let cols: Vec<ArrayRef> = vec![
                Arc::new(UInt32Array::from_iter_values(row..row + n as u32)),
                Arc::new(StringArray::from_iter_values((0..n).map(|i| ids.value(i)))),
                Arc::new(StringArray::from_iter_values((0..n).map(|i| sources.value(i)))),
                Arc::new(Float64Array::from_iter((0..n).map(|i| scores.map(|s| s.value(i))))),
                Arc::new(UInt64Array::from_iter_values(per_doc.iter().map(|d| (d.0 >> 64) as u64))),
                Arc::new(UInt64Array::from_iter_values(per_doc.iter().map(|d| d.0 as u64))),
                Arc::new(UInt32Array::from_iter_values(per_doc.iter().map(|d| d.1))),
                Arc::new(BinaryArray::from_iter_values(per_doc.iter().map(|d| &d.2[..]))),
            ];
            let rb = RecordBatch::try_new(sig_schema(), cols).map_err(arrow_err(&out_loc))?;
            sink.write(&rb)?;
            row += n as u32;
            m.accounting.docs_in += n as u64;
            m.accounting.docs_out += n as u64;
        }
        let rows = sink.finish()?;
        let ledger_rows = ledger.finish()?;
        ctx.record_files(&mut m, entry, &src_loc, rows, ledger_rows)?;
        m.timings.insert("signature_seconds".into(), start.elapsed().as_secs_f64());
        Ok(m)
    })
}

/// What the clusters step found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterReport {
    /// xxh3 of the config, seed and signature files: a report with the same one is current.
    pub fingerprint: String,
    pub docs: u64,
    pub removed: u64,
    pub exact_duplicates: u64,
    pub near_duplicates: u64,
    /// Candidate pairs from the LSH bands, and how many verification confirmed.
    pub candidate_pairs: u64,
    pub verified_pairs: u64,
    /// Documents with no feature (too short for an n-gram): exact dedup only.
    pub docs_without_features: u64,
    /// Per source: documents and removed documents.
    pub sources: BTreeMap<String, (u64, u64)>,
    /// Cluster size -> number of clusters (sizes >= 2).
    pub cluster_sizes: BTreeMap<u64, u64>,
    /// The largest clusters: size, representative id and the start of its text.
    pub largest: Vec<(u64, String, String)>,
    pub seconds: f64,
}

/// One document as the clusters step holds it.
struct Doc {
    unit: u32,
    row: u32,
    id: String,
    source: u16,
    score: f64,
    exact: u128,
    keys: Vec<u64>,
}

fn sig_fingerprint(cfg: &DedupConfig, seed: u64, sig_dir: &Loc) -> Result<String, StageError> {
    let m = Manifest::read(&sig_dir.join(MANIFEST))?;
    let files: Vec<&str> = m.outputs.iter().map(|f| f.xxh3.as_str()).collect();
    let doc = serde_json::json!({ "config": cfg, "seed": seed, "signatures": files });
    Ok(format!("{:016x}", xxhash_rust::xxh3::xxh3_64(doc.to_string().as_bytes())))
}

fn completed_clusters(
    cfg: &DedupConfig,
    seed: u64,
    sig_dir: &Loc,
    dir: &Loc,
) -> Result<Option<ClusterReport>, StageError> {
    let Ok(bytes) = dir.join("report.json").read() else { return Ok(None) };
    let Ok(r) = serde_json::from_slice::<ClusterReport>(&bytes) else { return Ok(None) };
    Ok((r.fingerprint == sig_fingerprint(cfg, seed, sig_dir)? && dir.join("removals.parquet").exists()?).then_some(r))
}

/// Union-find with path halving; the smaller index becomes the root (deterministic).
struct Dsu(Vec<u32>);

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

fn clusters(
    cfg: &DedupConfig,
    seed: u64,
    input: &Manifest,
    input_dir: &Loc,
    sig_dir: &Loc,
    dir: &Loc,
) -> Result<ClusterReport, StageError> {
    let start = Instant::now();
    let fingerprint = sig_fingerprint(cfg, seed, sig_dir)?;
    let sm = Manifest::read(&sig_dir.join(MANIFEST))?;
    let mut source_names: Vec<String> = Vec::new();
    let mut docs: Vec<Doc> = Vec::new();
    for (unit, f) in sm.outputs.iter().enumerate() {
        let loc = sig_dir.join(&f.path);
        let src = ParquetSource::open(&loc, SIG_FORMAT, 1)?;
        for batch in src.batches(None, 65536)? {
            let b = batch?;
            let col = |name: &str| b.column_by_name(name).cloned();
            let bad = || StageError::Input { at: At::file(loc.to_string()), msg: "not a signature table".into() };
            let rows = col("row").ok_or_else(bad)?;
            let rows = rows.as_any().downcast_ref::<UInt32Array>().ok_or_else(bad)?;
            let (ids, sources) = (str_col(&b, "id")?, str_col(&b, "source")?);
            let score = col("score").ok_or_else(bad)?;
            let score = score.as_any().downcast_ref::<Float64Array>().ok_or_else(bad)?;
            let (hi, lo) = (col("exact_hi").ok_or_else(bad)?, col("exact_lo").ok_or_else(bad)?);
            let hi = hi.as_any().downcast_ref::<UInt64Array>().ok_or_else(bad)?;
            let lo = lo.as_any().downcast_ref::<UInt64Array>().ok_or_else(bad)?;
            let keys = col("keys").ok_or_else(bad)?;
            let keys = keys.as_any().downcast_ref::<BinaryArray>().ok_or_else(bad)?;
            for i in 0..b.num_rows() {
                let s = sources.value(i);
                let source = match source_names.iter().position(|n| n == s) {
                    Some(k) => k,
                    None => {
                        source_names.push(s.to_string());
                        source_names.len() - 1
                    }
                } as u16;
                docs.push(Doc {
                    unit: unit as u32,
                    row: rows.value(i),
                    id: ids.value(i).to_string(),
                    source,
                    score: if score.is_null(i) { f64::NEG_INFINITY } else { score.value(i) },
                    exact: ((hi.value(i) as u128) << 64) | lo.value(i) as u128,
                    keys: keys
                        .value(i)
                        .chunks_exact(8)
                        .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                        .collect(),
                });
            }
        }
    }
    let n = docs.len();
    let mut dsu = Dsu((0..n as u32).collect());
    // Exact groups.
    let mut exact_pairs = 0u64;
    if cfg.exact {
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_by_key(|&g| (docs[g as usize].exact, g));
        for w in order.windows(2) {
            if docs[w[0] as usize].exact == docs[w[1] as usize].exact {
                dsu.union(w[0], w[1]);
                exact_pairs += 1;
            }
        }
    }
    // LSH candidates: per band, documents sorted by key; each run of equal keys gives pairs
    // (first, x) and (previous, x).
    let bands = docs.iter().map(|d| d.keys.len()).max().unwrap_or(0);
    let mut candidates: BTreeSet<(u32, u32)> = BTreeSet::new();
    for j in 0..bands {
        let mut col: Vec<(u64, u32)> =
            docs.iter().enumerate().filter(|(_, d)| d.keys.len() > j).map(|(g, d)| (d.keys[j], g as u32)).collect();
        col.sort_unstable();
        let mut i = 0;
        while i < col.len() {
            let mut k = i + 1;
            while k < col.len() && col[k].0 == col[i].0 {
                candidates.insert((col[i].1, col[k].1));
                if k > i + 1 {
                    candidates.insert((col[k - 1].1, col[k].1));
                }
                k += 1;
            }
            i = k;
        }
    }
    // Drop pairs already joined as exact duplicates; verify the rest on exact feature sets.
    let pending: Vec<(u32, u32)> = candidates.iter().copied().filter(|&(a, b)| dsu.find(a) != dsu.find(b)).collect();
    let mut sets: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    if cfg.verify && !pending.is_empty() {
        let needed: BTreeSet<u32> = pending.iter().flat_map(|&(a, b)| [a, b]).collect();
        sets = read_sets(cfg, input, input_dir, &docs, &needed)?;
    }
    let mut verified = 0u64;
    for &(a, b) in &pending {
        let ok = !cfg.verify || jaccard(&sets[&a], &sets[&b]) >= cfg.threshold;
        if ok {
            dsu.union(a, b);
            verified += 1;
        }
    }
    // Clusters and their representatives.
    let mut members: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for g in 0..n as u32 {
        let r = dsu.find(g);
        members.entry(r).or_default().push(g);
    }
    let is_index = |d: &Doc| cfg.index_sources.iter().any(|s| *s == source_names[d.source as usize]);
    let mut removals: Vec<(u32, &'static str, u32, Option<f64>)> = Vec::new(); // (g, reason, rep, jaccard)
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
        for &g in &sorted[1..] {
            let d = &docs[g as usize];
            if is_index(d) {
                continue;
            }
            let exact = docs[rep as usize].exact == d.exact;
            let j = if exact {
                Some(1.0)
            } else {
                match (sets.get(&g), sets.get(&rep)) {
                    (Some(a), Some(b)) => Some(jaccard(a, b)),
                    _ => None,
                }
            };
            removals.push((g, if exact { "exact_duplicate" } else { "near_duplicate" }, rep, j));
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
    removals.sort_by_key(|r| (docs[r.0 as usize].unit, docs[r.0 as usize].row));
    let sink_loc = dir.join("removals.parquet");
    let mut sink = ParquetSink::create(&sink_loc, removals_schema(), REMOVALS_FORMAT, 1, WriteOptions::default(), &[])?;
    for chunk in removals.chunks(65536) {
        let cols: Vec<ArrayRef> = vec![
            Arc::new(UInt32Array::from_iter_values(chunk.iter().map(|r| docs[r.0 as usize].unit))),
            Arc::new(UInt32Array::from_iter_values(chunk.iter().map(|r| docs[r.0 as usize].row))),
            Arc::new(StringArray::from_iter_values(chunk.iter().map(|r| docs[r.0 as usize].id.as_str()))),
            Arc::new(StringArray::from_iter_values(chunk.iter().map(|r| r.1))),
            Arc::new(UInt64Array::from_iter_values(chunk.iter().map(|r| r.2 as u64))),
            Arc::new(StringArray::from_iter_values(chunk.iter().map(|r| docs[r.2 as usize].id.as_str()))),
            Arc::new(Float64Array::from_iter(chunk.iter().map(|r| r.3))),
        ];
        sink.write(&RecordBatch::try_new(removals_schema(), cols).map_err(arrow_err(&sink_loc))?)?;
    }
    sink.finish()?;

    let mut sources: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for d in &docs {
        sources.entry(source_names[d.source as usize].clone()).or_default().0 += 1;
    }
    for r in &removals {
        sources.entry(source_names[docs[r.0 as usize].source as usize].clone()).or_default().1 += 1;
    }
    largest.sort_by(|a, b| b.0.cmp(&a.0).then(docs[a.1 as usize].id.cmp(&docs[b.1 as usize].id)));
    largest.truncate(5);
    let snippets = read_snippets(input, input_dir, &docs, &largest.iter().map(|l| l.1).collect())?;
    let report = ClusterReport {
        fingerprint,
        docs: n as u64,
        removed,
        exact_duplicates: removals.iter().filter(|r| r.1 == "exact_duplicate").count() as u64,
        near_duplicates: removals.iter().filter(|r| r.1 == "near_duplicate").count() as u64,
        candidate_pairs: candidates.len() as u64,
        verified_pairs: verified + exact_pairs,
        docs_without_features: docs.iter().filter(|d| d.keys.is_empty()).count() as u64,
        sources,
        cluster_sizes,
        largest: largest
            .iter()
            .map(|(size, g)| (*size, docs[*g as usize].id.clone(), snippets.get(g).cloned().unwrap_or_default()))
            .collect(),
        seconds: start.elapsed().as_secs_f64(),
    };
    let mut json = serde_json::to_string_pretty(&report).unwrap_or_default();
    json.push('\n');
    dir.join("report.json").write_atomic(json.as_bytes())?;
    Ok(report)
}

/// The feature sets of the `needed` documents, re-read from the input shards.
fn read_sets(
    cfg: &DedupConfig,
    input: &Manifest,
    input_dir: &Loc,
    docs: &[Doc],
    needed: &BTreeSet<u32>,
) -> Result<BTreeMap<u32, Vec<u64>>, StageError> {
    let texts = read_texts(input, input_dir, docs, needed)?;
    Ok(texts
        .into_par_iter()
        .map(|(g, t)| {
            let norm = normalize(&t, cfg.lowercase);
            (g, cfg.set_of(&t, &norm))
        })
        .collect())
}

fn read_snippets(
    input: &Manifest,
    input_dir: &Loc,
    docs: &[Doc],
    wanted: &BTreeSet<u32>,
) -> Result<BTreeMap<u32, String>, StageError> {
    Ok(read_texts(input, input_dir, docs, wanted)?
        .into_iter()
        .map(|(g, t)| (g, t.chars().take(300).collect()))
        .collect())
}

/// The texts of the `wanted` documents, by (unit, row), reading only the units that hold them.
fn read_texts(
    input: &Manifest,
    input_dir: &Loc,
    docs: &[Doc],
    wanted: &BTreeSet<u32>,
) -> Result<Vec<(u32, String)>, StageError> {
    let mut by_unit: BTreeMap<u32, BTreeMap<u32, u32>> = BTreeMap::new();
    for &g in wanted {
        let d = &docs[g as usize];
        by_unit.entry(d.unit).or_default().insert(d.row, g);
    }
    let mut out = Vec::with_capacity(wanted.len());
    for (unit, rows) in by_unit {
        let f = &input.outputs[unit as usize];
        let mut row = 0u32;
        for batch in DocReader::open(&input_dir.join(&f.path))?.batches(Some(&["text"]), 8192)? {
            let b = batch?;
            let text = str_col(&b, "text")?;
            for i in 0..b.num_rows() {
                if let Some(&g) = rows.get(&row) {
                    out.push((g, text.value(i).to_string()));
                }
                row += 1;
            }
        }
    }
    Ok(out)
}

/// A removed document: reason, cluster id, representative id, measured Jaccard.
type Removal = (String, u64, String, Option<f64>);

fn filter(
    input: &Manifest,
    input_dir: &Loc,
    clusters_dir: &Loc,
    out: &Loc,
    slice: TaskSlice,
) -> Result<TaskReport, StageError> {
    let removals_loc = clusters_dir.join("removals.parquet");
    let (_, removals_xxh3) = shards::checksum::file_checksum(&removals_loc)?;
    let mut removed: BTreeMap<u32, BTreeMap<u32, Removal>> = BTreeMap::new();
    let src = ParquetSource::open(&removals_loc, REMOVALS_FORMAT, 1)?;
    for batch in src.batches(None, 65536)? {
        let b = batch?;
        let bad = || StageError::Input { at: At::file(removals_loc.to_string()), msg: "not a removals table".into() };
        let u32col = |name: &str| -> Result<UInt32Array, StageError> {
            b.column_by_name(name).and_then(|c| c.as_any().downcast_ref::<UInt32Array>().cloned()).ok_or_else(bad)
        };
        let (unit, row) = (u32col("unit")?, u32col("row")?);
        let (reason, dup) = (str_col(&b, "reason")?, str_col(&b, "duplicate_of")?);
        let cluster = b
            .column_by_name("cluster_id")
            .and_then(|c| c.as_any().downcast_ref::<UInt64Array>().cloned())
            .ok_or_else(bad)?;
        let jac = b
            .column_by_name("jaccard")
            .and_then(|c| c.as_any().downcast_ref::<Float64Array>().cloned())
            .ok_or_else(bad)?;
        for i in 0..b.num_rows() {
            let j = (!jac.is_null(i)).then(|| jac.value(i));
            removed
                .entry(unit.value(i))
                .or_default()
                .insert(row.value(i), (reason.value(i).to_string(), cluster.value(i), dup.value(i).to_string(), j));
        }
    }
    let stage = Stage {
        name: STAGE.to_string(),
        dir: out.clone(),
        config: serde_json::json!({ "removals_xxh3": removals_xxh3 }),
        plan: input.outputs.iter().map(|f| serde_json::json!([f.path, f.xxh3])).collect(),
        unit_bytes: input.outputs.iter().map(|f| f.bytes).collect(),
    };
    let empty = BTreeMap::new();
    stage.run(slice, |ctx| {
        let entry = &input.outputs[ctx.unit];
        let src_loc = input_dir.join(&entry.path);
        entry.verify(&src_loc)?;
        let gone = removed.get(&(ctx.unit as u32)).unwrap_or(&empty);
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
