//! `inspect --verify`: checks a stage directory against its manifests: every file present
//! with its recorded size and checksum, row counts as recorded (read from the files), input
//! records = documents in = documents out + ledger rows, and every unit marker consistent with
//! the stage manifest. Reports every problem, not just the first.

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
        |l| match l.to_string().ends_with(".bin") {
            // llm.c token shards: rows are tokens.
            true => shards::tokens::TokenShard::open(l).map(|t| t.len() as u64),
            false => shards::parquet_io::ParquetSource::open_any(l).map(|(s, _)| s.num_rows()),
        },
        &mut r,
    );
    if out_rows != a.docs_out {
        r.problems.push(format!("output shards hold {out_rows} documents, manifest counts {} out", a.docs_out));
    }
    if ledger_rows != a.docs_ledger {
        r.problems.push(format!("ledgers hold {ledger_rows} rows, manifest counts {} in the ledger", a.docs_ledger));
    }
    for (u, marker) in unit_markers(dir, m.units) {
        match marker {
            None => r.problems.push(format!("unit {u}: completion marker missing or unreadable")),
            Some(um) if um.fingerprint != m.fingerprint => r.problems.push(format!(
                "unit {u}: marker from another run (fingerprint {} != {})",
                um.fingerprint, m.fingerprint
            )),
            Some(um) if !um.accounting.balanced() => r.problems.push(format!("unit {u}: accounting does not balance")),
            Some(_) => {}
        }
    }
    Ok(r)
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
        let loc = dir.join(&f.path);
        r.files_checked += 1;
        total += f.rows;
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
