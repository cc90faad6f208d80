//! The clusters step, distributed: verification, connected components and representatives as
//! phases of units, so that no task holds more than one unit's share of the corpus.
//!
//! Documents are split into *groups* (contiguous runs of input shards, about
//! `memory_mb / 4` of input each; [`Layout`]) and graph nodes into as many hash *partitions*.
//! Each phase is a stage under `dedup_clusters/` whose units are groups or partitions; one
//! phase hands records to the next through exchange files ([`super::exchange`]):
//!
//! 1. `ship` (per group): the bucket stage routed every candidate pair to the group of its
//!    first document (`a`), and a *need* to the group of its second (`b`) when that differs.
//!    A group reads its needs, reads those documents' signature rows and texts, and sends each
//!    one's exact key and feature set to the groups that asked.
//! 2. `verify` (per group): its pairs, its own documents' sets (from its own input shards) and
//!    the sets shipped to it; every pair is checked (the exact key for an exact-key pair, the
//!    Jaccard similarity for a band pair) and confirmed pairs become graph edges, sent to the
//!    partitions of both ends, with the details of the documents they join.
//! 3. `cc-RRR-large`, `cc-RRR-small` (per partition): rounds of large-star and small-star
//!    (Kiveris et al., "Connected Components in MapReduce and Beyond", 2014) until a round
//!    leaves every partition's edges as they were: then every component is a star around its
//!    smallest document.
//! 4. `label` (per partition): each document's component (its star's centre), sent with its
//!    details to the centre's partition.
//! 5. `reps` (per partition): each component's representative, chosen as before (an index
//!    source's document, else the highest quality score, then the smallest id); every other
//!    member not of an index source is a removal, sent to its own group, and the
//!    representative's set is asked for where the removal needs its Jaccard.
//! 6. `measure` (per group): the asked-for representatives' sets, shipped.
//! 7. `removals` (per group): each removal's Jaccard with its representative, and one sorted
//!    removals table per input shard, which the filter of that shard reads.
//!
//! The report (`report.json`) and the whole removals table (`removals.parquet`, for `grist
//! inspect`) are then written by a streaming pass. Clusters are the connected components of
//! the confirmed pairs, which do not depend on how the work was divided, so the output is the
//! same bytes for any task count and any number of groups as the one-process algorithm's
//! (union-find over all pairs), which the tests keep as the reference.
//!
//! Every phase runs with [`Stage::run_shared`]: a task does its own units, then any another
//! task has not done, so a phase never waits on a task that is not running.
//!
//! Memory per unit: a group's pairs (24 bytes each) and its candidate documents' feature sets
//! (about 1.5 x their text); a partition's edges (16 bytes each, twice per edge). One large
//! component lands in one partition at the end (16 bytes per member).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use shards::arrow::array::{Array, ArrayRef, Float64Array, StringArray, UInt32Array, UInt64Array};
use shards::arrow::record_batch::RecordBatch;
use shards::parquet_io::{ParquetSink, ParquetSource};
use shards::{At, DocReader, FileEntry, Loc, Manifest, WriteOptions, str_col};

use super::corpus::Corpus;
use super::exchange::{ExchangeWriter, read_block, take_bytes};
use super::minhash::{jaccard, normalize};
use super::{
    ClusterReport, DedupConfig, REMOVALS, REMOVALS_FORMAT, SIG_FORMAT, arrow_err, column, gid, range_of,
    removals_schema,
};
use crate::core::error::StageError;
use crate::core::slice::TaskSlice;
use crate::core::stage::{Global, MANIFEST, Stage, UnitCtx};

/// Rounds of large-star and small-star before giving up (they converge in O(log^2 n)).
const MAX_ROUNDS: usize = 64;
/// Pair flags: which kind of key the pair shared.
const EXACT: u64 = 1;
const NEAR: u64 = 2;

/// How documents are split into groups (contiguous input shards) and nodes into partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Input shard ranges, one per group.
    pub groups: Vec<std::ops::Range<usize>>,
    group_of_unit: Vec<u32>,
}

impl Layout {
    /// Groups of about `memory_mb / 4` of input each (or exactly `dedup.partitions` groups),
    /// over input shards of `unit_bytes`.
    pub fn new(cfg: &DedupConfig, unit_bytes: &[u64]) -> Layout {
        let units = unit_bytes.len();
        let mut groups: Vec<std::ops::Range<usize>> = Vec::new();
        if cfg.partitions > 0 {
            let k = cfg.partitions.min(units.max(1));
            groups = (0..k).map(|g| g * units / k..(g + 1) * units / k).collect();
        } else {
            let budget = ((cfg.memory_mb as u64) << 20) / 4;
            let mut start = 0;
            let mut bytes = 0u64;
            for (u, &b) in unit_bytes.iter().enumerate() {
                if u > start && bytes + b > budget {
                    groups.push(start..u);
                    (start, bytes) = (u, 0);
                }
                bytes += b;
            }
            groups.push(start..units);
        }
        let mut group_of_unit = vec![0u32; units];
        for (g, r) in groups.iter().enumerate() {
            for u in r.clone() {
                group_of_unit[u] = g as u32;
            }
        }
        Layout { groups, group_of_unit }
    }
    /// Number of groups, which is also the number of partitions.
    pub fn k(&self) -> usize {
        self.groups.len()
    }
    /// The group holding document `g`.
    pub fn group(&self, g: u64) -> usize {
        self.group_of_unit.get((g >> 32) as usize).copied().unwrap_or(0) as usize
    }
    /// The partition of graph node `g`.
    pub fn part(&self, g: u64) -> usize {
        range_of(xxhash_rust::xxh3::xxh3_64(&g.to_le_bytes()), self.k())
    }
    /// For the stage configs (a changed layout redoes the phases).
    pub fn describe(&self) -> serde_json::Value {
        serde_json::json!(self.groups.iter().map(|r| [r.start, r.end]).collect::<Vec<_>>())
    }
}

/// What the bucket stage sends for one candidate pair (`a` < `b`): the pair to `a`'s group
/// and, when `b` lives elsewhere, a need for `b`'s set there.
pub fn route_pair(
    layout: &Layout,
    pairs: &mut ExchangeWriter,
    needs: &mut ExchangeWriter,
    a: u64,
    b: u64,
    exact: bool,
) -> Result<(), StageError> {
    let flag = if exact { EXACT } else { NEAR };
    let ga = layout.group(a);
    pairs.push(ga, &[a, b, flag])?;
    let gb = layout.group(b);
    if gb != ga {
        needs.push(gb, &[b, ga as u64 | (u64::from(!exact) << 63)])?;
    }
    Ok(())
}

/// A document as the clusters phases carry it.
#[derive(Debug, Clone, PartialEq)]
struct Info {
    gid: u64,
    score: f64,
    exact: u128,
    index: bool,
    id: String,
    source: String,
}

impl Info {
    fn push(&self, w: &mut ExchangeWriter, dest: usize, prefix: &[u64]) -> Result<(), StageError> {
        w.push(dest, prefix)?;
        let head = [self.gid, self.score.to_bits(), (self.exact >> 64) as u64, self.exact as u64, self.index as u64];
        w.push(dest, &head)?;
        w.push_bytes(dest, self.id.as_bytes())?;
        w.push_bytes(dest, self.source.as_bytes())
    }
    fn take(words: &[u64], at: &mut usize) -> Option<Info> {
        let w = words.get(*at..*at + 5)?;
        *at += 5;
        let id = String::from_utf8(take_bytes(words, at)?).ok()?;
        let source = String::from_utf8(take_bytes(words, at)?).ok()?;
        Some(Info {
            gid: w[0],
            score: f64::from_bits(w[1]),
            exact: ((w[2] as u128) << 64) | w[3] as u128,
            index: w[4] != 0,
            id,
            source,
        })
    }
    /// Representative order: an index source first, then the higher score, the smaller id,
    /// the smaller gid (the one-process algorithm's stable sort in gid order).
    fn better(&self, o: &Info) -> std::cmp::Ordering {
        (o.index, o.score)
            .partial_cmp(&(self.index, self.score))
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(self.id.cmp(&o.id))
            .then(self.gid.cmp(&o.gid))
    }
}

fn damaged(loc: &Loc, what: &str) -> StageError {
    StageError::Input { at: At::file(loc.to_string()), msg: format!("{what} records cut short: the file is damaged") }
}

/// Everything the phases share.
struct Ctx<'a> {
    cfg: &'a DedupConfig,
    corpus: &'a Corpus,
    /// The dump whose removals this run of the step decides.
    layer: u32,
    buckets_dir: &'a Loc,
    buckets: Manifest,
    dir: &'a Loc,
    layout: &'a Layout,
    fingerprint: String,
    slice: TaskSlice,
}

impl Ctx<'_> {
    /// The input shards whose documents this run of the step may remove (of its dump).
    fn mine(&self) -> impl Iterator<Item = usize> + '_ {
        (self.corpus.own..self.corpus.units.len()).filter(|&u| self.corpus.units[u].layer == self.layer)
    }
    /// Whether the pair (a, b) is decided in this dump: its later document is of it.
    fn in_layer(&self, a: u64, b: u64) -> bool {
        self.corpus.layer(a).max(self.corpus.layer(b)) == self.layer
    }
    /// An exchange writer to every group or partition for this unit; it holds up to
    /// `memory_mb / 8` before it spills (a unit has at most two).
    fn writer(&self, ctx: &UnitCtx) -> ExchangeWriter {
        ExchangeWriter::new(self.layout.k(), (self.cfg.memory_mb << 20) / 8, &ctx.stage.dir, &ctx.stem())
    }
    fn phase(&self, name: &str, units: usize) -> Stage {
        Stage {
            name: format!("dedup_clusters/{name}"),
            dir: self.dir.join(name),
            config: serde_json::json!({ "clusters": self.fingerprint, "layout": self.layout.describe() }),
            units: (0..units).map(|u| serde_json::json!(u)).collect(),
            unit_bytes: vec![0; units],
        }
    }
    /// Runs phase `name` (units `0..units`) with `work` per unit, from this task and helping
    /// others (`Stage::run_shared`); returns the phase's manifest.
    fn run_phase(
        &self,
        name: &str,
        units: usize,
        work: impl Fn(&UnitCtx) -> Result<Manifest, StageError> + Sync,
    ) -> Result<Manifest, StageError> {
        let stage = self.phase(name, units);
        stage.run_shared(self.slice, work)?;
        Ok(Manifest::read(&stage.dir.join(MANIFEST))?)
    }
    /// Block `dest` of every file as (first, second) records.
    fn pairs_in(&self, files: &[Loc], dest: usize, what: &str) -> Result<Vec<(u64, u64)>, StageError> {
        let mut out = Vec::new();
        for block in self.gather(files, dest) {
            let (loc, words) = block?;
            if words.len() % 2 != 0 {
                return Err(damaged(&loc, what));
            }
            out.extend(words.chunks_exact(2).map(|w| (w[0], w[1])));
        }
        Ok(out)
    }
    /// The exchange files `kind` of a finished phase (or the bucket stage), in unit order.
    fn files(&self, dir: &Loc, m: &Manifest, kind: &str) -> Vec<Loc> {
        let suffix = format!(".side-{kind}.exch");
        m.outputs.iter().chain(&m.side).filter(|f| f.path.ends_with(&suffix)).map(|f| dir.join(&f.path)).collect()
    }
    /// Block `dest` of every file, one file at a time (read as the caller takes them).
    fn gather<'f>(
        &self,
        files: &'f [Loc],
        dest: usize,
    ) -> impl Iterator<Item = Result<(Loc, Vec<u64>), StageError>> + 'f {
        files.iter().map(move |f| Ok((f.clone(), read_block(f, dest)?)))
    }
    /// Signature rows (id, source, score, exact key) of the wanted documents of group `g`.
    fn infos(&self, g: usize, wanted: &BTreeSet<u64>) -> Result<BTreeMap<u64, Info>, StageError> {
        let mut out = BTreeMap::new();
        for unit in self.layout.groups[g].clone() {
            let lo = gid(unit, 0);
            if wanted.range(lo..lo + (1 << 32)).next().is_none() {
                continue;
            }
            let loc = &self.corpus.units[unit].sig;
            let earlier = self.corpus.units[unit].layer < self.layer;
            for batch in ParquetSource::open(loc, SIG_FORMAT, 1)?.batches(None, 65536)? {
                let b = batch?;
                let rows: UInt32Array = column(&b, "row", loc)?;
                let (ids, srcs) = (str_col(&b, "id")?, str_col(&b, "source")?);
                let score: Float64Array = column(&b, "score", loc)?;
                let (hi, lo): (UInt64Array, UInt64Array) = (column(&b, "exact_hi", loc)?, column(&b, "exact_lo", loc)?);
                for i in 0..b.num_rows() {
                    let g = gid(unit, rows.value(i));
                    if !wanted.contains(&g) {
                        continue;
                    }
                    let source = srcs.value(i).to_string();
                    let index = earlier || self.cfg.index_sources.contains(&source);
                    out.insert(
                        g,
                        Info {
                            gid: g,
                            score: if score.is_null(i) { f64::NEG_INFINITY } else { score.value(i) },
                            exact: ((hi.value(i) as u128) << 64) | lo.value(i) as u128,
                            index,
                            id: ids.value(i).to_string(),
                            source,
                        },
                    );
                }
            }
        }
        if let Some(missing) = wanted.iter().find(|g| !out.contains_key(g)) {
            return Err(StageError::Input {
                at: At::file(self.corpus.units[(missing >> 32) as usize].sig.to_string()),
                msg: format!(
                    "document {missing:#x} of a candidate pair has no signature row: the signature tables do not match the bucket stage\nhint: rerun dedup from the signatures step"
                ),
            });
        }
        Ok(out)
    }
    /// Feature sets of the wanted documents (all in group `g`), from their input shards.
    fn sets(&self, wanted: &BTreeSet<u64>) -> Result<BTreeMap<u64, Vec<u64>>, StageError> {
        let mut out = BTreeMap::new();
        let mut by_unit: BTreeMap<usize, BTreeSet<u32>> = BTreeMap::new();
        for &g in wanted {
            by_unit.entry((g >> 32) as usize).or_default().insert(g as u32);
        }
        for (unit, rows) in by_unit {
            let mut row = 0u32;
            for batch in DocReader::open(&self.corpus.units[unit].input)?.batches(Some(&["text"]), 8192)? {
                let b = batch?;
                let text = str_col(&b, "text")?;
                let picked: Vec<(u64, &str)> = (0..b.num_rows())
                    .filter(|&i| rows.contains(&(row + i as u32)))
                    .map(|i| (gid(unit, row + i as u32), text.value(i)))
                    .collect();
                let sets: Vec<(u64, Vec<u64>)> = picked
                    .par_iter()
                    .map(|&(g, t)| (g, self.cfg.set_of(t, &normalize(t, self.cfg.lowercase))))
                    .collect();
                out.extend(sets);
                row += b.num_rows() as u32;
            }
        }
        if let Some(missing) = wanted.iter().find(|g| !out.contains_key(g)) {
            return Err(StageError::Input {
                at: At::file(self.corpus.units[(missing >> 32) as usize].input.to_string()),
                msg: format!(
                    "has no row {} for a document of a candidate pair: the input changed since the signatures step\nhint: rerun dedup from the signatures step",
                    *missing as u32
                ),
            });
        }
        Ok(out)
    }
}

/// Runs this task's part of the clusters step for dump `layer` of `corpus` (and, as needed,
/// other tasks' parts: see the module doc) in `global.dir`, then writes the report.
pub fn run(
    cfg: &DedupConfig,
    corpus: &Corpus,
    layer: u32,
    buckets_dir: &Loc,
    global: &Global,
    layout: &Layout,
    slice: TaskSlice,
) -> Result<ClusterReport, StageError> {
    let start = Instant::now();
    let dir = &global.dir;
    let c = Ctx {
        cfg,
        corpus,
        layer,
        buckets_dir,
        buckets: Manifest::read(&buckets_dir.join(MANIFEST))?,
        dir,
        layout,
        fingerprint: global.fingerprint.clone(),
        slice,
    };
    let ship = ship(&c)?;
    let verify = verify(&c, &ship)?;
    let (graph_dir, graph) = components(&c, &verify)?;
    let labels = label(&c, &graph_dir, &graph, &ship, &verify)?;
    let reps = reps(&c, &labels)?;
    let removed = reps.counters.get("removed").copied().unwrap_or(0);
    let n: u64 = c.mine().map(|u| corpus.units[u].docs).sum();
    if n > 0 && removed as f64 > cfg.max_removal * n as f64 {
        return Err(StageError::Recipe(format!(
            "dedup would remove {removed} of {n} documents ({:.1}%), more than dedup.max_removal = {:.1}%\nhint: this is usually a configuration mistake (a low threshold, verify = false with few rows per band, or an input of templated pages); check {} and raise max_removal only if the removals are right",
            100.0 * removed as f64 / n as f64,
            100.0 * cfg.max_removal,
            dir
        )));
    }
    let measure = measure(&c, &reps)?;
    removals(&c, &reps, &measure)?;
    let report = report(&c, &verify, &reps, start)?;
    global.finish(&report)?;
    Ok(report)
}

/// Phase 1: each group sends its documents' exact keys and sets to the groups that need them.
fn ship(c: &Ctx) -> Result<Manifest, StageError> {
    let k = c.layout.k();
    let needs_files = c.files(c.buckets_dir, &c.buckets, "needs");
    c.run_phase("ship", k, |ctx| {
        let g = ctx.unit;
        let mut needs = c.pairs_in(&needs_files, g, "need")?;
        needs.sort_unstable();
        needs.dedup();
        let docs: BTreeSet<u64> = needs.iter().map(|n| n.0).collect();
        let infos = c.infos(g, &docs)?;
        let near: BTreeSet<u64> = needs.iter().filter(|n| n.1 >> 63 == 1).map(|n| n.0).collect();
        let sets = if c.cfg.verify { c.sets(&near)? } else { BTreeMap::new() };
        let mut out = c.writer(ctx);
        let mut info_out = c.writer(ctx);
        // One copy per (document, group), with its set if any pair there is a band pair.
        let mut last: Option<(u64, usize)> = None;
        for &(d, to) in &needs {
            let dest = (to & !(1 << 63)) as usize;
            if last == Some((d, dest)) {
                continue;
            }
            last = Some((d, dest));
            let info = &infos[&d];
            let set = sets.get(&d);
            out.push(dest, &[d, (info.exact >> 64) as u64, info.exact as u64, set.map_or(0, |s| s.len() as u64 + 1)])?;
            if let Some(s) = set {
                out.push(dest, s)?;
            }
        }
        for info in infos.values() {
            info.push(&mut info_out, c.layout.part(info.gid), &[])?;
        }
        let mut m = ctx.manifest();
        out.finish_side(ctx, &mut m, "sets")?;
        info_out.finish_side(ctx, &mut m, "info")?;
        Ok(m)
    })
}

/// Phase 2: each group checks its pairs; confirmed ones become edges of the graph.
fn verify(c: &Ctx, ship: &Manifest) -> Result<Manifest, StageError> {
    let k = c.layout.k();
    let (pairs_files, needs_files) =
        (c.files(c.buckets_dir, &c.buckets, "pairs"), c.files(c.buckets_dir, &c.buckets, "needs"));
    let sets_files = c.files(&c.dir.join("ship"), ship, "sets");
    c.run_phase("verify", k, |ctx| {
        let g = ctx.unit;
        let mut raw = 0u64;
        let mut pairs: Vec<(u64, u64, u64)> = Vec::new();
        for block in c.gather(&pairs_files, g) {
            let (loc, words) = block?;
            if words.len() % 3 != 0 {
                return Err(damaged(&loc, "pair"));
            }
            let before = pairs.len();
            pairs.extend(words.chunks_exact(3).map(|w| (w[0], w[1], w[2])).filter(|p| c.in_layer(p.0, p.1)));
            raw += (pairs.len() - before) as u64;
        }
        pairs.par_sort_unstable();
        // One entry per pair, with the kinds of keys it shared (in place).
        pairs.dedup_by(|later, kept| {
            let same = (later.0, later.1) == (kept.0, kept.1);
            if same {
                kept.2 |= later.2;
            }
            same
        });
        pairs.shrink_to_fit();
        let merged = pairs;
        // Documents of this group in any pair (its own pairs, and others' needs of them).
        let mut local: BTreeSet<u64> = BTreeSet::new();
        let mut local_near: BTreeSet<u64> = BTreeSet::new();
        for &(a, b, f) in &merged {
            for d in [a, b] {
                if c.layout.group(d) == g {
                    local.insert(d);
                    if f & NEAR != 0 {
                        local_near.insert(d);
                    }
                }
            }
        }
        let mut candidates = local.clone();
        candidates.extend(c.pairs_in(&needs_files, g, "need")?.into_iter().map(|n| n.0));
        let infos = c.infos(g, &local)?;
        let mut sets = if c.cfg.verify { c.sets(&local_near)? } else { BTreeMap::new() };
        let mut exact: BTreeMap<u64, u128> = infos.iter().map(|(&d, i)| (d, i.exact)).collect();
        for block in c.gather(&sets_files, g) {
            let (loc, words) = block?;
            let mut at = 0;
            while at < words.len() {
                let head = words.get(at..at + 4).ok_or_else(|| damaged(&loc, "set"))?;
                let (d, n) = (head[0], head[3]);
                exact.insert(d, ((head[1] as u128) << 64) | head[2] as u128);
                at += 4;
                if n > 0 {
                    let len = usize::try_from(n - 1).map_err(|_| damaged(&loc, "set"))?;
                    let s = words.get(at..at.saturating_add(len)).ok_or_else(|| damaged(&loc, "set"))?;
                    sets.insert(d, s.to_vec());
                    at += len;
                }
            }
        }
        let confirmed: Vec<bool> = merged
            .par_iter()
            .map(|&(a, b, f)| {
                let same = (f & EXACT != 0) && exact.get(&a).is_some_and(|x| Some(x) == exact.get(&b));
                let near = (f & NEAR != 0)
                    && (!c.cfg.verify
                        || match (sets.get(&a), sets.get(&b)) {
                            (Some(x), Some(y)) => jaccard(x, y) >= c.cfg.threshold,
                            _ => false,
                        });
                same || near
            })
            .collect();
        let mut edges = c.writer(ctx);
        let mut info_out = c.writer(ctx);
        let mut joined: BTreeSet<u64> = BTreeSet::new();
        let mut confirmed_pairs = 0u64;
        for (&(a, b, _), ok) in merged.iter().zip(confirmed) {
            if ok {
                edges.push(c.layout.part(a), &[a, b])?;
                edges.push(c.layout.part(b), &[b, a])?;
                joined.extend([a, b].into_iter().filter(|&d| c.layout.group(d) == g));
                confirmed_pairs += 1;
            }
        }
        for d in joined {
            infos[&d].push(&mut info_out, c.layout.part(d), &[])?;
        }
        let mut m = ctx.manifest();
        m.count("candidate_pairs", raw);
        m.count("candidate_docs", candidates.len() as u64);
        m.count("confirmed_pairs", confirmed_pairs);
        edges.finish_side(ctx, &mut m, "edges")?;
        info_out.finish_side(ctx, &mut m, "info")?;
        Ok(m)
    })
}

/// A partition's edges from every file, sorted, without repeats.
fn edges_of(c: &Ctx, files: &[Loc], p: usize) -> Result<Vec<(u64, u64)>, StageError> {
    let mut e = c.pairs_in(files, p, "edge")?;
    e.par_sort_unstable();
    e.dedup();
    Ok(e)
}

fn graph_hash(e: &[(u64, u64)]) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for (a, b) in e {
        h.update(&a.to_le_bytes());
        h.update(&b.to_le_bytes());
    }
    h.digest()
}

/// Phase 3: large-star and small-star rounds until the graph is a star per component.
/// Returns the directory and manifest of the phase whose edges are the converged graph.
fn components(c: &Ctx, verify: &Manifest) -> Result<(Loc, Manifest), StageError> {
    let k = c.layout.k();
    let (mut dir, mut m) = (c.dir.join("verify"), verify.clone());
    let mut last_large: Option<Vec<u64>> = None;
    for round in 0..MAX_ROUNDS {
        let mut hashes = Vec::new();
        for large in [true, false] {
            let name = format!("cc-{round:03}-{}", if large { "large" } else { "small" });
            let files = c.files(&dir, &m, "edges");
            let phase = c.run_phase(&name, k, |ctx| {
                let edges = edges_of(c, &files, ctx.unit)?;
                let mut out = c.writer(ctx);
                let mut emit = |x: u64, y: u64| -> Result<(), StageError> {
                    if x != y {
                        out.push(c.layout.part(x), &[x, y])?;
                        out.push(c.layout.part(y), &[y, x])?;
                    }
                    Ok(())
                };
                for node in edges.chunk_by(|a, b| a.0 == b.0) {
                    let u = node[0].0;
                    let m = u.min(node[0].1);
                    if large {
                        // Every larger neighbour joins the smallest of u's closed neighbourhood.
                        for &(_, v) in node.iter().filter(|e| e.1 > u) {
                            emit(v, m)?;
                        }
                    } else {
                        // u and its smaller neighbours join the smallest of them.
                        emit(u, m)?;
                        for &(_, v) in node.iter().filter(|e| e.1 < u) {
                            emit(v, m)?;
                        }
                    }
                }
                let mut um = ctx.manifest();
                // Two 32-bit halves: the stage manifest sums counters over units.
                let h = graph_hash(&edges);
                um.count("graph_hash_hi", h >> 32);
                um.count("graph_hash_lo", h & 0xffff_ffff);
                um.count("edges", edges.len() as u64);
                out.finish_side(ctx, &mut um, "edges")?;
                Ok(um)
            })?;
            let phase_dir = c.dir.join(&name);
            if large {
                // The graph this round started from, per partition.
                hashes = (0..k)
                    .map(|u| {
                        Manifest::read(&phase_dir.join(&format!("part-{u:05}.done.json"))).map(|m| {
                            let half = |k: &str| m.counters.get(k).copied().unwrap_or(0);
                            (half("graph_hash_hi") << 32) | half("graph_hash_lo")
                        })
                    })
                    .collect::<Result<_, _>>()?;
                if last_large.as_ref() == Some(&hashes) {
                    // Unchanged by a whole round: stars. The input of this round is the graph.
                    return Ok((dir, m));
                }
            }
            (m, dir) = (phase, phase_dir);
        }
        last_large = Some(hashes);
    }
    Err(StageError::Recipe(format!(
        "dedup: connected components did not converge in {MAX_ROUNDS} rounds under {}\nhint: this is a bug; please report it with the bucket stage's manifest",
        c.dir
    )))
}

/// Phase 4: each document's component (its star's centre), sent with its details there.
fn label(
    c: &Ctx,
    graph_dir: &Loc,
    graph: &Manifest,
    ship: &Manifest,
    verify: &Manifest,
) -> Result<Manifest, StageError> {
    let k = c.layout.k();
    let edge_files = c.files(graph_dir, graph, "edges");
    let mut info_files = c.files(&c.dir.join("ship"), ship, "info");
    info_files.extend(c.files(&c.dir.join("verify"), verify, "info"));
    c.run_phase("label", k, |ctx| {
        let p = ctx.unit;
        let edges = edges_of(c, &edge_files, p)?;
        let nodes: BTreeSet<u64> = edges.iter().map(|e| e.0).collect();
        let mut infos: BTreeMap<u64, Info> = BTreeMap::new();
        for block in c.gather(&info_files, p) {
            let (loc, words) = block?;
            let mut at = 0;
            while at < words.len() {
                let info = Info::take(&words, &mut at).ok_or_else(|| damaged(&loc, "document"))?;
                if nodes.contains(&info.gid) {
                    infos.insert(info.gid, info);
                }
            }
        }
        let mut out = c.writer(ctx);
        for node in edges.chunk_by(|a, b| a.0 == b.0) {
            let u = node[0].0;
            let centre = u.min(node[0].1);
            let info = infos.get(&u).ok_or_else(|| StageError::Input {
                at: At::file(ctx.stage.dir.to_string()),
                msg: format!("document {u:#x} has edges but no details were sent to its partition"),
            })?;
            info.push(&mut out, c.layout.part(centre), &[centre])?;
        }
        let mut m = ctx.manifest();
        out.finish_side(ctx, &mut m, "members")?;
        Ok(m)
    })
}

/// Phase 5: representatives and removals, per component.
fn reps(c: &Ctx, labels: &Manifest) -> Result<Manifest, StageError> {
    let k = c.layout.k();
    let files = c.files(&c.dir.join("label"), labels, "members");
    c.run_phase("reps", k, |ctx| {
        let p = ctx.unit;
        let mut members: Vec<(u64, Info)> = Vec::new();
        for block in c.gather(&files, p) {
            let (loc, words) = block?;
            let mut at = 0;
            while at < words.len() {
                let centre = *words.get(at).ok_or_else(|| damaged(&loc, "member"))?;
                at += 1;
                members.push((centre, Info::take(&words, &mut at).ok_or_else(|| damaged(&loc, "member"))?));
            }
        }
        members.sort_by_key(|m| (m.0, m.1.gid));
        let mut m = ctx.manifest();
        let mut removals = c.writer(ctx);
        let mut needs = c.writer(ctx);
        let mut largest: Vec<(u64, String, u64)> = Vec::new();
        for comp in members.chunk_by(|a, b| a.0 == b.0) {
            let mut sorted: Vec<&Info> = comp.iter().map(|x| &x.1).collect();
            sorted.sort_by(|a, b| a.better(b));
            let rep = sorted[0];
            m.count(&format!("cluster_size_{}", sorted.len()), 1);
            largest.push((sorted.len() as u64, rep.id.clone(), rep.gid));
            for d in &sorted[1..] {
                if d.index {
                    continue;
                }
                let exact = d.exact == rep.exact;
                let to = c.layout.group(d.gid);
                removals.push(to, &[d.gid, rep.gid, exact as u64])?;
                removals.push_bytes(to, d.id.as_bytes())?;
                removals.push_bytes(to, rep.id.as_bytes())?;
                if !exact && c.cfg.verify {
                    needs.push(c.layout.group(rep.gid), &[rep.gid, to as u64])?;
                }
                m.count("removed", 1);
                m.count(if exact { "exact_duplicates" } else { "near_duplicates" }, 1);
                m.count(&format!("removed_source_{}", d.source), 1);
            }
        }
        largest.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        largest.truncate(5);
        // This partition's five largest clusters: (size, representative gid, its id).
        let mut top = ExchangeWriter::new(1, 1 << 20, &ctx.stage.dir, &ctx.stem());
        for (size, id, g) in &largest {
            top.push(0, &[*size, *g])?;
            top.push_bytes(0, id.as_bytes())?;
        }
        top.finish_side(ctx, &mut m, "largest")?;
        removals.finish_side(ctx, &mut m, "removals")?;
        needs.finish_side(ctx, &mut m, "needs")?;
        Ok(m)
    })
}

/// Phase 6: the representatives' sets, shipped to the groups of their removed members.
fn measure(c: &Ctx, reps: &Manifest) -> Result<Manifest, StageError> {
    let k = c.layout.k();
    let files = c.files(&c.dir.join("reps"), reps, "needs");
    c.run_phase("measure", k, |ctx| {
        let mut needs = c.pairs_in(&files, ctx.unit, "need")?;
        needs.sort_unstable();
        needs.dedup();
        let sets = c.sets(&needs.iter().map(|n| n.0).collect())?;
        let mut out = c.writer(ctx);
        for (d, to) in needs {
            let s = &sets[&d];
            out.push(to as usize, &[d, s.len() as u64])?;
            out.push(to as usize, s)?;
        }
        let mut m = ctx.manifest();
        out.finish_side(ctx, &mut m, "sets")?;
        Ok(m)
    })
}

/// A removal as the last phase writes it: row in its shard, id, reason, representative gid
/// and id, Jaccard.
type Removal = (u32, String, &'static str, u64, String, Option<f64>);

/// Phase 7: each group's removals with their Jaccard, one sorted table per input shard.
fn removals(c: &Ctx, reps: &Manifest, measure: &Manifest) -> Result<Manifest, StageError> {
    let k = c.layout.k();
    let (removal_files, set_files) =
        (c.files(&c.dir.join("reps"), reps, "removals"), c.files(&c.dir.join("measure"), measure, "sets"));
    c.run_phase("removals", k, |ctx| {
        let g = ctx.unit;
        let mut rows: Vec<(u64, u64, bool, String, String)> = Vec::new();
        for block in c.gather(&removal_files, g) {
            let (loc, words) = block?;
            let mut at = 0;
            while at < words.len() {
                let w = words.get(at..at + 3).ok_or_else(|| damaged(&loc, "removal"))?;
                at += 3;
                let (d, rep, exact) = (w[0], w[1], w[2] != 0);
                let id = take_bytes(&words, &mut at).and_then(|b| String::from_utf8(b).ok());
                let rep_id = take_bytes(&words, &mut at).and_then(|b| String::from_utf8(b).ok());
                let (Some(id), Some(rep_id)) = (id, rep_id) else { return Err(damaged(&loc, "removal")) };
                rows.push((d, rep, exact, id, rep_id));
            }
        }
        rows.sort_by_key(|r| r.0);
        let mut rep_sets: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for block in c.gather(&set_files, g) {
            let (loc, words) = block?;
            let mut at = 0;
            while at < words.len() {
                let w = words.get(at..at + 2).ok_or_else(|| damaged(&loc, "set"))?;
                let (d, n) = (w[0], usize::try_from(w[1]).unwrap_or(usize::MAX));
                at += 2;
                let s = words.get(at..at.saturating_add(n)).ok_or_else(|| damaged(&loc, "set"))?;
                rep_sets.insert(d, s.to_vec());
                at += n;
            }
        }
        let near: BTreeSet<u64> = rows.iter().filter(|r| !r.2 && c.cfg.verify).map(|r| r.0).collect();
        let sets = c.sets(&near)?;
        let mut m = ctx.manifest();
        for unit in c.layout.groups[g].clone().filter(|&u| u >= c.corpus.own && c.corpus.units[u].layer == c.layer) {
            let lo = gid(unit, 0);
            let mine: Vec<Removal> = rows
                .iter()
                .filter(|r| r.0 >> 32 == lo >> 32)
                .map(|(d, rep, exact, id, rep_id)| {
                    let j = if *exact {
                        Some(1.0)
                    } else if c.cfg.verify {
                        let rep_set = rep_sets.get(rep).ok_or_else(|| StageError::Input {
                            at: At::file(c.dir.join("measure").to_string()),
                            msg: format!("no set was shipped for representative {rep:#x}: the phase's files are incomplete\nhint: delete {} and rerun dedup", c.dir),
                        })?;
                        Some(jaccard(&sets[d], rep_set))
                    } else {
                        None
                    };
                    let reason = if *exact { "exact_duplicate" } else { "near_duplicate" };
                    Ok((*d as u32, id.clone(), reason, *rep, rep_id.clone(), j))
                })
                .collect::<Result<_, StageError>>()?;
            let (loc, name) = ctx.side(&format!("removals-{unit:05}"));
            let rows = write_removals(&loc, unit as u32, &mine)?;
            m.side.push(FileEntry::describe(&loc, name, rows)?);
        }
        Ok(m)
    })
}

fn removal_batch(loc: &Loc, unit: u32, chunk: &[Removal]) -> Result<RecordBatch, StageError> {
    let cols: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from_iter_values(chunk.iter().map(|_| unit))),
        Arc::new(UInt32Array::from_iter_values(chunk.iter().map(|r| r.0))),
        Arc::new(StringArray::from_iter_values(chunk.iter().map(|r| r.1.as_str()))),
        Arc::new(StringArray::from_iter_values(chunk.iter().map(|r| r.2))),
        Arc::new(UInt64Array::from_iter_values(chunk.iter().map(|r| r.3))),
        Arc::new(StringArray::from_iter_values(chunk.iter().map(|r| r.4.as_str()))),
        Arc::new(Float64Array::from_iter(chunk.iter().map(|r| r.5))),
    ];
    RecordBatch::try_new(removals_schema(), cols).map_err(arrow_err(loc))
}

fn write_removals(loc: &Loc, unit: u32, rows: &[Removal]) -> Result<u64, StageError> {
    let mut sink = ParquetSink::create(loc, removals_schema(), REMOVALS_FORMAT, 1, WriteOptions::default(), &[])?;
    for chunk in rows.chunks(65536) {
        sink.write(&removal_batch(loc, unit, chunk)?)?;
    }
    Ok(sink.finish()?)
}

/// The removals table of input shard `unit`, as the `removals` phase wrote it.
pub fn unit_removals(dir: &Loc, unit: usize) -> Result<(Loc, FileEntry), StageError> {
    let phase = dir.join("removals");
    let m = Manifest::read(&phase.join(MANIFEST))?;
    let suffix = format!(".side-removals-{unit:05}.parquet");
    let f = m.side.iter().find(|f| f.path.ends_with(&suffix)).ok_or_else(|| StageError::Input {
        at: At::file(phase.join(MANIFEST).to_string()),
        msg: format!("lists no removals table for input shard {unit}\nhint: delete {} and rerun dedup", dir),
    })?;
    Ok((phase.join(&f.path), f.clone()))
}

/// The report, and the whole removals table (every shard's, in order: sorted by document).
fn report(c: &Ctx, verify: &Manifest, reps: &Manifest, start: Instant) -> Result<ClusterReport, StageError> {
    let count = |m: &Manifest, k: &str| m.counters.get(k).copied().unwrap_or(0);
    let mut sources: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for u in c.mine() {
        for (s, n) in &c.corpus.units[u].sources {
            sources.entry(s.clone()).or_default().0 += n;
        }
    }
    for (key, n) in &reps.counters {
        if let Some(s) = key.strip_prefix("removed_source_") {
            sources.entry(s.to_string()).or_default().1 += n;
        }
    }
    let cluster_sizes: BTreeMap<u64, u64> = reps
        .counters
        .iter()
        .filter_map(|(key, n)| Some((key.strip_prefix("cluster_size_")?.parse().ok()?, *n)))
        .collect();
    let mut largest: Vec<(u64, String, u64)> = Vec::new();
    for block in c.gather(&c.files(&c.dir.join("reps"), reps, "largest"), 0) {
        let (loc, words) = block?;
        let mut at = 0;
        while at < words.len() {
            let w = words.get(at..at + 2).ok_or_else(|| damaged(&loc, "cluster"))?;
            at += 2;
            let id = take_bytes(&words, &mut at).and_then(|b| String::from_utf8(b).ok());
            largest.push((w[0], id.ok_or_else(|| damaged(&loc, "cluster"))?, w[1]));
        }
    }
    largest.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    largest.truncate(5);
    let mut snippets: BTreeMap<u64, String> = BTreeMap::new();
    for (_, _, g) in &largest {
        let wanted = BTreeSet::from([*g]);
        let unit = (*g >> 32) as usize;
        let mut row = 0u32;
        for batch in DocReader::open(&c.corpus.units[unit].input)?.batches(Some(&["text"]), 8192)? {
            let b = batch?;
            let text = str_col(&b, "text")?;
            for i in 0..b.num_rows() {
                if wanted.contains(&gid(unit, row)) {
                    snippets.insert(*g, text.value(i).chars().take(300).collect());
                }
                row += 1;
            }
        }
    }
    let dirs: Vec<(usize, Loc)> = c.mine().map(|u| (u, c.dir.clone())).collect();
    let removals_xxh3 = write_removals_table(&c.dir.join(REMOVALS), &dirs)?;
    let report = ClusterReport {
        fingerprint: c.fingerprint.clone(),
        docs: c.mine().map(|u| c.corpus.units[u].docs).sum(),
        removed: count(reps, "removed"),
        exact_duplicates: count(reps, "exact_duplicates"),
        near_duplicates: count(reps, "near_duplicates"),
        candidate_pairs: count(verify, "candidate_pairs"),
        candidate_docs: count(verify, "candidate_docs"),
        verified_pairs: cluster_sizes.iter().map(|(size, n)| (size - 1) * n).sum(),
        docs_without_features: c.mine().map(|u| c.corpus.units[u].without_features).sum(),
        sources,
        removals_xxh3,
        cluster_sizes,
        largest: largest
            .into_iter()
            .map(|(size, id, g)| (size, id, snippets.get(&g).cloned().unwrap_or_default()))
            .collect(),
        seconds: start.elapsed().as_secs_f64(),
    };
    Ok(report)
}

/// The whole removals table at `at`: the removals tables of the given input shards, each from
/// the clusters directory that decided it, in order (so sorted by document), streamed in
/// 65,536-row batches. Returns its xxh3.
pub fn write_removals_table(at: &Loc, units: &[(usize, Loc)]) -> Result<String, StageError> {
    let mut sink = ParquetSink::create(at, removals_schema(), REMOVALS_FORMAT, 1, WriteOptions::default(), &[])?;
    let mut pending: Vec<RecordBatch> = Vec::new();
    let mut write_out = |pending: &mut Vec<RecordBatch>, all: bool| -> Result<(), StageError> {
        let whole =
            shards::arrow::compute::concat_batches(&removals_schema(), pending.iter()).map_err(arrow_err(at))?;
        let mut off = 0;
        while whole.num_rows() - off >= 65536 || (all && off < whole.num_rows()) {
            let n = (whole.num_rows() - off).min(65536);
            sink.write(&whole.slice(off, n))?;
            off += n;
        }
        pending.clear();
        if off < whole.num_rows() {
            pending.push(whole.slice(off, whole.num_rows() - off));
        }
        Ok(())
    };
    for (unit, dir) in units {
        let (loc, f) = unit_removals(dir, *unit)?;
        f.verify(&loc)?;
        for batch in ParquetSource::open(&loc, REMOVALS_FORMAT, 1)?.batches(None, 65536)? {
            pending.push(batch?);
            if pending.iter().map(RecordBatch::num_rows).sum::<usize>() >= 65536 {
                write_out(&mut pending, false)?;
            }
        }
    }
    write_out(&mut pending, true)?;
    sink.finish()?;
    Ok(shards::checksum::file_checksum(at)?.1)
}
