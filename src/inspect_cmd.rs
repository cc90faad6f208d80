//! Printing for `grist inspect`: a stage output (summary and its step's figures), a run's
//! overview, `--verify`, `why` (a document through a run), `query` and `sample` (documents by
//! source, quality score, length and a regex over the text, streamed, so any size works) and
//! `grist warc`. What is computed lives in `pipeline::inspect`; this module prints it.

use std::process::ExitCode;

use anyhow::{Context, Result};
use pipeline::inspect::overview::{Details, Overview};
use pipeline::inspect::query::{self, Doc};
use pipeline::inspect::why::At;
use pipeline::steps::tokenize;
use serde_json::json;
use shards::Loc;

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

impl Filters {
    /// The library's filters.
    fn filters(&self) -> query::Filters {
        query::Filters {
            source: self.source.clone(),
            min_score: self.min_score,
            max_score: self.max_score,
            min_chars: self.min_chars,
            max_chars: self.max_chars,
            regex: self.regex.clone(),
        }
    }
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
    query::scan(&Loc::parse(dir)?, &f.filters(), |d| {
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
    let (keep, matched) = query::sample(&Loc::parse(dir)?, &f.filters(), n, seed)?;
    for d in &keep {
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
            At::Kept { source, chars, quality_score, keep_draw, cuts, edits } => {
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
                let counts: Vec<String> = edits
                    .iter()
                    .filter(|e| e.lines.is_none())
                    .map(|e| format!("{} {}.{}", e.count, e.filter, e.rule))
                    .collect();
                if !counts.is_empty() {
                    s += &format!("; text edited: {}", counts.join(", "));
                }
                s += ")";
                for e in edits.iter().filter_map(|e| e.lines.as_deref()) {
                    for l in e.lines() {
                        s += &format!("\n      - {l}");
                    }
                }
                s
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
    if let Some(f) = &d.filters {
        s += &f.render();
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
        if !json {
            for w in &v.warnings {
                println!("WARNING: {w}; see `grist inspect {}` and its ledger", v.dir);
            }
        }
        return Ok(if v.ok() { ExitCode::SUCCESS } else { ExitCode::from(crate::EXIT_VERIFY_FAILED) });
    }
    let classifier = loc.join(pipeline::steps::quality::train::REPORT_FILE);
    if !loc.join(pipeline::MANIFEST).exists()? && classifier.exists()? {
        // The quality classifier's folder: what training measured, reference sets included.
        let bytes = classifier.read()?;
        let r: pipeline::steps::quality::train::TrainReport =
            serde_json::from_slice(&bytes).with_context(|| format!("{classifier}: not a training report"))?;
        if json {
            println!("{}", serde_json::to_string_pretty(&r)?);
        } else {
            print!("{}", r.render());
        }
        return Ok(ExitCode::SUCCESS);
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
    let locs: Vec<Loc> = files.iter().map(|f| Loc::parse(f)).collect::<Result<_, _>>()?;
    let c = pipeline::formats::warc::census(&locs)?;
    let secs = start.elapsed().as_secs_f64();
    if json {
        let doc = serde_json::json!({ "files": c.files, "bytes": c.bytes, "seconds": secs, "counts": c.counts });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        for (k, v) in &c.counts {
            println!("{v:>10}  {k}");
        }
        println!("{} files, {} bytes in {secs:.3} s", c.files, c.bytes);
    }
    Ok(())
}
