//! `grist inspect why`, `query` and `sample`: following one document through a run, and reading
//! the documents of a stage output by source, quality score, length and a regex over the text.
//! They stream the Parquet shards (the columns they need only), so they work at any size.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{Context, Result};
use pipeline::steps::{Produces, STEPS, blend, decontaminate, dedup, quality, tokenize};
use regex::Regex;
use serde_json::{Value, json};
use shards::arrow::array::{Array, Float64Array, StringArray};
use shards::{DocReader, LedgerEntry, LedgerReader, Loc, Manifest, str_col};
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The steps whose outputs are documents, in run order.
fn document_steps() -> impl Iterator<Item = &'static str> {
    STEPS.iter().filter(|s| s.produces == Produces::Documents).map(|s| s.name)
}

/// The steps whose outputs are tokens of documents (tokenize, blend), in run order.
fn token_steps() -> impl Iterator<Item = &'static str> {
    STEPS.iter().filter(|s| matches!(s.produces, Produces::Tokens | Produces::Mixture)).map(|s| s.name)
}

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

/// Where a document is in one stage: kept (with its score and draw where the stage has them),
/// removed (its ledger entry), or absent.
fn find_in_stage(dir: &Loc, id: &str) -> Result<Option<Value>> {
    let Ok(m) = Manifest::read(&dir.join(pipeline::MANIFEST)) else { return Ok(None) };
    for f in &m.ledgers {
        for e in LedgerReader::open(&dir.join(&f.path))?.entries()? {
            if e.id == id {
                return Ok(Some(removed(&e)));
            }
        }
    }
    for f in &m.outputs {
        let r = DocReader::open(&dir.join(&f.path))?;
        let has = |c: &str| r.schema().field_with_name(c).is_ok();
        let mut cols = vec!["id", "source"];
        for c in ["text", "quality_score", "keep_draw"] {
            if has(c) {
                cols.push(c);
            }
        }
        for b in r.batches(Some(&cols), 8192)? {
            let b = b?;
            let ids = str_col(&b, "id")?;
            for i in 0..b.num_rows() {
                if ids.value(i) != id {
                    continue;
                }
                let f64_at = |c: &str| {
                    b.column_by_name(c).and_then(|a| a.as_any().downcast_ref::<Float64Array>().map(|a| a.value(i)))
                };
                let chars = b
                    .column_by_name("text")
                    .and_then(|a| a.as_any().downcast_ref::<StringArray>().map(|a| a.value(i).chars().count()));
                let mut v = json!({
                    "status": "kept", "source": str_col(&b, "source")?.value(i), "chars": chars,
                    "quality_score": f64_at("quality_score"), "keep_draw": f64_at("keep_draw"),
                });
                let cuts = cuts_of(dir, &m, id)?;
                if !cuts.is_empty() {
                    v["cuts"] = json!(cuts);
                }
                return Ok(Some(v));
            }
        }
    }
    Ok(Some(json!({"status": "absent"})))
}

/// Decontamination cuts of a kept document (the stage's `cuts` side tables): benchmark, gram,
/// and the cut's character range.
fn cuts_of(dir: &Loc, m: &Manifest, id: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for f in m.side.iter().filter(|f| f.path.contains(".side-cuts")) {
        let (src, _) = shards::parquet_io::ParquetSource::open_any(&dir.join(&f.path))?;
        for b in src.batches(None, 8192)? {
            let b = b?;
            let (ids, bench, gram) = (str_col(&b, "id")?, str_col(&b, "benchmark")?, str_col(&b, "gram")?);
            let num = |c: &str| {
                b.column_by_name(c)
                    .and_then(|a| a.as_any().downcast_ref::<shards::arrow::array::UInt64Array>().cloned())
            };
            let (start, end) = (num("start"), num("end"));
            for i in 0..b.num_rows() {
                if ids.value(i) == id {
                    out.push(json!({
                        "benchmark": bench.value(i), "gram": gram.value(i),
                        "start": start.as_ref().map(|a| a.value(i)), "end": end.as_ref().map(|a| a.value(i)),
                    }));
                }
            }
        }
    }
    Ok(out)
}

fn removed(e: &LedgerEntry) -> Value {
    json!({
        "status": "removed", "reason": e.reason, "source": e.source, "detail": e.detail, "location": e.location,
        "quality_score": e.score, "keep_draw": e.draw, "cluster_id": e.cluster_id, "duplicate_of": e.duplicate_of,
    })
}

/// Token copies of a document in a token stage's sidecars (tokenize: its split; blend: copies).
fn find_tokens(dir: &Loc, id: &str) -> Result<Option<Value>> {
    let Ok(m) = Manifest::read(&dir.join(pipeline::MANIFEST)) else { return Ok(None) };
    let mut rows = Vec::new();
    for f in &m.outputs {
        let (src, _) = shards::parquet_io::ParquetSource::open_any(&dir.join(&f.path))?;
        for b in src.batches(None, 8192)? {
            let b = b?;
            let ids = str_col(&b, "id")?;
            for i in 0..b.num_rows() {
                if ids.value(i) == id {
                    let mut row = serde_json::Map::new();
                    for (k, field) in b.schema().fields().iter().enumerate() {
                        let col = b.column(k);
                        let v = if let Some(a) = col.as_any().downcast_ref::<StringArray>() {
                            json!(a.value(i))
                        } else if let Some(a) = col.as_any().downcast_ref::<shards::arrow::array::UInt64Array>() {
                            json!(a.value(i))
                        } else {
                            continue;
                        };
                        row.insert(field.name().clone(), v);
                    }
                    rows.push(Value::Object(row));
                }
            }
        }
    }
    Ok(Some(if rows.is_empty() { json!({"status": "absent"}) } else { json!({"status": "kept", "copies": rows}) }))
}

/// `grist inspect why`: every stage of `run` the document passed through, and where and why it
/// was removed.
pub fn why(run: &str, id: &str, as_json: bool) -> Result<bool> {
    let run = Loc::parse(run)?;
    let mut trail: Vec<(String, Value)> = Vec::new();
    let mut found = false;
    for stage in document_steps() {
        let Some(v) = find_in_stage(&run.join(stage), id)? else { continue };
        let status = v["status"].as_str().unwrap_or_default().to_string();
        if status == "absent" && !found {
            continue; // not yet in the run (e.g. a document made by a later stage)
        }
        found |= status != "absent";
        trail.push((stage.to_string(), v));
        if status != "kept" {
            break;
        }
    }
    if trail.last().is_some_and(|(_, v)| v["status"] == "kept") {
        for stage in token_steps() {
            if let Some(v) = find_tokens(&run.join(stage), id)? {
                trail.push((stage.to_string(), v));
            }
        }
    }
    if as_json {
        let t: Vec<Value> = trail.iter().map(|(s, v)| json!({"stage": s, "at": v})).collect();
        println!("{}", serde_json::to_string_pretty(&json!({"id": id, "found": found, "stages": t}))?);
        return Ok(found);
    }
    if !found {
        println!("{id}: not in any stage of {run} (neither kept nor in a ledger)");
        return Ok(false);
    }
    println!("{id}");
    for (stage, v) in &trail {
        let num = |k: &str| v[k].as_f64().map(|x| format!("{x:.4}"));
        let line = match v["status"].as_str().unwrap_or_default() {
            "kept" if token_steps().any(|s| s == stage) => {
                let copies = v["copies"].as_array().map_or(0, Vec::len);
                let first = &v["copies"][0];
                let what = if stage == tokenize::STEP.name {
                    format!(
                        "{} tokens in the {} split ({})",
                        first["tokens"],
                        first["split"].as_str().unwrap_or("?"),
                        first["shard"].as_str().unwrap_or("?")
                    )
                } else {
                    format!(
                        "{copies} cop{} in the training mixture ({} tokens each)",
                        if copies == 1 { "y" } else { "ies" },
                        first["tokens"]
                    )
                };
                format!("kept: {what}")
            }
            "kept" => {
                let mut s = format!("kept ({}", v["source"].as_str().unwrap_or("?"));
                if let Some(c) = v["chars"].as_u64() {
                    s += &format!(", {c} chars");
                }
                if let (Some(sc), Some(d)) = (num("quality_score"), num("keep_draw")) {
                    s += &format!("; score {sc}, draw {d}: kept as draw > 1 - score");
                }
                if let Some(cuts) = v["cuts"].as_array() {
                    let c = &cuts[0];
                    s += &format!(
                        "; {} benchmark passage(s) cut, e.g. chars {}..{} for {} gram \"{}\"",
                        cuts.len(),
                        c["start"],
                        c["end"],
                        c["benchmark"].as_str().unwrap_or("?"),
                        c["gram"].as_str().unwrap_or("?")
                    );
                }
                s + ")"
            }
            "removed" => {
                let mut s = format!("REMOVED: {}", v["reason"].as_str().unwrap_or("?"));
                if let (Some(sc), Some(d)) = (num("quality_score"), num("keep_draw")) {
                    s += &format!(" (score {sc}, draw {d}: removed as draw <= 1 - score)");
                }
                if let Some(o) = v["duplicate_of"].as_str() {
                    s += &format!(" of {o} (cluster {})", v["cluster_id"]);
                }
                if let Some(d) = v["detail"].as_str() {
                    s += &format!("; {d}");
                }
                if let Some(l) = v["location"].as_str() {
                    s += &format!(" at {l}");
                }
                s
            }
            _ => "not there".into(),
        };
        println!("  {stage:<15} {line}");
    }
    Ok(true)
}

/// A duplicate cluster: its kept representative, and the removed copies (id, reason, Jaccard).
type Cluster = (String, Vec<(String, String, f64)>);

/// Stage-specific figures beyond the per-source summary: the quality filter's score deciles,
/// dedup's cluster sizes and largest clusters (with the representative's text), the
/// decontamination hits per benchmark.
pub fn details(dir: &Loc) -> Result<Value> {
    let m = Manifest::read(&dir.join(pipeline::MANIFEST))?;
    let mut out = serde_json::Map::new();
    match m.stage.as_str() {
        s if s == quality::filter::STEP.name => {
            let k = quality::filter::keep_report(&m);
            let mut deciles = Vec::new();
            for (bin, (n, kept, exp)) in k.deciles().into_iter().enumerate() {
                deciles.push(json!({"score_from": bin as f64 / 10.0, "docs": n, "kept": kept, "expected_kept": exp}));
            }
            out.insert("alpha".into(), json!(k.alpha));
            out.insert("score_deciles".into(), json!(deciles));
        }
        s if s == dedup::FILTER_STEP.name => {
            let d = dir.to_string();
            let base = d.trim_end_matches('/').rsplit_once('/').map_or(".", |(b, _)| b);
            let removals = Loc::parse(base)?.join(dedup::CLUSTERS_STEP.name).join(dedup::REMOVALS);
            if removals.exists()? {
                let (src, _) = shards::parquet_io::ParquetSource::open_any(&removals)?;
                let mut clusters: BTreeMap<u64, Cluster> = BTreeMap::new();
                for b in src.batches(None, 65536)? {
                    let b = b?;
                    let (id, reason, rep) = (str_col(&b, "id")?, str_col(&b, "reason")?, str_col(&b, "duplicate_of")?);
                    let cid = b
                        .column_by_name("cluster_id")
                        .and_then(|c| c.as_any().downcast_ref::<shards::arrow::array::UInt64Array>().cloned());
                    let jac =
                        b.column_by_name("jaccard").and_then(|c| c.as_any().downcast_ref::<Float64Array>().cloned());
                    for i in 0..b.num_rows() {
                        let c = cid.as_ref().map_or(0, |a| a.value(i));
                        let e = clusters.entry(c).or_insert_with(|| (rep.value(i).to_string(), Vec::new()));
                        let j = jac.as_ref().filter(|a| !a.is_null(i)).map_or(f64::NAN, |a| a.value(i));
                        e.1.push((id.value(i).to_string(), reason.value(i).to_string(), j));
                    }
                }
                // Sizes count the representative with its removed copies.
                let mut sizes: BTreeMap<usize, u64> = BTreeMap::new();
                for (_, members) in clusters.values() {
                    *sizes.entry(members.len() + 1).or_default() += 1;
                }
                let mut largest: Vec<(&u64, &Cluster)> = clusters.iter().collect();
                largest.sort_by(|a, b| b.1.1.len().cmp(&a.1.1.len()).then(a.0.cmp(b.0)));
                let mut top = Vec::new();
                for (cid, (rep, members)) in largest.into_iter().take(3) {
                    let mut text = String::new();
                    scan(dir, &Filters::default(), |d| {
                        if d.id == *rep {
                            text = d.text.chars().take(300).collect();
                            return false;
                        }
                        true
                    })?;
                    top.push(json!({"cluster_id": cid, "size": members.len() + 1, "representative": rep, "text": text,
                        "removed": members.iter().map(|(i, r, j)| json!({"id": i, "reason": r, "jaccard": j})).collect::<Vec<_>>()}));
                }
                out.insert(
                    "cluster_sizes".into(),
                    json!(sizes.iter().map(|(s, n)| json!({"size": s, "clusters": n})).collect::<Vec<_>>()),
                );
                out.insert("largest_clusters".into(), json!(top));
            }
        }
        s if s == decontaminate::STEP.name => {
            let r = decontaminate::CleanReport::read(&m)?;
            out.insert("gram_hits_by_benchmark".into(), json!(r.gram_hits));
            out.insert("documents_cut".into(), json!(r.documents_cut));
        }
        _ => {}
    }
    Ok(Value::Object(out))
}

/// The details as terminal lines.
pub fn render_details(v: &Value) -> String {
    let mut s = String::new();
    if let Some(d) = v["score_deciles"].as_array() {
        s += "\nquality score deciles: documents, kept, kept as the Pareto law expects\n";
        for x in d.iter().filter(|x| x["docs"].as_u64() > Some(0)) {
            let from = x["score_from"].as_f64().unwrap_or(0.0);
            s += &format!(
                "  [{from:.1}, {:.1})  {:>8} {:>8} {:>10.1}\n",
                from + 0.1,
                x["docs"].as_u64().unwrap_or(0),
                x["kept"].as_u64().unwrap_or(0),
                x["expected_kept"].as_f64().unwrap_or(0.0)
            );
        }
    }
    if let Some(sizes) = v["cluster_sizes"].as_array() {
        s += "\nduplicate clusters by size (representative + removed copies): ";
        s += &sizes.iter().map(|x| format!("{} x {}", x["clusters"], x["size"])).collect::<Vec<_>>().join(", ");
        s += "\n";
        for c in v["largest_clusters"].as_array().into_iter().flatten() {
            s += &format!(
                "\ncluster {} ({} documents), kept {}:\n  {}\n",
                c["cluster_id"],
                c["size"],
                c["representative"].as_str().unwrap_or("?"),
                c["text"].as_str().unwrap_or("").replace('\n', " ")
            );
            for r in c["removed"].as_array().into_iter().flatten() {
                s += &format!(
                    "  removed {} ({}, jaccard {:.3})\n",
                    r["id"].as_str().unwrap_or("?"),
                    r["reason"].as_str().unwrap_or("?"),
                    r["jaccard"].as_f64().unwrap_or(f64::NAN)
                );
            }
        }
    }
    if let Some(h) = v["gram_hits_by_benchmark"].as_object() {
        s += &format!(
            "\nbenchmark 13-gram hits: {}; documents cut: {}\n",
            h.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", "),
            v["documents_cut"]
        );
    }
    s
}

/// `grist inspect RUN_DIR`: every stage of a run in one table, the mixture and the training.
pub fn run_overview(run: &Loc) -> Result<Value> {
    let mut stages = Vec::new();
    for st in STEPS.iter().filter(|s| !matches!(s.produces, Produces::Files)) {
        let Ok(m) = Manifest::read(&run.join(st.name).join(pipeline::MANIFEST)) else { continue };
        let tokens = match st.produces {
            Produces::Tokens => Some(tokenize::TokenizeReport::read(&m)?.tokens_train),
            Produces::Mixture => Some(m.side.iter().map(|f| f.rows).sum::<u64>()),
            _ => None,
        };
        stages.push(json!({"stage": st.name, "in": m.accounting.docs_in, "kept": m.accounting.docs_out,
            "removed": m.accounting.docs_ledger, "tokens": tokens}));
    }
    let mut mixture = Vec::new();
    if let Ok(bm) = Manifest::read(&run.join(blend::STEP.name).join(pipeline::MANIFEST)) {
        for r in blend::MixtureReport::read(&bm)?.sources {
            mixture.push(json!({"source": r.name, "planned": r.planned, "realized": r.realized}));
        }
    }
    let metrics = run.join("train/metrics.jsonl");
    let mut training = Value::Null;
    if metrics.exists()? {
        let text = String::from_utf8_lossy(&metrics.read()?).into_owned();
        let lines: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        let steps: Vec<&Value> = lines.iter().filter(|v| v["loss"].is_number()).collect();
        let val = lines.iter().rev().find(|v| v["val_loss"].is_number());
        training = json!({
            "steps": steps.last().map(|v| v["step"].clone()), "tokens": steps.last().map(|v| v["tokens"].clone()),
            "first_loss": steps.first().map(|v| v["loss"].clone()), "last_loss": steps.last().map(|v| v["loss"].clone()),
            "val_loss": val.map(|v| v["val_loss"].clone()), "val_by_source": val.map(|v| v["val"].clone()),
            "curve": steps.iter().step_by((steps.len() / 10).max(1)).map(|v| json!([v["tokens"], v["loss"]])).collect::<Vec<_>>(),
        });
    }
    Ok(json!({"run": run.to_string(), "stages": stages, "mixture": mixture, "training": training}))
}

pub fn render_overview(v: &Value) -> String {
    let mut s = format!(
        "run {}\n\n{:<16} {:>10} {:>10} {:>10} {:>12}\n",
        v["run"].as_str().unwrap_or("?"),
        "stage",
        "in",
        "kept",
        "removed",
        "tokens"
    );
    for x in v["stages"].as_array().into_iter().flatten() {
        let tok = x["tokens"].as_u64().map_or("-".to_string(), |t| t.to_string());
        let n = |k: &str| x[k].as_u64().unwrap_or(0);
        s += &format!(
            "{:<16} {:>10} {:>10} {:>10} {:>12}\n",
            x["stage"].as_str().unwrap_or("?"),
            n("in"),
            n("kept"),
            n("removed"),
            tok
        );
    }
    if let Some(m) = v["mixture"].as_array().filter(|m| !m.is_empty()) {
        s += &format!("\n{:<20} {:>14} {:>14}\n", "mixture source", "planned", "realized");
        for x in m {
            let n = |k: &str| x[k].as_u64().unwrap_or(0);
            s += &format!("{:<20} {:>14} {:>14}\n", x["source"].as_str().unwrap_or("?"), n("planned"), n("realized"));
        }
    }
    let t = &v["training"];
    if !t.is_null() {
        s += &format!(
            "\ntraining: {} steps, {} tokens; loss {:.4} -> {:.4}; validation {:.4} {}\n",
            t["steps"],
            t["tokens"],
            t["first_loss"].as_f64().unwrap_or(f64::NAN),
            t["last_loss"].as_f64().unwrap_or(f64::NAN),
            t["val_loss"].as_f64().unwrap_or(f64::NAN),
            t["val_by_source"]
        );
        s += "loss curve (tokens: loss): ";
        s += &t["curve"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| format!("{}: {:.2}", p[0], p[1].as_f64().unwrap_or(f64::NAN)))
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
        let v = run_overview(&loc)?;
        if json {
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            print!("{}", render_overview(&v));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let s = pipeline::inspect::summary::summarize(&loc)?;
    let details = details(&loc)?;
    if json {
        let mut v = serde_json::to_value(&s)?;
        v["details"] = details;
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
