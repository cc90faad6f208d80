//! The documents one dedup run sees, numbered the way document gids are: first the input
//! shards of the index runs (`[dedup] index`, earlier dumps, in the order given), then this
//! run's own; and the *dump* (layer) of every shard.
//!
//! The rule that makes incremental dedup equal to dedup of all dumps at once: **earlier dumps
//! win**. Dump k's documents are deduplicated among themselves and against every document of
//! dumps before k (kept or removed there), and a document of an earlier dump is never removed
//! because of a later one. So the clusters step runs once per dump of this run: over the
//! confirmed pairs whose later document is of that dump, with the earlier dumps' documents as
//! index documents (never removed, preferred as representatives). A run over dumps A and B
//! (`dumps = ["a", "b"]`) and a run over A followed by a run over B with `index = [run A]`
//! compute the same pairs, components and representatives for each dump, so they remove the
//! same documents with the same reasons; the incremental run reads the index's signatures and
//! band keys instead of recomputing them, and never touches its removals.

use std::collections::{BTreeMap, BTreeSet};

use shards::{At, FileEntry, Loc, Manifest};

use super::{DedupConfig, SIGNATURES};
use crate::core::error::StageError;
use crate::core::stage::MANIFEST;

/// One input shard of the run, an index run's or its own.
#[derive(Debug, Clone)]
pub struct Unit {
    /// The document shard (for the texts of verification and the report).
    pub input: Loc,
    /// Its signature table.
    pub sig: Loc,
    pub bytes: u64,
    pub docs: u64,
    /// The dump it belongs to: index runs are dumps `0..index.len()`, this run's follow.
    pub layer: u32,
    /// Documents per source (this run's shards only; from the signature markers).
    pub sources: BTreeMap<String, u64>,
    /// Documents without features (this run's shards only).
    pub without_features: u64,
}

/// One run's signature stage: the index runs', then this run's.
#[derive(Debug, Clone)]
pub struct Signatures {
    pub dir: Loc,
    pub manifest: Manifest,
    /// The gid unit number of its unit 0.
    pub first_unit: usize,
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct Corpus {
    pub units: Vec<Unit>,
    /// The first of this run's own units.
    pub own: usize,
    pub runs: Vec<Signatures>,
    /// This run's dumps, in order (those with shards).
    layers: Vec<u32>,
}

impl Corpus {
    /// This run's own signature stage (complete) and input, after the index runs of `cfg`.
    pub fn open(
        cfg: &DedupConfig,
        seed: u64,
        input: &Manifest,
        input_dir: &Loc,
        sig_dir: &Loc,
    ) -> Result<Corpus, StageError> {
        let mut corpus = Corpus { units: Vec::new(), own: 0, runs: Vec::new(), layers: Vec::new() };
        let wanted = cfg.signature_config(seed);
        for (i, path) in cfg.index.iter().enumerate() {
            let run = Loc::parse(path)?;
            let dir = run.join(SIGNATURES);
            let at = dir.join(MANIFEST);
            let m = Manifest::read(&at).map_err(|e| StageError::Input {
                at: At::file(at.to_string()),
                msg: format!("dedup.index run {path} has no complete signature stage: {e}\nhint: an index run is the `run.out` of an earlier recipe run whose dedup finished"),
            })?;
            if m.config != wanted {
                return Err(StageError::Recipe(format!(
                    "dedup.index run {path} was signed with other settings than this run: {} there, {} here\nhint: an index is only comparable under the same mode, bands, rows, n-gram, features, normalization, key ranges and seed",
                    m.config, wanted
                )));
            }
            if m.outputs.len() != m.inputs.len() || m.units as usize != m.outputs.len() {
                return Err(StageError::Input {
                    at: At::file(at.to_string()),
                    msg:
                        "lists a different number of signature tables and input shards: not a signature stage manifest"
                            .into(),
                });
            }
            let first_unit = corpus.units.len();
            for (sig, inp) in m.outputs.iter().zip(&m.inputs) {
                let input = index_input(&run, inp)?;
                // A size check here (a stat per shard); the checksums of the band keys are
                // checked where the bucket step reads them. A shard rewritten since (at the
                // same size) would give verification other texts: rerunning a stage of an
                // index run requires rerunning its dedup too.
                for (loc, f) in [(&input, inp), (&dir.join(&sig.path), sig)] {
                    let size = loc.size()?;
                    if size != f.bytes {
                        return Err(StageError::Input {
                            at: At::file(loc.to_string()),
                            msg: format!(
                                "is {size} bytes, not the {} its signatures were computed from: index run {path} changed after its dedup\nhint: rerun that run's dedup (or restore the file) before using it as an index",
                                f.bytes
                            ),
                        });
                    }
                }
                corpus.units.push(Unit {
                    input,
                    sig: dir.join(&sig.path),
                    bytes: inp.bytes,
                    docs: sig.rows,
                    layer: i as u32,
                    sources: BTreeMap::new(),
                    without_features: 0,
                });
            }
            corpus.runs.push(Signatures { dir, manifest: m, first_unit });
        }
        corpus.own = corpus.units.len();
        let base = cfg.index.len() as u32;
        let m = Manifest::read(&sig_dir.join(MANIFEST))?;
        let position: BTreeMap<&str, u32> =
            cfg.dumps.iter().enumerate().map(|(i, s)| (s.as_str(), i as u32 + 1)).collect();
        for (u, f) in input.outputs.iter().enumerate() {
            let marker = sig_dir.join(&format!("part-{u:05}.done.json"));
            let um = Manifest::read(&marker)?;
            let sources: BTreeMap<String, u64> = um
                .counters
                .iter()
                .filter_map(|(k, n)| Some((k.strip_prefix("docs_source_")?.to_string(), *n)))
                .collect();
            let dumps: BTreeSet<u32> = sources.keys().filter_map(|s| position.get(s.as_str()).copied()).collect();
            if dumps.len() > 1 {
                let names: Vec<&String> = sources.keys().filter(|s| position.contains_key(s.as_str())).collect();
                return Err(StageError::Input {
                    at: At::file(input_dir.join(&f.path).to_string()),
                    msg: format!(
                        "holds documents of the dumps {names:?}: a shard must belong to one dump\nhint: give each dump its own source in [[ingest.sources]], so that no input unit mixes them"
                    ),
                });
            }
            corpus.units.push(Unit {
                input: input_dir.join(&f.path),
                sig: sig_dir.join(&m.outputs.get(u).map(|o| o.path.clone()).unwrap_or_default()),
                bytes: f.bytes,
                docs: um.accounting.docs_in,
                layer: base + dumps.first().copied().unwrap_or(0),
                sources,
                without_features: um.counters.get("docs_without_features").copied().unwrap_or(0),
            });
        }
        corpus.runs.push(Signatures { dir: sig_dir.clone(), manifest: m, first_unit: corpus.own });
        let layers: BTreeSet<u32> = corpus.units[corpus.own..].iter().map(|u| u.layer).collect();
        corpus.layers = layers.into_iter().collect();
        Ok(corpus)
    }

    /// The dump of document `gid`.
    pub fn layer(&self, gid: u64) -> u32 {
        self.units.get((gid >> 32) as usize).map_or(0, |u| u.layer)
    }

    /// The first dump of this run's own: pairs whose documents are all of earlier ones (the
    /// index) are never looked at.
    pub fn first_own_layer(&self) -> u32 {
        self.runs.len() as u32 - 1
    }

    /// This run's dumps, in order (those with shards).
    pub fn own_layers(&self) -> &[u32] {
        &self.layers
    }

    /// Input bytes per unit (for the layout).
    pub fn bytes(&self) -> Vec<u64> {
        self.units.iter().map(|u| u.bytes).collect()
    }

    /// What the later steps' fingerprints name: the index runs' signature stages and the dumps.
    pub fn describe(&self) -> serde_json::Value {
        let index: Vec<&str> =
            self.runs[..self.runs.len() - 1].iter().map(|r| r.manifest.fingerprint.as_str()).collect();
        let layers: Vec<u32> = self.units.iter().map(|u| u.layer).collect();
        serde_json::json!({ "index": index, "layers": layers })
    }
}

/// An index run's input shard: the signature manifest records where it was read
/// (`.../<input stage>/<file>`); it is found again under the run's directory as given now,
/// so a run moved or mounted elsewhere still serves as an index.
fn index_input(run: &Loc, recorded: &FileEntry) -> Result<Loc, StageError> {
    let parts: Vec<&str> = recorded.path.rsplit('/').take(2).collect();
    match parts[..] {
        [file, stage] if !file.is_empty() && !stage.is_empty() && stage != ".." && file != ".." => {
            Ok(run.join(stage).join(file))
        }
        _ => Err(StageError::Input {
            at: At::file(run.join(SIGNATURES).join(MANIFEST).to_string()),
            msg: format!("names input shard {:?}, not a `<stage>/<file>` path", recorded.path),
        }),
    }
}
