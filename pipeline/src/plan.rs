//! `grist plan RECIPE`: a dry run. Per stage it prints what it reads and writes, and estimates
//! of disk, peak memory and time from per-byte rates measured with this build on the 2-core
//! development machine (the benchmarks in the README), scaled to the threads at hand; and it
//! flags what would stop or spoil a run before anything runs: inputs that match nothing,
//! mixture weights that do not sum to 1, a token budget the data cannot give.
//!
//! The estimates are upper bounds where the data decides (every later stage is sized as if the
//! quality filter kept everything) and rough everywhere: they say whether a run takes minutes
//! or days and needs gigabytes or terabytes, not more.

use std::fmt::Write as _;

use crate::core::recipe::Recipe;
use crate::steps::Host;
use crate::steps::ingest::{IngestConfig, InputFormat};

/// Measured rates, per core (README, "Performance").
mod rate {
    /// JSON lines: MB/s of JSON (146.6 on 1 thread, `just bench`); gzip'd inputs are about 6.6x
    /// smaller (22.1 MB/s of gzip).
    pub const JSONL: f64 = 146.6e6;
    /// WET: MB/s of gzip (106.5, `just bench-ingest`), about 4x that in text.
    pub const WET_GZ: f64 = 106.5e6;
    /// WARC with HTML extraction: MB/s of WARC (38.4); WARC gzips about 4x (810 / 200 MB).
    pub const WARC: f64 = 38.4e6;
    /// Quality training and scoring: bytes of text per second (51 MB in 1.48 s; 352 MB/s on 2
    /// threads for scoring).
    pub const QUALITY_TRAIN: f64 = 34.5e6;
    pub const QUALITY_SCORE: f64 = 176e6;
    /// Dedup signatures (98 MB/s, `just bench-dedup`); the later steps are small beside it.
    pub const DEDUP: f64 = 98e6;
    /// Decontamination, both stages: 51 MB in 1.4 s on 2 threads.
    pub const DECONTAM: f64 = 18e6;
    /// GPT-2 BPE: tokens per second (4.85 M, `just bench-tokenize`).
    pub const TOKENIZE: f64 = 4.85e6;
    /// Bytes of text per GPT-2 token in the real sample (51 MB -> 18.1 M tokens).
    pub const BYTES_PER_TOKEN: f64 = 2.83;
    /// The heuristic filters, FineWeb's four: bytes of text per second on one thread (51.1 MB of
    /// real crawl and prose in 5.78 s, the whole `grist filters`; `just bench-filters`).
    pub const FILTERS: f64 = 8.8e6;
    /// The language ID alone (lid.176.ftz): 51.1 MB in 2.79 s on one thread.
    pub const LANGUAGE_ID: f64 = 18.3e6;
    /// Zstd Parquet document shards: bytes on disk per byte of text.
    pub const SHARD_RATIO: f64 = 0.45;
}

fn human_bytes(b: f64) -> String {
    let units = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut x = b;
    let mut u = 0;
    while x >= 1000.0 && u < units.len() - 1 {
        x /= 1000.0;
        u += 1;
    }
    let x = if x > 0.0 { x } else { 0.0 };
    if u == 0 { format!("{x:.0} B") } else { format!("{x:.1} {}", units[u]) }
}

fn human_time(s: f64) -> String {
    match s {
        s if s < 1.0 => "< 1 s".into(),
        s if s < 120.0 => format!("{s:.0} s"),
        s if s < 7200.0 => format!("{:.0} min", s / 60.0),
        s if s < 172_800.0 => format!("{:.1} h", s / 3600.0),
        s => format!("{:.1} days", s / 86400.0),
    }
}

/// One stage's row.
struct Row {
    stage: &'static str,
    reads: String,
    writes: String,
    disk: f64,
    memory: f64,
    seconds: f64,
}

/// The plan: the table, then the problems (which make the exit code non-zero).
pub struct Plan {
    pub text: String,
    pub problems: Vec<String>,
}

/// Things worth knowing that do not stop a run.
type Notes = Vec<String>;

/// Input bytes and the text they hold (an estimate), per ingest source.
fn source_bytes(recipe: &Recipe, problems: &mut Vec<String>) -> Vec<(String, u64, f64, f64)> {
    let generated = recipe.synthetic.as_ref().map(|s| s.out.clone());
    let mut out = Vec::new();
    for s in &recipe.ingest.sources {
        if let Some(g) = &generated
            && s.paths.iter().all(|p| p.starts_with(g.as_str()))
        {
            // Written by [synthetic] when the run starts: about 1.4 kB of text per crawl-like document.
            let docs = recipe.synthetic.as_ref().map_or(0, |x| x.docs) as f64;
            let text = docs * 1400.0 / recipe.ingest.sources.len().max(1) as f64;
            out.push((s.name.clone(), 0, text, text / rate::JSONL));
            continue;
        }
        let one = IngestConfig { sources: vec![s.clone()], ..recipe.ingest.clone() };
        match crate::steps::ingest::input_units(&one) {
            Err(e) => problems.push(format!("ingest source `{}`: {e}", s.name)),
            Ok((units, _)) => {
                let (mut bytes, mut text, mut secs) = (0u64, 0.0, 0.0);
                for f in units.iter().flatten() {
                    let b = f.bytes as f64;
                    let name = f.loc.file_name();
                    let gz = name.ends_with(".gz") || name.ends_with(".zst");
                    let (t, s) = match f.format {
                        InputFormat::Warc if name.contains(".wet") => (b * 4.0, b / rate::WET_GZ),
                        InputFormat::Warc => {
                            let raw = if gz { b * 4.0 } else { b };
                            (raw * 0.1, raw / rate::WARC)
                        }
                        _ => {
                            let raw = if gz { b * 6.6 } else { b };
                            (raw * 0.9, raw / rate::JSONL)
                        }
                    };
                    bytes += f.bytes;
                    text += t;
                    secs += s;
                }
                out.push((s.name.clone(), bytes, text, secs));
            }
        }
    }
    out
}

/// The document bytes a completed stage of this run wrote (`None` before it has run): a later
/// stage's disk is estimated from them, not from the text estimate, so a plan made between
/// stages is as exact as the data so far allows.
fn written(out: &str, stage: &str) -> Option<f64> {
    let dir = shards::Loc::parse(out).ok()?.join(stage);
    let m = shards::Manifest::read(&dir.join(crate::core::stage::MANIFEST)).ok()?;
    Some(m.outputs.iter().map(|f| f.bytes as f64).sum())
}

/// Sizes of the Reddit dumps that exist (files, or the files of a folder).
fn dump_sizes(dumps: &[String]) -> Vec<f64> {
    let mut out = Vec::new();
    for d in dumps {
        let Ok(loc) = shards::Loc::parse(d) else { continue };
        let found = match loc.exists() {
            Ok(true) => vec![loc],
            _ => loc.list().unwrap_or_default(),
        };
        out.extend(found.iter().filter_map(|f| f.size().ok()).map(|b| b as f64));
    }
    out
}

/// Builds the plan of `recipe` for `threads` cores.
pub fn plan(recipe: &Recipe, threads: usize, host: &dyn Host) -> Plan {
    let mut problems = Vec::new();
    let mut notes: Notes = Vec::new();
    let mut rows: Vec<Row> = Vec::new();
    let th = threads.max(1) as f64;
    let out = &recipe.run.out;
    let sources = source_bytes(recipe, &mut problems);
    let text: f64 = sources.iter().map(|s| s.2).sum::<f64>().max(0.0);
    let input: u64 = sources.iter().map(|s| s.1).sum();
    let ingest_secs: f64 = sources.iter().map(|s| s.3).sum::<f64>() / th;
    let row_group = recipe.ingest.row_group_bytes as f64;
    let listed: Vec<String> = sources
        .iter()
        .map(|s| format!("{} {}", s.0, if s.1 > 0 { human_bytes(s.1 as f64) } else { "(synthetic)".into() }))
        .collect();
    // Peak memory per task, fitted to `just bench-scale` at 10^5, 10^6 and 10^7 documents (see
    // the README's scale curve): a base, plus a share of the text that stops growing where the
    // stage's units reach their full size (`ingest.unit_bytes`, row groups) or its budget.
    let unit = recipe.ingest.unit_bytes as f64;
    if recipe.synthetic.is_some() {
        rows.push(Row {
            stage: "synthetic",
            reads: "-".into(),
            writes: recipe.synthetic.as_ref().map_or(String::new(), |s| s.out.clone()),
            disk: text * 0.5,
            // One crawl file's records at a time; the WARC, WET and Reddit files stream.
            memory: 80e6,
            seconds: 1.0,
        });
    }
    if let Some(r) = &recipe.reddit {
        // A dump's selected links are held to deduplicate them (about 20 bytes per byte of
        // zstd input); a task works on up to `threads` dumps at once.
        let sizes = dump_sizes(&r.dumps);
        let largest = sizes.iter().copied().fold(0.0, f64::max);
        let largest = if sizes.is_empty() { text / 450.0 } else { largest };
        rows.push(Row {
            stage: "reddit",
            reads: format!("{} dump files", r.dumps.len()),
            writes: format!("{out}/reddit"),
            // The URL tables: about 0.9 x the zstd dumps, measured.
            disk: 0.9 * if sizes.is_empty() { text / 450.0 } else { sizes.iter().sum::<f64>() },
            // ... up to `reddit.memory_mb` a dump, past which they spill as sorted runs.
            memory: 20e6
                + (20.0 * largest).min(1.1 * r.memory_mb as f64 * (1u64 << 20) as f64)
                    * th.min(sizes.len().max(1) as f64),
            seconds: 1.0,
        });
    }
    // zstd Parquet shards: 0.45 of real crawl text; the synthetic corpus's word-list text
    // compresses to 0.18 (measured by `just bench-scale`).
    let shards: f64 = sources.iter().map(|s| s.2 * if s.1 == 0 { 0.18 } else { rate::SHARD_RATIO }).sum();
    rows.push(Row {
        stage: "ingest",
        reads: listed.join(", "),
        writes: format!("{out}/ingest"),
        disk: shards,
        memory: th * (40e6 + (0.1 * text / th).min(3.0 * row_group)),
        seconds: ingest_secs,
    });
    if let Some(f) = &recipe.filters {
        rows.push(Row {
            stage: "filters",
            reads: format!("{out}/{}", f.input),
            writes: format!("{out}/filters"),
            // At most its input (every document kept), plus the edits table (small).
            disk: written(out, &f.input).unwrap_or(shards),
            // A batch of 2048 documents per task with its tokens and n-gram tables, each
            // thread's cache of tokenized chunks (up to 2^17 chunks), and the language model
            // (its file's size; lid.176.bin is 126 MB). 137 MB measured on 51 MB, 2 threads.
            memory: 80e6
                + th * 30e6
                + (0.05 * text).min(th * 4.5 * row_group)
                + f.language.as_ref().map_or(0.0, |l| std::fs::metadata(&l.model).map_or(130e6, |m| m.len() as f64))
                // The block lists as hash sets: 3.5 times their files' bytes measured (500,000
                // domains, 11.9 MB: 41 MB more), 4 planned.
                + f.url.as_ref().map_or(0.0, |u| 4.0 * u.list_bytes() as f64),
            seconds: if f.names().iter().any(|n| *n != "language" && *n != "pii") {
                text / rate::FILTERS / th
            } else {
                0.0
            } + if f.language.is_some() { text / rate::LANGUAGE_ID / th } else { 0.0 },
        });
    }
    if let Some(q) = &recipe.quality {
        let features = q.num_features as f64;
        rows.push(Row {
            stage: "quality",
            reads: format!("{out}/ingest (twice)"),
            writes: format!("{out}/quality/model.gqm"),
            // f32 weights and the header.
            disk: features * 4.2,
            // L-BFGS history and weights, partial gradients (up to 64 ranges), then the design:
            // in memory up to `memory_mb` (and an eighth more for the held-out rows), past that
            // in a spill file whose pages are released as the solver passes them.
            memory: 50e6
                + 320.0 * features
                + (0.45 * text).min(q.memory_mb as f64 * 1.125 * (1u64 << 20) as f64 + 64.0 * 8.0 * features),
            seconds: text / rate::QUALITY_TRAIN * 3.0,
        });
    }
    if let Some(q) = &recipe.quality_filter {
        rows.push(Row {
            stage: "quality_filter",
            reads: format!("{out}/ingest"),
            writes: format!("{out}/quality_filter"),
            // At most its input (every document kept): the keep rate is the data's.
            disk: written(out, &q.input).unwrap_or(shards),
            memory: 120e6 + (0.117 * text).min(th * 4.5 * row_group),
            seconds: text / rate::QUALITY_SCORE / th,
        });
    }
    if let Some(d) = &recipe.dedup {
        rows.push(Row {
            stage: "dedup",
            reads: "the filtered documents".into(),
            writes: format!("{out}/dedup_signatures, dedup_buckets, dedup_clusters, dedup"),
            // The kept documents (at most the input) and the signature tables, measured at 0.4
            // of the input shards' bytes.
            disk: written(out, &d.input).map_or(1.4 * shards, |b| 1.4 * b),
            // The largest of its steps (the filter's, and the clusters step's within
            // `dedup.memory_mb`): grows with the input shards up to their full size.
            memory: 60e6
                + (0.11 * text)
                    .min(1.5 * unit)
                    .min(recipe.dedup.as_ref().map_or(f64::MAX, |d| d.memory_mb as f64 * 1.1 * (1u64 << 20) as f64)),
            seconds: text / rate::DEDUP / th * 1.3,
        });
    }
    if let Some(c) = &recipe.decontaminate {
        rows.push(Row {
            stage: "decontaminate",
            reads: "the deduplicated documents and benchmarks".into(),
            writes: format!("{out}/decontaminate_hits, decontaminate"),
            disk: written(out, &c.input).unwrap_or(shards),
            memory: 150e6 + (0.18 * text).min(2.0 * unit),
            seconds: text / rate::DECONTAM / th,
        });
    }
    let tokens = text / rate::BYTES_PER_TOKEN;
    if let Some(t) = &recipe.tokenize {
        rows.push(Row {
            stage: "tokenize",
            reads: "the decontaminated documents".into(),
            writes: format!("{out}/tokenize"),
            // Two bytes a token: about 2.3 x the zstd Parquet shards it reads, measured.
            disk: written(out, &t.input).map_or(tokens * 2.0, |b| 2.3 * b),
            memory: 85e6 + (0.055 * text).min(0.7 * unit),
            seconds: tokens / rate::TOKENIZE / th,
        });
    }
    if let Some(b) = &recipe.blend {
        let sum: f64 = b.sources.iter().map(|s| s.weight).sum();
        if (sum - 1.0).abs() > 1e-6 {
            problems.push(format!("[blend] weights sum to {sum:.4}, not 1 (grist normalizes them; say so in the recipe by making them sum to 1)"));
        }
        // The budget against what the data can give.
        for s in &b.sources {
            let available = match s.tokens {
                Some(t) => t as f64,
                None => sources.iter().filter(|x| x.0 == s.name).map(|x| x.2 / rate::BYTES_PER_TOKEN).sum(),
            };
            let target = s.weight / sum.max(1e-12) * b.total_tokens as f64;
            let webtext = recipe.ingest.webtext.as_ref().is_some_and(|w| w.source == s.name);
            if webtext && s.tokens.is_none() {
                // Pages renamed from their crawl sources at the Reddit links: a part of those.
                continue;
            }
            if !sources.iter().any(|x| x.0 == s.name) && s.tokens.is_none() {
                problems.push(format!("[blend] source `{}` is not an ingest source", s.name));
            } else if available > 0.0 && target / available > 10.0 {
                problems.push(format!(
                    "[blend] `{}` needs {} tokens but its input gives at most about {}: {:.0} epochs (GPT-3 repeated no source more than 3.4 times)",
                    s.name,
                    human_bytes(target).replace(" B", "").replace('B', ""),
                    human_bytes(available).replace(" B", "").replace('B', ""),
                    target / available
                ));
            }
        }
        rows.push(Row {
            stage: "blend",
            reads: format!("{out}/tokenize"),
            writes: format!("{out}/blend"),
            // Two bytes a token, and the order: about 72 bytes per train document and 48 per
            // copy while it is sorted (about one document per 600 tokens of the budget).
            disk: b.total_tokens as f64 * (2.0 + 120.0 / 600.0),
            // The larger of its two phases (measured at 10^5-10^7 documents): the order's sort
            // records (32 bytes a copy) up to `memory_mb`, then spilled; and the output shards
            // written at once, one a thread (a sidecar row group of about 0.17 bytes a token).
            memory: 20e6
                + (32.0 * b.total_tokens as f64 / 600.0)
                    .min(b.memory_mb as f64 * 1048576.0)
                    .max(th * (5e6 + 0.17 * b.shard_tokens.min(b.total_tokens) as f64)),
            seconds: b.total_tokens as f64 / 200e6,
        });
    }
    // A step of the registry this plan has no rates for still shows, without an estimate.
    for step in crate::steps::STEPS.iter().filter(|s| s.in_recipe(recipe)) {
        let covered = rows.iter().any(|r| r.stage == step.name || r.stage == step.table)
            || ["train", "report"].contains(&step.name);
        if !covered {
            notes.push(format!("{}: no estimate (this build has no measured rate for it)", step.name));
        }
    }
    if recipe.train.is_some() {
        match host.estimate_train(recipe) {
            Err(e) => problems.push(format!("[train]: {e}")),
            Ok(e) => {
                notes.extend(e.notes);
                rows.push(Row {
                    stage: "train",
                    reads: e.reads,
                    writes: e.writes,
                    disk: e.disk,
                    memory: e.memory,
                    seconds: e.seconds,
                });
            }
        }
    }

    let mut s = String::new();
    let _ = writeln!(
        s,
        "plan for {} on {threads} threads (estimates from this build's measured rates; upper bounds where the data decides)",
        out
    );
    let _ = writeln!(
        s,
        "input: {} in {} sources, about {} of text\n",
        human_bytes(input as f64),
        sources.len(),
        human_bytes(text)
    );
    let _ = writeln!(s, "{:<15} {:>10} {:>12} {:>10}  reads -> writes", "stage", "disk", "peak memory", "time");
    let mut total = (0.0f64, 0.0f64, 0.0f64);
    for r in &rows {
        let _ = writeln!(
            s,
            "{:<15} {:>10} {:>12} {:>10}  {} -> {}",
            r.stage,
            human_bytes(r.disk),
            human_bytes(r.memory),
            human_time(r.seconds),
            r.reads,
            r.writes
        );
        total = (total.0 + r.disk, total.1.max(r.memory), total.2 + r.seconds);
    }
    let _ = writeln!(
        s,
        "{:<15} {:>10} {:>12} {:>10}",
        "all",
        human_bytes(total.0),
        human_bytes(total.1),
        human_time(total.2)
    );
    for n in &notes {
        let _ = writeln!(s, "note: {n}");
    }
    if problems.is_empty() {
        let _ = writeln!(s, "\nno problems found");
    } else {
        let _ = writeln!(s, "\nproblems:");
        for p in &problems {
            let _ = writeln!(s, "  - {p}");
        }
    }
    Plan { text: s, problems }
}
