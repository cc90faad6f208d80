//! The built-in synthetic corpus: a small corpus that grist writes itself, deterministic
//! from a seed, so the main job runs on a fresh machine with no downloads. Its text is
//! generated from word lists and templates, not copied from anywhere. It is not a
//! benchmark of quality: it exists to exercise every stage and every ledger reason.

use std::io::Write;

use serde::{Deserialize, Serialize};
use shards::Loc;

use crate::core::error::StageError;
use crate::core::rng::DocRng;
use crate::core::stage::{Global, GlobalReport};
use crate::steps::{Outcome, Produces, Shape, Step, StepCtx, StepReport, need};

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
    let (a1, n1, v, n2, p, a2, n3) =
        (pick(r, ADJ), pick(r, NOUN), pick(r, VERB), pick(r, NOUN), pick(r, PREP), pick(r, ADJ), pick(r, NOUN));
    match r.below(5) {
        0 => format!("The {a1} {n1} {v} the {n2} {p} the {a2} {n3}."),
        1 => format!("Years later, she {v} the {n2} that had stood {p} the {a2} {n3} for as long as anyone knew."),
        2 => format!("Nobody in the {n1} could say why the {a2} {n3} was {v} {p} the {n2}, but everyone had a theory."),
        3 => format!("When the {n1} finally {v} the {n2}, it was {a1}, and the {n3} {p} it seemed {a2} again."),
        _ => format!("\"We {v} the {n2} {p} the {n3},\" the {a1} {n1} said, \"and it was {a2} enough.\""),
    }
}

/// `[synthetic]`: the built-in synthetic corpus (see `grist synthetic`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticConfig {
    /// Folder to write the corpus into.
    pub out: String,
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Number of crawl-like documents (curated files scale with it).
    #[serde(default = "default_docs")]
    pub docs: usize,
}

fn default_seed() -> u64 {
    20200528
}
fn default_docs() -> usize {
    600
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

const CITY: &[&str] = &["Springfield", "Riverton", "Lakeside", "Fairview", "Greenville", "Maplewood", "Oakdale"];
const PRODUCT: &[&str] = &[
    "plumber",
    "dentist",
    "roofing",
    "car insurance",
    "hotel",
    "used cars",
    "web hosting",
    "mattress",
    "lawyer",
    "movers",
];

const NAME: &[&str] = &["Ada", "Bram", "Chiara", "Dmitri", "Esi", "Farid", "Greta", "Hiro", "Ines", "Jonas"];

/// Documents of held-out prose the sample writes, and where.
pub const HELDOUT_DOCS: usize = 60;
pub const HELDOUT_FILE: &str = "heldout/prose.jsonl";

/// The built-in sample's benchmark: word problems in the style of a math test set. Item `i`
/// is deterministic from the seed; some are planted inside crawl prose.
pub fn benchmark_item(seed: u64, i: usize) -> String {
    let mut r = DocRng::new(seed, "sample/benchmark", &i.to_string());
    let (name, noun, adj) = (pick(&mut r, NAME), pick(&mut r, NOUN), pick(&mut r, ADJ));
    let (k, m, j) = (3 + r.below(40), 2 + r.below(30), 1 + r.below(9));
    format!(
        "{name} keeps {k} {noun}s in the {adj} shed and buys {m} more at the market on Sunday. After giving {j} {noun}s to a neighbour, how many {noun}s does {name} have left in the shed?"
    )
}

/// Benchmark items written by the sample.
pub const BENCHMARK_ITEMS: usize = 40;

/// Templated search-engine filler: the "best X in Y" pages that fill much of a raw crawl.
fn listing(r: &mut DocRng) -> String {
    let (p, c) = (pick(r, PRODUCT), pick(r, CITY));
    let mut out = format!("Best {p} in {c} 2019 | Top 10 {p} near me\n\n");
    for k in 0..4 + r.below(6) {
        let p2 = pick(r, PRODUCT);
        out.push_str(&format!(
            "{}. {c} {p2} - {} reviews - rated {}.{} out of 5. Call now for a free quote! Open 24/7. Book online today.\n",
            k + 1,
            10 + r.below(900),
            3 + r.below(3),
            r.below(10)
        ));
    }
    out.push_str(&format!(
        "Looking for {p} in {c}? Compare prices, read reviews and save up to {}% today.",
        10 + r.below(60)
    ));
    out
}

/// The file name of the sample's language ID model, under the corpus folder.
pub const LID_MODEL: &str = "lid.bin";

/// The sample's language ID model, in fastText's format: made from the word lists the corpus
/// is written with, not trained. Every word of them (and of the templates) has a row that
/// points at `en`; unknown words have no row (no character n-grams), so a page without one
/// known word stays undetermined (`en` and `und` at 0.5 each) and the language filter removes
/// it. Real recipes give fastText's `lid.176.bin`.
pub fn sample_lid_model() -> Vec<u8> {
    const TEMPLATE: &[&str] = &[
        "the", "The", "a", "A", "of", "and", "in", "to", "was", "had", "for", "as", "long", "anyone", "knew", "Nobody",
        "could", "say", "why", "but", "everyone", "theory", "When", "finally", "it", "seemed", "again", "We", "said",
        "enough", "she", "that", "stood", "Years", "later", "Click", "here", "now", "Best", "Top", "near", "me",
        "reviews", "rated", "out", "Call", "free", "quote", "Open", "Book", "online", "today", "Looking", "Compare",
        "prices", "read", "save", "up",
    ];
    let mut words: std::collections::BTreeSet<&str> = TEMPLATE.iter().copied().collect();
    for list in [ADJ, NOUN, VERB, PREP, SPAM, NAV, CITY, PRODUCT, NAME] {
        words.extend(list.iter().flat_map(|w| w.split(' ')));
    }
    let mut vocab = vec!["</s>"];
    vocab.extend(words);
    // dim 1: known words 1, `</s>` 0; output en 6, und 0 (softmax of (6h, 0)).
    let input: Vec<f32> = vocab.iter().map(|w| if *w == "</s>" { 0.0 } else { 1.0 }).collect();
    crate::text::fasttext::dense_model_bytes(
        1,
        &vocab,
        &[("__label__en", 2), ("__label__und", 1)],
        &input,
        &[6.0, 0.0],
        3,
    )
}

fn boilerplate(r: &mut DocRng) -> String {
    let n = 20 + r.below(30);
    (0..n).map(|_| pick(r, NAV)).collect::<Vec<_>>().join(" | ")
}

/// What `grist synthetic` wrote. Also its completion marker, `synthetic.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SyntheticReport {
    /// xxh3 of the seed and document count the corpus was written for.
    #[serde(default)]
    pub fingerprint: String,
    pub out: String,
    pub crawl_files: usize,
    pub crawl_records: usize,
    pub book_files: usize,
    /// Held-out prose (`heldout/prose.jsonl`): never an input of the recipe, for evaluation.
    #[serde(default)]
    pub heldout_docs: usize,
    /// Planted bad records: empty texts, malformed JSON, invalid UTF-8, too-short texts.
    pub planted_empty: usize,
    pub planted_malformed_json: usize,
    pub planted_invalid_utf8: usize,
    pub planted_short: usize,
    /// Copies of prose pages in the crawl: near (a line appended) and exact.
    pub planted_near_duplicates: usize,
    pub planted_exact_duplicates: usize,
    /// Benchmark items (`benchmarks/sample-bench.jsonl`) planted inside crawl prose.
    pub planted_benchmark_passages: usize,
    /// `cc/`: WARC records (response pages with boilerplate around an article, plus a 404 and
    /// an image) and WET conversion records, one gzip member per record as Common Crawl writes.
    pub warc_responses: usize,
    pub wet_records: usize,
    /// `reddit/`: Pushshift-style submissions, and how many link to sample pages with score >= 3.
    pub reddit_submissions: usize,
    pub reddit_selected_links: usize,
}

/// `synthetic`: the built-in corpus, written before anything reads it.
pub static STEP: Step = Step {
    name: "synthetic",
    table: "synthetic",
    input: None,
    shape: Shape::Global,
    produces: Produces::Files,
    about: "write the built-in synthetic corpus (seeded, no downloads) where the recipe says",
    run: step,
};

/// The corpus's completion marker in its folder.
pub const MARKER: &str = "synthetic.json";

impl GlobalReport for SyntheticReport {
    fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

fn step(ctx: &StepCtx) -> Result<Outcome, StageError> {
    let cfg = need(&ctx.recipe.synthetic, "synthetic")?;
    let out = Loc::parse(&cfg.out)?;
    let key = serde_json::json!({ "seed": cfg.seed, "docs": cfg.docs });
    let global = Global {
        dir: out.clone(),
        fingerprint: shards::checksum::xxh3_hex(key.to_string().as_bytes()),
        report: MARKER,
        // A corpus written before the language model (or the held-out prose) was part of it is
        // written again.
        files: &[LID_MODEL, HELDOUT_FILE],
    };
    let (report, up_to_date) = match global.completed::<SyntheticReport>() {
        Some(r) => {
            tracing::info!(out = %out, "built-in synthetic corpus already written; keeping it");
            (r, true)
        }
        None => {
            let mut r = write(&out, cfg.seed, cfg.docs)?;
            r.fingerprint = global.fingerprint.clone();
            global.finish(&r)?;
            tracing::info!(out = %out, files = r.crawl_files + r.book_files, "wrote the built-in synthetic corpus");
            (r, false)
        }
    };
    Ok(Outcome {
        report: StepReport::Synthetic(report),
        complete: true,
        up_to_date,
        text: String::new(),
        points_to: None,
    })
}

/// Writes the corpus into `out`: `crawl/` (JSON lines, one gzip and one zstd file, dolma
/// layout with `metadata.url`) and `books/` (one plain-text file per book).
pub fn write(out: &Loc, seed: u64, docs: usize) -> Result<SyntheticReport, StageError> {
    let mut rep = SyntheticReport { out: out.to_string(), ..Default::default() };
    // Two crawl files for small samples, more as it grows (about 20k records each).
    let files = (docs / 20_000).max(2);
    // Pages a Reddit user might link to: the prose documents, by URL, posted as they are made
    // (nothing of the corpus is held: memory is one crawl file's records).
    let mut prose_urls = Reddit::create(out, seed, REDDIT_FILE_SUBMISSIONS)?;
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
                7..=30 => spam(&mut r),
                31..=54 => boilerplate(&mut r),
                55..=82 => listing(&mut r),
                _ => {
                    let paragraphs = 1 + r.below(4) as usize;
                    let mut text = prose(&mut r, paragraphs);
                    // A benchmark item leaked into a page, between its paragraphs.
                    if r.below(5) == 0 {
                        rep.planted_benchmark_passages += 1;
                        let item = benchmark_item(seed, r.below(BENCHMARK_ITEMS as u64) as usize);
                        let at = text.find("\n\n").unwrap_or(text.len());
                        text.insert_str(at, &format!("\n\n{item}"));
                    }
                    text
                }
            };
            let url = format!("https://site{}.example/page/{i}", r.below(40));
            if kind > 82 {
                prose_urls.push(&url).map_err(|e| io_err(out, e))?;
            }
            let rec = serde_json::json!({
                "id": format!("sample-{i}"),
                "text": text,
                "source": "synthetic-crawl",
                "metadata": { "url": url },
            });
            lines.push(rec.to_string().into_bytes());
            // Planted duplicates of prose pages, as mirrors and scrapers make them: a near copy
            // (a line appended, whitespace changed) or an exact one, on another site.
            if kind > 82 {
                let copy = match r.below(10) {
                    0 => {
                        rep.planted_near_duplicates += 1;
                        Some(format!(
                            "{}\n\nShared from the {} archive.",
                            text.replace("\n\n", "\n \n"),
                            pick(&mut r, ADJ)
                        ))
                    }
                    1 => {
                        rep.planted_exact_duplicates += 1;
                        Some(text.clone())
                    }
                    _ => None,
                };
                if let Some(copy) = copy {
                    let rec = serde_json::json!({
                        "id": format!("sample-{i}-copy"),
                        "text": copy,
                        "source": "synthetic-crawl",
                        "metadata": { "url": format!("https://mirror{}.example/copy/{i}", r.below(9)) },
                    });
                    lines.push(rec.to_string().into_bytes());
                }
            }
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
    write_warc(out, seed, docs, &mut rep, &mut prose_urls)?;
    let bench: String = (0..BENCHMARK_ITEMS)
        .map(|i| format!("{}\n", serde_json::json!({ "id": i, "question": benchmark_item(seed, i) })))
        .collect();
    out.join("benchmarks/sample-bench.jsonl").write_atomic(bench.as_bytes())?;
    prose_urls.finish(&mut rep)?;
    let books = (docs / 40).max(2);
    for b in 0..books {
        let mut r = DocRng::new(seed, "sample/books", &b.to_string());
        let title = format!("The {} {}", pick(&mut r, ADJ), pick(&mut r, NOUN));
        let paragraphs = 20 + r.below(20) as usize;
        let text = format!("{title}\n\n{}\n", prose(&mut r, paragraphs));
        out.join(&format!("books/book-{b:04}.txt")).write_atomic(text.as_bytes())?;
        rep.book_files += 1;
    }
    // Held-out text for `grist eval` and `grist ablate`: prose of the same kind as the books and
    // WebText pages, from its own random stream, in no input of the recipe.
    let heldout: String = (0..HELDOUT_DOCS)
        .map(|i| {
            let mut r = DocRng::new(seed, "sample/heldout", &i.to_string());
            let paragraphs = 2 + r.below(4) as usize;
            format!("{}\n", serde_json::json!({ "id": i, "text": prose(&mut r, paragraphs) }))
        })
        .collect();
    out.join(HELDOUT_FILE).write_atomic(heldout.as_bytes())?;
    rep.heldout_docs = HELDOUT_DOCS;
    out.join(LID_MODEL).write_atomic(&sample_lid_model())?;
    Ok(rep)
}

/// A deterministic UUID-shaped record id.
fn record_id(r: &mut DocRng) -> String {
    let (a, b) = (r.next_u64(), r.next_u64());
    format!(
        "<urn:uuid:{:08x}-{:04x}-{:04x}-{:04x}-{:012x}>",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// One WARC record, gzipped as its own member.
fn warc_member(headers: &[(&str, String)], block: &[u8]) -> Result<Vec<u8>, std::io::Error> {
    let mut rec = b"WARC/1.0\r\n".to_vec();
    for (k, v) in headers {
        rec.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    rec.extend_from_slice(format!("Content-Length: {}\r\n\r\n", block.len()).as_bytes());
    rec.extend_from_slice(block);
    rec.extend_from_slice(b"\r\n\r\n");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    enc.write_all(&rec)?;
    enc.finish()
}

/// An article page with the chrome a crawler sees around it.
fn html_page(r: &mut DocRng, title: &str, site: &str, body: &str) -> String {
    let paragraphs: String = body.split("\n\n").map(|p| format!("<p>{p}</p>\n")).collect();
    let menu: String = (0..6).map(|_| format!("<li><a href=\"/{0}\">{0}</a></li>", pick(r, NAV))).collect();
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{title} | {site}</title>\
         <style>body {{ font-family: serif }} .nav li {{ display: inline }}</style>\
         <script>window.analytics = {{ site: \"{site}\", track: true }};</script></head>\
         <body><nav><ul class=\"nav\">{menu}</ul></nav><main><article><h1>{title}</h1>\n{paragraphs}</article></main>\
         <aside><h3>Related</h3><a href=\"/r/1\">Ten {a} tricks</a> <a href=\"/r/2\">Win a {b}</a></aside>\
         <footer>Copyright 2020 {site}. All rights reserved. <a href=\"/privacy\">Privacy policy</a></footer></body></html>",
        a = pick(r, ADJ),
        b = pick(r, NOUN),
    )
}

/// `cc/`: a WARC of HTML responses and a WET of conversion records. The URLs of the article
/// pages are added to `prose_urls`; returns how many there are.
fn write_warc(
    out: &Loc,
    seed: u64,
    docs: usize,
    rep: &mut SyntheticReport,
    prose_urls: &mut Reddit,
) -> Result<usize, StageError> {
    let n = (docs / 6).max(4);
    let date = "2020-08-04T12:00:00Z";
    let info = warc_member(
        &[
            ("WARC-Type", "warcinfo".into()),
            ("WARC-Date", date.into()),
            ("Content-Type", "application/warc-fields".into()),
        ],
        b"software: grist sample\r\nformat: WARC File Format 1.0\r\n",
    )
    .map_err(|e| io_err(out, e))?;
    // Streamed to their files, a gzip member per record.
    let open = |name: &str| -> Result<std::io::BufWriter<shards::storage::AtomicFile>, StageError> {
        Ok(std::io::BufWriter::with_capacity(1 << 20, out.join(name).create()?))
    };
    let (warc_name, wet_name) = ("cc/CC-SAMPLE-00000.warc.gz", "cc/CC-SAMPLE-00000.warc.wet.gz");
    let (mut warc, mut wet) = (open(warc_name)?, open(wet_name)?);
    warc.write_all(&info).map_err(|e| io_err(out, e))?;
    wet.write_all(&info).map_err(|e| io_err(out, e))?;
    let mut pages = 0;
    for i in 0..n {
        let mut r = DocRng::new(seed, "sample/warc", &i.to_string());
        let site = format!("site{}.example", r.below(40));
        let url = format!("https://{site}/article/{i}");
        let id = record_id(&mut r);
        let kind = r.below(20);
        let (status, ctype, body): (&str, &str, Vec<u8>) = match kind {
            0 => ("404 Not Found", "text/html", b"<html><body>Not found</body></html>".to_vec()),
            1 => ("200 OK", "image/png", vec![0x89, b'P', b'N', b'G', 0, 1, 2, 3]),
            2..=5 => {
                let title = format!("{} {} offer", pick(&mut r, ADJ), pick(&mut r, NOUN));
                let text = spam(&mut r);
                ("200 OK", "text/html; charset=utf-8", html_page(&mut r, &title, &site, &text).into_bytes())
            }
            6..=13 => {
                let title = format!("Best {} in {}", pick(&mut r, PRODUCT), pick(&mut r, CITY));
                let text = listing(&mut r);
                ("200 OK", "text/html; charset=utf-8", html_page(&mut r, &title, &site, &text).into_bytes())
            }
            _ => {
                let title = format!("The {} {}", pick(&mut r, ADJ), pick(&mut r, NOUN));
                let paragraphs = 2 + r.below(4) as usize;
                let text = prose(&mut r, paragraphs);
                prose_urls.push(&url).map_err(|e| io_err(out, e))?;
                pages += 1;
                ("200 OK", "text/html; charset=utf-8", html_page(&mut r, &title, &site, &text).into_bytes())
            }
        };
        let mut block = format!("HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n", body.len())
            .into_bytes();
        block.extend_from_slice(&body);
        let headers = [
            ("WARC-Type", "response".to_string()),
            ("WARC-Date", date.to_string()),
            ("WARC-Record-ID", id.clone()),
            ("WARC-Target-URI", url.clone()),
            ("Content-Type", "application/http; msgtype=response".to_string()),
        ];
        warc.write_all(&warc_member(&headers, &block).map_err(|e| io_err(out, e))?).map_err(|e| io_err(out, e))?;
        rep.warc_responses += 1;
        // The WET of the same crawl: a conversion record for every page that had text.
        if kind >= 2 {
            let mut w = DocRng::new(seed, "sample/wet", &i.to_string());
            let text = match kind {
                ..=5 => spam(&mut w),
                6..=13 => listing(&mut w),
                _ => prose(&mut w, 2),
            };
            let headers = [
                ("WARC-Type", "conversion".to_string()),
                ("WARC-Target-URI", url.replace("/article/", "/wet/")),
                ("WARC-Date", date.to_string()),
                ("WARC-Record-ID", record_id(&mut w)),
                ("WARC-Refers-To", record_id(&mut w)),
                ("WARC-Identified-Content-Language", "eng".to_string()),
                ("Content-Type", "text/plain".to_string()),
            ];
            wet.write_all(&warc_member(&headers, text.as_bytes()).map_err(|e| io_err(out, e))?)
                .map_err(|e| io_err(out, e))?;
            rep.wet_records += 1;
        }
    }
    for w in [warc, wet] {
        w.into_inner().map_err(|e| io_err(out, e.into_error()))?.commit()?;
    }
    Ok(pages)
}

/// `reddit/`: a Pushshift-style submission dump (zstd NDJSON) linking to some sample pages with
/// enough karma, plus what GPT-2's rule leaves out: low scores, self posts, Reddit's own links,
/// images, and a repost of the same page. Written as the pages are made (`push`), in files of
/// at most `REDDIT_FILE_SUBMISSIONS` submissions (`RS_SAMPLE.zst`, then `RS_SAMPLE-0001.zst`,
/// ...), as Pushshift's dumps are one file a month: a dump's size does not grow with the corpus.
struct Reddit {
    out: Loc,
    seed: u64,
    enc: RedditFile,
    /// Files finished (the next one's number).
    files: usize,
    /// Submissions per file.
    per_file: usize,
    /// Pages offered so far (the next submission's number).
    offered: usize,
    lines: usize,
    selected: usize,
    /// The smallest selected URL: the page reposted at the end.
    first: Option<String>,
}

type RedditFile = zstd::stream::write::Encoder<'static, std::io::BufWriter<shards::storage::AtomicFile>>;

/// Submissions per synthetic Pushshift file.
const REDDIT_FILE_SUBMISSIONS: usize = 200_000;

fn reddit_file(out: &Loc, n: usize) -> Result<RedditFile, StageError> {
    let name = if n == 0 { "reddit/RS_SAMPLE.zst".to_string() } else { format!("reddit/RS_SAMPLE-{n:04}.zst") };
    let file = std::io::BufWriter::with_capacity(1 << 20, out.join(&name).create()?);
    zstd::stream::write::Encoder::new(file, 3).map_err(|e| io_err(out, e))
}

fn finish_reddit_file(out: &Loc, enc: RedditFile) -> Result<(), StageError> {
    let file = enc.finish().map_err(|e| io_err(out, e))?;
    file.into_inner().map_err(|e| io_err(out, e.into_error()))?.commit()?;
    Ok(())
}

impl Reddit {
    fn create(out: &Loc, seed: u64, per_file: usize) -> Result<Reddit, StageError> {
        let enc = reddit_file(out, 0)?;
        let per_file = per_file.max(1);
        Ok(Reddit { out: out.clone(), seed, enc, files: 0, per_file, offered: 0, lines: 0, selected: 0, first: None })
    }

    fn line(&mut self, v: serde_json::Value) -> std::io::Result<()> {
        if self.lines > 0 && self.lines.is_multiple_of(self.per_file) {
            self.files += 1;
            let next = reddit_file(&self.out, self.files).map_err(std::io::Error::other)?;
            let done = std::mem::replace(&mut self.enc, next);
            finish_reddit_file(&self.out, done).map_err(std::io::Error::other)?;
        }
        self.lines += 1;
        writeln!(self.enc, "{v}")
    }

    /// A prose page at `url`, maybe posted.
    fn push(&mut self, url: &str) -> std::io::Result<()> {
        let i = self.offered;
        self.offered += 1;
        let mut r = DocRng::new(self.seed, "sample/reddit", url);
        let roll = r.below(10);
        if roll >= 8 {
            return Ok(()); // not every good page was posted
        }
        // Links as people post them: with www., tracking parameters, either scheme.
        let posted = match r.below(3) {
            0 => url.replacen("https://", "https://www.", 1),
            1 => format!("{url}?utm_source=reddit&utm_medium=social"),
            _ => url.replacen("https://", "http://", 1),
        };
        let score = if roll == 0 { r.below(3) as i64 } else { 3 + r.below(500) as i64 };
        if score >= 3 {
            self.selected += 1;
            if self.first.as_deref().is_none_or(|f| url < f) {
                self.first = Some(url.to_string());
            }
        }
        self.line(serde_json::json!({
            "id": format!("s{i:05}"), "url": posted, "score": score, "is_self": false,
            "subreddit": pick(&mut r, NOUN), "created_utc": 1_120_000_000 + i as i64 * 60, "domain": "example",
        }))
    }

    fn finish(mut self, rep: &mut SyntheticReport) -> Result<(), StageError> {
        let out = self.out.clone();
        let err = |e| io_err(&out, e);
        if let Some(first) = self.first.clone() {
            self.line(serde_json::json!({"id": "repost", "url": first, "score": 4, "is_self": false, "subreddit": "repost", "created_utc": "1130000000"})).map_err(err)?;
        }
        self.line(serde_json::json!({"id": "self1", "url": "https://www.reddit.com/r/sample/comments/1/", "score": 99, "is_self": true, "subreddit": "sample", "created_utc": 1_120_000_000})).map_err(err)?;
        self.line(serde_json::json!({"id": "meta1", "url": "https://www.reddit.com/r/sample/", "score": 12, "is_self": false, "subreddit": "sample", "created_utc": 1_120_000_001})).map_err(err)?;
        self.line(serde_json::json!({"id": "img1", "url": "https://i.example/cat.jpg", "score": 300, "is_self": false, "subreddit": "aww", "created_utc": 1_120_000_002})).map_err(err)?;
        rep.reddit_submissions = self.lines;
        rep.reddit_selected_links = self.selected;
        finish_reddit_file(&out, self.enc)
    }
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
        let ra = write(&Loc::local(a.path()), 1, 200).unwrap();
        write(&Loc::local(b.path()), 1, 200).unwrap();
        write(&Loc::local(c.path()), 2, 200).unwrap();
        let read = |d: &tempfile::TempDir, f: &str| std::fs::read(d.path().join(f)).unwrap();
        for f in ["crawl/crawl-00000.jsonl.gz", "crawl/crawl-00001.jsonl.zst", "books/book-0000.txt"] {
            assert_eq!(read(&a, f), read(&b, f), "{f}");
            assert_ne!(read(&a, f), read(&c, f), "{f}");
        }
        // 200 documents, 4 planted bad lines, and the planted copies of prose pages.
        assert!(ra.planted_near_duplicates > 0 && ra.planted_exact_duplicates > 0);
        assert_eq!(ra.crawl_records, 200 + 4 + ra.planted_near_duplicates + ra.planted_exact_duplicates);
        assert_eq!(ra.book_files, 5);
        assert!(ra.planted_empty > 0 && ra.planted_short > 0);
    }

    /// The Reddit dump is split into files of at most `per_file` submissions, every one a
    /// complete zstd stream, together every submission once.
    #[test]
    fn reddit_files_are_bounded_and_complete() {
        let dir = tempfile::tempdir().unwrap();
        let out = Loc::local(dir.path());
        let mut reddit = Reddit::create(&out, 3, 7).unwrap();
        for i in 0..60 {
            reddit.push(&format!("https://site.example/page/{i}")).unwrap();
        }
        let mut rep = SyntheticReport::default();
        reddit.finish(&mut rep).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path().join("reddit"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert!(names.len() >= 7 && names[0] == "RS_SAMPLE-0001.zst" && names.contains(&"RS_SAMPLE.zst".into()));
        let mut ids = std::collections::BTreeSet::new();
        for n in &names {
            let text = zstd::decode_all(&std::fs::read(dir.path().join("reddit").join(n)).unwrap()[..]).unwrap();
            let lines: Vec<&[u8]> = text.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
            assert!(!lines.is_empty() && lines.len() <= 7, "{n}: {}", lines.len());
            for l in lines {
                let v: serde_json::Value = serde_json::from_slice(l).unwrap();
                assert!(ids.insert(v["id"].as_str().unwrap().to_string()), "{v}");
            }
        }
        assert_eq!(ids.len(), rep.reddit_submissions);
        assert!(rep.reddit_selected_links > 0 && ids.contains("repost"));
    }
}
