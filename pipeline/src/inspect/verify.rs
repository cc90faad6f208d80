//! `inspect --verify`: checks a stage directory against its manifests: every file present
//! with its recorded size and checksum, row counts as recorded (read from the files), input
//! records = documents in = documents out + ledger rows, and every unit marker consistent with
//! the stage manifest (the same config, and together the same files). A manifest names
//! files of its own directory only: a path that leaves it (`..`, an absolute path, a folder)
//! or a name that is not a regular file (a link, a device, a pipe) is a problem, never opened.
//! Reports every problem, not just the first.

use crate::steps::dedup::exchange;
use serde::Serialize;
use shards::{DocReader, LedgerReader, Loc, Manifest};

use crate::core::error::StageError;
use crate::core::stage::{MANIFEST, unit_markers};

/// The outcome of a verification.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub dir: String,
    pub stage: String,
    pub units: u64,
    pub docs_in: u64,
    pub docs_out: u64,
    pub docs_ledger: u64,
    pub files_checked: usize,
    pub problems: Vec<String>,
    /// Input bytes that are in no record (ledgered as damaged stretches, or unreadable after a
    /// broken stream): not a failure of the stage, but data the source lost.
    pub warnings: Vec<String>,
}

/// Manifest counters of input bytes in no record: what a source lost to damage.
pub const LOSS_COUNTERS: &[(&str, &str)] = &[
    ("warc_bytes_not_in_records", "decompressed WARC bytes in no record (damaged stretches, ledgered)"),
    ("gzip_bytes_skipped", "compressed bytes of damaged gzip members skipped"),
    ("input_streams_broken", "files whose compressed stream broke (the rest of each ledgered as corrupt_input)"),
    ("input_bytes_unread", "compressed bytes after a broken stream, unread (at least; ledgered as corrupt_input)"),
];

/// Lines naming each nonzero loss counter of a manifest.
pub fn input_loss(m: &Manifest) -> Vec<String> {
    LOSS_COUNTERS
        .iter()
        .filter_map(|(k, what)| m.counters.get(*k).filter(|&&n| n > 0).map(|n| format!("input lost: {n} {what} [{k}]")))
        .collect()
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Verifies the stage output in `dir`. Errors only when there is nothing to verify.
pub fn verify(dir: &Loc) -> Result<VerifyReport, StageError> {
    let manifest_loc = dir.join(MANIFEST);
    if !manifest_loc.exists()? {
        let done = dir.list()?.iter().filter(|l| l.file_name().ends_with(".done.json")).count();
        return Err(StageError::Input {
            at: shards::At::file(manifest_loc.to_string()),
            msg: format!(
                "no stage manifest: the stage has not completed ({done} unit markers found)\nhint: rerun the stage (completed units are skipped), or point at a stage directory such as out/demo/ingest"
            ),
        });
    }
    let m = Manifest::read(&manifest_loc)?;
    let mut r = VerifyReport {
        dir: dir.to_string(),
        stage: m.stage.clone(),
        units: m.units,
        docs_in: m.accounting.docs_in,
        docs_out: m.accounting.docs_out,
        docs_ledger: m.accounting.docs_ledger,
        files_checked: 0,
        problems: Vec::new(),
        warnings: input_loss(&m),
    };
    let a = m.accounting;
    if !a.balanced() {
        r.problems.push(format!(
            "manifest: {} documents in != {} out + {} in the ledger",
            a.docs_in, a.docs_out, a.docs_ledger
        ));
    }
    // Outputs are document shards, or a stage's tables (e.g. reddit's URL tables).
    let out_rows = check_files(
        dir,
        &m.outputs,
        |l| match shards::parquet_io::ParquetSource::open_any(l)? {
            (_, f) if f == shards::docs::DOCS_FORMAT => DocReader::open(l).map(|d| d.num_rows()),
            (s, _) => Ok(s.num_rows()),
        },
        &mut r,
    );
    let ledger_rows = check_files(dir, &m.ledgers, |l| LedgerReader::open(l).map(|d| d.num_rows()), &mut r);
    check_files(
        dir,
        &m.side,
        |l| {
            let name = l.to_string();
            if name.ends_with(".bin") {
                // llm.c token shards: rows are tokens.
                shards::tokens::TokenShard::open(l).map(|t| t.len() as u64)
            } else if name.ends_with(&format!(".{}", exchange::EXTENSION)) {
                // Dedup's exchange files between steps: rows are words, every block checked.
                exchange::check(l)
                    .map_err(|e| shards::ShardError::invalid(shards::At::file(name.clone()), e.to_string()))
            } else {
                shards::parquet_io::ParquetSource::open_any(l).map(|(s, _)| s.num_rows())
            }
        },
        &mut r,
    );
    // A step that hands exchange files on (dedup's buckets) counts records, not output rows.
    let exchanges_only = m.outputs.is_empty() && m.side.iter().any(|f| f.path.ends_with(exchange::EXTENSION));
    if out_rows != a.docs_out && !exchanges_only {
        r.problems.push(format!("output shards hold {out_rows} documents, manifest counts {} out", a.docs_out));
    }
    if ledger_rows != a.docs_ledger {
        r.problems.push(format!("ledgers hold {ledger_rows} rows, manifest counts {} in the ledger", a.docs_ledger));
    }
    // The units' markers, together, list exactly the files of the stage manifest.
    let mut from_markers = std::collections::BTreeSet::new();
    for (u, marker) in unit_markers(dir, m.units) {
        if let Some(um) = &marker {
            from_markers.extend(um.outputs.iter().chain(&um.ledgers).chain(&um.side).map(entry_key));
        }
        match marker {
            None => r.problems.push(format!("unit {u}: completion marker missing or unreadable")),
            // Units carry their own fingerprints (config and their plan entry): a marker
            // from another config is one whose config differs from the stage's.
            Some(um) if um.config != m.config => {
                r.problems.push(format!("unit {u}: marker from another run (its config differs from the stage's)"))
            }
            Some(um) if !um.accounting.balanced() => r.problems.push(format!("unit {u}: accounting does not balance")),
            Some(_) => {}
        }
    }
    let in_manifest: std::collections::BTreeSet<_> =
        m.outputs.iter().chain(&m.ledgers).chain(&m.side).map(entry_key).collect();
    for (path, ..) in in_manifest.difference(&from_markers) {
        r.problems
            .push(format!("{path}: in the stage manifest but in no unit's marker (or recorded differently there)"));
    }
    for (path, ..) in from_markers.difference(&in_manifest) {
        r.problems
            .push(format!("{path}: in a unit's marker but not in the stage manifest (or recorded differently there)"));
    }
    Ok(r)
}

/// A file entry as a comparable key: path, size, checksum, rows.
fn entry_key(f: &shards::FileEntry) -> (String, u64, String, u64) {
    (f.path.clone(), f.bytes, f.xxh3.clone(), f.rows)
}

/// Why a manifest path may not be opened, if it may not: it must be a plain file name in the
/// stage directory, and (where the storage is local) a regular file, not a link or device.
fn confined(dir: &Loc, path: &str) -> Option<String> {
    let plain = !path.is_empty()
        && path != "."
        && path != ".."
        && !path.contains(['/', '\\', '\0'])
        && !path.chars().any(char::is_control);
    if !plain {
        return Some(format!("{path:?}: a manifest names files of its own stage directory only"));
    }
    let local = dir.as_local()?.join(path);
    match std::fs::symlink_metadata(&local) {
        Ok(md) if !md.file_type().is_file() => {
            Some(format!("{}: not a regular file (a link, folder or device); not opened", local.display()))
        }
        _ => None,
    }
}

/// Checks each file's size and checksum, then opens it with `rows_of` (which validates the
/// format) and compares its row count with the manifest's. Returns the recorded rows.
fn check_files(
    dir: &Loc,
    files: &[shards::FileEntry],
    rows_of: impl Fn(&Loc) -> shards::Result<u64>,
    r: &mut VerifyReport,
) -> u64 {
    let mut total = 0;
    for f in files {
        r.files_checked += 1;
        total += f.rows;
        if let Some(problem) = confined(dir, &f.path) {
            r.problems.push(problem);
            continue;
        }
        let loc = dir.join(&f.path);
        if let Err(e) = f.verify(&loc) {
            r.problems.push(e.to_string());
            continue;
        }
        match rows_of(&loc) {
            Ok(n) if n != f.rows => r.problems.push(format!("{loc}: {n} rows, manifest records {}", f.rows)),
            Ok(_) => {}
            Err(e) => r.problems.push(e.to_string()),
        }
    }
    total
}
