//! The stage contract, implemented once: a stage is a plan of units (each unit becomes one
//! output shard, one ledger and one completion marker), run over a task slice with rayon.
//! Units, not tasks, define outputs, so the result is byte-identical for any task count;
//! markers are written last, so a rerun skips finished units and redoes the rest. Each marker
//! records its unit's fingerprint (the stage config and that unit's entry of the plan), so a
//! plan that gains units (a new input file, a new crawl dump) redoes only the new units and
//! those whose own input changed; a changed config redoes every unit.
//!
//! Layout of a stage directory:
//! ```text
//! part-00000.parquet          documents of unit 0 (so `part-*.parquet` globs documents only)
//! ledger-00000.parquet        what unit 0 removed, and why
//! part-00000.done.json        unit 0's manifest = its completion marker (written last)
//! stats/task-00000-of-00002.json   per-task statistics (timings, threads, skipped units)
//! manifest.json               the stage manifest, written once every unit is done
//! ```

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use serde::Serialize;
use shards::{Accounting, FileEntry, Loc, Manifest};

use crate::core::error::StageError;
use crate::core::slice::TaskSlice;

/// Name of the stage manifest in a stage directory.
pub const MANIFEST: &str = "manifest.json";

/// What a stage is about to do.
#[derive(Debug, Clone)]
pub struct Stage {
    /// Stage name, e.g. `ingest`.
    pub name: String,
    /// The stage's output directory.
    pub dir: Loc,
    /// The resolved stage config (stored in every manifest).
    pub config: serde_json::Value,
    /// One entry per unit, describing its inputs. Part of the fingerprint.
    pub units: Vec<serde_json::Value>,
    /// Input bytes per unit, for progress.
    pub unit_bytes: Vec<u64>,
}

/// Everything a unit's work needs to know about where it writes.
pub struct UnitCtx<'a> {
    pub unit: usize,
    pub stage: &'a Stage,
    pub progress: &'a ProgressBar,
}

impl UnitCtx<'_> {
    /// File name stem of this unit's outputs.
    pub fn stem(&self) -> String {
        unit_stem(self.unit)
    }
    /// This unit's document shard.
    pub fn shard(&self) -> (Loc, String) {
        let name = format!("{}.parquet", self.stem());
        (self.stage.dir.join(&name), name)
    }
    /// A side table of this unit (`part-N.side-<what>.parquet`; see `Manifest::side`).
    pub fn side(&self, what: &str) -> (Loc, String) {
        self.side_file(what, "parquet")
    }
    /// A side file of this unit with another extension (`part-N.side-<what>.<ext>`).
    pub fn side_file(&self, what: &str, ext: &str) -> (Loc, String) {
        let name = format!("{}.side-{what}.{ext}", self.stem());
        (self.stage.dir.join(&name), name)
    }
    /// This unit's ledger.
    pub fn ledger(&self) -> (Loc, String) {
        let name = format!("ledger-{:05}.parquet", self.unit);
        (self.stage.dir.join(&name), name)
    }
    /// Records a unit that read one upstream output file (`input`, found at `src`) and wrote
    /// this unit's shard and ledger: the three file entries, and the progress.
    pub fn record_files(
        &self,
        m: &mut Manifest,
        input: &FileEntry,
        src: &Loc,
        rows: u64,
        ledger_rows: u64,
    ) -> Result<(), StageError> {
        let ((shard_loc, shard_name), (ledger_loc, ledger_name)) = (self.shard(), self.ledger());
        m.inputs.push(FileEntry { path: src.to_string(), ..input.clone() });
        m.outputs.push(FileEntry::describe(&shard_loc, shard_name, rows)?);
        m.ledgers.push(FileEntry::describe(&ledger_loc, ledger_name, ledger_rows)?);
        self.progress.inc(input.bytes);
        Ok(())
    }
    /// A fresh unit manifest to fill in.
    pub fn manifest(&self) -> Manifest {
        let mut m = Manifest::new(
            &self.stage.name,
            self.stage.units.len() as u64,
            self.stage.unit_fingerprint(self.unit),
            self.stage.config.clone(),
        );
        m.unit = Some(self.unit as u64);
        m
    }
}

fn unit_stem(u: usize) -> String {
    format!("part-{u:05}")
}

fn marker_name(u: usize) -> String {
    format!("{}.done.json", unit_stem(u))
}

/// The unit number of a unit file name (`part-00003.parquet`, `ledger-00003.parquet`,
/// `part-00003.done.json`, and their hidden temporaries), if it is one.
fn unit_of(name: &str) -> Option<usize> {
    let name = name.trim_start_matches('.');
    let rest = name.strip_prefix("part-").or_else(|| name.strip_prefix("ledger-"))?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let tail = &rest[digits.len()..];
    // Side files of a unit are named `part-N.<what>.parquet`.
    let known = tail.starts_with(".parquet") || tail.starts_with(".done.json") || tail.starts_with(".side-");
    if digits.is_empty() || !known {
        return None;
    }
    digits.parse().ok()
}

/// What one task did.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct TaskReport {
    pub stage: String,
    pub task: usize,
    pub tasks: usize,
    pub units_owned: usize,
    pub units_done: usize,
    pub units_skipped: usize,
    /// Accounting of the units this task processed now (skipped units excluded).
    pub accounting: Accounting,
    pub threads: usize,
    pub seconds: f64,
    /// Whether every unit of the stage is now complete and `manifest.json` was written.
    pub stage_complete: bool,
    pub grist_version: String,
    /// The stage's fingerprint: which run of it this report belongs to.
    #[serde(default)]
    pub fingerprint: String,
}

impl Stage {
    /// A stage with one unit per output file of an upstream stage (`input`): the plan names each
    /// file with its checksum, so a changed input redoes the units that read it.
    pub fn per_input_file(name: &str, dir: Loc, config: serde_json::Value, input: &Manifest) -> Stage {
        Stage {
            name: name.to_string(),
            dir,
            config,
            units: input.outputs.iter().map(|f| serde_json::json!([f.path, f.xxh3])).collect(),
            unit_bytes: input.outputs.iter().map(|f| f.bytes).collect(),
        }
    }

    /// xxh3 of the config and the units: a marker with another fingerprint is stale.
    pub fn fingerprint(&self) -> String {
        let doc = serde_json::json!({ "stage": self.name, "config": self.config, "plan": self.units });
        shards::checksum::xxh3_hex(doc.to_string().as_bytes())
    }

    /// xxh3 of the config and unit `u`'s entry of the plan: what unit `u`'s marker records.
    /// Units, not the whole stage, are fingerprinted, so a stage whose plan gains units (a new
    /// input file, a new dump) redoes only those, and any unit whose own input changed.
    pub fn unit_fingerprint(&self, u: usize) -> String {
        let doc = serde_json::json!({ "stage": self.name, "config": self.config, "unit": self.units.get(u) });
        shards::checksum::xxh3_hex(doc.to_string().as_bytes())
    }

    /// The marker of unit `u` if it is complete for this config and unit plan, and its outputs
    /// exist with their recorded sizes; with `checksums`, also their recorded xxh3 (a file
    /// damaged at the same size is found and its unit redone, not skipped forever).
    fn completed(&self, u: usize, checksums: bool) -> Option<Manifest> {
        let loc = self.dir.join(&marker_name(u));
        let m = Manifest::read(&loc).ok()?;
        if m.fingerprint != self.unit_fingerprint(u) || m.unit != Some(u as u64) {
            return None;
        }
        for f in m.outputs.iter().chain(&m.ledgers).chain(&m.side) {
            let file = self.dir.join(&f.path);
            let whole = match checksums {
                true => shards::checksum::file_checksum(&file).is_ok_and(|(n, x)| n == f.bytes && x == f.xxh3),
                false => file.size().is_ok_and(|n| n == f.bytes),
            };
            if !whole {
                if checksums {
                    tracing::warn!(stage = %self.name, unit = u, file = %f.path, "a completed unit's file does not match its marker; redoing the unit");
                }
                return None;
            }
        }
        Some(m)
    }

    /// Runs this task's slice of the stage. `work` processes one unit: it writes the
    /// unit's shard and ledger (atomically) and returns its manifest; the runner checks
    /// the accounting and then writes the completion marker.
    pub fn run<F>(&self, slice: TaskSlice, work: F) -> Result<TaskReport, StageError>
    where
        F: Fn(&UnitCtx) -> Result<Manifest, StageError> + Sync,
    {
        let start = Instant::now();
        let fingerprint = self.fingerprint();
        let stage_manifest = self.dir.join(MANIFEST);
        // A stage manifest from another config must not outlive the units it describes.
        if let Ok(old) = Manifest::read(&stage_manifest)
            && old.fingerprint != fingerprint
        {
            tracing::info!(stage = %self.name, "config or inputs changed since the last run; redoing the stage");
            stage_manifest.remove()?;
        }

        let owned: Vec<usize> = slice.units(self.units.len()).collect();
        let todo: Vec<usize> = owned.iter().copied().filter(|&u| self.completed(u, true).is_none()).collect();
        let skipped = owned.len() - todo.len();
        if skipped > 0 {
            tracing::info!(stage = %self.name, skipped, "units already complete; skipping them");
        }
        let total_bytes: u64 = todo.iter().map(|&u| self.unit_bytes.get(u).copied().unwrap_or(0)).sum();
        let progress = progress_bar(total_bytes, &self.name);

        let results: Vec<Accounting> = todo
            .par_iter()
            .map(|&u| {
                // Leftovers of a killed run of this unit are never read, but clean them up.
                let stale = self.dir.clean_temps(&format!("{}.", unit_stem(u)))?
                    + self.dir.clean_temps(&format!("ledger-{u:05}."))?;
                if stale > 0 {
                    tracing::debug!(unit = u, stale, "removed temporary files of an interrupted run");
                }
                let ctx = UnitCtx { unit: u, stage: self, progress: &progress };
                self.mark_done(u, work(&ctx)?)
            })
            .collect::<Result<_, StageError>>()?;
        progress.finish_and_clear();

        let mut accounting = Accounting::default();
        results.iter().for_each(|a| accounting.add(a));
        let mut report = TaskReport {
            stage: self.name.clone(),
            task: slice.index,
            tasks: slice.count,
            units_owned: owned.len(),
            units_done: todo.len(),
            units_skipped: skipped,
            accounting,
            threads: rayon::current_num_threads(),
            seconds: start.elapsed().as_secs_f64(),
            stage_complete: false,
            grist_version: env!("CARGO_PKG_VERSION").to_string(),
            fingerprint: fingerprint.clone(),
        };
        let stats = self.dir.join(&format!("stats/task-{:05}-of-{:05}.json", slice.index, slice.count));
        let write_stats = |r: &TaskReport| -> Result<(), StageError> {
            let mut json = serde_json::to_string_pretty(r).unwrap_or_default();
            json.push('\n');
            Ok(stats.write_atomic(json.as_bytes())?)
        };
        // This task's report first: a task that finds every task's report but not every
        // unit's marker knows the others are done and their files not yet visible.
        write_stats(&report)?;
        let wait: f64 =
            std::env::var(shards::env::FINALIZE_WAIT_SECS).ok().and_then(|v| v.parse().ok()).unwrap_or(60.0);
        report.stage_complete = self.finalize_or_wait(&fingerprint, slice.count, wait)?;
        write_stats(&report)?;
        Ok(report)
    }

    /// Checks a finished unit's accounting and writes its marker (last); returns the accounting.
    fn mark_done(&self, u: usize, m: Manifest) -> Result<Accounting, StageError> {
        let a = m.accounting;
        if !a.balanced() {
            return Err(StageError::Unbalanced {
                stage: self.name.clone(),
                unit: u,
                docs_in: a.docs_in,
                docs_out: a.docs_out,
                docs_ledger: a.docs_ledger,
            });
        }
        m.write(&self.dir.join(&marker_name(u)))?;
        Ok(a)
    }

    /// Runs every unit of the stage from this task, its own slice first, then whatever other
    /// tasks have not done: for the phases of a step where each phase needs all of the one
    /// before (the rounds of the distributed dedup clusters step), so that no task ever waits
    /// on a task that may not be running (a throttled job array, a dead node). A unit being
    /// run by another task carries a claim (`claims/part-N.json`); a helper takes unclaimed
    /// units first, then waits for claimed ones, and takes over a claim older than
    /// `GRIST_CLAIM_STALE_SECS` (900 s). Two tasks that run the same unit write the same
    /// bytes (units are deterministic); the one whose file is replaced or removed under it
    /// finds the unit complete and goes on. Returns once the stage manifest is written.
    pub fn run_shared<F>(&self, slice: TaskSlice, work: F) -> Result<TaskReport, StageError>
    where
        F: Fn(&UnitCtx) -> Result<Manifest, StageError> + Sync,
    {
        let start = Instant::now();
        let fingerprint = self.fingerprint();
        let stage_manifest = self.dir.join(MANIFEST);
        if let Ok(old) = Manifest::read(&stage_manifest) {
            if old.fingerprint == fingerprint {
                return Ok(self.shared_report(slice, 0, 0, Accounting::default(), start, fingerprint, true));
            }
            stage_manifest.remove()?;
        }
        let n = self.units.len();
        // Own units first, then the others starting after this task's first unit.
        let mut order: Vec<usize> = slice.units(n).collect();
        order.extend((0..n).map(|i| (i + slice.index) % n.max(1)).filter(|&u| !slice.owns(u)));
        let stale: f64 =
            std::env::var(shards::env::CLAIM_STALE_SECS).ok().and_then(|v| v.parse().ok()).unwrap_or(900.0);
        let now =
            || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        let claim_of = |u: usize| self.dir.join(&format!("claims/{}.json", unit_stem(u)));
        let claimed = |u: usize| -> bool {
            let Ok(bytes) = claim_of(u).read() else { return false };
            let Ok(c) = serde_json::from_slice::<serde_json::Value>(&bytes) else { return false };
            c["fingerprint"] == fingerprint.as_str() && c["at"].as_f64().is_some_and(|t| now() - t < stale)
        };
        let progress = ProgressBar::hidden();
        let (mut done, mut skipped) = (0usize, 0usize);
        let mut accounting = Accounting::default();
        let mut pause = std::time::Duration::from_millis(50);
        loop {
            let pending: Vec<usize> =
                order.iter().copied().filter(|&u| self.completed(u, slice.owns(u)).is_none()).collect();
            if pending.is_empty() {
                break;
            }
            let free: Vec<usize> = pending.iter().copied().filter(|&u| !claimed(u)).collect();
            if free.is_empty() {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_secs(5));
                continue;
            }
            let results: Vec<Option<Accounting>> = free
                .par_iter()
                .map(|&u| {
                    if self.completed(u, false).is_some() {
                        return Ok(None);
                    }
                    let claim = serde_json::json!({ "fingerprint": fingerprint, "at": now(), "task": slice.index });
                    claim_of(u).write_atomic(claim.to_string().as_bytes())?;
                    let ctx = UnitCtx { unit: u, stage: self, progress: &progress };
                    let outcome = work(&ctx).and_then(|m| self.mark_done(u, m));
                    match outcome {
                        Ok(a) => Ok(Some(a)),
                        // Another task finished the unit (and its files replaced ours): fine.
                        Err(_) if self.completed(u, true).is_some() => Ok(None),
                        Err(e) => Err(e),
                    }
                })
                .collect::<Result<_, StageError>>()?;
            for a in results {
                match a {
                    Some(a) => {
                        accounting.add(&a);
                        done += 1;
                    }
                    None => skipped += 1,
                }
            }
        }
        // Every marker was just seen complete by this task.
        let complete = self.finalize(&fingerprint)?;
        Ok(self.shared_report(slice, done, skipped, accounting, start, fingerprint, complete))
    }

    #[allow(clippy::too_many_arguments)]
    fn shared_report(
        &self,
        slice: TaskSlice,
        done: usize,
        skipped: usize,
        accounting: Accounting,
        start: Instant,
        fingerprint: String,
        complete: bool,
    ) -> TaskReport {
        TaskReport {
            stage: self.name.clone(),
            task: slice.index,
            tasks: slice.count,
            units_owned: self.units.len(),
            units_done: done,
            units_skipped: skipped,
            accounting,
            threads: rayon::current_num_threads(),
            seconds: start.elapsed().as_secs_f64(),
            stage_complete: complete,
            grist_version: env!("CARGO_PKG_VERSION").to_string(),
            fingerprint,
        }
    }

    /// Removes unit files the stage manifest `m` does not list: units numbered past the plan,
    /// and a unit's files that an earlier run with other settings wrote (e.g. more token shards
    /// per unit under a smaller `shard_tokens`), with temporaries of killed writers. Called
    /// only once the new manifest is written, so a failed rerun never removed anything; every
    /// finalizing task removes the same files.
    fn remove_unlisted(&self, m: &Manifest) -> Result<usize, StageError> {
        let mut keep: std::collections::BTreeSet<String> =
            m.outputs.iter().chain(&m.ledgers).chain(&m.side).map(|f| f.path.clone()).collect();
        keep.extend((0..self.units.len()).map(marker_name));
        let names: Vec<(String, Loc)> = match self.dir.as_local() {
            Some(dir) => match std::fs::read_dir(dir) {
                Ok(entries) => entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                    .map(|e| (e.file_name().to_string_lossy().into_owned(), Loc::local(e.path())))
                    .collect(),
                Err(_) => Vec::new(),
            },
            None => self.dir.list()?.into_iter().map(|l| (l.file_name(), l)).collect(),
        };
        let mut removed = 0;
        for (name, loc) in names {
            if unit_of(&name).is_some() && !keep.contains(&name) {
                tracing::info!(stage = %self.name, file = %name, "removing a file the new output does not list");
                loc.remove()?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Writes the stage manifest if every unit is complete. When it is not but every task of
    /// this run (`tasks`) has written its report, the missing markers were written by tasks that
    /// finished and are only not visible yet (an NFS or object-store listing lag): retry with a
    /// bounded backoff (`GRIST_FINALIZE_WAIT_SECS`, 60 s), then fail naming the units, so that no
    /// task exits 0 leaving a stage without its manifest. Otherwise other tasks are still working
    /// and the last of them writes it.
    fn finalize_or_wait(&self, fingerprint: &str, tasks: usize, limit: f64) -> Result<bool, StageError> {
        if self.finalize(fingerprint)? {
            return Ok(true);
        }
        let all_reported = (0..tasks).all(|t| {
            let loc = self.dir.join(&format!("stats/task-{t:05}-of-{tasks:05}.json"));
            loc.read()
                .ok()
                .and_then(|b| serde_json::from_slice::<TaskReport>(&b).ok())
                .is_some_and(|r| r.fingerprint == fingerprint)
        });
        if !all_reported {
            return Ok(false);
        }
        let deadline = Instant::now() + std::time::Duration::from_secs_f64(limit.max(0.0));
        let mut pause = std::time::Duration::from_millis(100);
        while Instant::now() < deadline {
            std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
            if self.finalize(fingerprint)? {
                return Ok(true);
            }
            pause = (pause * 2).min(std::time::Duration::from_secs(5));
        }
        let missing: Vec<String> = (0..self.units.len())
            .filter(|&u| self.completed(u, false).is_none())
            .map(|u| u.to_string())
            .take(20)
            .collect();
        Err(StageError::Input {
            at: shards::At::file(self.dir.to_string()),
            msg: format!(
                "all {tasks} tasks of stage {} reported done, but unit(s) {} have no visible complete marker after {limit} s: their files are not visible on this filesystem yet, or were removed\nhint: rerun the stage (completed units are skipped; the manifest is written once every marker is visible)",
                self.name,
                missing.join(", ")
            ),
        })
    }

    /// Writes the stage manifest if every unit is complete. Any task may do it; the
    /// content depends only on the unit markers, so concurrent writers agree (up to timings).
    fn finalize(&self, fingerprint: &str) -> Result<bool, StageError> {
        let mut markers = Vec::with_capacity(self.units.len());
        for u in 0..self.units.len() {
            // Sizes only: this task checked its own units' checksums; the others' tasks theirs.
            match self.completed(u, false) {
                Some(m) => markers.push(m),
                None => return Ok(false),
            }
        }
        let mut stage =
            Manifest::new(&self.name, self.units.len() as u64, fingerprint.to_string(), self.config.clone());
        let mut timings: BTreeMap<String, f64> = BTreeMap::new();
        for m in markers {
            stage.inputs.extend(m.inputs);
            stage.outputs.extend(m.outputs);
            stage.ledgers.extend(m.ledgers);
            stage.side.extend(m.side);
            stage.accounting.add(&m.accounting);
            for (k, v) in m.counters {
                stage.count(&k, v);
            }
            for (k, v) in m.timings {
                *timings.entry(k).or_default() += v;
            }
        }
        stage.timings = timings;
        stage.write(&self.dir.join(MANIFEST))?;
        self.remove_unlisted(&stage)?;
        Ok(true)
    }
}

/// An error unless `m` is a manifest of `stage`: a step's typed report reads only its own.
pub fn expect_stage(m: &Manifest, stage: &str) -> Result<(), StageError> {
    if m.stage == stage {
        return Ok(());
    }
    Err(StageError::Usage(format!("a {stage} report needs a {stage} manifest, not one of {:?}", m.stage)))
}

/// The report of a global step: it records the fingerprint it was made for.
pub trait GlobalReport: Serialize + serde::de::DeserializeOwned {
    /// The fingerprint of the config and inputs this report's files were made from.
    fn fingerprint(&self) -> &str;
}

/// A global step (one piece of work over the whole input, not sliced: training the quality
/// classifier, clustering duplicates, writing the synthetic corpus). Its report file is its
/// completion marker, written last: a run whose fingerprint matches a report whose files are
/// all present is skipped; anything else is redone. Global steps are deterministic, so
/// concurrent tasks that both run one write the same files.
#[derive(Debug, Clone)]
pub struct Global<'a> {
    /// The step's directory.
    pub dir: Loc,
    /// xxh3 of the config, seed and inputs.
    pub fingerprint: String,
    /// The report file in `dir` (the marker), e.g. `train_report.json`.
    pub report: &'a str,
    /// Files the work writes into `dir` besides the report; all must exist for it to be done.
    pub files: &'a [&'a str],
}

impl Global<'_> {
    /// The report of a finished run with this fingerprint whose files are present.
    pub fn completed<R: GlobalReport>(&self) -> Option<R> {
        let bytes = self.dir.join(self.report).read().ok()?;
        let r: R = serde_json::from_slice(&bytes).ok()?;
        let files = self.files.iter().all(|f| self.dir.join(f).exists().unwrap_or(false));
        (r.fingerprint() == self.fingerprint && files).then_some(r)
    }

    /// The report of this work, built by `build` unless it is finished, or another task holds
    /// a fresh claim on it: then this task waits for that one's report (polling with a backoff
    /// up to 5 s), and takes the work over once the claim is older than
    /// `GRIST_CLAIM_STALE_SECS` (900 s). For global work inside a sliced step (the blend's
    /// order), which every task of an array would otherwise build at once. The claim
    /// (`claim.json`) is removed when the work is done; a claim of this task (`task`, e.g. a
    /// restarted one) never makes it wait.
    pub fn run_once<R: GlobalReport>(
        &self,
        task: usize,
        build: impl FnOnce() -> Result<R, StageError>,
    ) -> Result<R, StageError> {
        let stale: f64 =
            std::env::var(shards::env::CLAIM_STALE_SECS).ok().and_then(|v| v.parse().ok()).unwrap_or(900.0);
        self.run_once_within(task, stale, build)
    }

    fn run_once_within<R: GlobalReport>(
        &self,
        task: usize,
        stale: f64,
        build: impl FnOnce() -> Result<R, StageError>,
    ) -> Result<R, StageError> {
        let now =
            || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        let claim = self.dir.join("claim.json");
        let mut pause = std::time::Duration::from_millis(50);
        loop {
            if let Some(r) = self.completed() {
                return Ok(r);
            }
            let other =
                claim.read().ok().and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok()).is_some_and(|c| {
                    c["fingerprint"] == self.fingerprint.as_str()
                        && c["task"].as_u64() != Some(task as u64)
                        && c["at"].as_f64().is_some_and(|t| now() - t < stale)
                });
            if !other {
                break;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(std::time::Duration::from_secs(5));
        }
        let c = serde_json::json!({ "fingerprint": self.fingerprint, "at": now(), "task": task });
        claim.write_atomic(c.to_string().as_bytes())?;
        let r = build()?;
        claim.remove()?;
        Ok(r)
    }

    /// Marks the step complete: writes its report (after every other file is written).
    pub fn finish<R: GlobalReport>(&self, report: &R) -> Result<(), StageError> {
        let mut json = serde_json::to_string_pretty(report).unwrap_or_default();
        json.push('\n');
        self.dir.join(self.report).write_atomic(json.as_bytes())?;
        Ok(())
    }
}

/// A byte-count progress bar on stderr, hidden when stderr is not a terminal.
pub fn progress_bar(total: u64, label: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix:>8} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_prefix(label.to_string());
    pb
}

/// Unit markers in a stage directory that belong to `fingerprint`, by unit (for `inspect`).
pub fn unit_markers(dir: &Loc, units: u64) -> Vec<(u64, Option<Manifest>)> {
    (0..units as usize).map(|u| (u as u64, Manifest::read(&dir.join(&marker_name(u))).ok())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stage of `units` units in `dir` with `config`.
    fn stage_in(dir: &std::path::Path, units: usize, config: serde_json::Value) -> Stage {
        Stage {
            name: "t".into(),
            dir: Loc::local(dir),
            config,
            units: (0..units).map(|u| serde_json::json!(u)).collect(),
            unit_bytes: vec![0; units],
        }
    }

    /// Unit work writing one output shard holding `unit N output`.
    fn one_shard(ctx: &UnitCtx) -> Result<Manifest, StageError> {
        let (loc, name) = ctx.shard();
        loc.write_atomic(format!("unit {} output", ctx.unit).as_bytes())?;
        let mut m = ctx.manifest();
        m.outputs.push(shards::FileEntry::describe(&loc, name, 0)?);
        Ok(m)
    }

    #[test]
    fn unit_numbers_from_file_names() {
        assert_eq!(unit_of("part-00003.parquet"), Some(3));
        assert_eq!(unit_of("ledger-00012.parquet"), Some(12));
        assert_eq!(unit_of("part-123456.done.json"), Some(123_456));
        assert_eq!(unit_of(".part-00007.parquet.99.0.tmp"), Some(7));
        assert_eq!(unit_of("manifest.json"), None);
        assert_eq!(unit_of("part-.parquet"), None);
        assert_eq!(unit_of("part-00001.txt"), None);
        assert_eq!(unit_of("part-00004.side-b007-r000.parquet"), Some(4));
    }

    #[test]
    fn a_smaller_plan_removes_the_units_it_no_longer_has() {
        let dir = tempfile::tempdir().unwrap();
        let stage = |units: usize| stage_in(dir.path(), units, serde_json::json!({}));
        let work = one_shard;
        assert!(stage(3).run(TaskSlice::ALL, work).unwrap().stage_complete);
        assert!(dir.path().join("part-00002.parquet").exists());
        let rep = stage(2).run(TaskSlice::ALL, work).unwrap();
        assert_eq!((rep.units_done, rep.units_skipped), (0, 2), "units 0 and 1 are unchanged: kept");
        assert!(!dir.path().join("part-00002.parquet").exists());
        assert!(!dir.path().join("part-00002.done.json").exists());
        assert_eq!(Manifest::read(&Loc::local(dir.path().join(MANIFEST))).unwrap().units, 2);
    }

    #[test]
    fn units_are_fingerprinted_so_a_grown_plan_redoes_only_new_and_changed_units() {
        let dir = tempfile::tempdir().unwrap();
        let plan = |entries: &[&str], config: serde_json::Value| Stage {
            units: entries.iter().map(|e| serde_json::json!(e)).collect(),
            unit_bytes: vec![0; entries.len()],
            ..stage_in(dir.path(), 0, config)
        };
        let cfg = serde_json::json!({ "k": 1 });
        let rep = plan(&["a.warc", "b.warc"], cfg.clone()).run(TaskSlice::ALL, one_shard).unwrap();
        assert_eq!(rep.units_done, 2);
        let first = Manifest::read(&Loc::local(dir.path().join(MANIFEST))).unwrap();
        // A new dump's file appended to the plan: only its unit runs.
        let grown = plan(&["a.warc", "b.warc", "c.warc"], cfg.clone());
        let rep = grown.run(TaskSlice::ALL, one_shard).unwrap();
        assert_eq!((rep.units_done, rep.units_skipped), (1, 2));
        assert!(rep.stage_complete);
        let m = Manifest::read(&Loc::local(dir.path().join(MANIFEST))).unwrap();
        assert_ne!(m.fingerprint, first.fingerprint, "the stage manifest names the whole plan");
        assert_eq!(m.outputs.len(), 3);
        assert_eq!(&m.outputs[..2], &first.outputs[..]);
        // One unit's input changed: that unit alone.
        let rep = plan(&["a.warc", "B.warc", "c.warc"], cfg.clone()).run(TaskSlice::ALL, one_shard).unwrap();
        assert_eq!((rep.units_done, rep.units_skipped), (1, 2));
        // Another config: every unit.
        let rep = plan(&["a.warc", "B.warc", "c.warc"], serde_json::json!({ "k": 2 })).run(TaskSlice::ALL, one_shard);
        assert_eq!(rep.unwrap().units_done, 3);
        // A marker of another unit entry at the same position is never taken as complete.
        assert!(grown.completed(1, true).is_none());
        assert!(grown.completed(0, true).is_none(), "unit 0 was redone under another config");
    }

    #[test]
    fn a_task_that_sees_every_report_but_not_every_marker_waits_then_fails_never_exits_clean() {
        let dir = tempfile::tempdir().unwrap();
        let stage = stage_in(dir.path(), 2, serde_json::json!({}));
        let work = one_shard;
        // Task 1 of 2 alone: task 0 has not reported, so it leaves the manifest to task 0.
        let one = stage.run(TaskSlice { index: 1, count: 2 }, work).unwrap();
        assert!(!one.stage_complete);
        // Task 0 ran elsewhere: its report is visible, its marker not (yet).
        stage.run(TaskSlice { index: 0, count: 2 }, work).unwrap();
        let marker = dir.path().join("part-00000.done.json");
        let hidden = dir.path().join("hidden.json");
        std::fs::remove_file(dir.path().join(MANIFEST)).unwrap();
        std::fs::rename(&marker, &hidden).unwrap();
        let fp = stage.fingerprint();
        let e = stage.finalize_or_wait(&fp, 2, 0.3).unwrap_err().to_string();
        assert!(e.contains("all 2 tasks") && e.contains("unit(s) 0"), "{e}");
        // The marker shows up while it waits: the manifest is written.
        let (h, m) = (hidden.clone(), marker.clone());
        let late = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            std::fs::rename(h, m).unwrap();
        });
        assert!(stage.finalize_or_wait(&fp, 2, 10.0).unwrap());
        late.join().unwrap();
        assert!(dir.path().join(MANIFEST).exists());
    }

    #[test]
    fn a_completed_unit_damaged_at_the_same_size_is_redone() {
        let dir = tempfile::tempdir().unwrap();
        let stage = stage_in(dir.path(), 3, serde_json::json!({}));
        let work = one_shard;
        assert_eq!(stage.run(TaskSlice::ALL, work).unwrap().units_done, 3);
        assert_eq!(stage.run(TaskSlice::ALL, work).unwrap().units_skipped, 3);
        let f = dir.path().join("part-00001.parquet");
        std::fs::write(&f, b"unit 1 OUTPUT").unwrap();
        let rep = stage.run(TaskSlice::ALL, work).unwrap();
        assert_eq!((rep.units_done, rep.units_skipped), (1, 2));
        assert_eq!(std::fs::read(&f).unwrap(), b"unit 1 output");
    }

    #[test]
    fn files_an_earlier_run_wrote_go_only_once_the_new_output_is_complete() {
        let dir = tempfile::tempdir().unwrap();
        // Each unit writes `pieces` token shards (as tokenize does per shard_tokens).
        let stage = |pieces: usize| stage_in(dir.path(), 2, serde_json::json!({ "pieces": pieces }));
        let work = |pieces: usize, fail_unit: Option<usize>| {
            move |ctx: &UnitCtx| -> Result<Manifest, StageError> {
                if Some(ctx.unit) == fail_unit {
                    return Err(StageError::Recipe("unit failed".into()));
                }
                let mut m = ctx.manifest();
                for k in 0..pieces {
                    let (loc, name) = ctx.side_file(&format!("train-{k:03}"), "bin");
                    loc.write_atomic(b"tokens")?;
                    m.side.push(shards::FileEntry::describe(&loc, name, 0)?);
                }
                Ok(m)
            }
        };
        let bins = || {
            let mut v: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".bin"))
                .collect();
            v.sort();
            v
        };
        assert!(stage(3).run(TaskSlice::ALL, work(3, None)).unwrap().stage_complete);
        assert_eq!(bins().len(), 6);
        // A rerun with fewer pieces per unit that fails part-way removes nothing yet.
        assert!(stage(1).run(TaskSlice::ALL, work(1, Some(1))).is_err());
        assert_eq!(bins().len(), 6, "{:?}", bins());
        // Completed, it removes exactly the files its manifest does not list.
        assert!(stage(1).run(TaskSlice::ALL, work(1, None)).unwrap().stage_complete);
        assert_eq!(bins(), ["part-00000.side-train-000.bin", "part-00001.side-train-000.bin"]);
    }

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    struct Done {
        fingerprint: String,
        n: u64,
    }

    impl GlobalReport for Done {
        fn fingerprint(&self) -> &str {
            &self.fingerprint
        }
    }

    #[test]
    fn a_claimed_global_waits_for_its_claimer_and_takes_over_a_stale_claim() {
        let dir = tempfile::tempdir().unwrap();
        let g = Global { dir: Loc::local(dir.path()), fingerprint: "fp".into(), report: "r.json", files: &[] };
        let claim = |task: u64, at: f64| {
            let c = serde_json::json!({ "fingerprint": "fp", "at": at, "task": task });
            g.dir.join("claim.json").write_atomic(c.to_string().as_bytes()).unwrap();
        };
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        // Task 1 holds a fresh claim: task 0 waits for its report and never builds.
        claim(1, now);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                g.run_once_within(0, 900.0, || -> Result<Done, StageError> { panic!("built despite the claim") })
            });
            std::thread::sleep(std::time::Duration::from_millis(300));
            g.finish(&Done { fingerprint: "fp".into(), n: 0 }).unwrap();
            assert_eq!(waiter.join().unwrap().unwrap().fingerprint, "fp");
        });
        g.dir.join("r.json").remove().unwrap();
        // A stale claim is taken over; the claim is gone once the work is done.
        claim(1, now - 1000.0);
        let built = g
            .run_once_within(0, 900.0, || {
                let d = Done { fingerprint: "fp".into(), n: 0 };
                g.finish(&d)?;
                Ok(d)
            })
            .unwrap();
        assert_eq!(built.fingerprint, "fp");
        assert!(!dir.path().join("claim.json").exists());
        g.dir.join("r.json").remove().unwrap();
        // A task's own claim (it was restarted) does not make it wait.
        claim(0, now);
        let mut ran = false;
        g.run_once_within(0, 900.0, || {
            ran = true;
            let d = Done { fingerprint: "fp".into(), n: 0 };
            g.finish(&d)?;
            Ok(d)
        })
        .unwrap();
        assert!(ran);
    }

    #[test]
    fn a_global_step_is_done_only_with_its_report_its_files_and_its_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let g = |fp: &str| Global {
            dir: Loc::local(dir.path()),
            fingerprint: fp.to_string(),
            report: "report.json",
            files: &["model.bin"],
        };
        assert_eq!(g("a").completed::<Done>(), None, "nothing written yet");
        // The work's file without the report (a run killed before its marker): not done.
        std::fs::write(dir.path().join("model.bin"), b"w").unwrap();
        assert_eq!(g("a").completed::<Done>(), None);
        g("a").finish(&Done { fingerprint: "a".into(), n: 3 }).unwrap();
        assert_eq!(g("a").completed::<Done>(), Some(Done { fingerprint: "a".into(), n: 3 }));
        assert_eq!(g("b").completed::<Done>(), None, "another config or input");
        std::fs::remove_file(dir.path().join("model.bin")).unwrap();
        assert_eq!(g("a").completed::<Done>(), None, "a file of the work is gone");
    }
}
