//! Errors of the on-disk formats. Every variant names the file, and the byte offset where
//! one applies; messages end with a hint when the fix is known.

use std::fmt;

/// Where in a file something went wrong: a path or URI, and optionally a byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At {
    pub path: String,
    pub offset: Option<u64>,
}

impl At {
    pub fn file(path: impl Into<String>) -> Self {
        At { path: path.into(), offset: None }
    }
    pub fn byte(path: impl Into<String>, offset: u64) -> Self {
        At { path: path.into(), offset: Some(offset) }
    }
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.offset {
            Some(o) => write!(f, "{} (byte {o})", self.path),
            None => write!(f, "{}", self.path),
        }
    }
}

/// Everything that can go wrong reading or writing grist's files.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    #[error("{at}: {source}")]
    Io {
        at: At,
        #[source]
        source: std::io::Error,
    },
    #[error("{at}: not found\nhint: {hint}")]
    NotFound { at: At, hint: String },
    #[error("{at}: bad magic: expected {expected}, got {got}\nhint: {hint}")]
    BadMagic { at: At, expected: String, got: String, hint: &'static str },
    #[error(
        "{at}: {what} version {got} is newer than this grist understands (up to {max})\nhint: upgrade grist, or regenerate the file with this version"
    )]
    NewerVersion { at: At, what: &'static str, got: u64, max: u64 },
    #[error("{at}: unsupported {what} version {got}\nhint: {hint}")]
    UnsupportedVersion { at: At, what: &'static str, got: u64, hint: &'static str },
    #[error(
        "{at}: truncated: expected {expected} bytes, file has {got}\nhint: the file was cut short (an interrupted copy?); regenerate it"
    )]
    Truncated { at: At, expected: u64, got: u64 },
    #[error(
        "{at}: checksum mismatch: manifest records xxh3 {expected}, file has {got}\nhint: the file changed after its manifest was written; rerun the stage that made it"
    )]
    Checksum { at: At, expected: String, got: String },
    #[error(
        "{at}: size mismatch: manifest records {expected} bytes, file has {got}\nhint: the file changed after its manifest was written; rerun the stage that made it"
    )]
    SizeMismatch { at: At, expected: u64, got: u64 },
    #[error("{at}: {msg}")]
    Invalid { at: At, msg: String },
    #[error("{at}: parquet: {source}")]
    Parquet {
        at: At,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("{at}: arrow: {source}")]
    Arrow {
        at: At,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error("{at}: invalid JSON at line {line}, column {column}: {source}", line = source.line(), column = source.column())]
    Json {
        at: At,
        #[source]
        source: serde_json::Error,
    },
    #[error("{at}: object store: {source}")]
    Store {
        at: At,
        #[source]
        source: object_store::Error,
    },
    #[error("{uri}: cannot open storage: {msg}\nhint: {hint}")]
    Storage { uri: String, msg: String, hint: &'static str },
}

/// Result with [`ShardError`].
pub type Result<T, E = ShardError> = std::result::Result<T, E>;

impl ShardError {
    pub fn io(at: At, source: std::io::Error) -> Self {
        ShardError::Io { at, source }
    }
    pub fn invalid(at: At, msg: impl Into<String>) -> Self {
        ShardError::Invalid { at, msg: msg.into() }
    }
}
