//! The ledger: one Parquet row per document a stage removed or rejected, with the reason
//! and the stage-specific evidence (score, draw, cluster, duplicate-of, location in the
//! input). Every document that enters a stage leaves it either in a shard or here.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, StringArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use crate::docs::str_col;
use crate::error::{At, Result, ShardError};
use crate::parquet_io::{ParquetSink, ParquetSource, WriteOptions};
use crate::storage::Loc;

/// `grist.format` of ledgers.
pub const LEDGER_FORMAT: &str = "ledger";
/// Ledger format version.
pub const LEDGER_VERSION: u32 = 1;
/// Entries buffered before a batch is handed to the writer.
const LEDGER_BATCH: usize = 8192;

/// One removed or rejected document.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LedgerEntry {
    /// Document id; for input that never became a document (a corrupt tail, say), an id
    /// derived from the file and byte offset.
    pub id: String,
    pub source: String,
    pub stage: String,
    /// Machine-readable reason, snake_case (e.g. `empty`, `invalid_utf8`, `near_duplicate`).
    pub reason: String,
    /// Human-readable detail (an error message, the benchmark gram, ...).
    pub detail: Option<String>,
    /// Where in the input: `path@byte` for rejected records.
    pub location: Option<String>,
    pub score: Option<f64>,
    pub draw: Option<f64>,
    pub cluster_id: Option<u64>,
    pub duplicate_of: Option<String>,
}

/// The ledger schema.
pub fn ledger_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("stage", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("detail", DataType::Utf8, true),
        Field::new("location", DataType::Utf8, true),
        Field::new("score", DataType::Float64, true),
        Field::new("draw", DataType::Float64, true),
        Field::new("cluster_id", DataType::UInt64, true),
        Field::new("duplicate_of", DataType::Utf8, true),
    ]))
}

fn to_batch(entries: &[LedgerEntry]) -> Result<RecordBatch> {
    let s =
        |f: fn(&LedgerEntry) -> &str| -> ArrayRef { Arc::new(StringArray::from_iter_values(entries.iter().map(f))) };
    let o =
        |f: fn(&LedgerEntry) -> Option<&str>| -> ArrayRef { Arc::new(StringArray::from_iter(entries.iter().map(f))) };
    let cols: Vec<ArrayRef> = vec![
        s(|e| &e.id),
        s(|e| &e.source),
        s(|e| &e.stage),
        s(|e| &e.reason),
        o(|e| e.detail.as_deref()),
        o(|e| e.location.as_deref()),
        Arc::new(Float64Array::from_iter(entries.iter().map(|e| e.score))),
        Arc::new(Float64Array::from_iter(entries.iter().map(|e| e.draw))),
        Arc::new(UInt64Array::from_iter(entries.iter().map(|e| e.cluster_id))),
        o(|e| e.duplicate_of.as_deref()),
    ];
    RecordBatch::try_new(ledger_schema(), cols)
        .map_err(|source| ShardError::Arrow { at: At::file("<ledger batch>"), source })
}

/// Streams ledger entries to a Parquet file; visible only after `finish`.
pub struct LedgerWriter {
    sink: ParquetSink,
    buf: Vec<LedgerEntry>,
}

impl LedgerWriter {
    pub fn create(loc: &Loc, opts: WriteOptions) -> Result<LedgerWriter> {
        Ok(LedgerWriter {
            sink: ParquetSink::create(
                loc,
                ledger_schema(),
                LEDGER_FORMAT,
                LEDGER_VERSION,
                opts,
                &["id", "detail", "duplicate_of"],
            )?,
            buf: Vec::new(),
        })
    }

    pub fn push(&mut self, e: LedgerEntry) -> Result<()> {
        self.buf.push(e);
        if self.buf.len() >= LEDGER_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            let batch = to_batch(&self.buf)?;
            self.sink.write(&batch)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Entries pushed so far.
    pub fn rows(&self) -> u64 {
        self.sink.rows() + self.buf.len() as u64
    }

    /// Commits the ledger; returns its row count.
    pub fn finish(mut self) -> Result<u64> {
        self.flush()?;
        self.sink.finish()
    }
}

/// A validated ledger file.
pub struct LedgerReader {
    src: ParquetSource,
}

impl LedgerReader {
    pub fn open(loc: &Loc) -> Result<LedgerReader> {
        let src = ParquetSource::open(loc, LEDGER_FORMAT, LEDGER_VERSION)?;
        let want = ledger_schema();
        for f in want.fields() {
            if src.schema().field_with_name(f.name()).map(|g| g.data_type() != f.data_type()).unwrap_or(true) {
                return Err(ShardError::invalid(
                    At::file(src.path()),
                    format!("ledger column `{}` missing or mistyped", f.name()),
                ));
            }
        }
        Ok(LedgerReader { src })
    }

    pub fn num_rows(&self) -> u64 {
        self.src.num_rows()
    }

    /// Reads every entry.
    pub fn entries(&self) -> Result<Vec<LedgerEntry>> {
        // The footer's row count is a claim: reserve at most a batch's worth up front.
        let mut out = Vec::with_capacity((self.num_rows() as usize).min(1 << 14));
        for batch in self.src.batches(None, LEDGER_BATCH)? {
            let b = batch?;
            let f64col = |n: &str| b.column_by_name(n).and_then(|c| c.as_any().downcast_ref::<Float64Array>().cloned());
            let (score, draw) = (f64col("score"), f64col("draw"));
            let cluster =
                b.column_by_name("cluster_id").and_then(|c| c.as_any().downcast_ref::<UInt64Array>().cloned());
            let (id, source, stage, reason) =
                (str_col(&b, "id")?, str_col(&b, "source")?, str_col(&b, "stage")?, str_col(&b, "reason")?);
            let (detail, location, dup) =
                (str_col(&b, "detail")?, str_col(&b, "location")?, str_col(&b, "duplicate_of")?);
            let opt_s = |a: &StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_string());
            for i in 0..b.num_rows() {
                out.push(LedgerEntry {
                    id: id.value(i).to_string(),
                    source: source.value(i).to_string(),
                    stage: stage.value(i).to_string(),
                    reason: reason.value(i).to_string(),
                    detail: opt_s(detail, i),
                    location: opt_s(location, i),
                    score: score.as_ref().and_then(|a| a.is_valid(i).then(|| a.value(i))),
                    draw: draw.as_ref().and_then(|a| a.is_valid(i).then(|| a.value(i))),
                    cluster_id: cluster.as_ref().and_then(|a| a.is_valid(i).then(|| a.value(i))),
                    duplicate_of: opt_s(dup, i),
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_across_batches() {
        let dir = tempfile::tempdir().unwrap();
        let loc = Loc::local(dir.path().join("ledger-00000.parquet"));
        let entries: Vec<LedgerEntry> = (0..(LEDGER_BATCH as u64 + 5))
            .map(|i| LedgerEntry {
                id: format!("doc{i}"),
                source: "web".into(),
                stage: "quality".into(),
                reason: if i % 2 == 0 { "low_quality" } else { "near_duplicate" }.into(),
                detail: (i % 5 == 0).then(|| "detail".into()),
                location: None,
                score: Some(i as f64 / 10.0),
                draw: (i % 3 == 0).then_some(0.5),
                cluster_id: (i % 2 == 1).then_some(i * 3),
                duplicate_of: (i % 2 == 1).then(|| format!("doc{}", i - 1)),
            })
            .collect();
        let mut w = LedgerWriter::create(&loc, WriteOptions::default()).unwrap();
        for e in &entries {
            w.push(e.clone()).unwrap();
        }
        assert_eq!(w.finish().unwrap(), entries.len() as u64);
        let r = LedgerReader::open(&loc).unwrap();
        assert_eq!(r.num_rows(), entries.len() as u64);
        assert_eq!(r.entries().unwrap(), entries);
    }

    #[test]
    fn a_document_shard_is_not_a_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let loc = Loc::local(dir.path().join("part.parquet"));
        let schema = crate::docs::doc_schema(vec![]);
        crate::docs::DocWriter::create(&loc, schema, WriteOptions::default()).unwrap().finish().unwrap();
        let e = LedgerReader::open(&loc).err().unwrap().to_string();
        assert!(e.contains("grist.format=ledger") && e.contains("grist.format=documents"), "{e}");
    }
}
