//! grist's GPT trainer: the model's shape (`model`: presets, parameter layout, GPT-2
//! initialization), the CPU kernels (`forward`: forward and backward per layer, one carved
//! activation buffer; `simd`), AdamW (`optim`), the device seam (`backend`), and the data loader
//! over llm.c token shards (`loader`). This crate never depends on the pipeline, only on the
//! `shards` formats.

pub mod backend;
pub mod checkpoint;
pub mod collective;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod eval;
pub mod forward;
pub mod gemm;
pub mod generate;
pub mod loader;
pub mod model;
pub mod optim;
pub mod schedule;
pub mod simd;
pub mod train;

pub use loader::{Cursor, DataLoader, LoaderError};
