//! `grist quality train`: the GPT-3 quality classifier. Documents of the recipe's positive
//! sources (WebText, books, Wikipedia, ...) against its negative sources (raw Common Crawl),
//! read from the `ingest` output; Spark-exact hashed features; L2 logistic regression (see
//! `logistic`), classes balanced by weight; a held-out split drawn per document id; the model
//! file (`quality::QualityModel`) and a JSON report with held-out accuracy, ROC AUC, log loss,
//! per-class score histograms, the strongest terms and the training curve.
//! Training is one global step, not sliced. It streams the shards twice (ids and sources to
//! draw the `max_docs` sample, then text to features) and never holds the text: the sparse
//! design stays in memory up to `memory_mb` (and an eighth more for the held-out rows) and
//! spills to a memory-mapped file past it, whose pages the solver releases as it passes them;
//! so memory is about 8 bytes a document + 2 x 20 x 8 x num_features for L-BFGS + up to 64
//! partial gradients of 8 x num_features + 1.125 x `memory_mb` (2.6 GB at the defaults,
//! measured by `just bench-scale` at 10^7 documents).
//! Early stopping keeps the parameters with the best held-out loss.

use std::collections::BTreeMap;
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use shards::{DocReader, Loc, Manifest, str_col};

use crate::core::error::StageError;
use crate::core::rng::DocRng;
use crate::core::stage::{Global, GlobalReport};
use crate::steps::quality::logistic::{LrConfig, RowsBuilder, fit_monitored, logits, roc_auc};
use crate::steps::quality::model::{QualityModel, tune_alpha};
use crate::steps::{Outcome, Produces, Shape, Step, StepCtx, StepReport, need};
use crate::text::features::{DEFAULT_NUM_FEATURES, features};

/// `quality`: the classifier, trained once per config and input (a global step).
pub static STEP: Step = Step {
    name: "quality",
    table: "quality",
    input: Some("ingest"),
    shape: Shape::Global,
    produces: Produces::Files,
    about: "train the quality classifier (Spark features, logistic regression): WebText and curated vs raw crawl",
    run: step,
};

fn default_input() -> String {
    STEP.input.unwrap_or_default().to_string()
}

fn step(ctx: &StepCtx) -> Result<Outcome, StageError> {
    let cfg = need(&ctx.recipe.quality, STEP.table)?;
    let (docs, out) = (ctx.dir(&cfg.input), ctx.dir(STEP.name));
    let (report, up_to_date, text) = match completed(cfg, ctx.seed(), &docs, &out)? {
        Some(r) => {
            let text = format!(
                "quality  model up to date (same config, seed and input); held-out AUC {:.4}; not retrained\n{}",
                r.holdout_auc,
                r.render_reference()
            );
            (r, true, text)
        }
        None => {
            let alpha = ctx.recipe.quality_filter.as_ref().map_or(9.0, |f| f.alpha);
            let r = train(cfg, ctx.seed(), &docs, &out, alpha)?;
            let text = r.render();
            (r, false, text)
        }
    };
    Ok(Outcome {
        report: StepReport::Quality(report),
        complete: true,
        up_to_date,
        text,
        points_to: Some(format!("model    {out}/{MODEL_FILE}, {REPORT_FILE}")),
    })
}

impl TrainReport {
    /// What training measured, in two lines.
    pub fn render(&self) -> String {
        let tuned = match (self.tuned_alpha, self.tuned_ks) {
            (Some(a), Some(d)) => format!("; tuned Pareto alpha {a:.2} (KS distance {d:.3})"),
            _ => String::new(),
        };
        format!(
            "quality  trained on {} documents ({} positive, {} negative): held-out AUC {:.4}, accuracy {:.4}, log loss {:.4} ({:.2} s)\n\
             quality  {} iterations, parameters of iteration {} kept (best held-out loss){}{tuned}\n",
            self.train_docs + self.holdout_docs,
            self.positives,
            self.negatives,
            self.holdout_auc,
            self.holdout_accuracy,
            self.holdout_log_loss,
            self.seconds,
            self.iterations,
            self.best_iteration,
            if self.spilled { "; the design spilled to disk" } else { "" }
        ) + &self.render_reference()
    }

    /// One line per reference set: documents, scores, expected keep rate.
    pub fn render_reference(&self) -> String {
        self.reference
            .iter()
            .map(|r| {
                format!(
                    "quality  reference {}: {} documents, mean score {:.3}, median {:.3}: the Pareto rule (alpha {}) keeps {:.1}% of them\n",
                    r.name,
                    r.docs,
                    r.mean_score,
                    r.median_score,
                    r.alpha,
                    100.0 * r.keep_rate
                )
            })
            .collect()
    }
}

/// `[[quality.reference]]`: a set of documents, any format `ingest` reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceSet {
    pub name: String,
    pub paths: Vec<String>,
    /// Text files longer than this are split into documents at paragraph breaks (0: whole).
    #[serde(default)]
    pub split_bytes: u64,
}

/// How the classifier treats a reference set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReferenceKeep {
    pub name: String,
    pub docs: usize,
    pub mean_score: f64,
    pub median_score: f64,
    /// The share GPT-3's rule keeps in expectation, `mean((2 - score)^-alpha)` (a document is
    /// kept when a Lomax(alpha) draw exceeds 1 - score), at `alpha`.
    pub keep_rate: f64,
    pub alpha: f64,
}

/// `[quality]` in a recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityConfig {
    /// The step whose documents it trains on (a directory under `run.out`).
    #[serde(default = "default_input")]
    pub input: String,
    /// Sources whose documents are the positives (GPT-3: WebText, Wikipedia, books).
    pub positives: Vec<String>,
    /// Sources whose documents are the negatives (GPT-3: unfiltered Common Crawl).
    pub negatives: Vec<String>,
    #[serde(default = "default_num_features")]
    pub num_features: u32,
    #[serde(default)]
    pub binary: bool,
    /// Word n-grams up to this order are features too (2: bigrams, as Spark's `NGram(n=2)`
    /// hashed into the same `num_features` space as the tokens; 1: tokens only).
    #[serde(default = "default_ngrams", skip_serializing_if = "is_default_ngrams")]
    pub ngrams: u32,
    /// L2 strength (sum-of-losses scale, as linfa-logistic's `alpha`).
    #[serde(default = "default_l2")]
    pub l2: f64,
    /// Fraction of documents held out for the metrics.
    #[serde(default = "default_holdout")]
    pub holdout: f64,
    /// Weight classes so that both count equally.
    #[serde(default = "default_true")]
    pub balance: bool,
    #[serde(default = "default_max_iters")]
    pub max_iters: usize,
    /// At most this many documents are used (a seeded sample beyond it).
    #[serde(default = "default_max_docs")]
    pub max_docs: usize,
    /// Stop after this many iterations without a better held-out loss (0: never).
    #[serde(default = "default_patience")]
    pub patience: usize,
    /// Feature entries held in memory before the design spills to disk, in MiB.
    #[serde(default = "default_memory_mb")]
    pub memory_mb: usize,
    /// Where the design spills (default: the model's directory when local, else the system
    /// temporary directory).
    #[serde(default)]
    pub spill_dir: Option<String>,
    /// A positive source whose held-out scores the kept negatives should match: training then
    /// tunes the Pareto alpha for it, as GPT-3 did with WebText (`quality_filter.mode = "tuned"`).
    #[serde(default)]
    pub tune_reference: Option<String>,
    /// Text the classifier never trained on, that a good filter should keep (`[[quality.reference]]`:
    /// news, Wikipedia, your own curated set): its scores and expected keep rate are reported
    /// beside the held-out AUC, so a classifier that only learned its own positives shows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reference: Vec<ReferenceSet>,
}

fn default_ngrams() -> u32 {
    1
}
fn is_default_ngrams(n: &u32) -> bool {
    *n == 1
}
fn default_num_features() -> u32 {
    DEFAULT_NUM_FEATURES
}
fn default_l2() -> f64 {
    1.0
}
fn default_holdout() -> f64 {
    0.1
}
fn default_true() -> bool {
    true
}
fn default_max_iters() -> usize {
    200
}
fn default_max_docs() -> usize {
    10_000_000
}
fn default_patience() -> usize {
    10
}
fn default_memory_mb() -> usize {
    2048
}

/// One iteration of the solver, as the report records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainStep {
    pub iteration: usize,
    /// The training objective (weighted loss + L2 term).
    #[serde(deserialize_with = "f64_or_nan")]
    pub objective: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub holdout_log_loss: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub holdout_auc: f64,
    /// Since training started (reading and features included).
    pub seconds: f64,
}

/// A figure JSON wrote as `null` (serde_json's NaN: an AUC over one class) reads back as NaN.
fn f64_or_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// What training measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainReport {
    /// xxh3 of the config, the seed and the input shards' checksums: a report with the same
    /// fingerprint describes the model training would produce now.
    pub fingerprint: String,
    pub train_docs: usize,
    pub holdout_docs: usize,
    pub positives: usize,
    pub negatives: usize,
    pub iterations: usize,
    #[serde(deserialize_with = "f64_or_nan")]
    pub holdout_accuracy: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub holdout_auc: f64,
    #[serde(deserialize_with = "f64_or_nan")]
    pub holdout_log_loss: f64,
    /// Held-out score histogram per class, 10 bins over [0, 1].
    pub score_histogram: BTreeMap<String, Vec<usize>>,
    /// The terms of the training documents with the largest and smallest weights.
    pub top_positive_terms: Vec<(String, f32)>,
    pub top_negative_terms: Vec<(String, f32)>,
    /// The iteration whose parameters were kept (best held-out loss).
    pub best_iteration: usize,
    /// Held-out metrics after every iteration.
    pub history: Vec<TrainStep>,
    /// Whether the design spilled to disk, and its stored entries.
    pub spilled: bool,
    pub nnz: u64,
    /// With `tune_reference`: the Pareto alpha whose kept negatives best match the reference's
    /// held-out scores, and the Kolmogorov-Smirnov distance it leaves.
    pub tuned_alpha: Option<f64>,
    pub tuned_ks: Option<f64>,
    /// `[[quality.reference]]` sets: scores and expected keep rates.
    #[serde(default)]
    pub reference: Vec<ReferenceKeep>,
    /// Seconds reading and featurizing, and in total.
    pub feature_seconds: f64,
    pub seconds: f64,
}

/// The fingerprint of training `cfg` with `seed` on the ingest output `m`.
fn fingerprint(cfg: &QualityConfig, seed: u64, m: &Manifest) -> String {
    let inputs: Vec<&str> = m.outputs.iter().map(|f| f.xxh3.as_str()).collect();
    let doc = serde_json::json!({ "config": cfg, "seed": seed, "inputs": inputs });
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(doc.to_string().as_bytes()))
}

impl GlobalReport for TrainReport {
    fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// Files of a trained classifier in its directory: the model, then the report (the marker).
pub const MODEL_FILE: &str = "model.gqm";
/// The training report, written last.
pub const REPORT_FILE: &str = "train_report.json";

/// The global step of training `cfg` with `seed` on the documents in `docs_dir`, into `out`.
fn global(cfg: &QualityConfig, seed: u64, docs_dir: &Loc, out: &Loc) -> Result<Global<'static>, StageError> {
    let m = Manifest::read(&docs_dir.join(crate::core::stage::MANIFEST))?;
    Ok(Global { dir: out.clone(), fingerprint: fingerprint(cfg, seed, &m), report: REPORT_FILE, files: &[MODEL_FILE] })
}

/// The report of a model in `out` trained with this config, seed and input, if there is one
/// whose files are intact (and the model names the same training): training would only
/// reproduce it.
pub fn completed(cfg: &QualityConfig, seed: u64, docs_dir: &Loc, out: &Loc) -> Result<Option<TrainReport>, StageError> {
    let report = global(cfg, seed, docs_dir, out)?.completed::<TrainReport>();
    Ok(report.filter(|r| {
        QualityModel::load(&out.join(MODEL_FILE)).is_ok_and(|model| {
            model.header.training.get("fingerprint").and_then(|f| f.as_str()) == Some(&r.fingerprint)
        })
    }))
}

/// Scores each `[[quality.reference]]` set (ingested into `{out}/reference/NAME`) with `model`.
fn reference_keep(
    cfg: &QualityConfig,
    model: &super::model::QualityModel,
    out: &Loc,
    alpha: f64,
) -> Result<Vec<ReferenceKeep>, StageError> {
    let mut keeps = Vec::new();
    for r in &cfg.reference {
        let dir = out.join("reference").join(&r.name);
        let files = crate::steps::ingest::ingest_set(&r.name, &r.paths, r.split_bytes, &dir)?;
        let mut scores = Vec::new();
        super::score::score_files(model, &files, "text", |_, s| scores.push(s))?;
        if scores.is_empty() {
            return Err(StageError::Recipe(format!(
                "quality.reference {}: no documents in {} (see {dir}'s ledger)",
                r.name,
                r.paths.join(", ")
            )));
        }
        let n = scores.len() as f64;
        let keep_rate = scores.iter().map(|&s| (2.0 - s).powf(-alpha)).sum::<f64>() / n;
        let mut sorted = scores.clone();
        sorted.sort_by(f64::total_cmp);
        keeps.push(ReferenceKeep {
            name: r.name.clone(),
            docs: scores.len(),
            mean_score: scores.iter().sum::<f64>() / n,
            median_score: sorted[sorted.len() / 2],
            keep_rate,
            alpha,
        });
    }
    Ok(keeps)
}

/// Trains the classifier on the documents of the `ingest` output in `docs_dir`; writes
/// `model.gqm` and `train_report.json` into `out`. `alpha` is the Pareto alpha the reference
/// sets' keep rates are given at.
pub fn train(cfg: &QualityConfig, seed: u64, docs_dir: &Loc, out: &Loc, alpha: f64) -> Result<TrainReport, StageError> {
    let start = Instant::now();
    let m = Manifest::read(&docs_dir.join(crate::core::stage::MANIFEST))?;
    let label_of = |s: &str| {
        if cfg.positives.iter().any(|p| p == s) {
            Some(true)
        } else if cfg.negatives.iter().any(|n| n == s) {
            Some(false)
        } else {
            None
        }
    };
    let sample_draw = |id: &str| DocRng::new(seed, "quality/sample", id).next_u64();
    // Pass 1, ids and sources only: the sample's cutoff draw when there are too many documents.
    let mut draws: Vec<u64> = Vec::new();
    for f in &m.outputs {
        for batch in DocReader::open(&docs_dir.join(&f.path))?.batches(Some(&["id", "source"]), 65536)? {
            let b = batch?;
            let (id, src) = (str_col(&b, "id")?, str_col(&b, "source")?);
            draws.extend(
                (0..b.num_rows()).filter(|&i| label_of(src.value(i)).is_some()).map(|i| sample_draw(id.value(i))),
            );
        }
    }
    let cutoff = if draws.len() > cfg.max_docs && cfg.max_docs > 0 {
        *draws.select_nth_unstable(cfg.max_docs - 1).1
    } else {
        u64::MAX
    };
    drop(draws);

    // Pass 2: features of the sampled documents, straight into the designs.
    let spill_dir = match (&cfg.spill_dir, out.as_local()) {
        (Some(d), _) => std::path::PathBuf::from(d),
        (None, Some(p)) => p.to_path_buf(),
        (None, None) => std::env::temp_dir(),
    };
    let limit = cfg.memory_mb.saturating_mul(1 << 20);
    let (mut xt, mut xh) = (RowsBuilder::spilling(&spill_dir, limit), RowsBuilder::spilling(&spill_dir, limit / 8 + 1));
    let (mut yt, mut yh, mut src_h) = (Vec::new(), Vec::new(), Vec::<u32>::new());
    let mut source_names: Vec<String> = Vec::new();
    let (mut pos, mut neg) = (0usize, 0usize);
    let spill_err = |e: std::io::Error| StageError::Input {
        at: shards::At::file(spill_dir.display().to_string()),
        msg: format!("cannot write the feature spill file: {e}\nhint: set quality.spill_dir or quality.memory_mb"),
    };
    for f in &m.outputs {
        for batch in DocReader::open(&docs_dir.join(&f.path))?.batches(Some(&["id", "source", "text"]), 8192)? {
            let b = batch?;
            let (id, src, text) = (str_col(&b, "id")?, str_col(&b, "source")?, str_col(&b, "text")?);
            let chosen: Vec<(usize, bool)> = (0..b.num_rows())
                .filter_map(|i| label_of(src.value(i)).map(|l| (i, l)))
                .filter(|&(i, _)| sample_draw(id.value(i)) <= cutoff)
                .collect();
            let feats: Vec<Vec<(u32, f32)>> = chosen
                .par_iter()
                .map(|&(i, _)| features(text.value(i), cfg.num_features, cfg.binary, cfg.ngrams))
                .collect();
            for (&(i, label), f) in chosen.iter().zip(&feats) {
                if label {
                    pos += 1;
                } else {
                    neg += 1;
                }
                if DocRng::new(seed, "quality/holdout", id.value(i)).next_f64() < cfg.holdout {
                    xh.push(f).map_err(spill_err)?;
                    yh.push(label);
                    let s = src.value(i);
                    let k = match source_names.iter().position(|n| n == s) {
                        Some(k) => k,
                        None => {
                            source_names.push(s.to_string());
                            source_names.len() - 1
                        }
                    };
                    src_h.push(k as u32);
                } else {
                    xt.push(f).map_err(spill_err)?;
                    yt.push(label);
                }
            }
        }
    }
    if pos == 0 || neg == 0 {
        return Err(StageError::Recipe(format!(
            "quality training needs both classes: {pos} positive and {neg} negative documents found\nhint: check [quality] positives and negatives against the ingest sources"
        )));
    }
    let (xt, xh) = (xt.finish().map_err(spill_err)?, xh.finish().map_err(spill_err)?);
    let feature_seconds = start.elapsed().as_secs_f64();
    let (tp, tn) = (yt.iter().filter(|&&v| v).count(), yt.iter().filter(|&&v| !v).count());
    let pos_weight = if cfg.balance && tp > 0 { tn as f64 / tp as f64 } else { 1.0 };
    let lr = LrConfig { alpha: cfg.l2, max_iters: cfg.max_iters, pos_weight, ..LrConfig::default() };

    // Early stopping on the class-weighted held-out loss; the history records plain metrics.
    let mut history: Vec<TrainStep> = Vec::new();
    let mut best: Option<(f64, usize, Vec<f64>)> = None;
    let dim = cfg.num_features as usize;
    let fitted = fit_monitored(&xt, &yt, dim, &lr, |it, p, objective| {
        let z = logits(&xh, &p[..dim], p[dim]);
        let (mut wl, mut wsum) = (0.0, 0.0);
        for (z, &y) in z.iter().zip(&yh) {
            let c = if y { pos_weight } else { 1.0 };
            wl += c * log_loss_of(*z, y);
            wsum += c;
        }
        let weighted = if wsum > 0.0 { wl / wsum } else { 0.0 };
        let plain = z.iter().zip(&yh).map(|(z, &y)| log_loss_of(*z, y)).sum::<f64>() / z.len().max(1) as f64;
        history.push(TrainStep {
            iteration: it,
            objective,
            holdout_log_loss: plain,
            holdout_auc: if yh.is_empty() { f64::NAN } else { roc_auc(&z, &yh) },
            seconds: start.elapsed().as_secs_f64(),
        });
        if best.as_ref().is_none_or(|b| weighted < b.0) {
            best = Some((weighted, it, p.to_vec()));
        }
        let since = it - best.as_ref().map_or(it, |b| b.1);
        yh.is_empty() || (cfg.patience > 0 && since >= cfg.patience)
    });
    let (weights, bias, best_iteration) = match best {
        Some((_, it, mut p)) if !yh.is_empty() => {
            let b = p[dim];
            p.truncate(dim);
            (p, b, it)
        }
        _ => (fitted.weights, fitted.bias, fitted.iterations),
    };

    let z = logits(&xh, &weights, bias);
    let p: Vec<f64> = z.iter().map(|z| 1.0 / (1.0 + (-z).exp())).collect();
    let n = p.len().max(1) as f64;
    let accuracy = p.iter().zip(&yh).filter(|(p, y)| (**p >= 0.5) == **y).count() as f64 / n;
    let log_loss = z.iter().zip(&yh).map(|(z, &y)| log_loss_of(*z, y)).sum::<f64>() / n;
    let auc = roc_auc(&p, &yh);
    let mut hist: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (p, y) in p.iter().zip(&yh) {
        let h = hist.entry(if *y { "positive" } else { "negative" }.to_string()).or_insert_with(|| vec![0; 10]);
        h[((p * 10.0) as usize).min(9)] += 1;
    }
    let (tuned_alpha, tuned_ks) = match &cfg.tune_reference {
        None => (None, None),
        Some(r) => {
            let reference: Vec<f64> = p
                .iter()
                .zip(&src_h)
                .filter(|(_, k)| source_names.get(**k as usize) == Some(r))
                .map(|(p, _)| *p)
                .collect();
            let target: Vec<f64> = p.iter().zip(&yh).filter(|(_, y)| !**y).map(|(p, _)| *p).collect();
            if reference.is_empty() || target.is_empty() {
                return Err(StageError::Recipe(format!(
                    "quality.tune_reference = {r:?}: the held-out split has {} documents of it and {} negatives\nhint: name a positive source with documents, or raise quality.holdout",
                    reference.len(),
                    target.len()
                )));
            }
            let (a, d) = tune_alpha(&reference, &target);
            (Some(a), Some(d))
        }
    };
    let mut model = QualityModel::zeros(cfg.num_features, cfg.binary, cfg.ngrams);
    model.weights = weights.iter().map(|&w| w as f32).collect();
    model.header.bias = bias as f32;
    // The strongest features, named by a term of the training text that hashes to them.
    let mut by_weight: Vec<u32> = (0..cfg.num_features).collect();
    by_weight.sort_by(|&a, &b| model.weights[b as usize].total_cmp(&model.weights[a as usize]).then(a.cmp(&b)));
    let wanted: Vec<u32> = by_weight.iter().take(20).chain(by_weight.iter().rev().take(20)).copied().collect();
    let names = name_features(docs_dir, &m, &label_of, &wanted, cfg.num_features, cfg.ngrams)?;
    let named = |idx: &[u32]| -> Vec<(String, f32)> {
        idx.iter().filter_map(|i| names.get(i).map(|t| (t.clone(), model.weights[*i as usize]))).collect()
    };
    let top_positive_terms = named(&by_weight[..20.min(by_weight.len())]);
    let top_negative_terms = named(&by_weight.iter().rev().take(20).copied().collect::<Vec<_>>());
    let report = TrainReport {
        fingerprint: fingerprint(cfg, seed, &m),
        train_docs: yt.len(),
        holdout_docs: yh.len(),
        positives: pos,
        negatives: neg,
        iterations: fitted.iterations,
        holdout_accuracy: accuracy,
        holdout_auc: auc,
        holdout_log_loss: log_loss,
        score_histogram: hist,
        top_positive_terms,
        top_negative_terms,
        best_iteration,
        history,
        spilled: xt.spilled(),
        nnz: xt.nnz() + xh.nnz(),
        tuned_alpha,
        tuned_ks,
        reference: reference_keep(cfg, &model, out, alpha)?,
        feature_seconds,
        seconds: start.elapsed().as_secs_f64(),
    };
    model.header.training = serde_json::json!({
        "config": cfg, "seed": seed, "docs": pos + neg, "iterations": fitted.iterations,
        "best_iteration": best_iteration, "loss": fitted.loss, "fingerprint": report.fingerprint,
    });
    let mut metrics =
        serde_json::json!({ "holdout_accuracy": accuracy, "holdout_auc": auc, "holdout_log_loss": log_loss });
    if let (Some(a), Some(d)) = (tuned_alpha, tuned_ks) {
        metrics["tuned_alpha"] = a.into();
        metrics["tuned_ks"] = d.into();
    }
    model.header.metrics = metrics;
    model.save(&out.join(MODEL_FILE))?;
    global(cfg, seed, docs_dir, out)?.finish(&report)?;
    Ok(report)
}

/// A term for each of the `wanted` feature indices: the most frequent term (token or n-gram) hashing there
/// in the labeled documents (the first 20,000 in shard order; ties go to the smaller term).
fn name_features(
    docs_dir: &Loc,
    m: &Manifest,
    label_of: &dyn Fn(&str) -> Option<bool>,
    wanted: &[u32],
    num_features: u32,
    ngrams: u32,
) -> Result<BTreeMap<u32, String>, StageError> {
    let want: std::collections::BTreeSet<u32> = wanted.iter().copied().collect();
    let mut counts: BTreeMap<u32, BTreeMap<Vec<u8>, u64>> = BTreeMap::new();
    let mut read = 0usize;
    'files: for f in &m.outputs {
        for batch in DocReader::open(&docs_dir.join(&f.path))?.batches(Some(&["source", "text"]), 1024)? {
            let b = batch?;
            let (src, text) = (str_col(&b, "source")?, str_col(&b, "text")?);
            for i in 0..b.num_rows() {
                if label_of(src.value(i)).is_none() {
                    continue;
                }
                crate::text::features::for_each_term(text.value(i), ngrams, |t| {
                    let idx = crate::text::features::bytes_index(t, num_features);
                    if want.contains(&idx) {
                        *counts.entry(idx).or_default().entry(t.to_vec()).or_default() += 1;
                    }
                });
                read += 1;
                if read >= 20_000 {
                    break 'files;
                }
            }
        }
    }
    Ok(counts
        .into_iter()
        .filter_map(|(idx, terms)| {
            let best = terms.into_iter().max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))?;
            Some((idx, String::from_utf8_lossy(&best.0).into_owned()))
        })
        .collect())
}

/// -log P(y | logit z), computed stably.
fn log_loss_of(z: f64, y: bool) -> f64 {
    let m = if y { -z } else { z };
    // softplus(m) = log(1 + e^m)
    if m > 0.0 { m + (-m).exp().ln_1p() } else { m.exp().ln_1p() }
}
