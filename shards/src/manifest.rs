//! Manifests: the JSON record of what a stage (or one unit of it) read, wrote and removed,
//! and with which configuration. Readers check format name and version before anything else.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::checksum::file_checksum;
use crate::error::{At, Result, ShardError};
use crate::storage::Loc;

/// The `format` field of every manifest.
pub const MANIFEST_FORMAT: &str = "grist-manifest";
/// Current manifest format version. Readers accept this and older.
pub const MANIFEST_VERSION: u64 = 1;

/// One file a stage read or wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the manifest's directory for outputs; as given for inputs.
    pub path: String,
    /// Rows (documents, ledger entries, records or tokens; the stage says which).
    pub rows: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// xxh3-64 of the file's bytes, 16 hex digits.
    pub xxh3: String,
}

impl FileEntry {
    /// Describes an existing file: size and checksum are read from it.
    pub fn describe(loc: &Loc, path: impl Into<String>, rows: u64) -> Result<FileEntry> {
        let (bytes, xxh3) = file_checksum(loc)?;
        Ok(FileEntry { path: path.into(), rows, bytes, xxh3 })
    }

    /// Checks that the file at `loc` still has the recorded size and checksum.
    pub fn verify(&self, loc: &Loc) -> Result<()> {
        let size = loc.size()?;
        if size != self.bytes {
            return Err(ShardError::SizeMismatch { at: At::file(loc.to_string()), expected: self.bytes, got: size });
        }
        let (_, got) = file_checksum(loc)?;
        if got != self.xxh3 {
            return Err(ShardError::Checksum { at: At::file(loc.to_string()), expected: self.xxh3.clone(), got });
        }
        Ok(())
    }
}

/// Document accounting of a stage or unit: `docs_in == docs_out + docs_ledger` always.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accounting {
    pub docs_in: u64,
    pub docs_out: u64,
    pub docs_ledger: u64,
}

impl Accounting {
    pub fn balanced(&self) -> bool {
        self.docs_in == self.docs_out + self.docs_ledger
    }
    pub fn add(&mut self, o: &Accounting) {
        self.docs_in += o.docs_in;
        self.docs_out += o.docs_out;
        self.docs_ledger += o.docs_ledger;
    }
}

/// A stage's (or one unit's) manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u64,
    pub grist_version: String,
    /// Stage name, e.g. `ingest`.
    pub stage: String,
    /// The unit this manifest covers, or `None` for the whole stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<u64>,
    /// Number of units in the stage's plan.
    pub units: u64,
    /// xxh3-64 of the resolved config and the plan; a rerun with a different one redoes the work.
    pub fingerprint: String,
    /// The resolved stage configuration.
    pub config: serde_json::Value,
    pub inputs: Vec<FileEntry>,
    /// Document shards written (paths relative to the manifest's directory).
    pub outputs: Vec<FileEntry>,
    /// Ledger shards written (paths relative to the manifest's directory).
    pub ledgers: Vec<FileEntry>,
    /// Side tables written for a later step (e.g. dedup's sorted band keys): checked like the
    /// outputs, but not documents, so not part of the accounting.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub side: Vec<FileEntry>,
    pub accounting: Accounting,
    /// Removal and event counts by reason.
    pub counters: BTreeMap<String, u64>,
    /// Wall-clock seconds by phase (not part of any determinism guarantee).
    pub timings: BTreeMap<String, f64>,
}

impl Manifest {
    /// A new, empty manifest for `stage`.
    pub fn new(stage: &str, units: u64, fingerprint: String, config: serde_json::Value) -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT.to_string(),
            format_version: MANIFEST_VERSION,
            grist_version: env!("CARGO_PKG_VERSION").to_string(),
            stage: stage.to_string(),
            unit: None,
            units,
            fingerprint,
            config,
            inputs: Vec::new(),
            outputs: Vec::new(),
            ledgers: Vec::new(),
            side: Vec::new(),
            accounting: Accounting::default(),
            counters: BTreeMap::new(),
            timings: BTreeMap::new(),
        }
    }

    /// Serializes (pretty JSON, trailing newline).
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Writes atomically.
    pub fn write(&self, loc: &Loc) -> Result<()> {
        loc.write_atomic(self.to_json().as_bytes())
    }

    /// Reads and checks format and version.
    pub fn read(loc: &Loc) -> Result<Manifest> {
        let bytes = loc.read()?;
        Self::parse(&bytes, &loc.to_string())
    }

    /// Parses manifest JSON; `path` names the file in errors.
    pub fn parse(bytes: &[u8], path: &str) -> Result<Manifest> {
        let at = || At::file(path.to_string());
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|source| ShardError::Json { at: at(), source })?;
        let format = value.get("format").and_then(|v| v.as_str()).unwrap_or("");
        if format != MANIFEST_FORMAT {
            return Err(ShardError::BadMagic {
                at: at(),
                expected: format!("\"format\": \"{MANIFEST_FORMAT}\""),
                got: format!("{:?}", value.get("format").map(|v| v.to_string()).unwrap_or_else(|| "nothing".into())),
                hint: "this is not a grist manifest; point at a stage output directory or its manifest.json",
            });
        }
        let version = value.get("format_version").and_then(|v| v.as_u64()).unwrap_or(0);
        if version > MANIFEST_VERSION {
            return Err(ShardError::NewerVersion { at: at(), what: "manifest", got: version, max: MANIFEST_VERSION });
        }
        serde_json::from_value(value).map_err(|source| ShardError::Json { at: at(), source })
    }

    /// Adds `n` to counter `reason`.
    pub fn count(&mut self, reason: &str, n: u64) {
        *self.counters.entry(reason.to_string()).or_default() += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        let mut m = Manifest::new("ingest", 3, "00ff".into(), serde_json::json!({"min_words": 5}));
        m.outputs.push(FileEntry {
            path: "part-00000.parquet".into(),
            rows: 10,
            bytes: 100,
            xxh3: "0123456789abcdef".into(),
        });
        m.accounting = Accounting { docs_in: 12, docs_out: 10, docs_ledger: 2 };
        m.count("empty", 2);
        m
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let loc = Loc::local(dir.path().join("manifest.json"));
        let m = sample();
        m.write(&loc).unwrap();
        assert_eq!(Manifest::read(&loc).unwrap(), m);
        assert!(m.accounting.balanced());
    }

    #[test]
    fn rejects_newer_version_foreign_json_and_garbage() {
        let mut v = serde_json::to_value(sample()).unwrap();
        v["format_version"] = serde_json::json!(MANIFEST_VERSION + 1);
        let err = Manifest::parse(v.to_string().as_bytes(), "m.json").unwrap_err().to_string();
        assert!(err.contains("m.json") && err.contains("newer") && err.contains("hint:"), "{err}");

        let err = Manifest::parse(br#"{"format":"other"}"#, "x.json").unwrap_err().to_string();
        assert!(err.contains("x.json") && err.contains("bad magic"), "{err}");

        let err = Manifest::parse(b"{\"format\": \"grist-manifest\",\n  oops", "y.json").unwrap_err().to_string();
        assert!(err.contains("y.json") && err.contains("line 2"), "{err}");
    }

    #[test]
    fn verify_detects_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let loc = Loc::local(dir.path().join("f.bin"));
        loc.write_atomic(b"abcdef").unwrap();
        let e = FileEntry::describe(&loc, "f.bin", 1).unwrap();
        e.verify(&loc).unwrap();
        loc.write_atomic(b"abcdeg").unwrap();
        assert!(matches!(e.verify(&loc), Err(ShardError::Checksum { .. })));
        loc.write_atomic(b"abc").unwrap();
        assert!(matches!(e.verify(&loc), Err(ShardError::SizeMismatch { .. })));
    }
}
