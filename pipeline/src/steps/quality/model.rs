//! The quality classifier's model file and scoring: logistic regression over Spark-exact
//! hashed features (see `features`), and GPT-3's Pareto keep rule. Training lives elsewhere;
//! this module loads, checks, saves and applies a model.
//!
//! File format (`.gqm`, little-endian), specified in `shards/README.md`:
//! `GRISTQM\0` (8 bytes) | u32 format version | u32 header length H | H bytes of JSON header
//! (`num_features`, `binary`, `ngrams` (absent: 1), `tokenizer`, `bias`, and free-form `training`
//! and `metrics`) |
//! `num_features` f32 weights. Readers check magic, version and exact length first.

use serde::{Deserialize, Serialize};
use shards::{At, Loc, ShardError};

use crate::core::rng::DocRng;
use crate::text::features::{MAX_NGRAMS, for_each_term_index, term_index};

/// Magic bytes of a model file.
pub const MODEL_MAGIC: &[u8; 8] = b"GRISTQM\0";
/// Current model format version.
pub const MODEL_VERSION: u32 = 1;

/// The JSON header of a model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelHeader {
    pub num_features: u32,
    /// Term presence (1.0) instead of counts, as Spark's `HashingTF.binary`.
    pub binary: bool,
    /// Word n-grams up to this order are features too (Spark's `NGram`, hashed into the same
    /// vector); 1: tokens only. Absent in files written before it existed, which are unigram.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub ngrams: u32,
    /// Always `spark`: Spark's Tokenizer + HashingTF (MurmurHash3 x86_32, seed 42).
    pub tokenizer: String,
    pub bias: f32,
    /// How the model was trained (config, data, seed), as the trainer recorded it.
    #[serde(default)]
    pub training: serde_json::Value,
    /// Held-out metrics (accuracy, ROC AUC, log loss, ...).
    #[serde(default)]
    pub metrics: serde_json::Value,
}

fn one() -> u32 {
    1
}
fn is_one(n: &u32) -> bool {
    *n == 1
}

/// A logistic-regression quality model.
#[derive(Debug, Clone, PartialEq)]
pub struct QualityModel {
    pub header: ModelHeader,
    /// (num_features) weights, one per hashed feature.
    pub weights: Vec<f32>,
}

impl QualityModel {
    /// A model with all-zero weights (scores 0.5 + the bias's effect).
    pub fn zeros(num_features: u32, binary: bool, ngrams: u32) -> QualityModel {
        QualityModel {
            header: ModelHeader {
                num_features,
                binary,
                ngrams,
                tokenizer: "spark".into(),
                bias: 0.0,
                training: serde_json::Value::Null,
                metrics: serde_json::Value::Null,
            },
            weights: vec![0.0; num_features as usize],
        }
    }

    /// The probability that `text` is like the positives.
    pub fn score(&self, text: &str) -> f64 {
        1.0 / (1.0 + (-self.logit(text)).exp())
    }

    /// The model's logit for `text`: bias + weights . features, summed in token order without
    /// building the feature vector (term counts are sums over token occurrences).
    pub fn logit(&self, text: &str) -> f64 {
        let (n, ngrams) = (self.header.num_features, self.header.ngrams);
        let mut z = 0.0f64;
        if self.header.binary {
            let mut idx: Vec<u32> = Vec::with_capacity(text.len() / 5 + 1);
            for_each_term_index(text, n, ngrams, |i| idx.push(i));
            idx.sort_unstable();
            idx.dedup();
            z = idx.iter().map(|&i| self.weights[i as usize] as f64).sum();
        } else {
            for_each_term_index(text, n, ngrams, |i| z += self.weights[i as usize] as f64);
        }
        self.header.bias as f64 + z
    }

    /// The weight of a term (for reports: which terms push a document up or down).
    pub fn term_weight(&self, term: &str) -> f32 {
        self.weights[term_index(term, self.header.num_features) as usize]
    }

    /// Serializes to the model file format.
    pub fn to_bytes(&self) -> Vec<u8> {
        let header = serde_json::to_vec(&self.header).unwrap_or_default();
        let mut out = Vec::with_capacity(16 + header.len() + 4 * self.weights.len());
        out.extend_from_slice(MODEL_MAGIC);
        out.extend_from_slice(&MODEL_VERSION.to_le_bytes());
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        for w in &self.weights {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// Writes atomically.
    pub fn save(&self, loc: &Loc) -> Result<(), ShardError> {
        loc.write_atomic(&self.to_bytes())
    }

    /// Reads and checks a model file.
    pub fn load(loc: &Loc) -> Result<QualityModel, ShardError> {
        Self::from_bytes(&loc.read()?, &loc.to_string())
    }

    /// Parses a model file; `path` names it in errors.
    pub fn from_bytes(b: &[u8], path: &str) -> Result<QualityModel, ShardError> {
        if b.len() < 16 || &b[..8] != MODEL_MAGIC {
            return Err(ShardError::BadMagic {
                at: At::byte(path, 0),
                expected: "GRISTQM\\0".into(),
                got: format!("{:?}", String::from_utf8_lossy(&b[..b.len().min(8)])),
                hint: "not a grist quality model; models are written by `grist quality train`",
            });
        }
        let version = u32::from_le_bytes([b[8], b[9], b[10], b[11]]);
        if version > MODEL_VERSION {
            return Err(ShardError::NewerVersion {
                at: At::byte(path, 8),
                what: "quality model",
                got: version as u64,
                max: MODEL_VERSION as u64,
            });
        }
        let hlen = u32::from_le_bytes([b[12], b[13], b[14], b[15]]) as usize;
        let header_end = 16usize.saturating_add(hlen);
        if b.len() < header_end {
            return Err(ShardError::Truncated { at: At::file(path), expected: header_end as u64, got: b.len() as u64 });
        }
        let header: ModelHeader = serde_json::from_slice(&b[16..header_end])
            .map_err(|source| ShardError::Json { at: At::byte(path, 16), source })?;
        if header.tokenizer != "spark" || header.num_features == 0 || !(1..=MAX_NGRAMS).contains(&header.ngrams) {
            return Err(ShardError::invalid(
                At::byte(path, 16),
                format!(
                    "unsupported feature config: tokenizer {:?}, num_features {}, ngrams {} (1..={MAX_NGRAMS})",
                    header.tokenizer, header.num_features, header.ngrams
                ),
            ));
        }
        let expected = header_end as u64 + 4 * header.num_features as u64;
        if b.len() as u64 != expected {
            return Err(if (b.len() as u64) < expected {
                ShardError::Truncated { at: At::file(path), expected, got: b.len() as u64 }
            } else {
                ShardError::invalid(At::byte(path, expected), "bytes after the weights")
            });
        }
        let weights = b[header_end..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        Ok(QualityModel { header, weights })
    }
}

/// GPT-3's rule: keep iff `pareto(alpha) > 1 - score`, the draw coming from the document's
/// own random stream. Returns (keep, draw). P(keep) = (2 - score)^-alpha.
pub fn pareto_keep(seed: u64, doc_id: &str, score: f64, alpha: f64) -> (bool, f64) {
    let draw = DocRng::new(seed, "quality", doc_id).pareto(alpha);
    (draw > 1.0 - score, draw)
}

/// P(keep | score) under GPT-3's rule: P(pareto(alpha) > 1 - s) = (2 - s)^-alpha, since
/// numpy's `pareto` is Lomax (Pareto II) with survival (1 + x)^-alpha.
pub fn keep_probability(score: f64, alpha: f64) -> f64 {
    (2.0 - score).powf(-alpha)
}

/// The Kolmogorov-Smirnov distance between the score distribution of `reference` and that of
/// `target` weighted by the keep probability under `alpha`: how unlike the reference the
/// documents the Pareto rule keeps would be.
pub fn kept_ks_distance(reference: &[f64], target: &[f64], alpha: f64) -> f64 {
    let mut r: Vec<f64> = reference.to_vec();
    r.sort_by(f64::total_cmp);
    let mut t: Vec<(f64, f64)> = target.iter().map(|&s| (s, keep_probability(s, alpha))).collect();
    t.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = t.iter().map(|x| x.1).sum();
    if r.is_empty() || total <= 0.0 {
        return 1.0;
    }
    // Walk both sorted lists, comparing the two CDFs after each distinct score.
    let (mut i, mut j, mut cum_t, mut d) = (0usize, 0usize, 0.0f64, 0.0f64);
    while i < r.len() || j < t.len() {
        let x = match (r.get(i), t.get(j)) {
            (Some(&a), Some(&(b, _))) => a.min(b),
            (Some(&a), None) => a,
            (None, Some(&(b, _))) => b,
            (None, None) => break,
        };
        while i < r.len() && r[i] <= x {
            i += 1;
        }
        while j < t.len() && t[j].0 <= x {
            cum_t += t[j].1;
            j += 1;
        }
        d = d.max((i as f64 / r.len() as f64 - cum_t / total).abs());
    }
    d
}

/// The alpha (on a log grid over [0.25, 64]) whose kept `target` scores are closest, in
/// Kolmogorov-Smirnov distance, to the `reference` scores: GPT-3 chose alpha = 9 "to match the
/// distribution of scores from our classifier on WebText". Returns (alpha, distance); the
/// smallest alpha wins ties. An alpha at the grid's top means the classes are too well
/// separated for any Pareto draw to make the kept documents look like the reference.
pub fn tune_alpha(reference: &[f64], target: &[f64]) -> (f64, f64) {
    let mut best = (f64::NAN, f64::INFINITY);
    for k in 0..=160 {
        let alpha = 0.25 * 2f64.powf(k as f64 / 20.0);
        let d = kept_ks_distance(reference, target, alpha);
        if d < best.1 - 1e-12 {
            best = (alpha, d);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> QualityModel {
        let mut m = QualityModel::zeros(1 << 10, false, 1);
        m.header.bias = -0.5;
        m.weights[term_index("whale", 1 << 10) as usize] = 2.0;
        m.weights[term_index("casino", 1 << 10) as usize] = -3.0;
        m.header.metrics = serde_json::json!({"auc": 0.99});
        m
    }

    #[test]
    fn scores_move_with_the_weights() {
        let m = model();
        let good = m.score("the whale the whale");
        let bad = m.score("casino bonus casino");
        assert!(good > 0.9 && bad < 0.01, "{good} {bad}");
        // Exact logit: bias + 2 * count("whale").
        let expected = 1.0 / (1.0 + (-(-0.5f64 + 4.0)).exp());
        assert!((good - expected).abs() < 1e-9);
        assert_eq!(m.term_weight("whale"), 2.0);
    }

    #[test]
    fn file_round_trip_and_checks() {
        let m = model();
        let b = m.to_bytes();
        assert_eq!(QualityModel::from_bytes(&b, "m.gqm").unwrap(), m);
        let mut bad = b.clone();
        bad[0] = b'X';
        assert!(matches!(QualityModel::from_bytes(&bad, "m.gqm"), Err(ShardError::BadMagic { .. })));
        let mut newer = b.clone();
        newer[8] = 9;
        let e = QualityModel::from_bytes(&newer, "m.gqm").unwrap_err().to_string();
        assert!(e.contains("m.gqm") && e.contains("newer"), "{e}");
        assert!(matches!(QualityModel::from_bytes(&b[..b.len() - 4], "m.gqm"), Err(ShardError::Truncated { .. })));
        let mut other = m.clone();
        other.header.tokenizer = "whitespace".into();
        assert!(
            QualityModel::from_bytes(&other.to_bytes(), "m.gqm")
                .unwrap_err()
                .to_string()
                .contains("unsupported feature config")
        );
        // A unigram model's header has no `ngrams` (files from before it read the same way);
        // a bigram model's does, and an order grist cannot compute is refused.
        assert!(!String::from_utf8_lossy(&b).contains("ngrams"));
        let mut bigram = m.clone();
        bigram.header.ngrams = 2;
        let bb = bigram.to_bytes();
        assert!(String::from_utf8_lossy(&bb).contains("\"ngrams\":2"));
        assert_eq!(QualityModel::from_bytes(&bb, "m.gqm").unwrap().header.ngrams, 2);
        bigram.header.ngrams = 9;
        let e = QualityModel::from_bytes(&bigram.to_bytes(), "m.gqm").unwrap_err().to_string();
        assert!(e.contains("ngrams 9") && e.contains("m.gqm"), "{e}");
    }

    #[test]
    fn pareto_keep_is_per_document_and_monotone_in_score() {
        let (k1, d1) = pareto_keep(7, "doc", 0.3, 9.0);
        let (k2, d2) = pareto_keep(7, "doc", 0.3, 9.0);
        assert_eq!((k1, d1), (k2, d2));
        // The same draw: a higher score can only keep more.
        let (_, d) = pareto_keep(7, "doc", 0.0, 9.0);
        assert_eq!(d, d1);
        assert!(pareto_keep(7, "doc", 1.0, 9.0).0, "score 1 keeps every document (draw > 0)");
    }

    #[test]
    fn fused_logit_equals_the_feature_vector_dot_product() {
        for (binary, ngrams) in [(false, 1), (true, 1), (false, 2), (true, 2), (false, 3)] {
            let mut m = QualityModel::zeros(1 << 10, binary, ngrams);
            m.header.bias = 0.25;
            for (i, w) in m.weights.iter_mut().enumerate() {
                *w = ((i * 7919) % 201) as f32 / 100.0 - 1.0;
            }
            for text in ["The the THE cat  sat\n\non the mat.", "", "   ", "Straße ΟΔΟΣ odos odos", "x"] {
                let want = 0.25
                    + crate::text::features::features(text, 1 << 10, binary, ngrams)
                        .iter()
                        .map(|&(i, v)| m.weights[i as usize] as f64 * v as f64)
                        .sum::<f64>();
                assert!(
                    (m.logit(text) - want).abs() < 1e-9,
                    "{text:?} binary={binary} ngrams={ngrams}: {} vs {want}",
                    m.logit(text)
                );
            }
        }
    }

    #[test]
    fn pareto_rule_follows_its_law() {
        // For several scores, the empirical keep rate over many document ids matches
        // (2 - s)^-alpha within 4 standard errors.
        let n = 200_000;
        for (s, alpha) in [(0.0, 9.0), (0.3, 9.0), (0.7, 9.0), (0.95, 9.0), (0.5, 2.0), (0.9, 20.0)] {
            let kept = (0..n).filter(|i| pareto_keep(7, &format!("doc-{i}"), s, alpha).0).count() as f64;
            let p = keep_probability(s, alpha);
            let se = (p * (1.0 - p) / n as f64).sqrt();
            let got = kept / n as f64;
            assert!((got - p).abs() < 4.0 * se + 1e-9, "s={s} alpha={alpha}: kept {got}, law {p}");
        }
    }

    #[test]
    fn tuned_alpha_recovers_the_alpha_that_made_the_reference() {
        // Reference = target documents kept by the Pareto rule with alpha 6: tuning finds ~6.
        let target: Vec<f64> = (0..40_000).map(|i| DocRng::new(1, "t", &i.to_string()).next_f64()).collect();
        let reference: Vec<f64> = target
            .iter()
            .enumerate()
            .filter(|(i, s)| pareto_keep(3, &i.to_string(), **s, 6.0).0)
            .map(|x| *x.1)
            .collect();
        let (alpha, d) = tune_alpha(&reference, &target);
        assert!((alpha - 6.0).abs() < 1.0, "alpha {alpha}, distance {d}");
        assert!(d < 0.02, "distance {d}");
        assert!(kept_ks_distance(&reference, &target, 0.5) > 0.1);
    }
}
