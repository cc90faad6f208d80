//! `inspect` summaries of a stage directory without a query engine: documents, bytes and
//! length distribution per source, and removal reasons per source from the ledgers.
//! (Richer inspection through polars lives with the report; this is the always-available core.)

use std::collections::BTreeMap;

use serde::Serialize;
use shards::{DocReader, LedgerReader, Loc, Manifest, str_col};

use crate::core::error::StageError;
use crate::core::stage::MANIFEST;

/// Per-source figures of a stage output.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceSummary {
    pub docs: u64,
    /// UTF-8 bytes of text.
    pub text_bytes: u64,
    /// Document length in characters: min, median, 90th percentile, max.
    pub chars_min: u64,
    pub chars_p50: u64,
    pub chars_p90: u64,
    pub chars_max: u64,
    /// Ledger rows by reason.
    pub removed: BTreeMap<String, u64>,
}

/// A stage output, summarized.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub stage: String,
    pub units: u64,
    pub docs_in: u64,
    pub docs_out: u64,
    pub docs_ledger: u64,
    pub sources: BTreeMap<String, SourceSummary>,
    pub counters: BTreeMap<String, u64>,
}

/// Reads a completed stage directory and summarizes it.
pub fn summarize(dir: &Loc) -> Result<Summary, StageError> {
    let m = Manifest::read(&dir.join(MANIFEST))?;
    let mut lengths: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut sources: BTreeMap<String, SourceSummary> = BTreeMap::new();
    for f in &m.outputs {
        let (src, format) = shards::parquet_io::ParquetSource::open_any(&dir.join(&f.path))?;
        if format != shards::docs::DOCS_FORMAT {
            // A table, not documents (e.g. reddit's URLs): rows only.
            sources.entry(format!("{} ({format})", m.stage)).or_default().docs += src.num_rows();
            continue;
        }
        let r = DocReader::open(&dir.join(&f.path))?;
        for batch in r.batches(Some(&["source", "text"]), 8192)? {
            let b = batch?;
            let (src, text) = (str_col(&b, "source")?, str_col(&b, "text")?);
            for i in 0..b.num_rows() {
                let t = text.value(i);
                let s = sources.entry(src.value(i).to_string()).or_default();
                s.docs += 1;
                s.text_bytes += t.len() as u64;
                lengths.entry(src.value(i).to_string()).or_default().push(t.chars().count() as u64);
            }
        }
    }
    for f in &m.ledgers {
        for e in LedgerReader::open(&dir.join(&f.path))?.entries()? {
            *sources.entry(e.source).or_default().removed.entry(e.reason).or_default() += 1;
        }
    }
    for (name, mut v) in lengths {
        v.sort_unstable();
        let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
        if let Some(s) = sources.get_mut(&name) {
            (s.chars_min, s.chars_p50, s.chars_p90, s.chars_max) = (q(0.0), q(0.5), q(0.9), q(1.0));
        }
    }
    let is_filters = m.stage == crate::steps::filters::STAGE;
    Ok(Summary {
        stage: m.stage,
        units: m.units,
        docs_in: m.accounting.docs_in,
        docs_out: m.accounting.docs_out,
        docs_ledger: m.accounting.docs_ledger,
        sources,
        // The filters' counters are histograms and per-rule figures that their own report
        // (`steps::filters::FilterReport`, in `inspect`'s details) shows as a table.
        counters: if is_filters { BTreeMap::new() } else { m.counters },
    })
}

impl Summary {
    /// A terminal table.
    pub fn render(&self) -> String {
        let mut s = format!(
            "stage {}: {} units, {} documents in = {} kept + {} in the ledger\n\n",
            self.stage, self.units, self.docs_in, self.docs_out, self.docs_ledger
        );
        s += &format!(
            "{:<16} {:>9} {:>12} {:>8} {:>8} {:>8} {:>9}  removed\n",
            "source", "docs", "text bytes", "min ch", "p50 ch", "p90 ch", "max ch"
        );
        for (name, src) in &self.sources {
            let removed = if src.removed.is_empty() {
                "-".to_string()
            } else {
                src.removed.iter().map(|(r, n)| format!("{r} {n}")).collect::<Vec<_>>().join(", ")
            };
            s += &format!(
                "{:<16} {:>9} {:>12} {:>8} {:>8} {:>8} {:>9}  {}\n",
                name, src.docs, src.text_bytes, src.chars_min, src.chars_p50, src.chars_p90, src.chars_max, removed
            );
        }
        if !self.counters.is_empty() {
            let c: Vec<String> = self.counters.iter().map(|(k, v)| format!("{k} {v}")).collect();
            s += &format!("\ncounters: {}\n", c.join(", "));
        }
        for (k, what) in crate::inspect::verify::LOSS_COUNTERS {
            if let Some(n) = self.counters.get(*k).filter(|&&n| n > 0) {
                s += &format!("WARNING: input lost: {n} {what}\n");
            }
        }
        s
    }
}
