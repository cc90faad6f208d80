//! `reddit`: GPT-2's WebText link selection from Pushshift submission dumps. Every submission
//! line is read (zstd with a 2 GiB window, xz, bzip2, gzip or plain NDJSON); a submission is
//! selected when it is not a self post, links to an http(s) page outside the excluded domains
//! and media types, and has `score >= min_score` (GPT-2: "at least 3 karma"). Selected links
//! are normalized (see `urls`) and deduplicated within a dump, keeping the highest score; the
//! output is a URL table per dump, sorted by normalized URL. Every other line goes to the
//! ledger with its reason. A dump's selected links are held up to `reddit.memory_mb` and past
//! that spilled as sorted runs and merged (`Links`), so a dump of any size fits a task.
//! This stage fetches nothing: crawled pages are matched to the URLs in `ingest`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use shards::arrow::array::{ArrayRef, Int64Array, StringArray};
use shards::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use shards::arrow::record_batch::RecordBatch;
use shards::parquet_io::{ParquetSink, ParquetSource};
use shards::{At, FileEntry, LedgerEntry, LedgerWriter, Loc, Manifest, ShardError, WriteOptions};

use crate::core::error::StageError;
use crate::core::slice::TaskSlice;
use crate::core::stage::{Stage, TaskReport, UnitCtx};
use crate::formats::codec;
use crate::steps::{Outcome, Produces, Shape, Step, StepCtx, need};
use crate::text::urls;

/// Stage name.
pub const STAGE: &str = "reddit";

/// `reddit`: GPT-2's WebText rule over Pushshift dumps.
pub static STEP: Step = Step {
    name: STAGE,
    table: "reddit",
    input: None,
    shape: Shape::Sliced,
    produces: Produces::Tables,
    about: "select WebText URLs from Pushshift Reddit dumps (outbound, score >= 3, normalized)",
    run: |ctx: &StepCtx| {
        let rep = run(need(&ctx.recipe.reddit, STAGE)?, &ctx.dir(STAGE), ctx.slice)?;
        Ok(Outcome::units(rep, "submissions", "URLs selected"))
    },
};
/// `grist.format` of URL tables.
pub const URLS_FORMAT: &str = "urls";
/// URL table format version.
pub const URLS_VERSION: u32 = 1;

/// `[reddit]` in a recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedditConfig {
    /// Pushshift submission dumps (RS_*.zst, .xz, .bz2, .gz or plain NDJSON); files, folders or patterns.
    pub dumps: Vec<String>,
    /// Minimum score (karma) of a submission whose link is kept. GPT-2 used 3.
    #[serde(default = "default_min_score")]
    pub min_score: i64,
    /// Links to these domains (and their subdomains) are not outbound pages. GPT-2 also removed
    /// Wikipedia from WebText, as other datasets cover it.
    #[serde(default = "default_exclude_domains")]
    pub exclude_domains: Vec<String>,
    /// Links whose path ends in one of these extensions are media, not text.
    #[serde(default = "default_media_extensions")]
    pub media_extensions: Vec<String>,
    /// Largest zstd window (log2 bytes) to allow; Pushshift's dumps need 31.
    #[serde(default = "default_window_log")]
    pub zstd_window_log: u32,
    /// Longest line read as a submission (Pushshift's are a few KiB); a longer one is skipped
    /// without being held and ledgered as `too_large`.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: u64,
    /// Selected links of a dump held in memory (MiB, estimated) before they are spilled to disk
    /// as runs sorted by normalized URL, merged at the end: a dump of any size in bounded memory.
    #[serde(default = "default_memory_mb")]
    pub memory_mb: usize,
}

fn default_memory_mb() -> usize {
    1024
}

fn default_max_line_bytes() -> u64 {
    4 << 20
}

fn default_min_score() -> i64 {
    3
}
fn default_exclude_domains() -> Vec<String> {
    ["reddit.com", "redd.it", "redditmedia.com", "wikipedia.org"].map(String::from).to_vec()
}
fn default_media_extensions() -> Vec<String> {
    [
        "jpg", "jpeg", "png", "gif", "gifv", "webp", "bmp", "svg", "mp4", "webm", "mov", "avi", "mp3", "ogg", "wav",
        "zip", "gz", "exe",
    ]
    .map(String::from)
    .to_vec()
}
fn default_window_log() -> u32 {
    codec::DEFAULT_ZSTD_WINDOW_LOG
}

/// The URL table's schema.
pub fn urls_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("url", DataType::Utf8, false),
        Field::new("key", DataType::Utf8, false),
        Field::new("score", DataType::Int64, false),
        Field::new("subreddit", DataType::Utf8, true),
        Field::new("created_utc", DataType::Int64, true),
        Field::new("submission_id", DataType::Utf8, true),
    ]))
}

#[derive(Debug, Deserialize)]
struct Submission {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    score: LooseInt,
    #[serde(default)]
    is_self: Option<bool>,
    #[serde(default)]
    subreddit: Option<String>,
    #[serde(default)]
    created_utc: LooseInt,
}

/// Pushshift writes numbers as numbers or as strings, depending on the year; anything else
/// (an array, an object) is no number, and is skipped as it is parsed, never built.
#[derive(Debug, Default, Clone, Copy)]
struct LooseInt(Option<i64>);

impl<'de> Deserialize<'de> for LooseInt {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = LooseInt;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a number or a string holding one")
            }
            fn visit_i64<E>(self, v: i64) -> Result<LooseInt, E> {
                Ok(LooseInt(Some(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<LooseInt, E> {
                Ok(LooseInt(i64::try_from(v).ok()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<LooseInt, E> {
                Ok(LooseInt(v.is_finite().then_some(v as i64)))
            }
            fn visit_str<E>(self, v: &str) -> Result<LooseInt, E> {
                Ok(LooseInt(v.trim().parse::<f64>().ok().filter(|f| f.is_finite()).map(|f| f as i64)))
            }
            fn visit_bool<E>(self, _: bool) -> Result<LooseInt, E> {
                Ok(LooseInt(None))
            }
            fn visit_unit<E>(self) -> Result<LooseInt, E> {
                Ok(LooseInt(None))
            }
            fn visit_none<E>(self) -> Result<LooseInt, E> {
                Ok(LooseInt(None))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<LooseInt, A::Error> {
                while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(LooseInt(None))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<LooseInt, A::Error> {
                while a.next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?.is_some() {}
                Ok(LooseInt(None))
            }
        }
        d.deserialize_any(V)
    }
}

fn as_i64(v: &LooseInt) -> Option<i64> {
    v.0
}

/// What the WebText rule reads from one Pushshift line: (id, url, score, is_self, created_utc).
/// The reader the stage uses, for tests and fuzzing: an `Err` is a line the stage ledgers as
/// `malformed_json` (or `invalid_utf8`).
pub type SubmissionFields = (Option<String>, Option<String>, Option<i64>, Option<bool>, Option<i64>);

/// Parses one Pushshift line as the stage does.
pub fn parse_submission(line: &[u8]) -> Result<SubmissionFields, serde_json::Error> {
    let s: Submission = serde_json::from_slice(line)?;
    Ok((s.id, s.url, s.score.0, s.is_self, s.created_utc.0))
}

struct Selected {
    url: String,
    key: String,
    score: i64,
    subreddit: Option<String>,
    created_utc: Option<i64>,
    id: String,
    /// Its line's number in the dump: on equal scores the first seen wins.
    seq: u64,
}

impl Selected {
    /// Bytes it holds, with the map entry that finds it (an estimate for the spill).
    fn weight(&self) -> usize {
        self.url.len() + 2 * self.key.len() + self.id.len() + self.subreddit.as_ref().map_or(0, String::len) + 160
    }
    /// Whether it wins over `o` (same key): the higher score, then the first seen.
    fn beats(&self, o: &Selected) -> bool {
        (self.score, std::cmp::Reverse(self.seq)) > (o.score, std::cmp::Reverse(o.seq))
    }
    fn write(&self, w: &mut impl std::io::Write) -> std::io::Result<()> {
        for t in [&self.key, &self.url, &self.id] {
            w.write_all(&(t.len() as u64).to_le_bytes())?;
            w.write_all(t.as_bytes())?;
        }
        let sub = self.subreddit.as_deref();
        w.write_all(&(sub.map_or(u64::MAX, |t| t.len() as u64)).to_le_bytes())?;
        w.write_all(sub.unwrap_or("").as_bytes())?;
        w.write_all(&self.score.to_le_bytes())?;
        w.write_all(&[self.created_utc.is_some() as u8])?;
        w.write_all(&self.created_utc.unwrap_or(0).to_le_bytes())?;
        w.write_all(&self.seq.to_le_bytes())
    }
    fn read(r: &mut impl std::io::Read) -> std::io::Result<Selected> {
        let mut word = [0u8; 8];
        let text = |r: &mut dyn std::io::Read, len: u64| -> std::io::Result<String> {
            let mut b = vec![0u8; usize::try_from(len).map_err(std::io::Error::other)?];
            r.read_exact(&mut b)?;
            String::from_utf8(b).map_err(std::io::Error::other)
        };
        let mut next = |r: &mut dyn std::io::Read| -> std::io::Result<u64> {
            r.read_exact(&mut word)?;
            Ok(u64::from_le_bytes(word))
        };
        let n = next(r)?;
        let key = text(r, n)?;
        let n = next(r)?;
        let url = text(r, n)?;
        let n = next(r)?;
        let id = text(r, n)?;
        let n = next(r)?;
        let subreddit = if n == u64::MAX { None } else { Some(text(r, n)?) };
        let score = next(r)? as i64;
        let mut flag = [0u8];
        r.read_exact(&mut flag)?;
        let created = next(r)? as i64;
        let seq = next(r)?;
        Ok(Selected { url, key, score, subreddit, created_utc: (flag[0] == 1).then_some(created), id, seq })
    }
}

/// A dump's selected links, one per normalized URL: held in memory up to a budget, past it
/// written out as runs sorted by URL to a spill file beside the output (removed when dropped),
/// and in the end merged into one list sorted by URL. The same links come out whatever the
/// budget; a duplicate found in memory is ledgered against the link winning at that moment, one
/// found across runs against the URL's final winner.
struct Links {
    held: Vec<Selected>,
    by_key: HashMap<String, usize>,
    weight: usize,
    limit: usize,
    spill: Option<(std::fs::File, std::path::PathBuf)>,
    /// (byte offset, links) of each run.
    runs: Vec<(u64, u64)>,
    end: u64,
    dir: std::path::PathBuf,
    stem: String,
}

impl Drop for Links {
    fn drop(&mut self) {
        if let Some((_, path)) = &self.spill {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Links {
    fn new(dir: &Loc, stem: &str, limit: usize) -> Links {
        let dir = dir.as_local().map(std::path::Path::to_path_buf).unwrap_or_else(std::env::temp_dir);
        Links {
            held: Vec::new(),
            by_key: HashMap::new(),
            weight: 0,
            limit,
            spill: None,
            runs: Vec::new(),
            end: 0,
            dir,
            stem: stem.to_string(),
        }
    }

    /// Adds a link; `Some((loser, winner))` ids when it met a held link with the same URL.
    fn add(&mut self, s: Selected) -> std::io::Result<Option<(String, String)>> {
        if let Some(&i) = self.by_key.get(&s.key) {
            let (winner, loser) = if s.beats(&self.held[i]) {
                let old = std::mem::replace(&mut self.held[i], s);
                (self.held[i].id.clone(), old.id)
            } else {
                (self.held[i].id.clone(), s.id)
            };
            return Ok(Some((loser, winner)));
        }
        self.weight += s.weight();
        self.by_key.insert(s.key.clone(), self.held.len());
        self.held.push(s);
        if self.weight > self.limit {
            self.spill_held()?;
        }
        Ok(None)
    }

    fn spill_held(&mut self) -> std::io::Result<()> {
        use std::io::{Seek, SeekFrom, Write};
        if self.held.is_empty() {
            return Ok(());
        }
        if self.spill.is_none() {
            std::fs::create_dir_all(&self.dir)?;
            let path = self.dir.join(format!(".{}.links-spill-{}.tmp", self.stem, std::process::id()));
            let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path)?;
            self.spill = Some((file, path));
        }
        let Some((file, _)) = &mut self.spill else { return Ok(()) };
        self.held.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        file.seek(SeekFrom::Start(self.end))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut *file);
        for s in &self.held {
            s.write(&mut w)?;
        }
        w.flush()?;
        drop(w);
        let end = file.stream_position()?;
        self.runs.push((self.end, self.held.len() as u64));
        self.end = end;
        self.held.clear();
        self.by_key.clear();
        self.weight = 0;
        Ok(())
    }

    fn spilled(&self) -> bool {
        !self.runs.is_empty()
    }

    /// Every link sorted by URL, the winner of each URL only, to `emit`; `lost` is told of every
    /// link that loses to a link of another run (loser id, winner id).
    fn finish(
        mut self,
        mut lost: impl FnMut(String, String) -> Result<(), StageError>,
        mut emit: impl FnMut(Selected) -> Result<(), StageError>,
    ) -> Result<(), StageError> {
        if !self.spilled() {
            let mut held = std::mem::take(&mut self.held);
            held.sort_unstable_by(|a, b| a.key.cmp(&b.key));
            return held.into_iter().try_for_each(emit);
        }
        let dir = self.dir.display().to_string();
        let io = |e: std::io::Error| StageError::Input {
            at: At::file(dir.clone()),
            msg: format!("the links' spill file: {e}"),
        };
        self.spill_held().map_err(io)?;
        let Some((file, _)) = &self.spill else { return Ok(()) };
        // One buffered positioned reader per run (64 KiB each).
        let mut cursors: Vec<RunCursor> = self
            .runs
            .iter()
            .map(|&(at, left)| RunCursor {
                r: std::io::BufReader::with_capacity(1 << 16, PositionedReader { file, at }),
                left,
            })
            .collect();
        let mut heads: std::collections::BinaryHeap<std::cmp::Reverse<(String, u64, usize)>> = Default::default();
        let mut current: Vec<Option<Selected>> = Vec::with_capacity(cursors.len());
        for (i, c) in cursors.iter_mut().enumerate() {
            let s = c.next().map_err(io)?;
            if let Some(s) = &s {
                heads.push(std::cmp::Reverse((s.key.clone(), s.seq, i)));
            }
            current.push(s);
        }
        // The winner so far of the URL being merged, and the links it has beaten: they are
        // ledgered against the final winner once the URL is done.
        let mut pending: Option<Selected> = None;
        let mut beaten: Vec<String> = Vec::new();
        let mut done = |w: Selected, beaten: &mut Vec<String>| -> Result<(), StageError> {
            for loser in beaten.drain(..) {
                lost(loser, w.id.clone())?;
            }
            emit(w)
        };
        while let Some(std::cmp::Reverse((key, _, i))) = heads.pop() {
            let Some(s) = current[i].take() else { continue };
            match &mut pending {
                Some(w) if w.key == key => {
                    if s.beats(w) {
                        beaten.push(std::mem::replace(w, s).id);
                    } else {
                        beaten.push(s.id);
                    }
                }
                _ => {
                    if let Some(w) = pending.replace(s) {
                        done(w, &mut beaten)?;
                    }
                }
            }
            if let Some(n) = cursors[i].next().map_err(io)? {
                heads.push(std::cmp::Reverse((n.key.clone(), n.seq, i)));
                current[i] = Some(n);
            }
        }
        match pending {
            Some(w) => done(w, &mut beaten),
            None => Ok(()),
        }
    }
}

/// Where one spilled run is being read.
struct RunCursor<'a> {
    r: std::io::BufReader<PositionedReader<'a>>,
    left: u64,
}

impl RunCursor<'_> {
    fn next(&mut self) -> std::io::Result<Option<Selected>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        Selected::read(&mut self.r).map(Some)
    }
}

/// `Read` by positioned reads from `at` (several cursors share one file).
struct PositionedReader<'a> {
    file: &'a std::fs::File,
    at: u64,
}

impl std::io::Read for PositionedReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let n = self.file.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

/// Runs `reddit` for one task slice.
pub fn run(cfg: &RedditConfig, out: &Loc, slice: TaskSlice) -> Result<TaskReport, StageError> {
    let mut dumps = Vec::new();
    for p in &cfg.dumps {
        let loc = Loc::parse(p)?;
        let found = if loc.exists()? { vec![loc] } else { loc.list()? };
        if found.is_empty() {
            return Err(StageError::Input {
                at: At::file(p.clone()),
                msg: "no Pushshift dump found here\nhint: check [reddit] dumps".into(),
            });
        }
        dumps.extend(found);
    }
    let mut plan = Vec::new();
    let mut unit_bytes = Vec::new();
    for d in &dumps {
        let (bytes, modified) = d.stat()?;
        plan.push(serde_json::json!([d.to_string(), bytes, modified]));
        unit_bytes.push(bytes);
    }
    let stage = Stage {
        name: STAGE.to_string(),
        dir: out.clone(),
        config: serde_json::to_value(cfg).map_err(|e| StageError::Recipe(e.to_string()))?,
        units: plan,
        unit_bytes,
    };
    stage.run(slice, |ctx| reddit_unit(cfg, &dumps[ctx.unit], ctx))
}

fn reddit_unit(cfg: &RedditConfig, dump: &Loc, ctx: &UnitCtx) -> Result<Manifest, StageError> {
    let start = Instant::now();
    let path = dump.to_string();
    let rel = dump.file_name();
    let mut m = ctx.manifest();
    let (ledger_loc, ledger_name) = ctx.ledger();
    let mut ledger = LedgerWriter::create(&ledger_loc, WriteOptions::default())?;
    let mut push = |m: &mut Manifest,
                    id: String,
                    reason: &str,
                    detail: Option<String>,
                    location: Option<String>,
                    dup: Option<String>| {
        m.accounting.docs_in += 1;
        m.accounting.docs_ledger += 1;
        m.count(reason, 1);
        ledger.push(LedgerEntry {
            id,
            source: STAGE.to_string(),
            stage: STAGE.to_string(),
            reason: reason.to_string(),
            detail,
            location,
            duplicate_of: dup,
            ..LedgerEntry::default()
        })
    };

    let mut raw = codec::Tally::new(dump.open()?);
    let mut links = Links::new(&ctx.stage.dir, &ctx.stem(), cfg.memory_mb.saturating_mul(1 << 20));
    let mut lines = 0u64;
    let mut broken: Option<(std::io::Error, u64)> = None;
    {
        let mut reader = codec::decompress(BufReader::with_capacity(1 << 16, &mut raw), cfg.zstd_window_log)
            .map_err(|e| StageError::Input { at: At::byte(path.clone(), 0), msg: e.to_string() })?;
        let mut line = Vec::new();
        let mut offset = 0u64;
        let cap = cfg.max_line_bytes.max(1);
        loop {
            line.clear();
            let read = std::io::Read::take(&mut reader, cap).read_until(b'\n', &mut line).and_then(|n| {
                // A line past the cap is skipped as it streams by, never held.
                let long = n as u64 == cap && !line.ends_with(b"\n");
                let rest = if long { crate::steps::ingest::skip_line(&mut reader)? } else { 0 };
                Ok((n, rest))
            });
            let n = match read {
                Ok((n, 0)) => n,
                Ok((n, rest)) => {
                    let at = offset;
                    offset += n as u64 + rest;
                    lines += 1;
                    let detail = format!("a line of {} bytes > reddit.max_line_bytes {cap}", n as u64 + rest);
                    push(&mut m, format!("{rel}@{at}"), "too_large", Some(detail), Some(format!("{rel}@{at}")), None)?;
                    continue;
                }
                Err(e) => {
                    // A zstd window that is not allowed is a setting, not bad data: stop.
                    if e.to_string().contains("window log") {
                        return Err(StageError::Input {
                            at: At::byte(path, offset),
                            msg: format!("{e}\nhint: set reddit.zstd_window_log = 31"),
                        });
                    }
                    broken = Some((e, offset));
                    break;
                }
            };
            if n == 0 {
                break;
            }
            let at = offset;
            offset += n as u64;
            let body = line.strip_suffix(b"\n").unwrap_or(&line);
            if body.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            lines += 1;
            let here = || Some(format!("{rel}@{at}"));
            let sub: Submission = match serde_json::from_slice(body) {
                Ok(s) => s,
                Err(e) => {
                    let reason = if std::str::from_utf8(body).is_err() { "invalid_utf8" } else { "malformed_json" };
                    push(&mut m, format!("{rel}@{at}"), reason, Some(e.to_string()), here(), None)?;
                    continue;
                }
            };
            let id = sub.id.clone().map(|i| format!("t3_{i}")).unwrap_or_else(|| format!("{rel}@{at}"));
            let score = as_i64(&sub.score);
            let reject = |reason: &'static str, detail: String| Some((reason, detail));
            let verdict = match (&sub.url, score) {
                _ if sub.is_self == Some(true) => reject("self_post", String::new()),
                (None, _) => reject("no_url", String::new()),
                (_, None) => reject("no_score", String::new()),
                (_, Some(s)) if s < cfg.min_score => reject("low_score", format!("score {s} < {}", cfg.min_score)),
                (Some(u), _) => match urls::normalize(&unescape_html(u)) {
                    None => reject("not_http", u.clone()),
                    Some(key) => {
                        let host = key.split(['/', '?', ':']).next().unwrap_or("").to_string();
                        if cfg.exclude_domains.iter().any(|d| host == *d || host.ends_with(&format!(".{d}"))) {
                            reject("excluded_domain", host)
                        } else if is_media(&key, &cfg.media_extensions) {
                            reject("media_link", u.clone())
                        } else {
                            let s = Selected {
                                url: u.clone(),
                                key,
                                score: score.unwrap_or_default(),
                                subreddit: sub.subreddit.clone(),
                                created_utc: as_i64(&sub.created_utc),
                                id: id.clone(),
                                seq: lines,
                            };
                            // Keep the higher score; the first seen on a tie.
                            let met = links.add(s).map_err(|e| StageError::Input {
                                at: At::file(ctx.stage.dir.to_string()),
                                msg: format!("cannot spill the selected links: {e}\nhint: lower reddit.memory_mb's need for disk, or free space"),
                            })?;
                            match met {
                                Some((loser, winner)) => {
                                    push(&mut m, loser, "duplicate_url", None, None, Some(winner))?;
                                }
                                None => m.accounting.docs_in += 1,
                            }
                            None
                        }
                    }
                },
            };
            if let Some((reason, detail)) = verdict {
                push(&mut m, id, reason, (!detail.is_empty()).then_some(detail), here(), None)?;
            }
        }
    }
    if let Some((e, offset)) = broken {
        // The file itself could not be read (permissions, I/O): not bad data, stop.
        if raw.failed {
            return Err(StageError::Input { at: At::byte(path, raw.bytes), msg: format!("cannot read: {e}") });
        }
        // The stream broke: what was read stays; the rest is one ledger row, and the bytes
        // left unread are counted.
        m.count("input_streams_broken", 1);
        m.count("input_bytes_unread", dump.size()?.saturating_sub(raw.bytes));
        lines += 1;
        let at = Some(format!("{rel}@{offset}"));
        push(&mut m, format!("{rel}@{offset}"), "corrupt_input", Some(e.to_string()), at, None)?;
    }
    let (out_loc, out_name) = ctx.shard();
    let mut sink = ParquetSink::create(
        &out_loc,
        urls_schema(),
        URLS_FORMAT,
        URLS_VERSION,
        WriteOptions::default(),
        &["url", "key", "submission_id"],
    )?;
    // The links sorted by normalized URL (merged from the spill when there is one).
    let mut chunk: Vec<Selected> = Vec::with_capacity(8192);
    let mut write = |chunk: &mut Vec<Selected>| -> Result<(), StageError> {
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(chunk.iter().map(|s| s.url.as_str()))),
            Arc::new(StringArray::from_iter_values(chunk.iter().map(|s| s.key.as_str()))),
            Arc::new(Int64Array::from_iter_values(chunk.iter().map(|s| s.score))),
            Arc::new(StringArray::from_iter(chunk.iter().map(|s| s.subreddit.as_deref()))),
            Arc::new(Int64Array::from_iter(chunk.iter().map(|s| s.created_utc))),
            Arc::new(StringArray::from_iter(chunk.iter().map(|s| Some(s.id.as_str())))),
        ];
        let batch = RecordBatch::try_new(urls_schema(), cols)
            .map_err(|source| ShardError::Arrow { at: At::file(out_loc.to_string()), source })?;
        sink.write(&batch)?;
        chunk.clear();
        Ok(())
    };
    if links.spilled() {
        m.count("link_spills", links.runs.len() as u64);
    }
    let mut selected = 0u64;
    links.finish(
        |loser, winner| {
            // Counted in when it was first held; now it is a duplicate.
            push(&mut m, loser, "duplicate_url", None, None, Some(winner))?;
            m.accounting.docs_in -= 1;
            Ok(())
        },
        |s| {
            selected += 1;
            chunk.push(s);
            if chunk.len() == 8192 { write(&mut chunk) } else { Ok(()) }
        },
    )?;
    if !chunk.is_empty() {
        write(&mut chunk)?;
    }
    m.accounting.docs_out = selected;
    let rows = sink.finish()?;
    let ledger_rows = ledger.finish()?;
    let (raw_bytes, xxh3) = raw.finish();
    m.inputs.push(FileEntry { path, rows: lines, bytes: raw_bytes, xxh3 });
    m.outputs.push(FileEntry::describe(&out_loc, out_name, rows)?);
    m.ledgers.push(FileEntry::describe(&ledger_loc, ledger_name, ledger_rows)?);
    m.count("selected_urls", rows);
    m.timings.insert("reddit_seconds".into(), start.elapsed().as_secs_f64());
    ctx.progress.inc(raw_bytes);
    Ok(m)
}

/// Pushshift stores links HTML-escaped (`?a=1&amp;b=2`); the page's URL has the plain `&`.
fn unescape_html(u: &str) -> String {
    u.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&#39;", "'")
}

fn is_media(key: &str, extensions: &[String]) -> bool {
    let path = key.split('?').next().unwrap_or(key);
    let last = path.rsplit('/').next().unwrap_or("");
    match last.rsplit_once('.') {
        Some((_, ext)) => extensions.iter().any(|e| e.eq_ignore_ascii_case(ext)),
        None => false,
    }
}

/// The set of URL keys (as 64-bit hashes) of a completed `reddit` stage, and its fingerprint.
pub fn load_url_set(dir: &Loc) -> Result<(std::collections::HashSet<u64>, String), StageError> {
    let manifest_loc = dir.join(crate::core::stage::MANIFEST);
    if !manifest_loc.exists()? {
        return Err(StageError::Input {
            at: At::file(manifest_loc.to_string()),
            msg: "the reddit stage has not completed\nhint: run `grist reddit` (or `grist run`) first".into(),
        });
    }
    let m = Manifest::read(&manifest_loc)?;
    let mut set = std::collections::HashSet::new();
    for f in &m.outputs {
        let src = ParquetSource::open(&dir.join(&f.path), URLS_FORMAT, URLS_VERSION)?;
        for batch in src.batches(Some(&["key"]), 65536)? {
            let b = batch?;
            for key in shards::str_col(&b, "key")?.iter().flatten() {
                set.insert(urls::key_hash(key));
            }
        }
    }
    Ok((set, m.fingerprint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_links_by_extension() {
        let ext = default_media_extensions();
        assert!(is_media("i.imgur.com/abc.JPG", &ext));
        assert!(!is_media("example.com/article.html", &ext));
        assert!(!is_media("example.com/jpg", &ext));
        assert!(!is_media("example.com/a?x=y.png", &ext));
    }

    #[test]
    fn escaped_ampersands_match_the_page() {
        let posted = "http://www.nytimes.com/2005/07/01/x.html?ex=1277870400&amp;en=3c5&amp;ei=5090";
        assert_eq!(
            urls::normalize(&unescape_html(posted)),
            urls::normalize("http://nytimes.com/2005/07/01/x.html?ex=1277870400&en=3c5&ei=5090")
        );
    }

    #[test]
    fn numbers_as_numbers_or_strings() {
        let score = |json: &str| serde_json::from_str::<Submission>(json).map(|s| as_i64(&s.score));
        assert_eq!(score(r#"{"score": 5}"#).unwrap(), Some(5));
        assert_eq!(score(r#"{"score": "1119552233"}"#).unwrap(), Some(1_119_552_233));
        assert_eq!(score(r#"{"score": 1.5e3}"#).unwrap(), Some(1500));
        assert_eq!(score(r#"{"id": "x"}"#).unwrap(), None);
        assert_eq!(score(r#"{"score": null}"#).unwrap(), None);
        // Anything else is no number, skipped as parsed (no value tree), and not an error.
        let nested = format!(r#"{{"score": {}1{}}}"#, "[".repeat(50_000), "]".repeat(50_000));
        assert_eq!(score(&nested).unwrap(), None);
        assert_eq!(score(r#"{"score": {"a": [1, 2]}}"#).unwrap(), None);
    }
}
