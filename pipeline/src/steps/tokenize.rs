//! `grist tokenize`: GPT-2 BPE (r50k_base, through tiktoken-rs, whose ranks are compiled in)
//! into llm.c token shards. Every document is written as `<|endoftext|>` (50256) followed by
//! its tokens, as llm.c's data scripts do; a document goes to the validation split when its
//! seeded draw is under `val_fraction`. One unit per input shard; its token shards
//! (`part-N.side-train-K.bin`, `part-N.side-val-K.bin`, uint16, llm.c header) hold whole
//! documents, up to `shard_tokens` tokens each (a longer document gets a shard of its own), and
//! its sidecar (`part-N.parquet`) gives each document's id, source, split, shard, token offset
//! and token count, so the trainer and the report can follow losses per source.

use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use shards::arrow::array::{Array, ArrayRef, StringArray, UInt64Array};
use shards::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use shards::arrow::record_batch::RecordBatch;
use shards::parquet_io::{ParquetSink, ParquetSource};
use shards::tokens::{TokenShard, TokenWidth, TokenWriter};
use shards::{At, DocReader, FileEntry, LedgerWriter, Loc, Manifest, ShardError, WriteOptions, str_col};

use crate::core::error::StageError;
use crate::core::rng::DocRng;
use crate::core::slice::TaskSlice;
use crate::core::stage::{MANIFEST, Stage, TaskReport, UnitCtx};
use crate::steps::{Outcome, Produces, Shape, Step, need};
use crate::text::bpe::Gpt2Bpe;

/// Stage name.
pub const STAGE: &str = "tokenize";
/// Manifest counters: tokens per split (`tokens_train`, `tokens_val`) and per source.
/// Written and read only here and in `blend`; see [`TokenizeReport`].
const TOKENS_PREFIX: &str = "tokens_";
pub(crate) const SOURCE_TOKENS_PREFIX: &str = "tokens_source_";

/// `tokenize`: GPT-2 BPE into llm.c shards.
pub static STEP: Step = Step {
    name: STAGE,
    table: "tokenize",
    input: Some("decontaminate"),
    shape: Shape::Sliced,
    produces: Produces::Tokens,
    about: "GPT-2 BPE into llm.c token shards, with a seeded validation split and a per-document sidecar",
    run: |ctx| {
        let rep = run(need(&ctx.recipe.tokenize, STEP.table)?, ctx.seed(), &ctx.out, ctx.slice)?;
        let dir = ctx.dir(STAGE);
        Ok(Outcome::units(rep, "documents", "tokenized")
            .then(|| {
                let r = TokenizeReport::read(&Manifest::read(&dir.join(MANIFEST))?)?;
                Ok(format!(
                    "tokens   {} train + {} validation GPT-2 tokens in {} llm.c shards under {dir}/\n",
                    r.tokens_train, r.tokens_val, r.shards
                ))
            })?
            .pointing(format!(
                "tokens   {dir}/ (llm.c shards part-*.side-{{train,val}}-*.bin, sidecar part-*.parquet)"
            )))
    },
};

/// What `tokenize` wrote, from its manifest.
#[derive(Debug, Clone, Serialize)]
pub struct TokenizeReport {
    /// Tokens in the train and validation splits (each document's end-of-text included).
    pub tokens_train: u64,
    pub tokens_val: u64,
    /// Token shards (both splits).
    pub shards: usize,
    /// Tokens per source, both splits.
    pub tokens_by_source: std::collections::BTreeMap<String, u64>,
}

impl TokenizeReport {
    /// Reads the report of a `tokenize` manifest (an error for another stage's).
    pub fn read(m: &Manifest) -> Result<TokenizeReport, StageError> {
        crate::core::stage::expect_stage(m, STAGE)?;
        // Counters are sparse: a split with no document has none, which means zero tokens.
        let split = |s: &str| m.counters.get(&format!("{TOKENS_PREFIX}{s}")).copied().unwrap_or(0);
        Ok(TokenizeReport {
            tokens_train: split("train"),
            tokens_val: split("val"),
            shards: m.side.len(),
            tokens_by_source: m
                .counters
                .iter()
                .filter_map(|(k, v)| k.strip_prefix(SOURCE_TOKENS_PREFIX).map(|s| (s.to_string(), *v)))
                .collect(),
        })
    }
}
/// GPT-2's `<|endoftext|>`.
pub const EOT: u32 = 50256;
/// GPT-2's vocabulary size.
pub const GPT2_VOCAB: usize = 50257;
const SIDECAR_FORMAT: &str = "token_docs";

/// `[tokenize]` in a recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizeConfig {
    /// The stage whose documents are tokenized (a directory under `run.out`).
    #[serde(default = "default_input")]
    pub input: String,
    /// Tokens per shard at most (llm.c's data scripts use 10^8).
    #[serde(default = "default_shard_tokens")]
    pub shard_tokens: u64,
    /// Fraction of documents drawn into the validation split.
    #[serde(default = "default_val")]
    pub val_fraction: f64,
}

fn default_input() -> String {
    STEP.input.unwrap_or_default().to_string()
}
fn default_shard_tokens() -> u64 {
    100_000_000
}
fn default_val() -> f64 {
    0.005
}

/// GPT-2 tokens of a text (no special tokens: `<|endoftext|>` in the text is ordinary text).
pub fn gpt2_tokens(text: &str) -> Vec<u32> {
    Gpt2Bpe::get().encode(text)
}

/// Documents longer than this are cut (where the BPE allows, see [`Gpt2Bpe::cuts`]) and their
/// parts encoded in parallel, so one long document does not hold a batch up on one core.
const CHUNK_BYTES: usize = 1 << 15;

/// A batch of documents and the tokens of each.
type Encoded = (RecordBatch, Vec<Vec<u32>>);

/// The tokens of each text of a batch, on all threads.
fn encode_batch(texts: &StringArray) -> Vec<Vec<u32>> {
    let bpe = Gpt2Bpe::get();
    // (document, byte range) of every part; parts of a document are consecutive.
    let mut parts: Vec<(usize, usize, usize)> = Vec::with_capacity(texts.len());
    for d in 0..texts.len() {
        let t = texts.value(d);
        let mut from = 0;
        let cuts = if t.len() > CHUNK_BYTES { bpe.cuts(t, CHUNK_BYTES) } else { Vec::new() };
        for c in cuts.into_iter().chain(std::iter::once(t.len())) {
            parts.push((d, from, c));
            from = c;
        }
    }
    let encoded: Vec<Vec<u32>> = parts.par_iter().map(|&(d, a, b)| bpe.encode(&texts.value(d)[a..b])).collect();
    let mut out: Vec<Vec<u32>> = vec![Vec::new(); texts.len()];
    for (&(d, _, _), toks) in parts.iter().zip(encoded) {
        if out[d].is_empty() {
            out[d] = toks;
        } else {
            out[d].extend_from_slice(&toks);
        }
    }
    out
}

/// What `<|endoftext|>` decodes to.
const EOT_TEXT: &[u8] = b"<|endoftext|>";

/// Text of GPT-2 tokens (`None` when an id is not in the vocabulary or the bytes are not UTF-8).
pub fn gpt2_decode(tokens: &[u32]) -> Option<String> {
    let bpe = Gpt2Bpe::get();
    let mut bytes = Vec::with_capacity(tokens.len() * 4);
    for &t in tokens {
        bytes.extend_from_slice(if t == EOT { EOT_TEXT } else { bpe.token_bytes(t)? });
    }
    String::from_utf8(bytes).ok()
}

/// GPT-2 BPE decoding of sampled tokens, whose bytes need not be valid UTF-8 (a character cut
/// between tokens): invalid sequences become U+FFFD; ids outside the vocabulary are skipped.
pub fn gpt2_decode_lossy(tokens: &[u32]) -> String {
    let bpe = Gpt2Bpe::get();
    let bytes: Vec<u8> = tokens
        .iter()
        .flat_map(|&t| if t == EOT { EOT_TEXT } else { bpe.token_bytes(t).unwrap_or_default() }.iter().copied())
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

pub(crate) fn sidecar_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("split", DataType::Utf8, false),
        Field::new("shard", DataType::Utf8, false),
        Field::new("offset", DataType::UInt64, false),
        Field::new("tokens", DataType::UInt64, false),
    ]))
}

/// The open shard of one split.
struct Split {
    name: &'static str,
    writer: Option<(TokenWriter, Loc, String)>,
    count: usize,
}

impl Split {
    /// Makes room for `n` tokens: a new shard when the current one would pass `max`.
    fn room(&mut self, ctx: &UnitCtx, m: &mut Manifest, n: u64, max: u64) -> Result<(), StageError> {
        if let Some((w, _, _)) = &self.writer
            && (w.is_empty() || w.len() + n <= max)
        {
            return Ok(());
        }
        self.close(m)?;
        let (loc, name) = ctx.side_file(&format!("{}-{:03}", self.name, self.count), "bin");
        self.count += 1;
        self.writer = Some((TokenWriter::create(&loc, TokenWidth::for_vocab(GPT2_VOCAB))?, loc, name));
        Ok(())
    }
    fn close(&mut self, m: &mut Manifest) -> Result<(), StageError> {
        if let Some((w, loc, name)) = self.writer.take() {
            let n = w.finish()?;
            m.side.push(FileEntry::describe(&loc, name, n)?);
        }
        Ok(())
    }
}

/// Runs the tokenizer for one task slice: `{run_out}/{cfg.input}` into `{run_out}/tokenize`.
pub fn run(cfg: &TokenizeConfig, seed: u64, run_out: &Loc, slice: TaskSlice) -> Result<TaskReport, StageError> {
    run_into(cfg, seed, &run_out.join(&cfg.input), &run_out.join(STAGE), slice)
}

/// [`run`] from any document stage directory into any output directory (`grist ablate`'s arms
/// tokenize earlier stages of the recipe beside its own tokenize output).
pub fn run_into(
    cfg: &TokenizeConfig,
    seed: u64,
    input_dir: &Loc,
    out_dir: &Loc,
    slice: TaskSlice,
) -> Result<TaskReport, StageError> {
    // The encoder's tables (about 0.1 s) are built on another thread while manifests are read
    // and input shards verified.
    rayon::spawn(|| {
        Gpt2Bpe::get();
    });
    let input = Manifest::read(&input_dir.join(MANIFEST))?;
    let mut config = serde_json::to_value(cfg).map_err(|e| StageError::Recipe(e.to_string()))?;
    config["seed"] = seed.into();
    config["tokenizer"] = "r50k_base (tiktoken-rs 0.12)".into();
    let stage = Stage::per_input_file(STAGE, out_dir.clone(), config, &input);
    stage.run(slice, |ctx| {
        let start = Instant::now();
        let entry = &input.outputs[ctx.unit];
        let src_loc = input_dir.join(&entry.path);
        entry.verify(&src_loc)?;
        let (side_loc, _) = ctx.shard();
        let (ledger_loc, _) = ctx.ledger();
        let mut sidecar =
            ParquetSink::create(&side_loc, sidecar_schema(), SIDECAR_FORMAT, 1, WriteOptions::default(), &["id"])?;
        let mut m = ctx.manifest();
        let mut splits =
            [Split { name: "train", writer: None, count: 0 }, Split { name: "val", writer: None, count: 0 }];
        // Batch k is written (split draw, token shards, sidecar: one thread) while batch k+1 is
        // read and encoded on the others, so the single-threaded part hides behind the BPE.
        let mut batches = DocReader::open(&src_loc)?.batches(Some(&["id", "source", "text"]), 1024)?;
        let mut read_and_encode = || -> Result<Option<Encoded>, StageError> {
            let Some(b) = batches.next().transpose()? else { return Ok(None) };
            let tokens = encode_batch(str_col(&b, "text")?);
            Ok(Some((b, tokens)))
        };
        let mut pending = read_and_encode()?;
        while let Some((b, tokens)) = pending.take() {
            let (next, written) = rayon::join(&mut read_and_encode, || -> Result<(), StageError> {
                let (ids, sources) = (str_col(&b, "id")?, str_col(&b, "source")?);
                // (document, split, shard, offset, tokens) per row of the sidecar.
                let mut rows: Vec<(usize, &str, String, u64, u64)> = Vec::with_capacity(tokens.len());
                for (i, t) in tokens.iter().enumerate() {
                    let val = DocRng::new(seed, "tokenize/val", ids.value(i)).next_f64() < cfg.val_fraction;
                    let s = &mut splits[val as usize];
                    let n = t.len() as u64 + 1;
                    s.room(ctx, &mut m, n, cfg.shard_tokens)?;
                    let Some((w, _, name)) = &mut s.writer else { continue };
                    rows.push((i, s.name, name.clone(), w.len(), n));
                    w.write(&[EOT])?;
                    w.write(t)?;
                    m.count(&format!("{TOKENS_PREFIX}{}", s.name), n);
                    m.count(&format!("{SOURCE_TOKENS_PREFIX}{}", sources.value(i)), n);
                }
                let cols: Vec<ArrayRef> = vec![
                    Arc::new(StringArray::from_iter_values(rows.iter().map(|r| ids.value(r.0)))),
                    Arc::new(StringArray::from_iter_values(rows.iter().map(|r| sources.value(r.0)))),
                    Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                    Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2.as_str()))),
                    Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.3))),
                    Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.4))),
                ];
                let rb = RecordBatch::try_new(sidecar_schema(), cols)
                    .map_err(|source| ShardError::Arrow { at: At::file(side_loc.to_string()), source })?;
                sidecar.write(&rb)?;
                m.accounting.docs_in += b.num_rows() as u64;
                m.accounting.docs_out += b.num_rows() as u64;
                Ok(())
            });
            written?;
            pending = next?;
        }
        for s in &mut splits {
            s.close(&mut m)?;
        }
        let rows = sidecar.finish()?;
        let ledger_rows = LedgerWriter::create(&ledger_loc, WriteOptions::default())?.finish()?;
        ctx.record_files(&mut m, entry, &src_loc, rows, ledger_rows)?;
        m.timings.insert("tokenize_seconds".into(), start.elapsed().as_secs_f64());
        Ok(m)
    })
}

/// A document of the tokenize output.
#[derive(Debug, Clone)]
pub struct TokDoc {
    pub id: String,
    pub source: String,
    /// The token shard holding it (a path relative to the stage directory).
    pub shard: String,
    /// Its first token (the `<|endoftext|>` before it) in the shard.
    pub offset: u64,
    pub tokens: u64,
}

/// A document of a [`TokDocs`], borrowed.
#[derive(Debug, Clone, Copy)]
pub struct TokDocRef<'a> {
    pub id: &'a str,
    pub source: &'a str,
    pub shard: &'a str,
    pub offset: u64,
    pub tokens: u64,
}

/// Documents of the tokenize output held compactly, for the blend, which holds every one: the
/// ids end to end in one string, sources and shards as indices into their names, so a
/// document costs its id's bytes + 28 bytes (a `TokDoc` of three strings cost about 150).
#[derive(Debug, Default)]
pub struct TokDocs {
    ids: String,
    id_end: Vec<u64>,
    names: Vec<String>,
    by_name: std::collections::HashMap<String, u32>,
    source: Vec<u32>,
    shard: Vec<u32>,
    offset: Vec<u64>,
    tokens: Vec<u64>,
}

impl TokDocs {
    fn name(&mut self, n: &str) -> u32 {
        if let Some(&i) = self.by_name.get(n) {
            return i;
        }
        self.names.push(n.to_string());
        self.by_name.insert(n.to_string(), self.names.len() as u32 - 1);
        self.names.len() as u32 - 1
    }
    pub fn push(&mut self, id: &str, source: &str, shard: &str, offset: u64, tokens: u64) {
        self.ids.push_str(id);
        self.id_end.push(self.ids.len() as u64);
        let (s, h) = (self.name(source), self.name(shard));
        self.source.push(s);
        self.shard.push(h);
        self.offset.push(offset);
        self.tokens.push(tokens);
    }
    pub fn len(&self) -> usize {
        self.id_end.len()
    }
    pub fn is_empty(&self) -> bool {
        self.id_end.is_empty()
    }
    /// Document `i`.
    pub fn get(&self, i: usize) -> TokDocRef<'_> {
        let start = if i == 0 { 0 } else { self.id_end[i - 1] as usize };
        TokDocRef {
            id: &self.ids[start..self.id_end[i] as usize],
            source: &self.names[self.source[i] as usize],
            shard: &self.names[self.shard[i] as usize],
            offset: self.offset[i],
            tokens: self.tokens[i],
        }
    }
    pub fn tokens(&self, i: usize) -> u64 {
        self.tokens[i]
    }
    /// Whether document `i` is of `source`.
    pub fn is_of(&self, i: usize, source: &str) -> bool {
        self.by_name.get(source) == Some(&self.source[i])
    }
    pub fn iter(&self) -> impl Iterator<Item = TokDocRef<'_>> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

impl FromIterator<TokDoc> for TokDocs {
    fn from_iter<I: IntoIterator<Item = TokDoc>>(docs: I) -> TokDocs {
        let mut out = TokDocs::default();
        for d in docs {
            out.push(&d.id, &d.source, &d.shard, d.offset, d.tokens);
        }
        out
    }
}

/// Calls `f` on every document of one split (`train` or `val`) of the tokenize output, in
/// sidecar order, streaming the sidecars a batch at a time.
pub fn each_doc(
    dir: &Loc,
    m: &Manifest,
    want: &str,
    mut f: impl FnMut(TokDocRef) -> Result<(), StageError>,
) -> Result<(), StageError> {
    for file in &m.outputs {
        let loc = dir.join(&file.path);
        for b in ParquetSource::open(&loc, "token_docs", 1)?.batches(None, 65536)? {
            let b = b?;
            let (id, src, split, shard) =
                (str_col(&b, "id")?, str_col(&b, "source")?, str_col(&b, "split")?, str_col(&b, "shard")?);
            let num = |c: &str| {
                b.column_by_name(c).and_then(|x| x.as_any().downcast_ref::<UInt64Array>().cloned()).ok_or_else(|| {
                    StageError::Input { at: At::file(loc.to_string()), msg: format!("column {c:?} missing") }
                })
            };
            let (offset, tokens) = (num("offset")?, num("tokens")?);
            for i in 0..b.num_rows() {
                if split.value(i) == want {
                    f(TokDocRef {
                        id: id.value(i),
                        source: src.value(i),
                        shard: shard.value(i),
                        offset: offset.value(i),
                        tokens: tokens.value(i),
                    })?;
                }
            }
        }
    }
    Ok(())
}

/// The documents of one split (`train` or `val`) of the tokenize output, in sidecar order.
pub fn token_docs(dir: &Loc, m: &Manifest, want: &str) -> Result<TokDocs, StageError> {
    let mut out = TokDocs::default();
    each_doc(dir, m, want, |d| {
        out.push(d.id, d.source, d.shard, d.offset, d.tokens);
        Ok(())
    })?;
    Ok(out)
}

/// The validation split of a tokenize output, per source: each source's validation documents'
/// tokens in sidecar order, up to `max_tokens` + 1 per source (what an evaluation of
/// `max_tokens` targets reads).
pub fn val_sets(dir: &Loc, max_tokens: u64) -> Result<Vec<(String, Vec<u32>)>, StageError> {
    let m = Manifest::read(&dir.join(MANIFEST))?;
    let mut sets: Vec<(String, Vec<u32>)> = Vec::new();
    let mut open: std::collections::BTreeMap<String, TokenShard> = std::collections::BTreeMap::new();
    let docs = token_docs(dir, &m, "val")?;
    for d in docs.iter() {
        let at = match sets.iter().position(|(s, _)| *s == d.source) {
            Some(i) => i,
            None => {
                sets.push((d.source.to_string(), Vec::new()));
                sets.len() - 1
            }
        };
        let room = (max_tokens + 1).saturating_sub(sets[at].1.len() as u64).min(d.tokens);
        if room == 0 {
            continue;
        }
        if !open.contains_key(d.shard) {
            open.insert(d.shard.to_string(), TokenShard::open(&dir.join(d.shard))?);
        }
        let shard = &open[d.shard];
        if d.offset + d.tokens > shard.len() as u64 {
            return Err(StageError::Input {
                at: At::file(shard.path().to_string()),
                msg: format!(
                    "document {} at tokens {}..{} runs past the shard's {}",
                    d.id,
                    d.offset,
                    d.offset + d.tokens,
                    shard.len()
                ),
            });
        }
        let mut buf = vec![0u32; room as usize];
        shard.read_into(d.offset as usize, &mut buf)?;
        sets[at].1.extend_from_slice(&buf);
    }
    Ok(sets)
}
