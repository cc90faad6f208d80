//! `grist inspect why`: one document followed through a run. Every document step in registry
//! order says whether it kept the document (with its score, draw and decontamination cuts) or
//! removed it (its ledger row), until it leaves; then the token steps say where its tokens are.
//! Streams the shards (the columns it needs only), so it works at any size. Printing is the
//! caller's.

use serde::Serialize;
use shards::arrow::array::{Array, Float64Array, StringArray, UInt64Array};
use shards::arrow::record_batch::RecordBatch;
use shards::parquet_io::ParquetSource;
use shards::{DocReader, LedgerEntry, LedgerReader, Loc, Manifest, str_col};

use crate::core::error::StageError;
use crate::core::stage::MANIFEST;
use crate::steps::{Produces, STEPS};

/// Where a document is in one step's output.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum At {
    /// In the step's documents.
    Kept {
        source: String,
        chars: Option<u64>,
        quality_score: Option<f64>,
        keep_draw: Option<f64>,
        /// Benchmark passages cut out of it (decontaminate).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        cuts: Vec<Cut>,
        /// Lines a filter's line rules removed from it (filters).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        edits: Vec<Edit>,
    },
    /// In the step's ledger.
    Removed {
        reason: String,
        source: String,
        detail: Option<String>,
        location: Option<String>,
        quality_score: Option<f64>,
        keep_draw: Option<f64>,
        cluster_id: Option<u64>,
        duplicate_of: Option<String>,
    },
    /// Its tokens in a token step's shards (tokenize: one copy; blend: the mixture's copies).
    Tokens { copies: Vec<TokenCopy> },
    /// Not there (the step ran, but the document never reached it).
    Absent,
}

/// A benchmark passage cut out of a document: which benchmark, the 13-gram, the character range.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cut {
    pub benchmark: String,
    pub gram: String,
    pub start: Option<u64>,
    pub end: Option<u64>,
}

/// Lines one line rule removed from a document (the `filters` step's edits table).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Edit {
    pub filter: String,
    pub rule: String,
    pub count: u64,
    /// The removed lines (a `lines` row, with `keep_removed_lines`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lines: Option<String>,
}

/// One copy of a document's tokens in a token step's sidecar.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenCopy {
    /// `train` or `val` (tokenize).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub split: Option<String>,
    /// The llm.c shard (tokenize).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// The copy's number in the mixture (blend).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub copy: Option<u64>,
    pub offset: u64,
    pub tokens: u64,
}

/// One step of the trail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Visit {
    pub stage: String,
    pub at: At,
}

/// A document's way through a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trail {
    pub id: String,
    /// Whether any step kept or removed it.
    pub found: bool,
    pub stages: Vec<Visit>,
}

/// Follows document `id` through the run in `run`.
pub fn why(run: &Loc, id: &str) -> Result<Trail, StageError> {
    let mut stages: Vec<Visit> = Vec::new();
    let mut found = false;
    for step in STEPS.iter().filter(|s| s.produces == Produces::Documents) {
        let Some(at) = find_in_stage(&run.join(step.name), id)? else { continue };
        if at == At::Absent && !found {
            continue; // not yet in the run (e.g. a document made by a later step)
        }
        found |= at != At::Absent;
        let kept = matches!(at, At::Kept { .. });
        stages.push(Visit { stage: step.name.to_string(), at });
        if !kept {
            break;
        }
    }
    if stages.last().is_some_and(|v| matches!(v.at, At::Kept { .. })) {
        for step in STEPS.iter().filter(|s| matches!(s.produces, Produces::Tokens | Produces::Mixture)) {
            if let Some(at) = find_tokens(&run.join(step.name), id)? {
                stages.push(Visit { stage: step.name.to_string(), at });
            }
        }
    }
    Ok(Trail { id: id.to_string(), found, stages })
}

fn f64_at(b: &RecordBatch, column: &str, i: usize) -> Option<f64> {
    b.column_by_name(column).and_then(|a| a.as_any().downcast_ref::<Float64Array>().map(|a| a.value(i)))
}

fn u64_at(b: &RecordBatch, column: &str, i: usize) -> Option<u64> {
    b.column_by_name(column).and_then(|a| a.as_any().downcast_ref::<UInt64Array>().map(|a| a.value(i)))
}

fn str_at(b: &RecordBatch, column: &str, i: usize) -> Option<String> {
    b.column_by_name(column).and_then(|a| a.as_any().downcast_ref::<StringArray>().map(|a| a.value(i).to_string()))
}

/// Where a document is in one stage output, or `None` when the stage has no output there.
fn find_in_stage(dir: &Loc, id: &str) -> Result<Option<At>, StageError> {
    let Ok(m) = Manifest::read(&dir.join(MANIFEST)) else { return Ok(None) };
    for f in &m.ledgers {
        for e in LedgerReader::open(&dir.join(&f.path))?.entries()? {
            if e.id == id {
                return Ok(Some(removed(e)));
            }
        }
    }
    for f in &m.outputs {
        let r = DocReader::open(&dir.join(&f.path))?;
        let has = |c: &str| r.schema().field_with_name(c).is_ok();
        let mut cols = vec!["id", "source"];
        cols.extend(["text", "quality_score", "keep_draw"].into_iter().filter(|c| has(c)));
        for b in r.batches(Some(&cols), 8192)? {
            let b = b?;
            let ids = str_col(&b, "id")?;
            let Some(i) = (0..b.num_rows()).find(|&i| ids.value(i) == id) else { continue };
            let chars = b
                .column_by_name("text")
                .and_then(|a| a.as_any().downcast_ref::<StringArray>().map(|a| a.value(i).chars().count() as u64));
            return Ok(Some(At::Kept {
                source: str_col(&b, "source")?.value(i).to_string(),
                chars,
                quality_score: f64_at(&b, "quality_score", i),
                keep_draw: f64_at(&b, "keep_draw", i),
                cuts: cuts_of(dir, &m, id)?,
                edits: edits_of(dir, &m, id)?,
            }));
        }
    }
    Ok(Some(At::Absent))
}

/// Decontamination cuts of a kept document (the stage's `cuts` side tables).
fn cuts_of(dir: &Loc, m: &Manifest, id: &str) -> Result<Vec<Cut>, StageError> {
    let mut out = Vec::new();
    for f in m.side.iter().filter(|f| f.path.contains(".side-cuts")) {
        let (src, _) = ParquetSource::open_any(&dir.join(&f.path))?;
        for b in src.batches(None, 8192)? {
            let b = b?;
            let (ids, bench, gram) = (str_col(&b, "id")?, str_col(&b, "benchmark")?, str_col(&b, "gram")?);
            for i in (0..b.num_rows()).filter(|&i| ids.value(i) == id) {
                out.push(Cut {
                    benchmark: bench.value(i).to_string(),
                    gram: gram.value(i).to_string(),
                    start: u64_at(&b, "start", i),
                    end: u64_at(&b, "end", i),
                });
            }
        }
    }
    Ok(out)
}

/// Line-rule edits of a kept document (the `filters` step's `edits` side tables).
fn edits_of(dir: &Loc, m: &Manifest, id: &str) -> Result<Vec<Edit>, StageError> {
    let mut out = Vec::new();
    let suffix = format!(".side-{}.parquet", crate::steps::filters::EDITS);
    for f in m.side.iter().filter(|f| f.path.ends_with(&suffix)) {
        let (src, _) = ParquetSource::open_any(&dir.join(&f.path))?;
        for b in src.batches(None, 8192)? {
            let b = b?;
            let (ids, filter, rule, lines) =
                (str_col(&b, "id")?, str_col(&b, "filter")?, str_col(&b, "rule")?, str_col(&b, "lines")?);
            for i in (0..b.num_rows()).filter(|&i| ids.value(i) == id) {
                out.push(Edit {
                    filter: filter.value(i).to_string(),
                    rule: rule.value(i).to_string(),
                    count: u64_at(&b, "count", i).unwrap_or(0),
                    lines: lines.is_valid(i).then(|| lines.value(i).to_string()),
                });
            }
        }
    }
    Ok(out)
}

fn removed(e: LedgerEntry) -> At {
    At::Removed {
        reason: e.reason,
        source: e.source,
        detail: e.detail,
        location: e.location,
        quality_score: e.score,
        keep_draw: e.draw,
        cluster_id: e.cluster_id,
        duplicate_of: e.duplicate_of,
    }
}

/// Token copies of a document in a token stage's sidecars.
fn find_tokens(dir: &Loc, id: &str) -> Result<Option<At>, StageError> {
    let Ok(m) = Manifest::read(&dir.join(MANIFEST)) else { return Ok(None) };
    let mut copies = Vec::new();
    for f in &m.outputs {
        let (src, _) = ParquetSource::open_any(&dir.join(&f.path))?;
        for b in src.batches(None, 8192)? {
            let b = b?;
            let ids = str_col(&b, "id")?;
            for i in (0..b.num_rows()).filter(|&i| ids.value(i) == id) {
                let required = |column: &str| {
                    u64_at(&b, column, i).ok_or_else(|| StageError::Input {
                        at: shards::At::file(dir.join(&f.path).to_string()),
                        msg: format!("sidecar column {column:?} missing or not u64"),
                    })
                };
                copies.push(TokenCopy {
                    split: str_at(&b, "split", i),
                    shard: str_at(&b, "shard", i),
                    copy: u64_at(&b, "copy", i),
                    offset: required("offset")?,
                    tokens: required("tokens")?,
                });
            }
        }
    }
    Ok(Some(if copies.is_empty() { At::Absent } else { At::Tokens { copies } }))
}
