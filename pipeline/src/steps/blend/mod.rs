//! `grist blend`: GPT-3's training mixture (Table 2.2) over the tokenized documents.
//!
//! Runs after `tokenize` (blending is over tokens, so budgets are exact): the mixture gives each
//! source a weight; weights are normalized to sum to 1 (GPT-3's Table 2.2 sums to 101%), a
//! source's target is weight x `total_tokens` and its epochs are target / available tokens
//! (the train split). A source is taken `floor(epochs)` whole times, plus a fraction: its
//! documents in the order of a seeded per-document draw, taken while the running token count
//! stays under the fractional target, so the realized tokens exceed the plan by less than one
//! document. The selected copies are then shuffled across sources by a seeded permutation of
//! their positions, and written as llm.c shards of `shard_tokens` (whole documents, EOT first,
//! as `tokenize` wrote them), one unit per output shard, with a sidecar per shard (id, source,
//! copy, offset, tokens). The order of the copies is computed once, by scattering every copy to
//! its position and sorting externally ([`order`]), so memory is `memory_mb` whatever the
//! corpus and the budget; the output shards are then sliced between tasks and read it. A plan
//! that repeats a source more than `max_epochs` times (default 100) is refused with the plan's
//! numbers.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use shards::arrow::array::{ArrayRef, StringArray, UInt64Array};
use shards::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use shards::arrow::record_batch::RecordBatch;
use shards::parquet_io::ParquetSink;
use shards::tokens::{TokenShard, TokenWidth, TokenWriter};
use shards::{At, FileEntry, LedgerWriter, Loc, Manifest, ShardError, WriteOptions};

use crate::core::error::StageError;
use crate::core::slice::TaskSlice;
use crate::core::stage::{MANIFEST, Stage, TaskReport};
use crate::steps::tokenize::{GPT2_VOCAB, SOURCE_TOKENS_PREFIX, each_doc};
use crate::steps::{Outcome, Produces, Shape, Step, StepReport, need};

pub mod order;

/// Stage name.
pub const STAGE: &str = "blend";

/// `blend`: the training mixture.
pub static STEP: Step = Step {
    name: STAGE,
    table: "blend",
    input: Some("tokenize"),
    shape: Shape::Sliced,
    produces: Produces::Mixture,
    about: "mix the tokenized sources by the recipe's weights into shuffled llm.c training shards",
    run: |ctx| {
        let rep = run(need(&ctx.recipe.blend, STEP.table)?, ctx.seed(), &ctx.out, ctx.slice)?;
        let dir = ctx.dir(STAGE);
        let units = Outcome::units(rep.stage.clone(), "documents", "written");
        let mut text = format!("\n{}{}", rep.mixture.render(), units.text);
        if units.complete {
            let realized: Vec<String> = rep
                .mixture
                .sources
                .iter()
                .map(|p| {
                    format!("{} {} of {}", p.name, rep.realized.get(&p.name).copied().unwrap_or(0), p.target_tokens)
                })
                .collect();
            text += &format!("blend    realized tokens (of planned): {}\n", realized.join(", "));
        }
        Ok(Outcome {
            complete: units.complete,
            report: StepReport::Blend(rep),
            up_to_date: false,
            text,
            points_to: Some(format!("training {dir}/ (the mixture: llm.c shards part-*.side-train.bin)")),
        })
    },
};

/// The mixture a `blend` output realized against its plan, from its manifest.
#[derive(Debug, Clone, Serialize)]
pub struct MixtureReport {
    /// Per source, in the recipe's order.
    pub sources: Vec<MixtureRow>,
}

/// One source of the mixture: its normalized weight, and planned and realized tokens.
#[derive(Debug, Clone, Serialize)]
pub struct MixtureRow {
    pub name: String,
    pub share: f64,
    pub planned: u64,
    pub realized: u64,
}

impl MixtureReport {
    /// Reads the report of a `blend` manifest (an error for another stage's).
    pub fn read(m: &Manifest) -> Result<MixtureReport, StageError> {
        crate::core::stage::expect_stage(m, STAGE)?;
        // The manifest's config is the recipe table plus what the run added (seed, input tokens).
        let mut table = m.config.clone();
        if let Some(o) = table.as_object_mut() {
            o.remove("seed");
            o.remove("tokens");
        }
        let cfg: BlendConfig = serde_json::from_value(table)
            .map_err(|e| StageError::Usage(format!("the blend manifest's config: {e}")))?;
        let sum: f64 = cfg.sources.iter().map(|s| s.weight).sum();
        let sources = cfg
            .sources
            .iter()
            .map(|s| {
                let share = s.weight / sum.max(1e-12);
                let planned = (share * cfg.total_tokens as f64).round() as u64;
                // A source none of whose documents was drawn has no counter: zero tokens.
                let realized = m.counters.get(&format!("{SOURCE_TOKENS_PREFIX}{}", s.name)).copied().unwrap_or(0);
                MixtureRow { name: s.name.clone(), share, planned, realized }
            })
            .collect();
        Ok(MixtureReport { sources })
    }
}
const SIDECAR_FORMAT: &str = "blend_docs";

/// One row of the mixture table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixSource {
    /// A document source (as `ingest` named it).
    pub name: String,
    /// Share of the training tokens (normalized with the others).
    pub weight: f64,
    /// Available tokens, when there is no data yet (`grist blend --mixture` on the GPT-3 preset); measured
    /// from the tokenize output otherwise.
    #[serde(default)]
    pub tokens: Option<u64>,
}

/// `[blend]` in a recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlendConfig {
    /// The token stage blended (a directory under `run.out`).
    #[serde(default = "default_input")]
    pub input: String,
    /// Training tokens in all (GPT-3: 300 billion).
    pub total_tokens: u64,
    pub sources: Vec<MixSource>,
    #[serde(default = "default_shard_tokens")]
    pub shard_tokens: u64,
    /// Most times a source may be repeated; a plan past it is refused with its numbers before
    /// any work (a mistyped `total_tokens` would otherwise write copies for hours).
    #[serde(default = "default_max_epochs")]
    pub max_epochs: f64,
    /// Memory for the order's external sorts (MiB); past it, sorted runs spill beside the
    /// output. The output does not depend on it.
    #[serde(default = "default_memory_mb")]
    pub memory_mb: u64,
}

fn default_memory_mb() -> u64 {
    1024
}

fn default_max_epochs() -> f64 {
    100.0
}

fn default_input() -> String {
    STEP.input.unwrap_or_default().to_string()
}
fn default_shard_tokens() -> u64 {
    100_000_000
}

impl BlendConfig {
    /// GPT-3's Table 2.2: Common Crawl (filtered) 410B tokens 60%, WebText2 19B 22%, Books1 12B
    /// 8%, Books2 55B 8%, Wikipedia 3B 3%, for 300B training tokens.
    pub fn gpt3() -> BlendConfig {
        let s =
            |name: &str, weight: f64, b: u64| MixSource { name: name.into(), weight, tokens: Some(b * 1_000_000_000) };
        BlendConfig {
            input: default_input(),
            total_tokens: 300_000_000_000,
            sources: vec![
                s("common_crawl", 0.60, 410),
                s("webtext2", 0.22, 19),
                s("books1", 0.08, 12),
                s("books2", 0.08, 55),
                s("wikipedia", 0.03, 3),
            ],
            shard_tokens: default_shard_tokens(),
            max_epochs: default_max_epochs(),
            memory_mb: default_memory_mb(),
        }
    }

    /// The settings the output depends on (all but `memory_mb`), with the seed and the
    /// fingerprint of the tokens blended: the stage's and the order's fingerprinted config.
    fn output_config(&self, seed: u64, tokens: &str) -> Result<serde_json::Value, StageError> {
        let mut config = serde_json::to_value(self).map_err(|e| StageError::Recipe(e.to_string()))?;
        if let Some(o) = config.as_object_mut() {
            o.remove("memory_mb");
        }
        config["seed"] = seed.into();
        config["tokens"] = tokens.into();
        Ok(config)
    }
}

/// One source of the mixture.
#[derive(Debug, Clone, Serialize)]
pub struct SourceShare {
    pub name: String,
    /// The weight as given, and normalized.
    pub weight: f64,
    pub share: f64,
    pub available_tokens: u64,
    pub target_tokens: u64,
    pub epochs: f64,
}

/// The mixture: per source its share, available and target tokens and epochs, and the
/// normalization applied.
#[derive(Debug, Clone, Serialize)]
pub struct Mixture {
    pub weight_sum: f64,
    pub total_tokens: u64,
    pub sources: Vec<SourceShare>,
}

impl Mixture {
    /// The mixture of `cfg` with `available` tokens per source (or the config's own counts).
    pub fn new(cfg: &BlendConfig, available: &BTreeMap<String, u64>) -> Result<Mixture, StageError> {
        let weight_sum: f64 = cfg.sources.iter().map(|s| s.weight).sum();
        if weight_sum.is_nan() || weight_sum <= 0.0 || cfg.sources.iter().any(|s| s.weight.is_nan() || s.weight < 0.0) {
            return Err(StageError::Recipe("blend.sources weights must be non-negative and not all zero".into()));
        }
        let mut sources: Vec<SourceShare> = Vec::new();
        for s in &cfg.sources {
            if sources.iter().any(|p| p.name == s.name) {
                return Err(StageError::Recipe(format!("blend.sources names {:?} twice", s.name)));
            }
            let avail = available.get(&s.name).copied().or(s.tokens).unwrap_or(0);
            let share = s.weight / weight_sum;
            let target = (share * cfg.total_tokens as f64).round() as u64;
            if avail == 0 && target > 0 {
                return Err(StageError::Recipe(format!(
                    "blend: source {:?} has no tokens to give {target}\nhint: check its name against the tokenize sidecar's sources",
                    s.name
                )));
            }
            sources.push(SourceShare {
                name: s.name.clone(),
                weight: s.weight,
                share,
                available_tokens: avail,
                target_tokens: target,
                epochs: if avail > 0 { target as f64 / avail as f64 } else { 0.0 },
            });
        }
        Ok(Mixture { weight_sum, total_tokens: cfg.total_tokens, sources })
    }

    /// An error, with this table, when a source would be repeated more than `max_epochs` times
    /// (a mistyped `total_tokens` is refused before any work).
    pub fn check_epochs(&self, max_epochs: f64) -> Result<(), StageError> {
        let Some(p) = self.sources.iter().find(|p| p.epochs > max_epochs) else { return Ok(()) };
        Err(StageError::Recipe(format!(
            "blend: source {:?} would be repeated {:.1} times ({} target tokens from {} available), more than blend.max_epochs = {max_epochs}\n{}hint: lower total_tokens or the source's weight (GPT-3 repeated no source more than 3.4 times), or raise max_epochs",
            p.name,
            p.epochs,
            p.target_tokens,
            p.available_tokens,
            self.render()
        )))
    }

    /// The mixture as a table.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(s, "source               weight   share   available tokens     target tokens   epochs");
        for p in &self.sources {
            let _ = writeln!(
                s,
                "{:<18} {:>7.1}% {:>6.2}% {:>18} {:>17} {:>8.3}",
                p.name,
                100.0 * p.weight,
                100.0 * p.share,
                p.available_tokens,
                p.target_tokens,
                p.epochs
            );
        }
        if (self.weight_sum - 1.0).abs() > 1e-9 {
            let _ = writeln!(s, "weights sum to {:.1}%: normalized to 100%", 100.0 * self.weight_sum);
        }
        s
    }
}

/// The blend's permutation stream (the trainer's streams are its epochs, from 0).
pub(crate) const BLEND_STREAM: u64 = 0xb1e4_d000_0000_0000;

fn sidecar_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("copy", DataType::UInt64, false),
        Field::new("offset", DataType::UInt64, false),
        Field::new("tokens", DataType::UInt64, false),
    ]))
}

/// What `grist blend` did.
#[derive(Debug, Clone, Serialize)]
pub struct BlendRun {
    pub mixture: Mixture,
    /// Realized tokens per source (the plan's targets, exceeded by less than one document).
    pub realized: BTreeMap<String, u64>,
    pub stage: TaskReport,
}

/// Train-split tokens per source of the tokenize output `dir` (a streaming pass over its
/// sidecars).
fn train_tokens(dir: &Loc, m: &Manifest) -> Result<BTreeMap<String, u64>, StageError> {
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    each_doc(dir, m, "train", |d| {
        let t = out.entry(d.source.to_string()).or_default();
        *t = t.saturating_add(d.tokens);
        Ok(())
    })?;
    Ok(out)
}

/// The mixture from the tokenize output's train-split token counts, or, before there is one,
/// from the mixture table's own `tokens`.
pub fn mixture(cfg: &BlendConfig, run_out: &Loc) -> Result<Mixture, StageError> {
    let manifest = run_out.join(&cfg.input).join(MANIFEST);
    if !manifest.exists()? {
        return Mixture::new(cfg, &BTreeMap::new());
    }
    let m = Manifest::read(&manifest)?;
    Mixture::new(cfg, &train_tokens(&run_out.join(&cfg.input), &m)?)
}

/// Documents read and written per batch of an output shard.
const CHUNK: u64 = 65_536;

/// Runs the blend for one task slice (units = output shards).
pub fn run(cfg: &BlendConfig, seed: u64, run_out: &Loc, slice: TaskSlice) -> Result<BlendRun, StageError> {
    let in_dir = run_out.join(&cfg.input);
    let m = Manifest::read(&in_dir.join(MANIFEST))?;
    let config = cfg.output_config(seed, &m.fingerprint)?;
    let fingerprint = format!("{:016x}", xxhash_rust::xxh3::xxh3_64(config.to_string().as_bytes()));
    let global = order::global(&run_out.join(STAGE), fingerprint);
    let memory = usize::try_from(cfg.memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX);
    // One task builds the order; the others of the array wait for it (or take over a stale claim).
    let report = global.run_once(slice.index, || order::build(cfg, seed, &in_dir, &m, &global, memory))?;
    let plan = Mixture::new(cfg, &report.available)?;
    plan.check_epochs(cfg.max_epochs)?;
    let realized = report.realized.clone();
    let files = order::OrderFiles::open(&global, report)?;
    let order = files.report();
    let stage = Stage {
        name: STAGE.to_string(),
        dir: run_out.join(STAGE),
        config,
        units: order.units.iter().map(|u| serde_json::json!([u[0], u[1]])).collect(),
        unit_bytes: order.units.iter().map(|u| 2 * u[2]).collect(),
    };
    let shards_cache: std::sync::Mutex<BTreeMap<u32, Arc<TokenShard>>> = Default::default();
    let open = |h: u32| -> Result<Arc<TokenShard>, StageError> {
        let mut c = shards_cache.lock().map_err(|_| StageError::Recipe("token shard cache poisoned".into()))?;
        if let Some(s) = c.get(&h) {
            return Ok(s.clone());
        }
        // Read by positioned reads: the blend reads documents scattered over every shard, whose
        // mapped pages would all stay resident.
        let s = Arc::new(TokenShard::open_unmapped(&in_dir.join(&order.shards[h as usize]))?);
        c.insert(h, s.clone());
        Ok(s)
    };
    let report = stage.run(slice, |ctx| {
        let [first, end, _] = order.units[ctx.unit];
        let (bin_loc, bin_name) = ctx.side_file("train", "bin");
        let (side_loc, side_name) = ctx.shard();
        let (ledger_loc, ledger_name) = ctx.ledger();
        let mut w = TokenWriter::create(&bin_loc, TokenWidth::for_vocab(GPT2_VOCAB))?;
        let mut sink =
            ParquetSink::create(&side_loc, sidecar_schema(), SIDECAR_FORMAT, 1, WriteOptions::default(), &["id"])?;
        let mut m = ctx.manifest();
        let mut buf: Vec<u32> = Vec::new();
        let mut k = first;
        while k < end {
            let next = end.min(k + CHUNK);
            let mut rows: Vec<(order::DocRec, u64, u64)> = Vec::with_capacity((next - k) as usize);
            for (doc, copy) in files.copies(k..next)? {
                let d = files.doc(doc)?;
                let shard = open(d.shard)?;
                if d.offset.checked_add(d.tokens).is_none_or(|e| e > shard.len() as u64) {
                    return Err(StageError::Input {
                        at: At::file(in_dir.join(&order.shards[d.shard as usize]).to_string()),
                        msg: format!("document {} runs past the end of its shard", d.id),
                    });
                }
                buf.resize(d.tokens as usize, 0);
                shard.read_into(d.offset as usize, &mut buf)?;
                let at = w.len();
                w.write(&buf)?;
                m.count(&format!("{SOURCE_TOKENS_PREFIX}{}", order.sources[d.source as usize]), d.tokens);
                rows.push((d, copy, at));
            }
            let cols: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0.id.as_str()))),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| order.sources[r.0.source as usize].as_str()),
                )),
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.2))),
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.0.tokens))),
            ];
            let rb = RecordBatch::try_new(sidecar_schema(), cols)
                .map_err(|source| ShardError::Arrow { at: At::file(side_loc.to_string()), source })?;
            sink.write(&rb)?;
            k = next;
        }
        let tokens = w.finish()?;
        let n = sink.finish()?;
        let ledger_rows = LedgerWriter::create(&ledger_loc, WriteOptions::default())?.finish()?;
        m.accounting.docs_in = n;
        m.accounting.docs_out = n;
        m.outputs.push(FileEntry::describe(&side_loc, side_name, n)?);
        m.ledgers.push(FileEntry::describe(&ledger_loc, ledger_name, ledger_rows)?);
        m.side.push(FileEntry::describe(&bin_loc, bin_name, tokens)?);
        ctx.progress.inc(2 * tokens);
        Ok(m)
    })?;
    Ok(BlendRun { mixture: plan, realized, stage: report })
}

/// The selected copies of every document, in their shuffled order, computed position by
/// position with every document in memory: the reference the external [`order`] is tested
/// against. A source's copies are its documents `whole` times over plus a seeded fraction,
/// laid end to end, and output position `k` holds copy `π(k)` of a seeded permutation.
#[cfg(test)]
struct Copies {
    blocks: Vec<Block>,
    perm: shards::permutation::Permutation,
    len: u64,
}

/// One source's copies: `whole` passes over `mine`, then `frac`, from copy index `start`.
#[cfg(test)]
struct Block {
    start: u64,
    mine: Vec<usize>,
    frac: Vec<usize>,
    whole: u64,
}

#[cfg(test)]
impl Copies {
    /// The copies of `plan` over `docs`, and the tokens realized per source (each target
    /// exceeded by less than one document).
    fn new(plan: &Mixture, docs: &crate::steps::tokenize::TokDocs, seed: u64) -> (Copies, BTreeMap<String, u64>) {
        let mut blocks = Vec::new();
        let mut realized: BTreeMap<String, u64> = BTreeMap::new();
        let mut start = 0u64;
        for p in &plan.sources {
            let mine: Vec<usize> = (0..docs.len()).filter(|&i| docs.is_of(i, &p.name)).collect();
            let whole = p.epochs.floor() as u64;
            let got = whole * mine.iter().map(|&i| docs.tokens(i)).sum::<u64>();
            // The fraction: documents by a seeded draw, while under the remaining target.
            let rest = p.target_tokens.saturating_sub(got);
            let mut order: Vec<(u64, usize)> = mine
                .iter()
                .map(|&i| (crate::core::rng::DocRng::new(seed, "blend/fraction", docs.get(i).id).next_u64(), i))
                .collect();
            order.sort_unstable();
            let (mut frac, mut taken) = (Vec::new(), 0u64);
            for &(_, i) in &order {
                if taken >= rest {
                    break;
                }
                frac.push(i);
                taken += docs.tokens(i);
            }
            realized.insert(p.name.clone(), got + taken);
            let len = whole * mine.len() as u64 + frac.len() as u64;
            blocks.push(Block { start, mine, frac, whole });
            start += len;
        }
        (
            Copies { blocks, perm: shards::permutation::Permutation::new(start, seed, BLEND_STREAM), len: start },
            realized,
        )
    }

    fn len(&self) -> u64 {
        self.len
    }

    /// The copy at output position `k`: (document index, copy number).
    fn at(&self, k: u64) -> (usize, u32) {
        let c = self.perm.at(k);
        let b = &self.blocks[self.blocks.partition_point(|b| b.start <= c) - 1];
        let local = c - b.start;
        let m = b.mine.len() as u64;
        if local < b.whole * m {
            (b.mine[(local % m) as usize], (local / m) as u32)
        } else {
            (b.frac[(local - b.whole * m) as usize], b.whole as u32)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt3_table_2_2_plan() {
        let p = Mixture::new(&BlendConfig::gpt3(), &BTreeMap::new()).unwrap();
        assert!((p.weight_sum - 1.01).abs() < 1e-12);
        let by: BTreeMap<&str, &SourceShare> = p.sources.iter().map(|s| (s.name.as_str(), s)).collect();
        // Normalized shares of 300B tokens, and epochs = target / available.
        let cc = by["common_crawl"];
        assert_eq!(cc.target_tokens, (0.60 / 1.01 * 300e9_f64).round() as u64);
        assert!((cc.epochs - 0.60 / 1.01 * 300.0 / 410.0).abs() < 1e-9, "{}", cc.epochs);
        assert!((by["webtext2"].epochs - 0.22 / 1.01 * 300.0 / 19.0).abs() < 1e-9);
        assert!((by["wikipedia"].epochs - 0.03 / 1.01 * 300.0 / 3.0).abs() < 1e-9);
        assert_eq!(p.sources.iter().map(|s| s.target_tokens).sum::<u64>(), 300_000_000_000);
        // The paper's rounded epochs (0.44 CC, 0.43 Books2) within rounding of the table.
        assert!((cc.epochs - 0.44).abs() < 0.01 && (by["books2"].epochs - 0.43).abs() < 0.01);
        assert!(p.render().contains("weights sum to 101.0%: normalized to 100%"));
    }

    #[test]
    fn an_absurd_total_is_refused_with_the_plan() {
        let mut cfg = BlendConfig::gpt3();
        assert!(Mixture::new(&cfg, &BTreeMap::new()).unwrap().check_epochs(100.0).is_ok());
        cfg.total_tokens = 300_000_000_000_000; // three zeros too many
        let e = Mixture::new(&cfg, &BTreeMap::new()).unwrap().check_epochs(100.0).unwrap_err().to_string();
        assert!(e.contains("\"common_crawl\" would be repeated 434.") && e.contains("max_epochs = 100"), "{e}");
        assert!(e.contains("source               weight"), "the plan's table: {e}");
    }

    #[test]
    fn selection_is_within_one_document_of_the_plan() {
        use crate::steps::tokenize::TokDoc;
        let docs: Vec<TokDoc> = (0..500)
            .map(|i| TokDoc {
                id: format!("d{i}"),
                source: if i % 3 == 0 { "a" } else { "b" }.into(),
                shard: String::new(),
                offset: 0,
                tokens: 50 + (i as u64 * 37) % 400,
            })
            .collect();
        let avail = |s: &str| docs.iter().filter(|d| d.source == s).map(|d| d.tokens).sum::<u64>();
        let mut available = BTreeMap::new();
        available.insert("a".to_string(), avail("a"));
        available.insert("b".to_string(), avail("b"));
        let cfg = BlendConfig {
            input: String::new(),
            total_tokens: 2 * avail("a"),
            sources: vec![
                MixSource { name: "a".into(), weight: 0.7, tokens: None },
                MixSource { name: "b".into(), weight: 0.3, tokens: None },
            ],
            shard_tokens: 1000,
            max_epochs: 100.0,
            memory_mb: 1,
        };
        let plan = Mixture::new(&cfg, &available).unwrap();
        let table: crate::steps::tokenize::TokDocs = docs.iter().cloned().collect();
        let select = |plan: &Mixture, _docs: &[TokDoc], seed| {
            let (c, realized) = Copies::new(plan, &table, seed);
            ((0..c.len()).map(|k| c.at(k)).collect::<Vec<_>>(), realized)
        };
        let (order, realized) = select(&plan, &docs, 9);
        for p in &plan.sources {
            let r = realized[&p.name];
            assert!(r >= p.target_tokens && r - p.target_tokens < 450, "{}: {r} vs {}", p.name, p.target_tokens);
            let counted: u64 =
                order.iter().filter(|(i, _)| docs[*i].source == p.name).map(|(i, _)| docs[*i].tokens).sum();
            assert_eq!(counted, r);
        }
        // Source a: 0.7 x 2 = 1.4 epochs: every document at least once.
        assert!(docs.iter().enumerate().filter(|(_, d)| d.source == "a").all(|(i, _)| order.iter().any(|o| o.0 == i)));
        // Mixed: not all of one source first.
        let first: Vec<&str> = order.iter().take(50).map(|(i, _)| docs[*i].source.as_str()).collect();
        assert!(first.contains(&"a") && first.contains(&"b"));
        assert_eq!(select(&plan, &docs, 9).0, order, "deterministic");
        // Every copy exactly once: (document, copy number) pairs are distinct.
        let distinct: std::collections::BTreeSet<_> = order.iter().collect();
        assert_eq!(distinct.len(), order.len());
    }

    /// A tokenize output of `n` documents over two sidecars (sources a, b and an unblended c,
    /// one in ten in the validation split), and the train documents as a table.
    fn token_output(dir: &std::path::Path, n: usize) -> (Manifest, crate::steps::tokenize::TokDocs) {
        use crate::steps::tokenize::TokDoc;
        let schema = crate::steps::tokenize::sidecar_schema();
        let mut m = Manifest::new("tokenize", 2, "tok-fingerprint".into(), serde_json::json!({}));
        let mut train = Vec::new();
        for part in 0..2 {
            let rows: Vec<(String, &str, &str, String, u64, u64)> = (part * n / 2..(part + 1) * n / 2)
                .map(|i| {
                    let source = ["a", "b", "b", "c"][i % 4];
                    let split = if i % 10 == 7 { "val" } else { "train" };
                    (
                        format!("doc-{i:05}"),
                        source,
                        split,
                        format!("part-{part:05}.bin"),
                        10 * i as u64,
                        20 + (i as u64 * 37) % 300,
                    )
                })
                .collect();
            let cols: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0.as_str()))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.3.as_str()))),
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.4))),
                Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.5))),
            ];
            let name = format!("part-{part:05}.parquet");
            let loc = Loc::local(dir.join(&name));
            let mut sink =
                ParquetSink::create(&loc, schema.clone(), "token_docs", 1, WriteOptions::default(), &[]).unwrap();
            sink.write(&RecordBatch::try_new(schema.clone(), cols).unwrap()).unwrap();
            let rows_n = sink.finish().unwrap();
            m.outputs.push(FileEntry::describe(&loc, name, rows_n).unwrap());
            train.extend(rows.iter().filter(|r| r.2 == "train").map(|r| TokDoc {
                id: r.0.clone(),
                source: r.1.into(),
                shard: r.3.clone(),
                offset: r.4,
                tokens: r.5,
            }));
        }
        (m, train.into_iter().collect())
    }

    #[test]
    fn the_external_order_equals_the_in_memory_one_spilled_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let (m, docs) = token_output(&dir.path().join("tokenize"), 6000);
        let available: BTreeMap<String, u64> = docs.iter().fold(BTreeMap::new(), |mut a, d| {
            *a.entry(d.source.to_string()).or_default() += d.tokens;
            a
        });
        let cfg = BlendConfig {
            input: "tokenize".into(),
            // a: 2.x epochs (whole passes and a fraction), b: a fraction; c is not blended.
            total_tokens: 2 * available["a"] + available["b"] / 2,
            sources: vec![
                MixSource { name: "b".into(), weight: 0.2, tokens: None },
                MixSource { name: "a".into(), weight: 0.8, tokens: None },
            ],
            shard_tokens: 20_000,
            max_epochs: 100.0,
            memory_mb: 1,
        };
        let plan = Mixture::new(&cfg, &available).unwrap();
        assert!(plan.sources[1].epochs > 2.0 && plan.sources[0].epochs < 1.0, "{}", plan.render());
        let (reference, realized) = Copies::new(&plan, &docs, 5);
        let want: Vec<(usize, u32)> = (0..reference.len()).map(|k| reference.at(k)).collect();
        let in_dir = Loc::local(dir.path().join("tokenize"));
        for (name, memory) in [("held", 1usize << 30), ("spilled", 0)] {
            let global = order::global(&Loc::local(dir.path().join(name)), "fp".into());
            let r = order::build(&cfg, 5, &in_dir, &m, &global, memory).unwrap();
            assert_eq!(r.spilled_runs > 0, name == "spilled", "{name}: {} runs", r.spilled_runs);
            assert_eq!(r.realized, realized, "{name}");
            assert_eq!(r.docs, docs.len() as u64);
            let files = order::OrderFiles::open(&global, r.clone()).unwrap();
            let got: Vec<(usize, u32)> =
                files.copies(0..r.copies).unwrap().into_iter().map(|(d, c)| (d as usize, c as u32)).collect();
            assert_eq!(got, want, "{name}: copies in the in-memory reference's order");
            // Output shards: whole documents, consecutive, none over shard_tokens but by one document.
            assert_eq!(r.units.first().unwrap()[0], 0);
            assert_eq!(r.units.last().unwrap()[1], r.copies);
            for (u, next) in r.units.iter().zip(r.units.iter().skip(1)) {
                assert_eq!(u[1], next[0]);
                let tokens: u64 = (u[0]..u[1]).map(|k| docs.tokens(want[k as usize].0)).sum();
                assert_eq!(tokens, u[2]);
                assert!(u[2] <= cfg.shard_tokens && u[2] + docs.tokens(want[u[1] as usize].0) > cfg.shard_tokens);
            }
            // Documents read back as the sidecars gave them.
            for i in [0usize, 1, 777, docs.len() - 1] {
                let d = files.doc(i as u64).unwrap();
                let want = docs.get(i);
                assert_eq!((d.id.as_str(), r.sources[d.source as usize].as_str()), (want.id, want.source));
                assert_eq!(
                    (r.shards[d.shard as usize].as_str(), d.offset, d.tokens),
                    (want.shard, want.offset, want.tokens)
                );
            }
            // Nothing temporary is left beside the order.
            let names: Vec<String> = std::fs::read_dir(dir.path().join(name).join(order::DIR))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert_eq!(names.len(), 4, "{names:?}");
        }
        // The two orders are the same bytes.
        for f in [order::DOCS, order::IDS, order::COPIES] {
            let read = |n: &str| std::fs::read(dir.path().join(n).join(order::DIR).join(f)).unwrap();
            assert_eq!(read("held"), read("spilled"), "{f}");
        }
    }

    #[test]
    fn a_damaged_order_is_an_error_naming_the_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let (m, _) = token_output(&dir.path().join("tokenize"), 400);
        let cfg = BlendConfig {
            input: "tokenize".into(),
            total_tokens: 10_000,
            sources: vec![MixSource { name: "a".into(), weight: 1.0, tokens: None }],
            shard_tokens: 20_000,
            max_epochs: 100.0,
            memory_mb: 1,
        };
        let global = order::global(&Loc::local(dir.path().join("blend")), "fp".into());
        let r = order::build(&cfg, 5, &Loc::local(dir.path().join("tokenize")), &m, &global, 1 << 20).unwrap();
        let copies = dir.path().join("blend/order").join(order::COPIES);
        let mut bytes = std::fs::read(&copies).unwrap();
        bytes[16 * 3..16 * 3 + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        std::fs::write(&copies, &bytes).unwrap();
        let files = order::OrderFiles::open(&global, r.clone()).unwrap();
        let e = files.copies(0..r.copies).unwrap_err().to_string();
        assert!(e.contains("copies.bin") && e.contains("48"), "{e}");
        // A lying id length in docs.bin.
        let docs = dir.path().join("blend/order").join(order::DOCS);
        let mut bytes = std::fs::read(&docs).unwrap();
        bytes[32 * 5..32 * 5 + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
        std::fs::write(&docs, &bytes).unwrap();
        let e = files.doc(5).unwrap_err().to_string();
        assert!(e.contains("docs.bin") && e.contains("160"), "{e}");
        // Truncated: the read past the end is named.
        std::fs::write(&copies, &bytes[..20]).unwrap();
        let files = order::OrderFiles::open(&global, r.clone()).unwrap();
        assert!(files.copies(0..r.copies).unwrap_err().to_string().contains("copies.bin"));
    }
}
