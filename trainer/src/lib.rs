//! grist's GPT trainer. So far: the data loader that feeds it from llm.c token shards, and the
//! model's shape (presets, parameter layout, GPT-2 initialization). The forward and backward
//! kernels, optimizer and checkpoints come next; this crate never depends on the pipeline,
//! only on the `shards` formats.

pub mod forward;
pub mod loader;
pub mod model;
pub mod optim;

pub use loader::{Cursor, DataLoader, LoaderError};
