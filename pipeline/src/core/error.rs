//! Errors of the pipeline stages.

use shards::{At, Loc, ShardError};

/// What can stop a stage.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Shard(#[from] ShardError),
    /// Bad input that makes a whole file unusable, or any bad record under `--strict`.
    #[error("{at}: {msg}")]
    Input { at: At, msg: String },
    /// The recipe or an override is wrong.
    #[error("{0}")]
    Recipe(String),
    /// Command-line or scheduler settings are wrong.
    #[error("{0}")]
    Usage(String),
    /// A step that runs outside this crate (training, through `steps::Host`) failed.
    #[error("the {step} step failed")]
    Step { step: String, source: Box<dyn std::error::Error + Send + Sync> },
    /// A stage broke its own accounting: a bug, never bad input.
    #[error(
        "unit {unit} of stage `{stage}` does not balance: {docs_in} in != {docs_out} out + {docs_ledger} in the ledger"
    )]
    Unbalanced { stage: String, unit: usize, docs_in: u64, docs_out: u64, docs_ledger: u64 },
}

/// An Arrow error while building a batch for the file at `at`, as a stage error naming it.
pub fn arrow_err(at: &Loc) -> impl Fn(shards::arrow::error::ArrowError) -> StageError + '_ {
    move |source| StageError::Shard(ShardError::Arrow { at: At::file(at.to_string()), source })
}
