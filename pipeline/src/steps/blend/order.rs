//! The blend's order, computed once before any output shard is written, in bounded memory.
//!
//! Output position `k` holds copy `π(k)` of a seeded permutation of all copies (a source's
//! documents `whole` times over, then its seeded fraction, sources end to end in the recipe's
//! order; see the module above). Instead of holding every document to look copies up by
//! position, the order is built by scattering: each copy is sent to its position
//! `π⁻¹(copy)` and the (position, document, copy, tokens) records are sorted by position with an
//! external sort ([`ExtSort`]), held up to `blend.memory_mb` and spilled past it. Three passes:
//!
//! 1. The tokenize sidecars' train rows, streamed into `docs.bin` (one 32-byte record per
//!    document: id end, shard and source, offset, tokens) and `ids.bin` (the ids end to end);
//!    each document's fraction draw goes into a sort by (source, draw, document).
//! 2. The draws, merged: per source the documents taken, while under the fractional target, into
//!    a spool; now every source's copy count and so the permutation are known.
//! 3. `docs.bin` again and the spool: every copy scattered to its position; the merged positions
//!    written as `copies.bin` (16 bytes each: document, copy number) and cut into output
//!    shards of whole documents up to `shard_tokens`.
//!
//! The files live in `blend/order/`, finished by `report.json` (a [`Global`] run once: the
//! task that claims it builds it while the others of the array wait; two that build it write
//! the same bytes; a finished one is reused). Memory is the
//! sort's budget whatever the corpus; disk is about 72 bytes a document and 48 a copy.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufReader, BufWriter, Read, Write};

use serde::{Deserialize, Serialize};
use shards::permutation::Permutation;
use shards::{At, Loc, Manifest};

use super::{BLEND_STREAM, BlendConfig, Mixture};
use crate::core::error::StageError;
use crate::core::extsort::{ExtSort, unlinked_file};
use crate::core::rng::DocRng;
use crate::core::stage::{Global, GlobalReport};
use crate::steps::tokenize::each_doc;

/// The order's directory under `blend/`.
pub const DIR: &str = "order";
/// Its report, written last (the completion marker).
pub const REPORT: &str = "report.json";
/// Per train document, 32 bytes: [id end in `ids.bin`, shard << 32 | source, offset, tokens].
pub const DOCS: &str = "docs.bin";
/// The documents' ids end to end.
pub const IDS: &str = "ids.bin";
/// Per output position, 16 bytes: [document, copy number].
pub const COPIES: &str = "copies.bin";

/// What the order holds, and the output shards cut from it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderReport {
    pub fingerprint: String,
    /// Train documents (`docs.bin` records) and copies (`copies.bin` records).
    pub docs: u64,
    pub copies: u64,
    /// Names of the sources and token shards `docs.bin` numbers.
    pub sources: Vec<String>,
    pub shards: Vec<String>,
    /// Train-split tokens per source, and the tokens the mixture takes of each.
    pub available: BTreeMap<String, u64>,
    pub realized: BTreeMap<String, u64>,
    /// Output shards: [first position, end position, tokens].
    pub units: Vec<[u64; 3]>,
    /// Sorted runs the two sorts spilled to disk (0 when the order fit in `memory_mb`).
    pub spilled_runs: u64,
}

impl GlobalReport for OrderReport {
    fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// The order of the blend in `blend_dir` for this fingerprint.
pub fn global(blend_dir: &Loc, fingerprint: String) -> Global<'static> {
    Global { dir: blend_dir.join(DIR), fingerprint, report: REPORT, files: &[DOCS, IDS, COPIES] }
}

/// One source's copies: `whole` passes over its `count` documents, then `frac_len` drawn ones
/// (spool entries from `frac_at`), from copy index `start`.
#[derive(Debug, Default, Clone)]
struct Block {
    start: u64,
    count: u64,
    whole: u64,
    rest: u64,
    taken: u64,
    frac_at: u64,
    frac_len: u64,
}

fn io_err(at: &Loc, e: std::io::Error) -> StageError {
    StageError::Input {
        at: At::file(at.to_string()),
        msg: format!("{e}\nhint: free disk space there or raise blend.memory_mb"),
    }
}

/// Little-endian words of a record.
fn words<const W: usize>(b: &[u8]) -> [u64; W] {
    let mut r = [0u64; W];
    for (i, x) in r.iter_mut().enumerate() {
        *x = u64::from_le_bytes(b[8 * i..8 * i + 8].try_into().unwrap_or([0; 8]));
    }
    r
}

fn put(w: &mut impl Write, r: &[u64], loc: &Loc) -> Result<(), StageError> {
    for x in r {
        w.write_all(&x.to_le_bytes()).map_err(|e| io_err(loc, e))?;
    }
    Ok(())
}

/// Index of `name` in `names`, added if new.
fn intern(names: &mut Vec<String>, by: &mut HashMap<String, u64>, name: &str) -> u64 {
    if let Some(&i) = by.get(name) {
        return i;
    }
    names.push(name.to_string());
    by.insert(name.to_string(), names.len() as u64 - 1);
    names.len() as u64 - 1
}

/// Builds the order of `cfg` over the tokenize output `in_dir` (manifest `m`), holding at most
/// `memory` bytes of sort records, and marks it finished.
pub fn build(
    cfg: &BlendConfig,
    seed: u64,
    in_dir: &Loc,
    m: &Manifest,
    global: &Global,
    memory: usize,
) -> Result<OrderReport, StageError> {
    let dir = &global.dir;
    let scratch = dir.as_local().map(std::path::Path::to_path_buf).unwrap_or_else(std::env::temp_dir);
    let (docs_loc, ids_loc, copies_loc) = (dir.join(DOCS), dir.join(IDS), dir.join(COPIES));

    // 1. The train documents into docs.bin and ids.bin; their fraction draws into a sort.
    let (mut sources, mut shards) = (Vec::new(), Vec::new());
    let (mut source_ix, mut shard_ix) = (HashMap::new(), HashMap::new());
    let mut count: Vec<u64> = Vec::new();
    let mut avail: Vec<u64> = Vec::new();
    let mut draws = ExtSort::<4>::new(&scratch, "blend-draws", memory);
    let mut docs_w = BufWriter::new(docs_loc.create()?);
    let mut ids_w = BufWriter::new(ids_loc.create()?);
    let (mut n_docs, mut id_end) = (0u64, 0u64);
    each_doc(in_dir, m, "train", |d| {
        let s = intern(&mut sources, &mut source_ix, d.source);
        let h = intern(&mut shards, &mut shard_ix, d.shard);
        if s as usize == count.len() {
            count.push(0);
            avail.push(0);
        }
        count[s as usize] += 1;
        avail[s as usize] = avail[s as usize].saturating_add(d.tokens);
        id_end += d.id.len() as u64;
        ids_w.write_all(d.id.as_bytes()).map_err(|e| io_err(&ids_loc, e))?;
        put(&mut docs_w, &[id_end, (h << 32) | s, d.offset, d.tokens], &docs_loc)?;
        let draw = DocRng::new(seed, "blend/fraction", d.id).next_u64();
        draws.push([s, draw, n_docs, d.tokens]).map_err(|e| io_err(dir, e))?;
        n_docs += 1;
        Ok(())
    })?;
    if shards.len() > u32::MAX as usize || sources.len() > u32::MAX as usize {
        return Err(StageError::Recipe("blend: more than 2^32 token shards or sources".into()));
    }
    for (w, loc) in [(docs_w, &docs_loc), (ids_w, &ids_loc)] {
        w.into_inner().map_err(|e| io_err(loc, e.into_error()))?.commit()?;
    }
    let available: BTreeMap<String, u64> = sources.iter().cloned().zip(avail.iter().copied()).collect();
    let plan = Mixture::new(cfg, &available)?;
    plan.check_epochs(cfg.max_epochs)?;

    // 2. Per source, its fraction: documents in draw order while under the remaining target.
    let mut blocks: Vec<Option<Block>> = vec![None; sources.len()];
    for p in &plan.sources {
        let Some(&s) = source_ix.get(&p.name) else { continue };
        let whole = p.epochs.floor() as u64;
        let rest = p.target_tokens.saturating_sub(whole.saturating_mul(avail[s as usize]));
        blocks[s as usize] = Some(Block { count: count[s as usize], whole, rest, ..Block::default() });
    }
    let mut spool = Spool::new(&scratch).map_err(|e| io_err(dir, e))?;
    let mut runs = draws.runs() as u64;
    for r in draws.sorted().map_err(|e| io_err(dir, e))? {
        let [s, _, doc, tokens] = r.map_err(|e| io_err(dir, e))?;
        let Some(b) = blocks[s as usize].as_mut() else { continue };
        if b.taken >= b.rest {
            continue;
        }
        if b.frac_len == 0 {
            b.frac_at = spool.len;
        }
        spool.push([doc, tokens]).map_err(|e| io_err(dir, e))?;
        b.frac_len += 1;
        b.taken = b.taken.saturating_add(tokens);
    }
    // Copy indices: sources end to end in the recipe's order.
    let mut start = 0u64;
    let mut realized = BTreeMap::new();
    for p in &plan.sources {
        let got = match source_ix.get(&p.name).and_then(|&s| blocks[s as usize].as_mut().map(|b| (s, b))) {
            Some((s, b)) => {
                b.start = start;
                start = start.saturating_add(b.whole.saturating_mul(b.count)).saturating_add(b.frac_len);
                b.whole.saturating_mul(avail[s as usize]).saturating_add(b.taken)
            }
            None => 0,
        };
        realized.insert(p.name.clone(), got);
    }
    let n_copies = start;
    let perm = Permutation::new(n_copies, seed, BLEND_STREAM);

    // 3. Every copy to its position, sorted by position.
    let mut scatter = ExtSort::<4>::new(&scratch, "blend-copies", memory);
    let mut rank = vec![0u64; sources.len()];
    let mut r = BufReader::new(docs_loc.open()?);
    let mut rec = [0u8; 32];
    for doc in 0..n_docs {
        r.read_exact(&mut rec).map_err(|e| io_err(&docs_loc, e))?;
        let [_, sh, _, tokens] = words::<4>(&rec);
        let s = (sh & 0xffff_ffff) as usize;
        let j = rank[s];
        rank[s] += 1;
        let Some(b) = &blocks[s] else { continue };
        for pass in 0..b.whole {
            let c = b.start + pass * b.count + j;
            scatter.push([perm.position(c), doc, pass, tokens]).map_err(|e| io_err(dir, e))?;
        }
    }
    let mut spooled = spool.read().map_err(|e| io_err(dir, e))?;
    let mut by_spool: Vec<&Block> = blocks.iter().flatten().filter(|b| b.frac_len > 0).collect();
    by_spool.sort_by_key(|b| b.frac_at);
    for b in by_spool {
        for j in 0..b.frac_len {
            let [doc, tokens] = spooled.next().map_err(|e| io_err(dir, e))?;
            let c = b.start + b.whole * b.count + j;
            scatter.push([perm.position(c), doc, b.whole, tokens]).map_err(|e| io_err(dir, e))?;
        }
    }
    runs += scatter.runs() as u64;
    let mut copies_w = BufWriter::new(copies_loc.create()?);
    let mut units = Vec::new();
    let (mut first, mut acc, mut next) = (0u64, 0u64, 0u64);
    for r in scatter.sorted().map_err(|e| io_err(dir, e))? {
        let [k, doc, copy, tokens] = r.map_err(|e| io_err(dir, e))?;
        if k != next {
            return Err(StageError::Recipe(format!("blend: the order has position {k} where {next} belongs")));
        }
        if acc > 0 && acc.saturating_add(tokens) > cfg.shard_tokens {
            units.push([first, k, acc]);
            first = k;
            acc = 0;
        }
        acc = acc.saturating_add(tokens);
        put(&mut copies_w, &[doc, copy], &copies_loc)?;
        next += 1;
    }
    if next != n_copies {
        return Err(StageError::Recipe(format!("blend: the order has {next} of {n_copies} positions")));
    }
    if first < n_copies {
        units.push([first, n_copies, acc]);
    }
    copies_w.into_inner().map_err(|e| io_err(&copies_loc, e.into_error()))?.commit()?;
    let report = OrderReport {
        fingerprint: global.fingerprint.clone(),
        docs: n_docs,
        copies: n_copies,
        sources,
        shards,
        available,
        realized,
        units,
        spilled_runs: runs,
    };
    global.finish(&report)?;
    Ok(report)
}

/// Two-word records written once and read back once in order, from an unlinked temporary file.
struct Spool {
    w: BufWriter<std::fs::File>,
    len: u64,
}

impl Spool {
    fn new(dir: &std::path::Path) -> std::io::Result<Spool> {
        Ok(Spool { w: BufWriter::new(unlinked_file(dir, "blend-spool")?), len: 0 })
    }

    fn push(&mut self, r: [u64; 2]) -> std::io::Result<()> {
        self.w.write_all(&r[0].to_le_bytes())?;
        self.w.write_all(&r[1].to_le_bytes())?;
        self.len += 1;
        Ok(())
    }

    fn read(self) -> std::io::Result<SpoolReader> {
        use std::io::Seek;
        let mut f = self.w.into_inner().map_err(|e| e.into_error())?;
        f.seek(std::io::SeekFrom::Start(0))?;
        Ok(SpoolReader { r: BufReader::new(f) })
    }
}

struct SpoolReader {
    r: BufReader<std::fs::File>,
}

impl SpoolReader {
    fn next(&mut self) -> std::io::Result<[u64; 2]> {
        let mut b = [0u8; 16];
        self.r.read_exact(&mut b)?;
        Ok(words::<2>(&b))
    }
}

/// Positioned reads of one file: a local file held open, or an object read through a block
/// cache (a few ranged GETs of 4 MiB instead of one per record).
pub enum PosFile {
    Local(std::fs::File, Loc),
    Remote(shards::storage::Remote),
}

impl PosFile {
    pub fn open(loc: &Loc) -> Result<PosFile, StageError> {
        Ok(match loc.as_local() {
            Some(p) => PosFile::Local(
                std::fs::File::open(p)
                    .map_err(|e| StageError::Input { at: At::file(loc.to_string()), msg: e.to_string() })?,
                loc.clone(),
            ),
            None => PosFile::Remote(shards::storage::Remote::new(loc, loc.size()?)),
        })
    }

    /// Fills `buf` from byte `at`; an error naming the file and offset if it is shorter.
    pub fn read(&self, at: u64, buf: &mut [u8]) -> Result<(), StageError> {
        match self {
            PosFile::Local(f, loc) => {
                use std::os::unix::fs::FileExt;
                f.read_exact_at(buf, at).map_err(|e| StageError::Input {
                    at: At::byte(loc.to_string(), at),
                    msg: format!("cannot read {} bytes: {e}", buf.len()),
                })
            }
            PosFile::Remote(r) => Ok(r.read(at, buf)?),
        }
    }
}

/// A train document as `docs.bin` and `ids.bin` give it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocRec {
    pub id: String,
    pub shard: u32,
    pub source: u32,
    pub offset: u64,
    pub tokens: u64,
}

/// Longest id read back (a damaged `docs.bin` cannot ask for more).
const MAX_ID: u64 = 1 << 20;

/// The order's files, open for the output shards' reads.
pub struct OrderFiles {
    docs: PosFile,
    ids: PosFile,
    copies: PosFile,
    dir: Loc,
    report: OrderReport,
}

impl OrderFiles {
    pub fn open(global: &Global, report: OrderReport) -> Result<OrderFiles, StageError> {
        let dir = global.dir.clone();
        Ok(OrderFiles {
            docs: PosFile::open(&dir.join(DOCS))?,
            ids: PosFile::open(&dir.join(IDS))?,
            copies: PosFile::open(&dir.join(COPIES))?,
            dir,
            report,
        })
    }

    pub fn report(&self) -> &OrderReport {
        &self.report
    }

    fn bad(&self, file: &str, at: u64, msg: String) -> StageError {
        StageError::Input { at: At::byte(self.dir.join(file).to_string(), at), msg }
    }

    /// The (document, copy) pairs at positions `range`.
    pub fn copies(&self, range: std::ops::Range<u64>) -> Result<Vec<(u64, u64)>, StageError> {
        let mut buf = vec![0u8; 16 * (range.end - range.start) as usize];
        self.copies.read(16 * range.start, &mut buf)?;
        let mut out = Vec::with_capacity(buf.len() / 16);
        for (i, c) in buf.chunks_exact(16).enumerate() {
            let [doc, copy] = words::<2>(c);
            if doc >= self.report.docs {
                let at = 16 * (range.start + i as u64);
                return Err(self.bad(COPIES, at, format!("document {doc} of {}", self.report.docs)));
            }
            out.push((doc, copy));
        }
        Ok(out)
    }

    /// Document `doc`'s record and id.
    pub fn doc(&self, doc: u64) -> Result<DocRec, StageError> {
        let mut buf = [0u8; 64];
        let (at, rec) = if doc == 0 { (0, &mut buf[32..]) } else { (32 * (doc - 1), &mut buf[..]) };
        self.docs.read(at, rec)?;
        let [id_start] = if doc == 0 { [0] } else { [words::<1>(&buf[..8])[0]] };
        let [id_end, sh, offset, tokens] = words::<4>(&buf[32..]);
        let (shard, source) = (sh >> 32, sh & 0xffff_ffff);
        if id_end < id_start
            || id_end - id_start > MAX_ID
            || shard as usize >= self.report.shards.len()
            || source as usize >= self.report.sources.len()
        {
            return Err(self.bad(
                DOCS,
                32 * doc,
                format!("a damaged record (id {id_start}..{id_end}, shard {shard}, source {source})"),
            ));
        }
        let mut id = vec![0u8; (id_end - id_start) as usize];
        self.ids.read(id_start, &mut id)?;
        let id = String::from_utf8(id).map_err(|_| self.bad(IDS, id_start, "an id that is not UTF-8".into()))?;
        Ok(DocRec { id, shard: shard as u32, source: source as u32, offset, tokens })
    }
}
