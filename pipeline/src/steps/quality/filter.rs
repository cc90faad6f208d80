//! `grist quality filter`: scores every document of the `ingest` output with the trained model
//! and keeps it by GPT-3's rule, `pareto(alpha) > 1 - score` with the draw from the document's
//! own random stream (or, in `threshold` mode, `score >= threshold`). Kept documents get
//! `quality_score` and `keep_draw` columns; removed ones go to the ledger with both.
//! One unit per input shard, so the output is the same for any slicing.

use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use shards::arrow::array::{ArrayRef, BooleanArray, Float64Array};
use shards::arrow::compute::filter_record_batch;
use shards::arrow::datatypes::{DataType, Field, Schema};
use shards::arrow::record_batch::RecordBatch;
use shards::{At, DocReader, DocWriter, LedgerEntry, LedgerWriter, Loc, Manifest, ShardError, WriteOptions, str_col};

use crate::core::error::StageError;
use crate::core::slice::TaskSlice;
use crate::core::stage::{Stage, TaskReport};
use crate::steps::quality::model::{QualityModel, keep_probability, pareto_keep};
use crate::steps::{Outcome, Produces, Shape, Step, StepCtx, need};

/// Stage name.
pub const STAGE: &str = "quality_filter";
/// Manifest counter prefixes: `{prefix}{source}/{decile}` counts documents and kept documents.
pub const SCORE_BIN: &str = "scored/";
pub const KEPT_BIN: &str = "kept/";
/// ... and the expected kept count under the Pareto law, in millionths of a document.
pub const EXPECTED_BIN: &str = "expected_kept_micro/";

/// Keep rate per source and per score decile, from the stage manifest's counters.
#[derive(Debug, Clone, Serialize)]
pub struct KeepReport {
    /// The alpha the filter used (Pareto and tuned modes).
    pub alpha: Option<f64>,
    pub sources: std::collections::BTreeMap<String, SourceKeep>,
}

/// One source's row of the keep report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SourceKeep {
    pub docs: u64,
    pub kept: u64,
    /// Per score decile [k/10, (k+1)/10): documents, kept documents, and the kept count the
    /// Pareto law expects for those documents' scores.
    pub deciles: Vec<(u64, u64, f64)>,
}

/// The keep report of a completed filter output.
pub fn keep_report(m: &Manifest) -> KeepReport {
    let mut sources: std::collections::BTreeMap<String, SourceKeep> = Default::default();
    for (k, &v) in &m.counters {
        let (rest, what) = if let Some(r) = k.strip_prefix(SCORE_BIN) {
            (r, 0)
        } else if let Some(r) = k.strip_prefix(KEPT_BIN) {
            (r, 1)
        } else if let Some(r) = k.strip_prefix(EXPECTED_BIN) {
            (r, 2)
        } else {
            continue;
        };
        let Some((src, bin)) = rest.rsplit_once('/') else { continue };
        let Ok(bin) = bin.parse::<usize>() else { continue };
        let s = sources.entry(src.to_string()).or_default();
        s.deciles.resize(10, (0, 0, 0.0));
        let d = &mut s.deciles[bin.min(9)];
        match what {
            0 => {
                s.docs += v;
                d.0 += v;
            }
            1 => {
                s.kept += v;
                d.1 += v;
            }
            _ => d.2 += v as f64 / 1e6,
        }
    }
    let alpha = match m.config.get("mode").and_then(|v| v.as_str()) {
        Some("threshold") => None,
        _ => m.config.get("effective_alpha").and_then(|a| a.as_f64()),
    };
    KeepReport { alpha, sources }
}

/// How documents are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeepMode {
    /// GPT-3: keep iff `pareto(alpha) > 1 - score`.
    #[default]
    Pareto,
    /// Keep iff `score >= threshold`.
    Threshold,
    /// GPT-3's rule with the alpha that training tuned on `quality.tune_reference` (read from
    /// the model's metrics).
    Tuned,
}

/// `quality_filter`: GPT-3's keep rule with the trained classifier.
pub static STEP: Step = Step {
    name: STAGE,
    table: "quality_filter",
    input: Some("ingest"),
    shape: Shape::Sliced,
    produces: Produces::Documents,
    about: "score documents with the classifier and keep them by GPT-3's Pareto rule",
    run: step,
};

fn default_input() -> String {
    STEP.input.unwrap_or_default().to_string()
}

fn step(ctx: &StepCtx) -> Result<Outcome, StageError> {
    let cfg = need(&ctx.recipe.quality_filter, STEP.table)?;
    let q = need(&ctx.recipe.quality, crate::steps::quality::train::STEP.table)?;
    let model = match &cfg.model {
        Some(m) => Loc::parse(m)?,
        None => ctx.dir(crate::steps::quality::train::STEP.name).join(crate::steps::quality::train::MODEL_FILE),
    };
    let out = ctx.dir(STAGE);
    let rep = run(cfg, ctx.seed(), q.num_features, &model, &ctx.dir(&cfg.input), &out, ctx.slice)?;
    Outcome::units(rep, "documents", "kept").then(|| {
        let m = Manifest::read(&out.join(crate::core::stage::MANIFEST))?;
        Ok(keep_report(&m).render())
    })
}

impl KeepReport {
    /// The keep rate per source and, under the Pareto rule, the keep curve per score decile
    /// beside the law (2 - s)^-alpha at the decile's midpoint.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let alpha = self.alpha.map(|a| format!(" (Pareto alpha {a:.2})")).unwrap_or_default();
        let _ = writeln!(s, "\nkeep rate by source{alpha}");
        for (name, k) in &self.sources {
            let _ = writeln!(
                s,
                "  {name:<20} {:>8} docs {:>8} kept  {:>6.1}%",
                k.docs,
                k.kept,
                100.0 * k.kept as f64 / k.docs.max(1) as f64
            );
        }
        if self.alpha.is_some() {
            let _ = writeln!(s, "keep curve, all sources: score decile, docs, kept, expected by the law (2-s)^-alpha");
            for (bin, (n, kept, expected)) in self.deciles().into_iter().enumerate() {
                if n > 0 {
                    let _ = writeln!(
                        s,
                        "  [{:.1}, {:.1})  {n:>8} {kept:>8} {expected:>10.1}",
                        bin as f64 / 10.0,
                        (bin + 1) as f64 / 10.0
                    );
                }
            }
        }
        s
    }

    /// Documents, kept documents and the kept count the law expects, per score decile, over
    /// all sources.
    pub fn deciles(&self) -> [(u64, u64, f64); 10] {
        let mut out = [(0, 0, 0.0); 10];
        for (bin, o) in out.iter_mut().enumerate() {
            *o = self.sources.values().fold((0, 0, 0.0), |acc, k| {
                let d = k.deciles.get(bin).copied().unwrap_or((0, 0, 0.0));
                (acc.0 + d.0, acc.1 + d.1, acc.2 + d.2)
            });
        }
        out
    }
}

/// `[quality_filter]` in a recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// The step whose documents are filtered (a directory under `run.out`).
    #[serde(default = "default_input")]
    pub input: String,
    #[serde(default)]
    pub mode: KeepMode,
    /// The Pareto shape; GPT-3 used 9.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// The model file (default: `{run.out}/quality/model.gqm`).
    #[serde(default)]
    pub model: Option<String>,
}

fn default_alpha() -> f64 {
    9.0
}
fn default_threshold() -> f64 {
    0.5
}

/// Runs the filter for one task slice over the `ingest` output in `docs_dir`.
/// `num_features` is the recipe's; a model with another feature count is refused.
pub fn run(
    cfg: &FilterConfig,
    seed: u64,
    num_features: u32,
    model_loc: &Loc,
    docs_dir: &Loc,
    out: &Loc,
    slice: TaskSlice,
) -> Result<TaskReport, StageError> {
    let model = QualityModel::load(model_loc)?;
    if model.header.num_features != num_features {
        return Err(StageError::Input {
            at: At::file(model_loc.to_string()),
            msg: format!(
                "the model has {} features, the recipe's [quality] num_features is {num_features}\nhint: retrain with `grist quality train`, or set quality.num_features to the model's",
                model.header.num_features
            ),
        });
    }
    let alpha = match cfg.mode {
        KeepMode::Tuned => model.header.metrics.get("tuned_alpha").and_then(|a| a.as_f64()).ok_or_else(|| {
            StageError::Input {
                at: At::file(model_loc.to_string()),
                msg: "quality_filter.mode = \"tuned\" but the model has no tuned alpha\nhint: set quality.tune_reference (e.g. \"webtext\") and retrain".into(),
            }
        })?,
        _ => cfg.alpha,
    };
    let (_, model_xxh3) = shards::checksum::file_checksum(model_loc)?;
    let input = Manifest::read(&docs_dir.join(crate::core::stage::MANIFEST))?;
    let mut config = serde_json::to_value(cfg).map_err(|e| StageError::Recipe(e.to_string()))?;
    config["seed"] = seed.into();
    config["model_xxh3"] = model_xxh3.into();
    config["effective_alpha"] = alpha.into();
    let stage = Stage::per_input_file(STAGE, out.clone(), config, &input);
    stage.run(slice, |ctx| {
        let start = Instant::now();
        let entry = &input.outputs[ctx.unit];
        let src_loc = docs_dir.join(&entry.path);
        entry.verify(&src_loc)?;
        let reader = DocReader::open(&src_loc)?;
        let mut fields: Vec<Field> = reader.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("quality_score", DataType::Float64, false));
        fields.push(Field::new("keep_draw", DataType::Float64, false));
        let schema = Arc::new(Schema::new(fields));
        let (shard_loc, _) = ctx.shard();
        let (ledger_loc, _) = ctx.ledger();
        let mut writer = DocWriter::create(&shard_loc, schema.clone(), WriteOptions::default())?;
        let mut ledger = LedgerWriter::create(&ledger_loc, WriteOptions::default())?;
        let mut m = ctx.manifest();
        for batch in reader.batches(None, 4096)? {
            let b = batch?;
            let (ids, sources, texts) = (str_col(&b, "id")?, str_col(&b, "source")?, str_col(&b, "text")?);
            let scored: Vec<(f64, f64, bool)> = (0..b.num_rows())
                .into_par_iter()
                .map(|i| {
                    let score = model.score(texts.value(i));
                    let (pareto, draw) = pareto_keep(seed, ids.value(i), score, alpha);
                    let keep = match cfg.mode {
                        KeepMode::Pareto | KeepMode::Tuned => pareto,
                        KeepMode::Threshold => score >= cfg.threshold,
                    };
                    (score, draw, keep)
                })
                .collect();
            for (i, &(score, draw, keep)) in scored.iter().enumerate() {
                // Per source and score decile: documents and kept ones (the keep curve).
                let bin = ((score * 10.0) as usize).min(9);
                m.count(&format!("{SCORE_BIN}{}/{bin}", sources.value(i)), 1);
                if keep {
                    m.count(&format!("{KEPT_BIN}{}/{bin}", sources.value(i)), 1);
                }
                let expected = (keep_probability(score, alpha) * 1e6).round() as u64;
                m.count(&format!("{EXPECTED_BIN}{}/{bin}", sources.value(i)), expected);
                if !keep {
                    ledger.push(LedgerEntry {
                        id: ids.value(i).to_string(),
                        source: sources.value(i).to_string(),
                        stage: STAGE.to_string(),
                        reason: "low_quality".into(),
                        score: Some(score),
                        draw: Some(draw),
                        ..LedgerEntry::default()
                    })?;
                    m.count(&format!("removed_{}", sources.value(i)), 1);
                } else {
                    m.count(&format!("kept_{}", sources.value(i)), 1);
                }
            }
            let mut cols: Vec<ArrayRef> = b.columns().to_vec();
            cols.push(Arc::new(Float64Array::from_iter_values(scored.iter().map(|s| s.0))));
            cols.push(Arc::new(Float64Array::from_iter_values(scored.iter().map(|s| s.1))));
            let at = || At::file(shard_loc.to_string());
            let full =
                RecordBatch::try_new(schema.clone(), cols).map_err(|source| ShardError::Arrow { at: at(), source })?;
            let mask = BooleanArray::from(scored.iter().map(|s| s.2).collect::<Vec<_>>());
            let kept = filter_record_batch(&full, &mask).map_err(|source| ShardError::Arrow { at: at(), source })?;
            m.accounting.docs_in += b.num_rows() as u64;
            m.accounting.docs_out += kept.num_rows() as u64;
            m.accounting.docs_ledger += (b.num_rows() - kept.num_rows()) as u64;
            writer.write(&kept)?;
        }
        let rows = writer.finish()?;
        let ledger_rows = ledger.finish()?;
        ctx.record_files(&mut m, entry, &src_loc, rows, ledger_rows)?;
        m.timings.insert("filter_seconds".into(), start.elapsed().as_secs_f64());
        Ok(m)
    })
}
