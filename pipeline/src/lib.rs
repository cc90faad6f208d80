//! grist's data stages and the contract they share. One job: turn recipe tables and input
//! files into stage outputs (document shards, ledgers, manifests) and read them back for
//! inspection. It never depends on the trainer; the two meet only through `shards` formats.
//!
//! - `core`: the stage contract (units, markers, manifests, slices, seeded draws, errors,
//!   environment variables) and the typed recipe;
//! - `formats`: outside formats read by the stages (WARC/WET, HTML, compressed files);
//! - `text`: text processing shared by steps (Spark tokenizer + HashingTF, URL normalization);
//! - `steps`: one module per recipe step and `steps::STEPS`, the ordered registry every
//!   caller reads;
//! - `plan`: `grist plan`, a dry run's estimates and problems;
//! - `run`: a recipe run (steps in registry order, verification, the closing summary);
//! - `inspect`: summaries, `--verify` and the HTML report.

pub mod ablate;
pub mod core;
pub mod formats;
pub mod inspect;
pub mod plan;
pub mod run;
pub mod steps;
pub mod text;

pub use self::core::error::StageError;
pub use self::core::recipe::Recipe;
pub use self::core::slice::TaskSlice;
pub use self::core::stage::MANIFEST;
