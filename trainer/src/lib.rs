//! grist's GPT trainer. So far: the data loader that feeds it from llm.c token shards.
//! The model, kernels, optimizer and checkpoints come next; this crate never depends on the
//! pipeline, only on the `shards` formats.

pub mod loader;

pub use loader::{Cursor, DataLoader, LoaderError};
