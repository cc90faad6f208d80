//! The Parquet plumbing shared by document shards and ledgers: a streaming writer with
//! bounded memory (row groups flushed at a byte size) that commits atomically, and a reader
//! that checks magic bytes, grist's format tag and version before anything else.

use std::fs::File;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::{KeyValue, ParquetMetaData};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use crate::error::{At, Result, ShardError};
use crate::storage::{AtomicFile, Loc};

/// Key-value metadata key naming grist's file kind (`documents`, `ledger`).
pub const FORMAT_KEY: &str = "grist.format";
/// Key-value metadata key holding the format version.
pub const VERSION_KEY: &str = "grist.format_version";
/// Parquet's magic, at both ends of every file.
const PAR1: &[u8; 4] = b"PAR1";

/// Writer settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// Target row-group size in bytes of buffered data; bounds the writer's memory.
    pub row_group_bytes: usize,
    /// zstd level (1..=22).
    pub zstd_level: i32,
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions { row_group_bytes: 64 << 20, zstd_level: 3 }
    }
}

/// A Parquet file being written under a temporary name.
pub struct ParquetSink {
    writer: ArrowWriter<AtomicFile>,
    loc: Loc,
    rows: u64,
}

impl ParquetSink {
    /// `plain_columns` are written without dictionary encoding: for columns that are nearly
    /// all distinct (ids, texts, URLs) a dictionary costs CPU and saves nothing.
    pub fn create(
        loc: &Loc,
        schema: SchemaRef,
        format: &str,
        version: u32,
        opts: WriteOptions,
        plain_columns: &[&str],
    ) -> Result<ParquetSink> {
        let at = || At::file(loc.to_string());
        let level = ZstdLevel::try_new(opts.zstd_level).map_err(|source| ShardError::Parquet { at: at(), source })?;
        let mut props = WriterProperties::builder();
        for c in plain_columns {
            props = props.set_column_dictionary_enabled(ColumnPath::from(*c), false);
        }
        let props = props
            .set_compression(Compression::ZSTD(level))
            .set_max_row_group_bytes(Some(opts.row_group_bytes.max(1)))
            .set_created_by(format!("grist {}", env!("CARGO_PKG_VERSION")))
            .set_key_value_metadata(Some(vec![
                KeyValue::new(FORMAT_KEY.to_string(), format.to_string()),
                KeyValue::new(VERSION_KEY.to_string(), version.to_string()),
            ]))
            .build();
        let writer = ArrowWriter::try_new(loc.create()?, schema, Some(props))
            .map_err(|source| ShardError::Parquet { at: at(), source })?;
        Ok(ParquetSink { writer, loc: loc.clone(), rows: 0 })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer
            .write(batch)
            .map_err(|source| ShardError::Parquet { at: At::file(self.loc.to_string()), source })?;
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Writes the footer and makes the file visible. Returns the row count.
    pub fn finish(self) -> Result<u64> {
        let at = At::file(self.loc.to_string());
        let file = self.writer.into_inner().map_err(|source| ShardError::Parquet { at, source })?;
        file.commit()?;
        Ok(self.rows)
    }
}

enum Source {
    File(File),
    Bytes(Bytes),
}

/// Which format tag a reader insists on.
#[derive(Clone, Copy)]
enum Tag<'a> {
    Format(&'a str),
    AnyGrist,
    Foreign,
}

/// A validated Parquet file of one of grist's kinds.
pub struct ParquetSource {
    src: Source,
    metadata: Arc<ParquetMetaData>,
    schema: SchemaRef,
    path: String,
}

impl ParquetSource {
    /// Opens any of grist's Parquet files (documents, ledgers, tables): magic and a grist
    /// format tag are checked, the kind is not. Returns the source and its format tag.
    pub fn open_any(loc: &Loc) -> Result<(ParquetSource, String)> {
        Self::open_checked(loc, Tag::AnyGrist, u32::MAX)
    }

    /// Opens a Parquet file written by any tool (a curated corpus, say): only Parquet's own
    /// magic and footer are checked.
    pub fn open_foreign(loc: &Loc) -> Result<ParquetSource> {
        Self::open_checked(loc, Tag::Foreign, u32::MAX).map(|(s, _)| s)
    }

    /// Opens `loc`, checking Parquet magic, grist's format tag `format` and version `<= max_version`.
    pub fn open(loc: &Loc, format: &str, max_version: u32) -> Result<ParquetSource> {
        Self::open_checked(loc, Tag::Format(format), max_version).map(|(s, _)| s)
    }

    fn open_checked(loc: &Loc, tag: Tag<'_>, max_version: u32) -> Result<(ParquetSource, String)> {
        let path = loc.to_string();
        let at = || At::file(path.clone());
        let src = match loc.as_local() {
            Some(p) => Source::File(File::open(p).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    ShardError::NotFound { at: at(), hint: "check the path; run the stage that makes it first".into() }
                }
                _ => ShardError::io(at(), e),
            })?),
            None => Source::Bytes(loc.read()?),
        };
        check_magic(&src, &path)?;
        let builder = match &src {
            Source::File(f) => {
                let f = f.try_clone().map_err(|e| ShardError::io(at(), e))?;
                ParquetRecordBatchReaderBuilder::try_new(f).map(|b| (b.metadata().clone(), b.schema().clone()))
            }
            Source::Bytes(b) => {
                ParquetRecordBatchReaderBuilder::try_new(b.clone()).map(|b| (b.metadata().clone(), b.schema().clone()))
            }
        };
        let (metadata, schema) = builder.map_err(|source| ShardError::Parquet { at: at(), source })?;
        let kv = |key: &str| -> Option<String> {
            metadata
                .file_metadata()
                .key_value_metadata()?
                .iter()
                .find(|kv| kv.key == key)
                .and_then(|kv| kv.value.clone())
        };
        let got = kv(FORMAT_KEY);
        let (wanted, expected) = match tag {
            Tag::Format(f) => (got.as_deref() == Some(f), f),
            Tag::AnyGrist => (got.is_some(), "<any grist format>"),
            Tag::Foreign => (true, ""),
        };
        if !wanted {
            return Err(ShardError::BadMagic {
                at: at(),
                expected: format!("{FORMAT_KEY}={expected}"),
                got: got
                    .map(|g| format!("{FORMAT_KEY}={g}"))
                    .unwrap_or_else(|| "a Parquet file not written by grist".into()),
                hint: "point at a grist stage output (part-*.parquet for documents, ledger-*.parquet for ledgers)",
            });
        }
        let version: u64 = kv(VERSION_KEY).and_then(|v| v.parse().ok()).unwrap_or(0);
        if version > max_version as u64 {
            return Err(ShardError::NewerVersion {
                at: at(),
                what: "Parquet shard",
                got: version,
                max: max_version as u64,
            });
        }
        Ok((ParquetSource { src, metadata, schema, path }, got.unwrap_or_default()))
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Rows, from the footer (no data read).
    pub fn num_rows(&self) -> u64 {
        self.metadata.file_metadata().num_rows().max(0) as u64
    }

    /// Number of row groups.
    pub fn num_row_groups(&self) -> usize {
        self.metadata.num_row_groups()
    }

    /// Streams record batches of at most `batch_rows` rows, of the named columns only
    /// (all columns when `columns` is `None`).
    pub fn batches(&self, columns: Option<&[&str]>, batch_rows: usize) -> Result<Batches> {
        let at = || At::file(self.path.clone());
        let indices = match columns {
            None => None,
            Some(names) => Some(
                names
                    .iter()
                    .map(|n| {
                        self.schema.index_of(n).map_err(|_| {
                            ShardError::invalid(
                                at(),
                                format!("no column `{n}` (columns: {})", column_names(&self.schema)),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>>>()?,
            ),
        };
        let reader = match &self.src {
            Source::File(f) => {
                let f = f.try_clone().map_err(|e| ShardError::io(at(), e))?;
                build(ParquetRecordBatchReaderBuilder::try_new(f), indices, batch_rows)
            }
            Source::Bytes(b) => build(ParquetRecordBatchReaderBuilder::try_new(b.clone()), indices, batch_rows),
        }
        .map_err(|source| ShardError::Parquet { at: at(), source })?;
        Ok(Batches { reader, path: self.path.clone() })
    }

    /// Reads every batch (all columns). For small files such as ledgers and tests.
    pub fn read_all(&self) -> Result<Vec<RecordBatch>> {
        self.batches(None, 8192)?.collect()
    }
}

fn build<T: parquet::file::reader::ChunkReader + 'static>(
    builder: parquet::errors::Result<ParquetRecordBatchReaderBuilder<T>>,
    indices: Option<Vec<usize>>,
    batch_rows: usize,
) -> parquet::errors::Result<ParquetRecordBatchReader> {
    let mut builder = builder?.with_batch_size(batch_rows.max(1));
    if let Some(idx) = indices {
        let mask = ProjectionMask::roots(builder.parquet_schema(), idx);
        builder = builder.with_projection(mask);
    }
    builder.build()
}

fn check_magic(src: &Source, path: &str) -> Result<()> {
    let (head, tail, len) = match src {
        Source::Bytes(b) => {
            let len = b.len() as u64;
            if len < 12 {
                return Err(ShardError::Truncated { at: At::file(path), expected: 12, got: len });
            }
            (b[..4].to_vec(), b[b.len() - 4..].to_vec(), len)
        }
        Source::File(f) => {
            use std::os::unix::fs::FileExt;
            let len = f.metadata().map_err(|e| ShardError::io(At::file(path), e))?.len();
            if len < 12 {
                return Err(ShardError::Truncated { at: At::file(path), expected: 12, got: len });
            }
            let mut head = vec![0u8; 4];
            let mut tail = vec![0u8; 4];
            f.read_exact_at(&mut head, 0).map_err(|e| ShardError::io(At::byte(path, 0), e))?;
            f.read_exact_at(&mut tail, len - 4).map_err(|e| ShardError::io(At::byte(path, len - 4), e))?;
            (head, tail, len)
        }
    };
    if head != PAR1 {
        return Err(ShardError::BadMagic {
            at: At::byte(path, 0),
            expected: "PAR1".into(),
            got: format!("{:?}", String::from_utf8_lossy(&head)),
            hint: "not a Parquet file",
        });
    }
    if tail != PAR1 {
        return Err(ShardError::BadMagic {
            at: At::byte(path, len - 4),
            expected: "PAR1 (footer)".into(),
            got: format!("{:?}", String::from_utf8_lossy(&tail)),
            hint: "the file is truncated or was never finished; rerun the stage that made it",
        });
    }
    Ok(())
}

fn column_names(schema: &SchemaRef) -> String {
    schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
}

/// Record batches streamed from a [`ParquetSource`]; errors name the file.
pub struct Batches {
    reader: ParquetRecordBatchReader,
    path: String,
}

impl Iterator for Batches {
    type Item = Result<RecordBatch>;
    fn next(&mut self) -> Option<Self::Item> {
        self.reader.next().map(|r| r.map_err(|source| ShardError::Arrow { at: At::file(self.path.clone()), source }))
    }
}
