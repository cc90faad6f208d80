//! grist's on-disk formats and storage: document and ledger Parquet shards, llm.c token
//! shards, JSON manifests, training metrics records, checksums, the keyed permutation that
//! orders training data and blends, local/object-store paths with
//! atomic writes, and the names of every environment variable grist reads.
//!
//! This crate is the contract between the pipeline and the trainer. It depends on no other
//! grist crate and knows nothing of stages, recipes or models. Every format is specified
//! byte by byte in `shards/README.md`.

pub mod checksum;
pub mod cpu;
pub mod docs;
pub mod env;
pub mod error;
pub mod ledger;
pub mod manifest;
pub mod metrics;
pub mod parquet_io;
pub mod permutation;
pub mod storage;
pub mod tokens;

pub use docs::{Doc, DocReader, DocWriter, doc_batch, doc_schema, str_col};
pub use error::{At, Result, ShardError};
pub use ledger::{LedgerEntry, LedgerReader, LedgerWriter};
pub use manifest::{Accounting, FileEntry, Manifest};
pub use parquet_io::WriteOptions;
pub use storage::Loc;
pub use tokens::{TokenShard, TokenWidth, TokenWriter};

/// Re-exported so downstream crates build batches with the same arrow version.
pub use arrow;
