//! `grist quality score`: what the classifier thinks of arbitrary files, outside any stage.
//! Reads JSON lines (plain, gzip, zstd, xz, bzip2; the text in a named field, the id in `id`
//! when present, else `FILE:LINE`) or grist document shards (`.parquet`), scores every
//! document with the model, and hands (id, score, text bytes) back in input order.
//! Scoring runs in parallel over blocks of documents; nothing is written.

use std::io::BufRead;

use rayon::prelude::*;
use shards::{At, DocReader, Loc, str_col};

use crate::core::error::StageError;
use crate::formats::codec::decompress;
use crate::steps::quality::model::QualityModel;

/// Documents scored per parallel block.
const BLOCK: usize = 4096;

/// Totals of a scoring run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ScoreTotals {
    pub docs: u64,
    /// UTF-8 bytes of the scored text.
    pub text_bytes: u64,
    /// Seconds spent scoring (reading and parsing excluded).
    pub score_seconds: f64,
}

/// Scores every document of `files`, calling `emit(id, score)` in input order.
pub fn score_files(
    model: &QualityModel,
    files: &[Loc],
    field: &str,
    mut emit: impl FnMut(&str, f64),
) -> Result<ScoreTotals, StageError> {
    let mut totals = ScoreTotals::default();
    let mut flush = |block: &mut Vec<(String, String)>, totals: &mut ScoreTotals| {
        let t = std::time::Instant::now();
        let scores: Vec<f64> = block.par_iter().map(|(_, text)| model.score(text)).collect();
        totals.score_seconds += t.elapsed().as_secs_f64();
        for ((id, text), s) in block.iter().zip(scores) {
            totals.docs += 1;
            totals.text_bytes += text.len() as u64;
            emit(id, s);
        }
        block.clear();
    };
    for loc in files {
        let path = loc.to_string();
        let mut block: Vec<(String, String)> = Vec::with_capacity(BLOCK);
        if path.ends_with(".parquet") {
            for batch in DocReader::open(loc)?.batches(Some(&["id", "text"]), BLOCK)? {
                let b = batch?;
                let (id, text) = (str_col(&b, "id")?, str_col(&b, "text")?);
                block.extend((0..b.num_rows()).map(|i| (id.value(i).to_string(), text.value(i).to_string())));
                flush(&mut block, &mut totals);
            }
            continue;
        }
        let io_err = |offset: u64, e: std::io::Error| StageError::Input {
            at: At::byte(path.clone(), offset),
            msg: format!("cannot read: {e}"),
        };
        let mut reader =
            decompress(std::io::BufReader::with_capacity(1 << 16, loc.open()?), 31).map_err(|e| io_err(0, e))?;
        let (mut line, mut no, mut offset) = (Vec::new(), 0u64, 0u64);
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).map_err(|e| io_err(offset, e))?;
            if n == 0 {
                break;
            }
            no += 1;
            let at = offset;
            offset += n as u64;
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let bad = |msg: String| StageError::Input {
                at: At::byte(path.clone(), at),
                msg: format!("line {no}: {msg} (offsets count decompressed bytes)"),
            };
            let v: serde_json::Value = serde_json::from_slice(&line).map_err(|e| bad(format!("not JSON: {e}")))?;
            let text =
                v.get(field).and_then(|t| t.as_str()).ok_or_else(|| bad(format!("no string field {field:?}")))?;
            let id = match v.get("id") {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Number(n)) => n.to_string(),
                _ => format!("{path}:{no}"),
            };
            block.push((id, text.to_string()));
            if block.len() == BLOCK {
                flush(&mut block, &mut totals);
            }
        }
        flush(&mut block, &mut totals);
    }
    Ok(totals)
}
