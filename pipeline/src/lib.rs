//! grist's data stages and the contract they share: recipes, task slices, seeded draws,
//! the unit/marker/manifest runner, and the stages themselves (ingest so far), plus the
//! always-available inspection core (summaries and `--verify`).
//!
//! This crate never depends on the trainer; the two meet only through `shards` formats.

pub mod blend;
pub mod codec;
pub mod decontam;
pub mod dedup;
pub mod env;
pub mod error;
pub mod features;
pub mod html;
pub mod ingest;
pub mod logistic;
pub mod minhash;
pub mod quality;
pub mod quality_filter;
pub mod quality_score;
pub mod quality_train;
pub mod recipe;
pub mod reddit;
pub mod rng;
pub mod sample;
pub mod slice;
pub mod stage;
pub mod summary;
pub mod tokenize;
pub mod urls;
pub mod verify;
pub mod warc;

pub use error::StageError;
pub use recipe::Recipe;
pub use slice::TaskSlice;
