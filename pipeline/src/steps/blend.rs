//! `grist blend`: GPT-3's training mixture (Table 2.2) over the tokenized documents.
//!
//! Runs after `tokenize` (blending is over tokens, so budgets are exact): the mixture gives each
//! source a weight; weights are normalized to sum to 1 (GPT-3's Table 2.2 sums to 101%), a
//! source's target is weight x `total_tokens` and its epochs are target / available tokens
//! (the train split). A source is taken `floor(epochs)` whole times, plus a fraction: its
//! documents in the order of a seeded per-document draw, taken while the running token count
//! stays under the fractional target, so the realized tokens exceed the plan by less than one
//! document. The selected copies are then shuffled across sources by a seeded permutation of
//! their positions (computed per position, so no list of copies is ever held: memory is two
//! indices per document whatever `total_tokens` asks) and written as llm.c shards of
//! `shard_tokens` (whole documents, EOT first, as `tokenize` wrote them), one unit per output
//! shard, with a sidecar per shard (id, source, copy, offset, tokens). A plan that repeats a
//! source more than `max_epochs` times (default 100) is refused with the plan's numbers.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use shards::arrow::array::{ArrayRef, StringArray, UInt64Array};
use shards::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use shards::arrow::record_batch::RecordBatch;
use shards::parquet_io::ParquetSink;
use shards::permutation::Permutation;
use shards::tokens::{TokenShard, TokenWidth, TokenWriter};
use shards::{At, FileEntry, LedgerWriter, Loc, Manifest, ShardError, WriteOptions};

use crate::core::error::StageError;
use crate::core::rng::DocRng;
use crate::core::slice::TaskSlice;
use crate::core::stage::{MANIFEST, Stage, TaskReport};
use crate::steps::tokenize::SOURCE_TOKENS_PREFIX;
use crate::steps::tokenize::{GPT2_VOCAB, TokDocs, token_docs};
use crate::steps::{Outcome, Produces, Shape, Step, StepReport, need};

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
        }
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
        let mut sources = Vec::new();
        for s in &cfg.sources {
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

/// The selected copies of every document, in their shuffled order, computed position by
/// position: a source's copies are its documents `whole` times over plus a seeded fraction,
/// laid end to end, and output position `k` holds copy `π(k)` of a seeded permutation. Memory
/// is two indices per document, however many copies the plan asks for.
struct Copies {
    blocks: Vec<Block>,
    perm: Permutation,
    len: u64,
}

/// The blend's permutation stream (the trainer's streams are its epochs, from 0).
const BLEND_STREAM: u64 = 0xb1e4_d000_0000_0000;

/// One source's copies: `whole` passes over `mine`, then `frac`, from copy index `start`.
struct Block {
    start: u64,
    mine: Vec<usize>,
    frac: Vec<usize>,
    whole: u64,
}

impl Copies {
    /// The copies of `plan` over `docs`, and the tokens realized per source (each target
    /// exceeded by less than one document).
    fn new(plan: &Mixture, docs: &TokDocs, seed: u64) -> (Copies, BTreeMap<String, u64>) {
        let mut blocks = Vec::new();
        let mut realized: BTreeMap<String, u64> = BTreeMap::new();
        let mut start = 0u64;
        for p in &plan.sources {
            let mine: Vec<usize> = (0..docs.len()).filter(|&i| docs.is_of(i, &p.name)).collect();
            let whole = p.epochs.floor() as u64;
            let got = whole * mine.iter().map(|&i| docs.tokens(i)).sum::<u64>();
            // The fraction: documents by a seeded draw, while under the remaining target.
            let rest = p.target_tokens.saturating_sub(got);
            let mut order: Vec<(u64, usize)> =
                mine.iter().map(|&i| (DocRng::new(seed, "blend/fraction", docs.get(i).id).next_u64(), i)).collect();
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
        (Copies { blocks, perm: Permutation::new(start, seed, BLEND_STREAM), len: start }, realized)
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

/// The mixture from the tokenize output's train-split token counts, or, before there is one,
/// from the mixture table's own `tokens`.
pub fn mixture(cfg: &BlendConfig, run_out: &Loc) -> Result<Mixture, StageError> {
    let manifest = run_out.join(&cfg.input).join(MANIFEST);
    if !manifest.exists()? {
        return Mixture::new(cfg, &BTreeMap::new());
    }
    let m = Manifest::read(&manifest)?;
    let available: BTreeMap<String, u64> =
        token_docs(&run_out.join(&cfg.input), &m, "train")?.iter().fold(BTreeMap::new(), |mut a, d| {
            *a.entry(d.source.to_string()).or_default() += d.tokens;
            a
        });
    Mixture::new(cfg, &available)
}

/// Runs the blend for one task slice (units = output shards).
pub fn run(cfg: &BlendConfig, seed: u64, run_out: &Loc, slice: TaskSlice) -> Result<BlendRun, StageError> {
    let in_dir = run_out.join(&cfg.input);
    let m = Manifest::read(&in_dir.join(MANIFEST))?;
    let docs = token_docs(&in_dir, &m, "train")?;
    let available: BTreeMap<String, u64> = docs.iter().fold(BTreeMap::new(), |mut a, d| {
        *a.entry(d.source.to_string()).or_default() += d.tokens;
        a
    });
    let plan = Mixture::new(cfg, &available)?;
    plan.check_epochs(cfg.max_epochs)?;
    let (copies, realized) = Copies::new(&plan, &docs, seed);
    // Output shards: consecutive runs of whole documents up to shard_tokens (one pass over
    // the positions; only the boundaries are kept).
    let mut units: Vec<std::ops::Range<u64>> = Vec::new();
    let mut unit_bytes: Vec<u64> = Vec::new();
    let (mut start, mut acc) = (0u64, 0u64);
    for k in 0..copies.len() {
        let n = docs.tokens(copies.at(k).0);
        if acc > 0 && acc + n > cfg.shard_tokens {
            units.push(start..k);
            unit_bytes.push(2 * acc);
            start = k;
            acc = 0;
        }
        acc += n;
    }
    if start < copies.len() {
        units.push(start..copies.len());
        unit_bytes.push(2 * acc);
    }
    let mut config = serde_json::to_value(cfg).map_err(|e| StageError::Recipe(e.to_string()))?;
    config["seed"] = seed.into();
    config["tokens"] = m.fingerprint.clone().into();
    let stage = Stage {
        name: STAGE.to_string(),
        dir: run_out.join(STAGE),
        config,
        units: units.iter().map(|r| serde_json::json!([r.start, r.end])).collect(),
        unit_bytes,
    };
    let shards_cache: std::sync::Mutex<BTreeMap<String, Arc<TokenShard>>> = Default::default();
    let open = |name: &str| -> Result<Arc<TokenShard>, StageError> {
        let mut c = shards_cache.lock().map_err(|_| StageError::Recipe("token shard cache poisoned".into()))?;
        if let Some(s) = c.get(name) {
            return Ok(s.clone());
        }
        // Read by positioned reads: the blend reads documents scattered over every shard, whose
        // mapped pages would all stay resident.
        let s = Arc::new(TokenShard::open_unmapped(&in_dir.join(name))?);
        c.insert(name.to_string(), s.clone());
        Ok(s)
    };
    let report = stage.run(slice, |ctx| {
        let range = units[ctx.unit].clone();
        let (bin_loc, bin_name) = ctx.side_file("train", "bin");
        let (side_loc, side_name) = ctx.shard();
        let (ledger_loc, ledger_name) = ctx.ledger();
        let mut w = TokenWriter::create(&bin_loc, TokenWidth::for_vocab(GPT2_VOCAB))?;
        let mut sink =
            ParquetSink::create(&side_loc, sidecar_schema(), SIDECAR_FORMAT, 1, WriteOptions::default(), &["id"])?;
        let mut m = ctx.manifest();
        let mut rows: Vec<(usize, u32, u64)> = Vec::with_capacity((range.end - range.start) as usize);
        let mut buf: Vec<u32> = Vec::new();
        for (i, copy) in range.map(|k| copies.at(k)) {
            let d = docs.get(i);
            let shard = open(d.shard)?;
            buf.resize(d.tokens as usize, 0);
            if d.offset + d.tokens > shard.len() as u64 {
                return Err(StageError::Input {
                    at: At::file(in_dir.join(d.shard).to_string()),
                    msg: format!("document {} runs past the end of its shard", d.id),
                });
            }
            shard.read_into(d.offset as usize, &mut buf)?;
            rows.push((i, copy, w.len()));
            w.write(&buf)?;
            m.count(&format!("{SOURCE_TOKENS_PREFIX}{}", d.source), d.tokens);
        }
        let tokens = w.finish()?;
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| docs.get(r.0).id))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| docs.get(r.0).source))),
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.1 as u64))),
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| docs.tokens(r.0)))),
        ];
        let rb = RecordBatch::try_new(sidecar_schema(), cols)
            .map_err(|source| ShardError::Arrow { at: At::file(side_loc.to_string()), source })?;
        sink.write(&rb)?;
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
        };
        let plan = Mixture::new(&cfg, &available).unwrap();
        let table: TokDocs = docs.iter().cloned().collect();
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
}
