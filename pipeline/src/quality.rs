//! The quality classifier's model file and scoring: logistic regression over Spark-exact
//! hashed features (see `features`), and GPT-3's Pareto keep rule. Training lives elsewhere;
//! this module loads, checks, saves and applies a model.
//!
//! File format (`.gqm`, little-endian), specified in `shards/README.md`:
//! `GRISTQM\0` (8 bytes) | u32 format version | u32 header length H | H bytes of JSON header
//! (`num_features`, `binary`, `tokenizer`, `bias`, and free-form `training` and `metrics`) |
//! `num_features` f32 weights. Readers check magic, version and exact length first.

use serde::{Deserialize, Serialize};
use shards::{At, Loc, ShardError};

use crate::features::{features, term_index};
use crate::rng::DocRng;

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

/// A logistic-regression quality model.
#[derive(Debug, Clone, PartialEq)]
pub struct QualityModel {
    pub header: ModelHeader,
    /// (num_features) weights, one per hashed feature.
    pub weights: Vec<f32>,
}

impl QualityModel {
    /// A model with all-zero weights (scores 0.5 + the bias's effect).
    pub fn zeros(num_features: u32, binary: bool) -> QualityModel {
        QualityModel {
            header: ModelHeader {
                num_features,
                binary,
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
        let x = features(text, self.header.num_features, self.header.binary);
        let z: f64 =
            self.header.bias as f64 + x.iter().map(|&(i, v)| self.weights[i as usize] as f64 * v as f64).sum::<f64>();
        1.0 / (1.0 + (-z).exp())
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
        if header.tokenizer != "spark" || header.num_features == 0 {
            return Err(ShardError::invalid(
                At::byte(path, 16),
                format!(
                    "unsupported feature config: tokenizer {:?}, num_features {}",
                    header.tokenizer, header.num_features
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

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> QualityModel {
        let mut m = QualityModel::zeros(1 << 10, false);
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
}
