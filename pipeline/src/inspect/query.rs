//! `grist inspect query` and `sample`: the documents of a stage output that pass filters
//! (source, quality score, length in characters, a regex over the text), streamed shard by
//! shard with only the columns needed, so any size works; and a seeded sample of them that
//! holds `n` documents in memory. Printing is the caller's.

use std::collections::BTreeMap;

use regex::Regex;
use serde::Serialize;
use shards::arrow::array::{Array, Float64Array, StringArray};
use shards::{At, DocReader, Loc, Manifest, str_col};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::core::error::StageError;
use crate::core::stage::MANIFEST;

/// Which documents to keep; `None` keeps everything.
#[derive(Debug, Clone, Default)]
pub struct Filters {
    pub source: Option<String>,
    /// Quality score bounds (outputs of `quality_filter` and later).
    pub min_score: Option<f64>,
    pub max_score: Option<f64>,
    /// Length bounds in characters.
    pub min_chars: Option<usize>,
    pub max_chars: Option<usize>,
    /// A regular expression the text must match (Rust regex syntax).
    pub regex: Option<String>,
}

/// One matching document.
#[derive(Debug, Clone, Serialize)]
pub struct Doc {
    pub id: String,
    pub source: String,
    pub url: Option<String>,
    #[serde(rename = "quality_score")]
    pub score: Option<f64>,
    pub text: String,
}

/// Streams the documents of the stage output in `dir` that pass `f`, in shard order, calling
/// `each` until it returns false. Returns how many matched up to then.
pub fn scan(dir: &Loc, f: &Filters, mut each: impl FnMut(Doc) -> bool) -> Result<u64, StageError> {
    let m = Manifest::read(&dir.join(MANIFEST))?;
    let re = f.regex.as_deref().map(Regex::new).transpose().map_err(|e| StageError::Usage(format!("--regex: {e}")))?;
    let bad = |msg: String| StageError::Input { at: At::file(dir.to_string()), msg };
    let mut matched = 0u64;
    for file in &m.outputs {
        let r = DocReader::open(&dir.join(&file.path))?;
        let has = |c: &str| r.schema().field_with_name(c).is_ok();
        if !has("text") {
            return Err(bad(format!("its outputs are not documents (stage {})", m.stage)));
        }
        let mut cols = vec!["id", "source", "text"];
        if has("url") {
            cols.push("url");
        }
        let scored = has("quality_score");
        if scored {
            cols.push("quality_score");
        }
        if (f.min_score.is_some() || f.max_score.is_some()) && !scored {
            return Err(bad(format!(
                "no quality scores here (stage {}); score filters need quality_filter or later",
                m.stage
            )));
        }
        for b in r.batches(Some(&cols), 4096)? {
            let b = b?;
            let (id, src, text) = (str_col(&b, "id")?, str_col(&b, "source")?, str_col(&b, "text")?);
            let url = b.column_by_name("url").and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned());
            let score =
                b.column_by_name("quality_score").and_then(|c| c.as_any().downcast_ref::<Float64Array>().cloned());
            for i in 0..b.num_rows() {
                if f.source.as_deref().is_some_and(|s| s != src.value(i)) {
                    continue;
                }
                let s = score.as_ref().filter(|a| !a.is_null(i)).map(|a| a.value(i));
                if f.min_score.is_some_and(|m| s.is_none_or(|s| s < m))
                    || f.max_score.is_some_and(|m| s.is_none_or(|s| s > m))
                {
                    continue;
                }
                let t = text.value(i);
                if f.min_chars.is_some() || f.max_chars.is_some() {
                    let n = t.chars().count();
                    if f.min_chars.is_some_and(|m| n < m) || f.max_chars.is_some_and(|m| n > m) {
                        continue;
                    }
                }
                if re.as_ref().is_some_and(|re| !re.is_match(t)) {
                    continue;
                }
                matched += 1;
                let doc = Doc {
                    id: id.value(i).into(),
                    source: src.value(i).into(),
                    url: url.as_ref().filter(|a| !a.is_null(i)).map(|a| a.value(i).to_string()),
                    score: s,
                    text: t.into(),
                };
                if !each(doc) {
                    return Ok(matched);
                }
            }
        }
    }
    Ok(matched)
}

/// `n` of the matching documents, drawn by a seeded hash of their ids (the same for a seed,
/// whatever the shard layout; memory holds `n` documents), and how many matched.
pub fn sample(dir: &Loc, f: &Filters, n: usize, seed: u64) -> Result<(Vec<Doc>, u64), StageError> {
    let mut keep: BTreeMap<(u64, String), Doc> = BTreeMap::new();
    let matched = scan(dir, f, |d| {
        let key = (xxh3_64_with_seed(d.id.as_bytes(), seed), d.id.clone());
        if keep.len() < n || keep.last_key_value().is_some_and(|(k, _)| key < *k) {
            keep.insert(key, d);
            if keep.len() > n {
                keep.pop_last();
            }
        }
        true
    })?;
    Ok((keep.into_values().collect(), matched))
}
