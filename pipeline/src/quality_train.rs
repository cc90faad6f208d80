//! `grist quality train`: the GPT-3 quality classifier. Documents of the recipe's positive
//! sources (WebText, books, Wikipedia, ...) against its negative sources (raw Common Crawl),
//! read from the `ingest` output; Spark-exact hashed features; L2 logistic regression (see
//! `logistic`), classes balanced by weight; a held-out split drawn per document id; the model
//! file (`quality::QualityModel`) and a JSON report with held-out accuracy, ROC AUC, log loss,
//! per-class score histograms and the strongest terms. Training is one global step, not
//! sliced: it needs every document's features at once (capped by `max_docs`).

use std::collections::BTreeMap;
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use shards::{DocReader, Loc, Manifest, str_col};

use crate::error::StageError;
use crate::features::{DEFAULT_NUM_FEATURES, features};
use crate::logistic::{LrConfig, SparseRows, fit, logits, roc_auc};
use crate::quality::QualityModel;
use crate::rng::DocRng;

/// `[quality]` in a recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityConfig {
    /// Sources whose documents are the positives (GPT-3: WebText, Wikipedia, books).
    pub positives: Vec<String>,
    /// Sources whose documents are the negatives (GPT-3: unfiltered Common Crawl).
    pub negatives: Vec<String>,
    #[serde(default = "default_num_features")]
    pub num_features: u32,
    #[serde(default)]
    pub binary: bool,
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
    /// At most this many documents are used (a seeded sample beyond it), bounding memory.
    #[serde(default = "default_max_docs")]
    pub max_docs: usize,
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
    2_000_000
}

/// What training measured.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub train_docs: usize,
    pub holdout_docs: usize,
    pub positives: usize,
    pub negatives: usize,
    pub iterations: usize,
    pub holdout_accuracy: f64,
    pub holdout_auc: f64,
    pub holdout_log_loss: f64,
    /// Held-out score histogram per class, 10 bins over [0, 1].
    pub score_histogram: BTreeMap<String, Vec<usize>>,
    /// The terms of the training documents with the largest and smallest weights.
    pub top_positive_terms: Vec<(String, f32)>,
    pub top_negative_terms: Vec<(String, f32)>,
    pub seconds: f64,
}

/// Trains on the documents of the `ingest` output in `docs_dir`; writes `model.gqm` and
/// `train_report.json` into `out`.
pub fn train(cfg: &QualityConfig, seed: u64, docs_dir: &Loc, out: &Loc) -> Result<TrainReport, StageError> {
    let start = Instant::now();
    let m = Manifest::read(&docs_dir.join(crate::stage::MANIFEST))?;
    let label_of = |s: &str| {
        if cfg.positives.iter().any(|p| p == s) {
            Some(true)
        } else if cfg.negatives.iter().any(|n| n == s) {
            Some(false)
        } else {
            None
        }
    };
    // (id, text, label), in shard order.
    let mut docs: Vec<(String, String, bool)> = Vec::new();
    for f in &m.outputs {
        for batch in DocReader::open(&docs_dir.join(&f.path))?.batches(Some(&["id", "source", "text"]), 8192)? {
            let b = batch?;
            let (id, src, text) = (str_col(&b, "id")?, str_col(&b, "source")?, str_col(&b, "text")?);
            for i in 0..b.num_rows() {
                if let Some(label) = label_of(src.value(i)) {
                    docs.push((id.value(i).to_string(), text.value(i).to_string(), label));
                }
            }
        }
    }
    if docs.len() > cfg.max_docs {
        // A seeded sample: keep the documents with the smallest draws.
        docs.sort_by_key(|d| DocRng::new(seed, "quality/sample", &d.0).next_u64());
        docs.truncate(cfg.max_docs);
        docs.sort_by(|a, b| a.0.cmp(&b.0));
    }
    let (pos, neg) = (docs.iter().filter(|d| d.2).count(), docs.iter().filter(|d| !d.2).count());
    if pos == 0 || neg == 0 {
        return Err(StageError::Recipe(format!(
            "quality training needs both classes: {pos} positive and {neg} negative documents found\nhint: check [quality] positives and negatives against the ingest sources"
        )));
    }
    let feats: Vec<Vec<(u32, f32)>> = docs.par_iter().map(|d| features(&d.1, cfg.num_features, cfg.binary)).collect();
    let held: Vec<bool> =
        docs.iter().map(|d| DocRng::new(seed, "quality/holdout", &d.0).next_f64() < cfg.holdout).collect();
    let (mut xt, mut yt, mut xh, mut yh) = (SparseRows::new(), Vec::new(), SparseRows::new(), Vec::new());
    for ((f, d), h) in feats.iter().zip(&docs).zip(&held) {
        if *h {
            xh.push(f);
            yh.push(d.2);
        } else {
            xt.push(f);
            yt.push(d.2);
        }
    }
    let (tp, tn) = (yt.iter().filter(|&&v| v).count(), yt.iter().filter(|&&v| !v).count());
    let lr = LrConfig {
        alpha: cfg.l2,
        max_iters: cfg.max_iters,
        pos_weight: if cfg.balance && tp > 0 { tn as f64 / tp as f64 } else { 1.0 },
        ..LrConfig::default()
    };
    let fitted = fit(&xt, &yt, cfg.num_features as usize, &lr);

    let z = logits(&xh, &fitted.weights, fitted.bias);
    let p: Vec<f64> = z.iter().map(|z| 1.0 / (1.0 + (-z).exp())).collect();
    let n = p.len().max(1) as f64;
    let accuracy = p.iter().zip(&yh).filter(|(p, y)| (**p >= 0.5) == **y).count() as f64 / n;
    let log_loss = p.iter().zip(&yh).map(|(p, y)| -(if *y { *p } else { 1.0 - *p }).max(1e-15).ln()).sum::<f64>() / n;
    let auc = roc_auc(&p, &yh);
    let mut hist: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (p, y) in p.iter().zip(&yh) {
        let h = hist.entry(if *y { "positive" } else { "negative" }.to_string()).or_insert_with(|| vec![0; 10]);
        h[((p * 10.0) as usize).min(9)] += 1;
    }
    let mut model = QualityModel::zeros(cfg.num_features, cfg.binary);
    model.weights = fitted.weights.iter().map(|&w| w as f32).collect();
    model.header.bias = fitted.bias as f32;
    // Strongest terms, named by a term of the training text that hashes to them.
    let mut term_of: BTreeMap<u32, String> = BTreeMap::new();
    for d in docs.iter().take(20_000) {
        for t in crate::features::spark_tokenize(&d.1) {
            term_of.entry(crate::features::term_index(&t, cfg.num_features)).or_insert(t);
        }
    }
    let mut ranked: Vec<(String, f32)> = term_of.iter().map(|(i, t)| (t.clone(), model.weights[*i as usize])).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let top_positive_terms = ranked.iter().take(20).cloned().collect();
    let top_negative_terms = ranked.iter().rev().take(20).cloned().collect();
    let report = TrainReport {
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
        seconds: start.elapsed().as_secs_f64(),
    };
    model.header.training = serde_json::json!({ "config": cfg, "seed": seed, "docs": docs.len(), "iterations": fitted.iterations, "loss": fitted.loss });
    model.header.metrics =
        serde_json::json!({ "holdout_accuracy": accuracy, "holdout_auc": auc, "holdout_log_loss": log_loss });
    model.save(&out.join("model.gqm"))?;
    let mut json = serde_json::to_string_pretty(&report).unwrap_or_default();
    json.push('\n');
    out.join("train_report.json").write_atomic(json.as_bytes())?;
    Ok(report)
}
