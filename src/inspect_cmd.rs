//! Printing for `grist inspect`: a stage output (summary and its step's figures), a run's
//! overview, `--verify`, `why` (a document through a run), `query` and `sample` (documents by
//! source, quality score, length and a regex over the text, streamed, so any size works) and
//! `grist warc`. What is computed lives in `pipeline::inspect`; this module prints it.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context, Result};
use pipeline::inspect::overview::{Details, Overview};
use pipeline::inspect::why::At;
use pipeline::steps::tokenize;
use regex::Regex;
use serde_json::json;
use shards::arrow::array::{Array, Float64Array, StringArray};
use shards::{DocReader, Loc, Manifest, str_col};
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// What to keep (`grist inspect query` and `sample`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Filters {
    /// Only this source.
    #[arg(long)]
    pub source: Option<String>,
    /// Quality score at least this (outputs of quality_filter and later).
    #[arg(long)]
    pub min_score: Option<f64>,
    #[arg(long)]
    pub max_score: Option<f64>,
    /// Length in characters at least this.
    #[arg(long)]
    pub min_chars: Option<usize>,
    #[arg(long)]
    pub max_chars: Option<usize>,
    /// A regular expression the text must match (Rust regex syntax; (?i) for case-insensitive).
    #[arg(long)]
    pub regex: Option<String>,
}

/// One document, as query and sample print it.
#[derive(Debug, Clone)]
struct Doc {
    id: String,
    source: String,
    url: Option<String>,
    score: Option<f64>,
    text: String,
}

/// Streams the documents of a stage output that pass `f`, calling `each` until it returns false.
fn scan(dir: &Loc, f: &Filters, mut each: impl FnMut(Doc) -> bool) -> Result<u64> {
    let m = Manifest::read(&dir.join(pipeline::MANIFEST)).with_context(|| format!("{dir}: not a stage output"))?;
    let re = f.regex.as_deref().map(Regex::new).transpose().context("--regex")?;
    let mut matched = 0u64;
    for file in &m.outputs {
        let r = DocReader::open(&dir.join(&file.path))?;
        let has = |c: &str| r.schema().field_with_name(c).is_ok();
        if !has("text") {
            anyhow::bail!("{dir}: its outputs are not documents (stage {})", m.stage);
        }
        let mut cols = vec!["id", "source", "text"];
        if has("url") {
            cols.push("url");
        }
        let scored = has("quality_score");
        if scored {
            cols.push("quality_score");
        }
        if (f.min_score.is_some() || f.max_score.is_some()) && !scored {
            anyhow::bail!(
                "{dir}: no quality scores here (stage {}); score filters need quality_filter or later",
                m.stage
            );
        }
        for b in r.batches(Some(&cols), 4096)? {
            let b = b?;
            let (id, src, text) = (str_col(&b, "id")?, str_col(&b, "source")?, str_col(&b, "text")?);
            let url = b.column_by_name("url").and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned());
            let score =
                b.column_by_name("quality_score").and_then(|c| c.as_any().downcast_ref::<Float64Array>().cloned());
            for i in 0..b.num_rows() {
                if f.source.as_deref().is_some_and(|s| s != src.value(i)) {
                    continue;
                }
                let s = score.as_ref().filter(|a| !a.is_null(i)).map(|a| a.value(i));
                if f.min_score.is_some_and(|m| s.is_none_or(|s| s < m))
                    || f.max_score.is_some_and(|m| s.is_none_or(|s| s > m))
                {
                    continue;
                }
                let t = text.value(i);
                if f.min_chars.is_some() || f.max_chars.is_some() {
                    let n = t.chars().count();
                    if f.min_chars.is_some_and(|m| n < m) || f.max_chars.is_some_and(|m| n > m) {
                        continue;
                    }
                }
                if re.as_ref().is_some_and(|re| !re.is_match(t)) {
                    continue;
                }
                matched += 1;
                let doc = Doc {
                    id: id.value(i).into(),
                    source: src.value(i).into(),
                    url: url.as_ref().filter(|a| !a.is_null(i)).map(|a| a.value(i).to_string()),
                    score: s,
                    text: t.into(),
                };
                if !each(doc) {
                    return Ok(matched);
                }
            }
        }
    }
    Ok(matched)
}

fn print_doc(d: &Doc, chars: usize, as_json: bool) {
    if as_json {
        println!(
            "{}",
            json!({"id": d.id, "source": d.source, "url": d.url, "quality_score": d.score, "chars": d.text.chars().count(), "text": d.text})
        );
        return;
    }
    let text: String = d.text.chars().take(chars).collect();
    let more = if d.text.chars().count() > chars { " [...]" } else { "" };
    let score = d.score.map(|s| format!(" score {s:.3}")).unwrap_or_default();
    println!(
        "\n--- {} ({}, {} chars{score}) {}\n{text}{more}",
        d.id,
        d.source,
        d.text.chars().count(),
        d.url.as_deref().unwrap_or("-")
    );
}

/// `grist inspect query`: the first `limit` matching documents, in shard order.
pub fn query(dir: &str, f: &Filters, limit: usize, chars: usize, as_json: bool) -> Result<()> {
    let mut shown = 0;
    scan(&Loc::parse(dir)?, f, |d| {
        print_doc(&d, chars, as_json);
        shown += 1;
        shown < limit
    })?;
    if !as_json {
        println!("\n{shown} documents shown");
    }
    Ok(())
}

/// `grist inspect sample`: `n` matching documents drawn by a seeded hash of their ids (the same
/// for a seed, whatever the shard layout; memory holds n documents).
pub fn sample(dir: &str, f: &Filters, n: usize, seed: u64, chars: usize, as_json: bool) -> Result<()> {
    let mut keep: BTreeMap<(u64, String), Doc> = BTreeMap::new();
    let matched = scan(&Loc::parse(dir)?, f, |d| {
        let key = (xxh3_64_with_seed(d.id.as_bytes(), seed), d.id.clone());
        if keep.len() < n || keep.last_key_value().is_some_and(|(k, _)| key < *k) {
            keep.insert(key, d);
            if keep.len() > n {
                keep.pop_last();
            }
        }
        true
    })?;
    for d in keep.values() {
        print_doc(d, chars, as_json);
    }
    if !as_json {
        println!("\n{} of {matched} matching documents (seed {seed})", keep.len());
    }
    Ok(())
}

/// `grist inspect why`: prints a document's trail through `run`; false when no step has it.
pub fn why(run: &str, id: &str, as_json: bool) -> Result<bool> {
    let run = Loc::parse(run)?;
    let trail = pipeline::inspect::why::why(&run, id)?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&trail)?);
        return Ok(trail.found);
    }
    if !trail.found {
        println!("{id}: not in any stage of {run} (neither kept nor in a ledger)");
        return Ok(false);
    }
    println!("{id}");
    let num = |x: Option<f64>| x.map(|x| format!("{x:.4}"));
    for v in &trail.stages {
        let line = match &v.at {
            At::Tokens { copies } => {
                let first = &copies[0];
                let what = if v.stage == tokenize::STEP.name {
                    format!(
                        "{} tokens in the {} split ({})",
                        first.tokens,
                        first.split.as_deref().unwrap_or("?"),
                        first.shard.as_deref().unwrap_or("?")
                    )
                } else {
                    format!(
                        "{} cop{} in the training mixture ({} tokens each)",
                        copies.len(),
                        if copies.len() == 1 { "y" } else { "ies" },
                        first.tokens
                    )
                };
                format!("kept: {what}")
            }
            At::Kept { source, chars, quality_score, keep_draw, cuts } => {
                let mut s = format!("kept ({source}");
                if let Some(c) = chars {
                    s += &format!(", {c} chars");
                }
                if let (Some(sc), Some(d)) = (num(*quality_score), num(*keep_draw)) {
                    s += &format!("; score {sc}, draw {d}: kept as draw > 1 - score");
                }
                if let Some(c) = cuts.first() {
                    let at = |x: Option<u64>| x.map_or("?".to_string(), |x| x.to_string());
                    s += &format!(
                        "; {} benchmark passage(s) cut, e.g. chars {}..{} for {} gram \"{}\"",
                        cuts.len(),
                        at(c.start),
                        at(c.end),
                        c.benchmark,
                        c.gram
                    );
                }
                s + ")"
            }
            At::Removed { reason, detail, location, quality_score, keep_draw, cluster_id, duplicate_of, .. } => {
                let mut s = format!("REMOVED: {reason}");
                if let (Some(sc), Some(d)) = (num(*quality_score), num(*keep_draw)) {
                    s += &format!(" (score {sc}, draw {d}: removed as draw <= 1 - score)");
                }
                if let Some(o) = duplicate_of {
                    s += &format!(" of {o} (cluster {})", cluster_id.map_or("?".to_string(), |c| c.to_string()));
                }
                if let Some(d) = detail {
                    s += &format!("; {d}");
                }
                if let Some(l) = location {
                    s += &format!(" at {l}");
                }
                s
            }
            At::Absent => "not there".into(),
        };
        println!("  {:<15} {line}", v.stage);
    }
    Ok(true)
}

/// The stage's own figures as terminal lines.
pub fn render_details(d: &Details) -> String {
    let mut s = String::new();
    if !d.score_deciles.is_empty() {
        s += "\nquality score deciles: documents, kept, kept as the Pareto law expects\n";
        for x in d.score_deciles.iter().filter(|x| x.docs > 0) {
            s += &format!(
                "  [{:.1}, {:.1})  {:>8} {:>8} {:>10.1}\n",
                x.score_from,
                x.score_from + 0.1,
                x.docs,
                x.kept,
                x.expected_kept
            );
        }
    }
    if !d.cluster_sizes.is_empty() {
        s += "\nduplicate clusters by size (representative + removed copies): ";
        s += &d.cluster_sizes.iter().map(|x| format!("{} x {}", x.clusters, x.size)).collect::<Vec<_>>().join(", ");
        s += "\n";
        for c in &d.largest_clusters {
            s += &format!(
                "\ncluster {} ({} documents), kept {}:\n  {}\n",
                c.cluster_id,
                c.size,
                c.representative,
                c.text.replace('\n', " ")
            );
            for r in &c.removed {
                s += &format!("  removed {} ({}, jaccard {:.3})\n", r.id, r.reason, r.jaccard.unwrap_or(f64::NAN));
            }
        }
    }
    if let Some(h) = &d.gram_hits_by_benchmark {
        s += &format!(
            "\nbenchmark 13-gram hits: {}; documents cut: {}\n",
            h.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", "),
            d.documents_cut.unwrap_or(0)
        );
    }
    s
}

/// A run at a glance as terminal lines.
pub fn render_overview(v: &Overview) -> String {
    let mut s =
        format!("run {}\n\n{:<18} {:>10} {:>10} {:>10} {:>12}\n", v.run, "stage", "in", "kept", "removed", "tokens");
    for x in &v.stages {
        let tok = x.tokens.map_or("-".to_string(), |t| t.to_string());
        s += &format!("{:<18} {:>10} {:>10} {:>10} {:>12}\n", x.stage, x.docs_in, x.kept, x.removed, tok);
    }
    if !v.mixture.is_empty() {
        s += &format!("\n{:<20} {:>14} {:>14}\n", "mixture source", "planned", "realized");
        for x in &v.mixture {
            s += &format!("{:<20} {:>14} {:>14}\n", x.name, x.planned, x.realized);
        }
    }
    if let Some(t) = &v.training {
        let f = |x: Option<f32>| x.map_or("-".to_string(), |x| format!("{x:.4}"));
        let by: Vec<String> = t.val_by_source.iter().map(|(k, l)| format!("{k} {}", f(*l))).collect();
        s += &format!(
            "\ntraining: {} steps, {} tokens; loss {} -> {}; validation {} ({})\n",
            t.steps,
            t.tokens,
            f(t.first_loss),
            f(t.last_loss),
            f(t.val_loss),
            by.join(", ")
        );
        s += "loss curve (tokens: loss): ";
        s += &t
            .curve
            .iter()
            .map(|(tokens, loss)| format!("{tokens}: {}", loss.map_or("-".to_string(), |l| format!("{l:.2}"))))
            .collect::<Vec<_>>()
            .join(", ");
        s += "\n";
    }
    s
}

/// `grist inspect DIR`: a stage output's summary and details, a run's overview, or `--verify`.
pub fn inspect(dir: &str, verify_only: bool, json: bool) -> Result<ExitCode> {
    let loc = Loc::parse(dir)?;
    if verify_only {
        let v = pipeline::inspect::verify::verify(&loc)?;
        if json {
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else if v.ok() {
            println!(
                "ok: stage {} in {}: {} units, {} files match their manifests; {} in = {} out + {} in the ledger",
                v.stage, v.dir, v.units, v.files_checked, v.docs_in, v.docs_out, v.docs_ledger
            );
        } else {
            println!("FAILED: stage {} in {}: {} problems", v.stage, v.dir, v.problems.len());
            for p in &v.problems {
                println!("  - {p}");
            }
        }
        return Ok(if v.ok() { ExitCode::SUCCESS } else { ExitCode::from(crate::EXIT_VERIFY_FAILED) });
    }
    if !loc.join(pipeline::MANIFEST).exists()?
        && loc.join(pipeline::steps::ingest::STEP.name).join(pipeline::MANIFEST).exists()?
    {
        // A run directory: every stage, the mixture and the training.
        let v = pipeline::inspect::overview::overview(&loc)?;
        if json {
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            print!("{}", render_overview(&v));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let s = pipeline::inspect::summary::summarize(&loc)?;
    let details = pipeline::inspect::overview::details(&loc)?;
    if json {
        let mut v = serde_json::to_value(&s)?;
        v["details"] = serde_json::to_value(&details)?;
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}{}", s.render(), render_details(&details));
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the first `n` documents of a stage output.
pub fn print_head(dir: &Loc, n: usize, chars: usize) -> Result<()> {
    let m = shards::Manifest::read(&dir.join(pipeline::MANIFEST))?;
    let mut shown = 0;
    for f in &m.outputs {
        for d in shards::DocReader::open(&dir.join(&f.path))?.read_docs()? {
            if shown == n {
                return Ok(());
            }
            let text: String = d.text.chars().take(chars).collect();
            let more = if d.text.chars().count() > chars { " [...]" } else { "" };
            println!("\n--- {} ({}) {}\n{text}{more}", d.id, d.source, d.url.as_deref().unwrap_or("-"));
            shown += 1;
        }
    }
    Ok(())
}

/// `grist warc`: streams each file through the WARC reader and counts what it finds.
pub fn warc_counts(files: &[String], json: bool) -> Result<()> {
    let start = std::time::Instant::now();
    let mut total: BTreeMap<String, u64> = BTreeMap::new();
    let mut bytes = 0u64;
    for f in files {
        let loc = Loc::parse(f)?;
        bytes += loc.size()?;
        let raw = pipeline::formats::warc::Counted::new(std::io::BufReader::with_capacity(1 << 16, loc.open()?));
        for item in pipeline::formats::warc::open(raw).with_context(|| format!("opening {f}"))? {
            let key = match item.with_context(|| format!("reading {f}"))? {
                pipeline::formats::warc::WarcItem::Record(r) => format!("record {}", r.record_type()),
                pipeline::formats::warc::WarcItem::Bad { reason, .. } => format!("bad {reason}"),
                pipeline::formats::warc::WarcItem::Skipped { .. } => "skipped tail".to_string(),
            };
            *total.entry(key).or_default() += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if json {
        let doc = serde_json::json!({ "files": files.len(), "bytes": bytes, "seconds": secs, "counts": total });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        for (k, v) in &total {
            println!("{v:>10}  {k}");
        }
        println!("{} files, {bytes} bytes in {secs:.3} s", files.len());
    }
    Ok(())
}
