//! What `grist inspect` shows beyond the per-source summary, typed: a stage's own figures
//! ([`details`]: the quality filter's score deciles, the heuristic filters' rules, dedup's cluster sizes and largest
//! clusters, decontamination hits per benchmark) and a whole run at a glance ([`overview`]:
//! every step's accounting in registry order, the planned and realized mixture, the training).
//! Printing is the caller's.

use std::collections::BTreeMap;

use serde::Serialize;
use shards::arrow::array::{Array, Float64Array, UInt64Array};
use shards::metrics::{self, MetricsLine};
use shards::parquet_io::ParquetSource;
use shards::{At, DocReader, Loc, Manifest, str_col};

use crate::core::error::StageError;
use crate::core::stage::MANIFEST;
use crate::steps::{Produces, STEPS, blend, decontaminate, dedup, filters, quality, tokenize};

/// One score decile of the quality filter.
#[derive(Debug, Clone, Serialize)]
pub struct Decile {
    pub score_from: f64,
    pub docs: u64,
    pub kept: u64,
    /// What the Pareto law expects kept for these documents' scores.
    pub expected_kept: f64,
}

/// How many duplicate clusters have a size (the representative with its removed copies).
#[derive(Debug, Clone, Serialize)]
pub struct ClusterSize {
    pub size: usize,
    pub clusters: u64,
}

/// A removed copy in a duplicate cluster.
#[derive(Debug, Clone, Serialize)]
pub struct RemovedCopy {
    pub id: String,
    pub reason: String,
    /// Verified Jaccard similarity to the representative (absent for exact duplicates).
    pub jaccard: Option<f64>,
}

/// One of the largest duplicate clusters, with the start of its representative's text.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterView {
    pub cluster_id: u64,
    pub size: usize,
    pub representative: String,
    pub text: String,
    pub removed: Vec<RemovedCopy>,
}

/// A stage's own figures; the fields of other stages are empty.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Details {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub score_deciles: Vec<Decile>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cluster_sizes: Vec<ClusterSize>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub largest_clusters: Vec<ClusterView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gram_hits_by_benchmark: Option<BTreeMap<String, u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub documents_cut: Option<u64>,
    /// The heuristic filters: removals per rule and the measured values beside thresholds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filters: Option<filters::FilterReport>,
}

/// The figures of the stage output in `dir` that its step has beyond the summary.
pub fn details(dir: &Loc) -> Result<Details, StageError> {
    let m = Manifest::read(&dir.join(MANIFEST))?;
    let mut out = Details::default();
    match m.stage.as_str() {
        s if s == quality::filter::STEP.name => {
            let k = quality::filter::keep_report(&m);
            out.alpha = k.alpha;
            out.score_deciles = k
                .deciles()
                .into_iter()
                .enumerate()
                .map(|(bin, (docs, kept, expected_kept))| Decile {
                    score_from: bin as f64 / 10.0,
                    docs,
                    kept,
                    expected_kept,
                })
                .collect();
        }
        s if s == dedup::FILTER_STEP.name => {
            // The clusters step's removals sit beside this output, under the same run.
            let d = dir.to_string();
            let base = d.trim_end_matches('/').rsplit_once('/').map_or(".", |(b, _)| b);
            let removals = Loc::parse(base)?.join(dedup::CLUSTERS_STEP.name).join(dedup::REMOVALS);
            if removals.exists()? {
                clusters(dir, &removals, &mut out)?;
            }
        }
        s if s == filters::STEP.name => out.filters = Some(filters::FilterReport::read(&m)?),
        s if s == decontaminate::STEP.name => {
            let r = decontaminate::CleanReport::read(&m)?;
            out.gram_hits_by_benchmark = Some(r.gram_hits);
            out.documents_cut = Some(r.documents_cut);
        }
        _ => {}
    }
    Ok(out)
}

/// Cluster sizes and the three largest clusters from the removals table.
fn clusters(dir: &Loc, removals: &Loc, out: &mut Details) -> Result<(), StageError> {
    let (src, _) = ParquetSource::open_any(removals)?;
    // cluster id -> (representative, removed copies)
    let mut by_cluster: BTreeMap<u64, (String, Vec<RemovedCopy>)> = BTreeMap::new();
    for b in src.batches(None, 65536)? {
        let b = b?;
        let (id, reason, rep) = (str_col(&b, "id")?, str_col(&b, "reason")?, str_col(&b, "duplicate_of")?);
        let missing = |c: &str| StageError::Input {
            at: At::file(removals.to_string()),
            msg: format!("column {c:?} missing or of another type"),
        };
        let cid = b
            .column_by_name("cluster_id")
            .and_then(|c| c.as_any().downcast_ref::<UInt64Array>().cloned())
            .ok_or_else(|| missing("cluster_id"))?;
        let jac = b
            .column_by_name("jaccard")
            .and_then(|c| c.as_any().downcast_ref::<Float64Array>().cloned())
            .ok_or_else(|| missing("jaccard"))?;
        for i in 0..b.num_rows() {
            let e = by_cluster.entry(cid.value(i)).or_insert_with(|| (rep.value(i).to_string(), Vec::new()));
            e.1.push(RemovedCopy {
                id: id.value(i).to_string(),
                reason: reason.value(i).to_string(),
                jaccard: (!jac.is_null(i)).then(|| jac.value(i)),
            });
        }
    }
    let mut sizes: BTreeMap<usize, u64> = BTreeMap::new();
    for (_, members) in by_cluster.values() {
        *sizes.entry(members.len() + 1).or_default() += 1;
    }
    out.cluster_sizes = sizes.into_iter().map(|(size, clusters)| ClusterSize { size, clusters }).collect();
    let mut largest: Vec<(u64, (String, Vec<RemovedCopy>))> = by_cluster.into_iter().collect();
    largest.sort_by(|a, b| b.1.1.len().cmp(&a.1.1.len()).then(a.0.cmp(&b.0)));
    largest.truncate(3);
    let mut texts: BTreeMap<String, String> =
        largest.iter().map(|(_, (rep, _))| (rep.clone(), String::new())).collect();
    let m = Manifest::read(&dir.join(MANIFEST))?;
    'files: for f in &m.outputs {
        for b in DocReader::open(&dir.join(&f.path))?.batches(Some(&["id", "text"]), 8192)? {
            let b = b?;
            let (ids, text) = (str_col(&b, "id")?, str_col(&b, "text")?);
            for i in 0..b.num_rows() {
                if let Some(t) = texts.get_mut(ids.value(i)) {
                    *t = text.value(i).chars().take(300).collect();
                }
            }
            if texts.values().all(|t| !t.is_empty()) {
                break 'files;
            }
        }
    }
    out.largest_clusters = largest
        .into_iter()
        .map(|(cluster_id, (representative, removed))| ClusterView {
            cluster_id,
            size: removed.len() + 1,
            text: texts.get(&representative).cloned().unwrap_or_default(),
            representative,
            removed,
        })
        .collect();
    Ok(())
}

/// One step's accounting in a run.
#[derive(Debug, Clone, Serialize)]
pub struct StageRow {
    pub stage: String,
    #[serde(rename = "in")]
    pub docs_in: u64,
    pub kept: u64,
    pub removed: u64,
    /// Training tokens (tokenize: the train split; blend: the mixture).
    pub tokens: Option<u64>,
}

/// The training of a run, from its metrics.
#[derive(Debug, Clone, Serialize)]
pub struct Training {
    pub steps: u64,
    pub tokens: u64,
    pub first_loss: Option<f32>,
    pub last_loss: Option<f32>,
    pub val_loss: Option<f32>,
    pub val_by_source: BTreeMap<String, Option<f32>>,
    /// About ten (tokens, loss) points of the training curve.
    pub curve: Vec<(u64, Option<f32>)>,
}

/// A whole run at a glance.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    pub run: String,
    pub stages: Vec<StageRow>,
    pub mixture: Vec<blend::MixtureRow>,
    pub training: Option<Training>,
}

/// Every step of the run in `run` that has a stage manifest, the mixture and the training.
pub fn overview(run: &Loc) -> Result<Overview, StageError> {
    let mut stages = Vec::new();
    for st in STEPS.iter().filter(|s| s.produces != Produces::Files) {
        let Ok(m) = Manifest::read(&run.join(st.name).join(MANIFEST)) else { continue };
        let tokens = match st.produces {
            Produces::Tokens => Some(tokenize::TokenizeReport::read(&m)?.tokens_train),
            Produces::Mixture => Some(m.side.iter().map(|f| f.rows).sum::<u64>()),
            _ => None,
        };
        let a = m.accounting;
        stages.push(StageRow {
            stage: st.name.to_string(),
            docs_in: a.docs_in,
            kept: a.docs_out,
            removed: a.docs_ledger,
            tokens,
        });
    }
    let mixture = match Manifest::read(&run.join(blend::STEP.name).join(MANIFEST)) {
        Ok(bm) => blend::MixtureReport::read(&bm)?.sources,
        Err(_) => Vec::new(),
    };
    let path = run.join(crate::steps::TRAIN.name).join("metrics.jsonl");
    let training = if path.exists()? {
        let text = String::from_utf8_lossy(&path.read()?).into_owned();
        Some(training(&metrics::parse(&text, &path.to_string())?))
    } else {
        None
    };
    Ok(Overview { run: run.to_string(), stages, mixture, training })
}

fn training(lines: &[MetricsLine]) -> Training {
    let steps: Vec<_> = lines
        .iter()
        .filter_map(|l| match l {
            MetricsLine::Step(s) => Some(s),
            MetricsLine::Eval(_) => None,
        })
        .collect();
    let val = lines.iter().rev().find_map(|l| match l {
        MetricsLine::Eval(e) => Some(e),
        MetricsLine::Step(_) => None,
    });
    Training {
        steps: steps.last().map_or(0, |s| s.step),
        tokens: steps.last().map_or(0, |s| s.tokens),
        first_loss: steps.first().and_then(|s| s.loss),
        last_loss: steps.last().and_then(|s| s.loss),
        val_loss: val.and_then(|v| v.val_loss),
        val_by_source: val.map(|v| v.val.clone()).unwrap_or_default(),
        curve: steps.iter().step_by((steps.len() / 10).max(1)).map(|s| (s.tokens, s.loss)).collect(),
    }
}
