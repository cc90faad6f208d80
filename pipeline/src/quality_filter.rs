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
use shards::{
    At, DocReader, DocWriter, FileEntry, LedgerEntry, LedgerWriter, Loc, Manifest, ShardError, WriteOptions, str_col,
};

use crate::error::StageError;
use crate::quality::{QualityModel, pareto_keep};
use crate::slice::TaskSlice;
use crate::stage::{Stage, TaskReport};

/// Stage name.
pub const STAGE: &str = "quality_filter";

/// How documents are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeepMode {
    /// GPT-3: keep iff `pareto(alpha) > 1 - score`.
    #[default]
    Pareto,
    /// Keep iff `score >= threshold`.
    Threshold,
}

/// `[quality_filter]` in a recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
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
    let (_, model_xxh3) = shards::checksum::file_checksum(model_loc)?;
    let input = Manifest::read(&docs_dir.join(crate::stage::MANIFEST))?;
    let mut config = serde_json::to_value(cfg).map_err(|e| StageError::Recipe(e.to_string()))?;
    config["seed"] = seed.into();
    config["model_xxh3"] = model_xxh3.into();
    let stage = Stage {
        name: STAGE.to_string(),
        dir: out.clone(),
        config,
        plan: input.outputs.iter().map(|f| serde_json::json!([f.path, f.xxh3])).collect(),
        unit_bytes: input.outputs.iter().map(|f| f.bytes).collect(),
    };
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
        let (shard_loc, shard_name) = ctx.shard();
        let (ledger_loc, ledger_name) = ctx.ledger();
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
                    let (pareto, draw) = pareto_keep(seed, ids.value(i), score, cfg.alpha);
                    let keep = match cfg.mode {
                        KeepMode::Pareto => pareto,
                        KeepMode::Threshold => score >= cfg.threshold,
                    };
                    (score, draw, keep)
                })
                .collect();
            for (i, &(score, draw, keep)) in scored.iter().enumerate() {
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
        m.inputs.push(FileEntry { path: src_loc.to_string(), ..entry.clone() });
        m.outputs.push(FileEntry::describe(&shard_loc, shard_name, rows)?);
        m.ledgers.push(FileEntry::describe(&ledger_loc, ledger_name, ledger_rows)?);
        m.timings.insert("filter_seconds".into(), start.elapsed().as_secs_f64());
        ctx.progress.inc(entry.bytes);
        Ok(m)
    })
}
