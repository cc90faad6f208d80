//! Document shards: Parquet (zstd) with the columns every stage shares (`id`, `source`,
//! `url`, `text`) plus typed columns a stage adds. This module defines and checks the
//! schema; what a stage puts in its own columns is the stage's business.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;

use crate::error::{At, Result, ShardError};
use crate::parquet_io::{Batches, ParquetSink, ParquetSource, WriteOptions};
use crate::storage::Loc;

/// `grist.format` of document shards.
pub const DOCS_FORMAT: &str = "documents";
/// Document shard format version.
pub const DOCS_VERSION: u32 = 1;

/// One document's shared fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doc {
    /// Stable id (see the producing stage for how it is derived).
    pub id: String,
    /// Source (corpus) name from the recipe, e.g. `common_crawl`, `books1`.
    pub source: String,
    pub url: Option<String>,
    pub text: String,
}

/// The four shared columns, in order.
pub fn base_fields() -> Vec<Field> {
    vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("source", DataType::Utf8, false),
        Field::new("url", DataType::Utf8, true),
        Field::new("text", DataType::Utf8, false),
    ]
}

/// The document schema: the shared columns followed by a stage's `extra` columns.
pub fn doc_schema(extra: Vec<Field>) -> SchemaRef {
    let mut fields = base_fields();
    fields.extend(extra);
    Arc::new(Schema::new(fields))
}

/// Builds a batch from documents and a stage's extra column arrays (in schema order).
pub fn doc_batch(schema: &SchemaRef, docs: &[Doc], extra: Vec<ArrayRef>) -> Result<RecordBatch> {
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(docs.iter().map(|d| d.id.as_str()))),
        Arc::new(StringArray::from_iter_values(docs.iter().map(|d| d.source.as_str()))),
        Arc::new(StringArray::from_iter(docs.iter().map(|d| d.url.as_deref()))),
        Arc::new(StringArray::from_iter_values(docs.iter().map(|d| d.text.as_str()))),
    ];
    cols.extend(extra);
    RecordBatch::try_new(schema.clone(), cols)
        .map_err(|source| ShardError::Arrow { at: At::file("<document batch>"), source })
}

/// Checks that `schema` has the shared columns with the right types.
pub fn check_doc_schema(schema: &Schema, path: &str) -> Result<()> {
    for want in base_fields() {
        let got = schema
            .field_with_name(want.name())
            .map_err(|_| ShardError::invalid(At::file(path), format!("missing required column `{}`", want.name())))?;
        if got.data_type() != want.data_type() || (!want.is_nullable() && got.is_nullable()) {
            return Err(ShardError::invalid(
                At::file(path),
                format!(
                    "column `{}` is {}{}, expected {}{}",
                    want.name(),
                    got.data_type(),
                    if got.is_nullable() { " (nullable)" } else { "" },
                    want.data_type(),
                    if want.is_nullable() { " (nullable)" } else { "" },
                ),
            ));
        }
    }
    Ok(())
}

/// Streams documents into a shard; bounded memory, visible only after `finish`.
pub struct DocWriter {
    sink: ParquetSink,
    schema: SchemaRef,
}

impl DocWriter {
    pub fn create(loc: &Loc, schema: SchemaRef, opts: WriteOptions) -> Result<DocWriter> {
        check_doc_schema(&schema, &loc.to_string())?;
        Ok(DocWriter {
            sink: ParquetSink::create(loc, schema.clone(), DOCS_FORMAT, DOCS_VERSION, opts, &["id", "url", "text"])?,
            schema,
        })
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.sink.write(batch)
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.sink.rows()
    }

    /// Commits the shard; returns its row count.
    pub fn finish(self) -> Result<u64> {
        self.sink.finish()
    }
}

/// A validated document shard.
pub struct DocReader {
    src: ParquetSource,
}

impl DocReader {
    pub fn open(loc: &Loc) -> Result<DocReader> {
        let src = ParquetSource::open(loc, DOCS_FORMAT, DOCS_VERSION)?;
        check_doc_schema(src.schema(), src.path())?;
        Ok(DocReader { src })
    }

    pub fn schema(&self) -> &SchemaRef {
        self.src.schema()
    }

    pub fn num_rows(&self) -> u64 {
        self.src.num_rows()
    }

    pub fn num_row_groups(&self) -> usize {
        self.src.num_row_groups()
    }

    /// Streams batches of the named columns (all when `None`).
    pub fn batches(&self, columns: Option<&[&str]>, batch_rows: usize) -> Result<Batches> {
        self.src.batches(columns, batch_rows)
    }

    /// Reads all documents' shared fields. For tests and small shards.
    pub fn read_docs(&self) -> Result<Vec<Doc>> {
        // The footer's row count is a claim: reserve at most a batch's worth up front.
        let mut out = Vec::with_capacity((self.num_rows() as usize).min(1 << 14));
        for batch in self.batches(Some(&["id", "source", "url", "text"]), 8192)? {
            let batch = batch?;
            let (id, source, url, text) =
                (str_col(&batch, "id")?, str_col(&batch, "source")?, str_col(&batch, "url")?, str_col(&batch, "text")?);
            for i in 0..batch.num_rows() {
                out.push(Doc {
                    id: id.value(i).to_string(),
                    source: source.value(i).to_string(),
                    url: url.is_valid(i).then(|| url.value(i).to_string()),
                    text: text.value(i).to_string(),
                });
            }
        }
        Ok(out)
    }
}

/// A string column of a batch, by name.
pub fn str_col<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a StringArray> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| ShardError::invalid(At::file("<batch>"), format!("no Utf8 column `{name}`")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::UInt64Array;

    fn docs(n: usize) -> Vec<Doc> {
        (0..n)
            .map(|i| Doc {
                id: format!("d{i:05}"),
                source: if i % 2 == 0 { "books" } else { "web" }.into(),
                url: (i % 3 == 0).then(|| format!("https://example.com/{i}")),
                text: format!("document number {i} ").repeat(1 + i % 17),
            })
            .collect()
    }

    /// Thrift compact varint of a zigzag-encoded i64.
    fn zigzag_varint(v: i64) -> Vec<u8> {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        let mut out = Vec::new();
        loop {
            let b = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(b);
                return out;
            }
            out.push(b | 0x80);
        }
    }

    #[test]
    fn a_footer_that_claims_a_trillion_rows_allocates_nothing_for_them() {
        let dir = tempfile::tempdir().unwrap();
        let loc = Loc::local(dir.path().join("part-00000.parquet"));
        let schema = doc_schema(vec![]);
        let mut w = DocWriter::create(&loc, schema.clone(), WriteOptions::default()).unwrap();
        w.write(&doc_batch(&schema, &docs(1), vec![]).unwrap()).unwrap();
        w.finish().unwrap();
        // The footer: FileMetaData (thrift compact), its length, `PAR1`. Field 3, num_rows, is
        // the first `0x16` (delta 1, type i64) after the schema list; 1 row is zigzag `0x02`.
        let bytes = std::fs::read(dir.path().join("part-00000.parquet")).unwrap();
        let n = bytes.len();
        let meta_len = u32::from_le_bytes(bytes[n - 8..n - 4].try_into().unwrap()) as usize;
        let meta = &bytes[n - 8 - meta_len..n - 8];
        let at = (0..meta.len() - 1).find(|&i| meta[i] == 0x16 && meta[i + 1] == 0x02).unwrap();
        let mut patched_meta = meta[..at + 1].to_vec();
        patched_meta.extend(zigzag_varint(1 << 40));
        patched_meta.extend(&meta[at + 2..]);
        let mut patched = bytes[..n - 8 - meta_len].to_vec();
        patched.extend(&patched_meta);
        patched.extend((patched_meta.len() as u32).to_le_bytes());
        patched.extend(b"PAR1");
        std::fs::write(dir.path().join("part-00000.parquet"), &patched).unwrap();
        // Opening reads the claim; reading must not reserve room for it (it aborted before:
        // "memory allocation of 105553116266496 bytes failed").
        let r = DocReader::open(&loc).unwrap();
        assert_eq!(r.num_rows(), 1 << 40, "the patch hit num_rows");
        if let Ok(d) = r.read_docs() {
            assert_eq!(d.len(), 1);
        }
    }

    #[test]
    fn round_trip_with_extra_columns_and_projection() {
        let dir = tempfile::tempdir().unwrap();
        let loc = Loc::local(dir.path().join("part-00000.parquet"));
        let schema = doc_schema(vec![Field::new("offset", DataType::UInt64, false)]);
        let all = docs(1000);
        // Tiny row groups so the writer must flush several times.
        let opts = WriteOptions { row_group_bytes: 16 << 10, zstd_level: 3 };
        let mut w = DocWriter::create(&loc, schema.clone(), opts).unwrap();
        for chunk in all.chunks(100) {
            let offsets = UInt64Array::from_iter_values(chunk.iter().map(|d| d.text.len() as u64));
            w.write(&doc_batch(&schema, chunk, vec![Arc::new(offsets)]).unwrap()).unwrap();
        }
        assert_eq!(w.finish().unwrap(), 1000);

        let r = DocReader::open(&loc).unwrap();
        assert_eq!(r.num_rows(), 1000);
        assert!(r.num_row_groups() > 1, "row groups must be bounded by bytes, got {}", r.num_row_groups());
        assert_eq!(r.read_docs().unwrap(), all);
        let only: Vec<RecordBatch> = r.batches(Some(&["offset"]), 333).unwrap().map(|b| b.unwrap()).collect();
        assert_eq!(only[0].num_columns(), 1);
        assert_eq!(only.iter().map(|b| b.num_rows()).sum::<usize>(), 1000);
        let e = r.batches(Some(&["nope"]), 10).err().unwrap().to_string();
        assert!(e.contains("no column `nope`"), "{e}");
    }

    #[test]
    fn same_input_gives_identical_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let schema = doc_schema(vec![]);
        let write = |name: &str| {
            let loc = Loc::local(dir.path().join(name));
            let mut w = DocWriter::create(&loc, schema.clone(), WriteOptions::default()).unwrap();
            w.write(&doc_batch(&schema, &docs(300), vec![]).unwrap()).unwrap();
            w.finish().unwrap();
            std::fs::read(dir.path().join(name)).unwrap()
        };
        assert_eq!(write("a.parquet"), write("b.parquet"));
    }

    #[test]
    fn rejects_truncated_foreign_and_malformed_files() {
        let dir = tempfile::tempdir().unwrap();
        let loc = Loc::local(dir.path().join("s.parquet"));
        let schema = doc_schema(vec![]);
        let mut w = DocWriter::create(&loc, schema.clone(), WriteOptions::default()).unwrap();
        w.write(&doc_batch(&schema, &docs(10), vec![]).unwrap()).unwrap();
        w.finish().unwrap();
        let good = std::fs::read(dir.path().join("s.parquet")).unwrap();

        loc.write_atomic(&good[..good.len() - 10]).unwrap();
        let e = DocReader::open(&loc).err().unwrap();
        assert!(matches!(e, ShardError::BadMagic { .. }), "{e}");
        assert!(e.to_string().contains("s.parquet") && e.to_string().contains("byte"), "{e}");

        loc.write_atomic(b"hello world, not parquet at all").unwrap();
        assert!(matches!(DocReader::open(&loc), Err(ShardError::BadMagic { .. })));

        loc.write_atomic(b"PAR1").unwrap();
        assert!(matches!(DocReader::open(&loc), Err(ShardError::Truncated { .. })));

        // A valid Parquet file without grist's tag (as another tool would write).
        let foreign = Loc::local(dir.path().join("f.parquet"));
        let mut plain = parquet::arrow::ArrowWriter::try_new(foreign.create().unwrap(), schema.clone(), None).unwrap();
        plain.write(&doc_batch(&schema, &docs(2), vec![]).unwrap()).unwrap();
        plain.into_inner().unwrap().commit().unwrap();
        let e = DocReader::open(&foreign).err().unwrap().to_string();
        assert!(e.contains("not written by grist"), "{e}");

        // Missing required column.
        let bad_schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Utf8, false)]));
        let e = DocWriter::create(&Loc::local(dir.path().join("x.parquet")), bad_schema, WriteOptions::default())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("missing required column `source`"), "{e}");
    }

    #[test]
    fn memory_store_documents() {
        let loc = Loc::parse("memory://docs-test/part-00000.parquet").unwrap();
        let schema = doc_schema(vec![]);
        let mut w = DocWriter::create(&loc, schema.clone(), WriteOptions::default()).unwrap();
        w.write(&doc_batch(&schema, &docs(5), vec![]).unwrap()).unwrap();
        w.finish().unwrap();
        assert_eq!(DocReader::open(&loc).unwrap().read_docs().unwrap(), docs(5));
    }
}
