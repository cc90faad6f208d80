//! The built-in sample: a small synthetic corpus that grist writes itself, deterministic
//! from a seed, so the main job runs on a fresh machine with no downloads. Its text is
//! generated from word lists and templates, not copied from anywhere. It is not a
//! benchmark of quality: it exists to exercise every stage and every ledger reason.

use std::io::Write;

use serde::Serialize;
use shards::Loc;

use crate::error::StageError;
use crate::rng::DocRng;

const ADJ: &[&str] = &[
    "quiet",
    "ancient",
    "bright",
    "narrow",
    "patient",
    "distant",
    "careful",
    "broad",
    "silver",
    "restless",
    "humble",
    "steady",
    "hollow",
    "gentle",
    "northern",
    "curious",
    "weathered",
    "golden",
    "simple",
    "hidden",
];
const NOUN: &[&str] = &[
    "river", "harbor", "village", "teacher", "engine", "garden", "lantern", "library", "valley", "merchant", "bridge",
    "orchard", "sailor", "market", "mountain", "letter", "council", "forest", "window", "road",
];
const VERB: &[&str] = &[
    "crossed",
    "remembered",
    "carried",
    "followed",
    "described",
    "repaired",
    "watched",
    "measured",
    "answered",
    "gathered",
    "opened",
    "praised",
    "studied",
    "visited",
    "guarded",
    "built",
    "painted",
    "named",
    "found",
    "left",
];
const PREP: &[&str] = &["beyond", "beside", "under", "across", "toward", "within", "behind", "along"];
const SPAM: &[&str] = &[
    "cheap", "casino", "bonus", "free", "click", "winner", "pills", "discount", "viagra", "loans", "crypto", "jackpot",
    "offer", "limited", "deal", "bet", "slots", "prize",
];
const NAV: &[&str] = &[
    "Home",
    "About us",
    "Contact",
    "Privacy policy",
    "Terms of service",
    "Login",
    "Register",
    "Cart",
    "Search",
    "Sitemap",
    "Careers",
    "Newsletter",
    "Cookie settings",
    "Help",
    "FAQ",
    "Shop",
];

fn pick<'a>(r: &mut DocRng, xs: &[&'a str]) -> &'a str {
    xs[r.below(xs.len() as u64) as usize]
}

fn sentence(r: &mut DocRng) -> String {
    format!(
        "The {} {} {} the {} {} the {} {}.",
        pick(r, ADJ),
        pick(r, NOUN),
        pick(r, VERB),
        pick(r, NOUN),
        pick(r, PREP),
        pick(r, ADJ),
        pick(r, NOUN)
    )
}

/// A paragraph-structured document of `paragraphs` paragraphs.
pub fn prose(r: &mut DocRng, paragraphs: usize) -> String {
    (0..paragraphs)
        .map(|_| (0..3 + r.below(5)).map(|_| sentence(r)).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n\n")
}

fn spam(r: &mut DocRng) -> String {
    let n = 30 + r.below(60);
    let words: Vec<String> = (0..n)
        .map(|i| {
            let w = pick(r, SPAM);
            if i % 7 == 0 { w.to_uppercase() } else { w.to_string() }
        })
        .collect();
    format!("{}!!! {}", words.join(" "), "Click here now. ".repeat(1 + r.below(4) as usize))
}

fn boilerplate(r: &mut DocRng) -> String {
    let n = 20 + r.below(30);
    (0..n).map(|_| pick(r, NAV)).collect::<Vec<_>>().join(" | ")
}

/// What `grist sample` wrote.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SampleReport {
    pub out: String,
    pub crawl_files: usize,
    pub crawl_records: usize,
    pub book_files: usize,
    /// Planted bad records: empty texts, malformed JSON, invalid UTF-8, too-short texts.
    pub planted_empty: usize,
    pub planted_malformed_json: usize,
    pub planted_invalid_utf8: usize,
    pub planted_short: usize,
}

/// Writes the sample into `out`: `crawl/` (JSON lines, one gzip and one zstd file, dolma
/// layout with `metadata.url`) and `books/` (one plain-text file per book).
pub fn write_sample(out: &Loc, seed: u64, docs: usize) -> Result<SampleReport, StageError> {
    let mut rep = SampleReport { out: out.to_string(), ..Default::default() };
    // Two crawl files for small samples, more as it grows (about 20k records each).
    let files = (docs / 20_000).max(2);
    for f in 0..files {
        let mut lines: Vec<Vec<u8>> = Vec::new();
        for i in (f..docs).step_by(files) {
            let mut r = DocRng::new(seed, "sample/crawl", &i.to_string());
            let kind = r.below(100);
            let text = match kind {
                0..=2 => {
                    rep.planted_empty += 1;
                    if kind == 0 { String::new() } else { " \n\t ".to_string() }
                }
                3..=6 => {
                    rep.planted_short += 1;
                    format!("{} {}", pick(&mut r, ADJ), pick(&mut r, NOUN))
                }
                7..=26 => spam(&mut r),
                27..=46 => boilerplate(&mut r),
                _ => {
                    let paragraphs = 1 + r.below(4) as usize;
                    prose(&mut r, paragraphs)
                }
            };
            let rec = serde_json::json!({
                "id": format!("sample-{i}"),
                "text": text,
                "source": "synthetic-crawl",
                "metadata": { "url": format!("https://site{}.example/page/{i}", r.below(40)) },
            });
            lines.push(rec.to_string().into_bytes());
        }
        // One planted bad record of each kind per file, at a seeded position.
        let mut r = DocRng::new(seed, "sample/bad", &f.to_string());
        let mut at = |len: usize| r.below(len as u64 + 1) as usize;
        let pos = at(lines.len());
        lines.insert(pos, br#"{"id": "broken", "text": "this record never closes"#.to_vec());
        rep.planted_malformed_json += 1;
        let pos = at(lines.len());
        lines.insert(pos, b"{\"id\": \"latin1\", \"text\": \"caf\xe9 cr\xe8me\"}".to_vec());
        rep.planted_invalid_utf8 += 1;
        rep.crawl_records += lines.len();

        let mut body = Vec::new();
        for l in &lines {
            body.extend_from_slice(l);
            body.push(b'\n');
        }
        let (name, bytes) = if f % 2 == 0 {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
            enc.write_all(&body).map_err(|e| io_err(out, e))?;
            (format!("crawl/crawl-{f:05}.jsonl.gz"), enc.finish().map_err(|e| io_err(out, e))?)
        } else {
            (format!("crawl/crawl-{f:05}.jsonl.zst"), zstd::encode_all(&body[..], 3).map_err(|e| io_err(out, e))?)
        };
        out.join(&name).write_atomic(&bytes)?;
        rep.crawl_files += 1;
    }
    let books = (docs / 40).max(2);
    for b in 0..books {
        let mut r = DocRng::new(seed, "sample/books", &b.to_string());
        let title = format!("The {} {}", pick(&mut r, ADJ), pick(&mut r, NOUN));
        let paragraphs = 20 + r.below(20) as usize;
        let text = format!("{title}\n\n{}\n", prose(&mut r, paragraphs));
        out.join(&format!("books/book-{b:04}.txt")).write_atomic(text.as_bytes())?;
        rep.book_files += 1;
    }
    Ok(rep)
}

fn io_err(out: &Loc, e: std::io::Error) -> StageError {
    StageError::Shard(shards::ShardError::io(shards::At::file(out.to_string()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_seed_dependent() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let c = tempfile::tempdir().unwrap();
        let ra = write_sample(&Loc::local(a.path()), 1, 200).unwrap();
        write_sample(&Loc::local(b.path()), 1, 200).unwrap();
        write_sample(&Loc::local(c.path()), 2, 200).unwrap();
        let read = |d: &tempfile::TempDir, f: &str| std::fs::read(d.path().join(f)).unwrap();
        for f in ["crawl/crawl-00000.jsonl.gz", "crawl/crawl-00001.jsonl.zst", "books/book-0000.txt"] {
            assert_eq!(read(&a, f), read(&b, f), "{f}");
            assert_ne!(read(&a, f), read(&c, f), "{f}");
        }
        assert_eq!(ra.crawl_records, 200 + 4);
        assert_eq!(ra.book_files, 5);
        assert!(ra.planted_empty > 0 && ra.planted_short > 0);
    }
}
