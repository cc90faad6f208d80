//! `grist decontaminate` on real data: GSM8K and HumanEval passages planted inside real crawl
//! documents are cut exactly by Appendix C's rule, a document with more than 10 pieces is
//! removed with a ledger row naming the benchmark and the gram, a passage planted in more
//! than 10 documents is boilerplate and left alone, the real crawl itself has no hits, and
//! two task slices write the same bytes as one.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::Path;

use common::{grist, ok, test_data};
use shards::{DocReader, LedgerReader, Loc, Manifest};

fn jsonl_gz(path: &Path) -> Vec<serde_json::Value> {
    let f = std::io::BufReader::new(flate2::read::MultiGzDecoder::new(std::fs::File::open(path).unwrap()));
    f.lines().map(|l| serde_json::from_str(&l.unwrap()).unwrap()).collect()
}

/// Character span of a passage's words: from the start of its first whitespace-delimited
/// token with a letter or digit to the end of its last (tokens of punctuation only, such as a
/// closing `"""`, are not words).
fn word_span(passage: &str) -> (usize, usize) {
    let (mut first, mut last, mut start, mut has) = (None, 0, 0, false);
    let chars: Vec<char> = passage.chars().collect();
    for (i, c) in chars.iter().chain([&' ']).enumerate() {
        if c.is_whitespace() {
            if has {
                first.get_or_insert(start);
                last = i;
            }
            start = i + 1;
            has = false;
        } else {
            has |= c.is_alphanumeric();
        }
    }
    (first.unwrap_or(0), last)
}

/// Appendix C by hand for one planted passage at characters [p, e).
fn expected(doc: &str, p: usize, e: usize) -> Option<String> {
    let chars: Vec<char> = doc.chars().collect();
    let pieces = [(0, p.saturating_sub(200)), ((e + 200).min(chars.len()), chars.len())];
    let kept: Vec<String> =
        pieces.iter().filter(|(a, b)| b > a && b - a >= 200).map(|&(a, b)| chars[a..b].iter().collect()).collect();
    (!kept.is_empty()).then(|| kept.join("\n\n"))
}

fn docs_by_id(dir: &Path) -> BTreeMap<String, (String, String)> {
    let m = Manifest::read(&Loc::local(dir.join("manifest.json"))).unwrap();
    let mut out = BTreeMap::new();
    for f in &m.outputs {
        for d in DocReader::open(&Loc::local(dir.join(&f.path))).unwrap().read_docs().unwrap() {
            out.insert(d.id, (d.source, d.text));
        }
    }
    out
}

#[test]
fn planted_benchmark_passages_are_cut_by_the_rule() {
    let Some(data) = test_data("planted_benchmark_passages_are_cut_by_the_rule") else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let crawl: Vec<String> = jsonl_gz(&data.join("web/cc2019-30.jsonl.gz"))
        .iter()
        .map(|v| v["text"].as_str().unwrap_or_default().to_string())
        .filter(|t| t.chars().count() > 1500)
        .collect();
    let gsm: Vec<String> = std::fs::read_to_string(data.join("benchmarks/gsm8k-test.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["question"].as_str().unwrap().to_string())
        .filter(|q| q.split_whitespace().count() >= 20)
        .collect();
    let he: Vec<String> = jsonl_gz(&data.join("benchmarks/humaneval.jsonl.gz"))
        .iter()
        .map(|v| v["prompt"].as_str().unwrap().to_string())
        .collect();

    // Planted documents: a passage in the middle of a real document (char offsets recorded).
    let mut planted: Vec<(String, String, usize, usize)> = Vec::new(); // id, text, p, e
    for (k, passage) in gsm.iter().take(8).chain(he.iter().skip(3).take(4)).enumerate() {
        let host = &crawl[k];
        let cut: String = host.chars().take(host.chars().count() / 2).collect();
        let rest: String = host.chars().skip(cut.chars().count()).collect();
        let left = format!("{cut} ");
        let (a, b) = word_span(passage.trim_end());
        let (p, e) = (left.chars().count() + a, left.chars().count() + b);
        planted.push((format!("plant-{k}"), format!("{left}{}\n{rest}", passage.trim_end()), p, e));
    }
    // Eleven passages in one document: 12 pieces, removed.
    let many: String = (0..11).map(|i| format!("{}\n{}\n", "filler text here. ".repeat(40), gsm[20 + i])).collect();
    // One passage planted in 12 documents: boilerplate, ignored.
    let common_passage = &gsm[40];
    let mut lines: Vec<String> =
        planted.iter().map(|(id, t, _, _)| serde_json::json!({"id": id, "text": t}).to_string()).collect();
    lines.push(serde_json::json!({"id": "many", "text": many}).to_string());
    for i in 0..12 {
        let t = format!("{}\n{common_passage}\n{}", crawl[20 + i], "more words follow here. ".repeat(10));
        lines.push(serde_json::json!({"id": format!("boiler-{i}"), "text": t}).to_string());
    }
    std::fs::create_dir_all(d.join("planted")).unwrap();
    std::fs::write(d.join("planted/planted.jsonl"), lines.join("\n") + "\n").unwrap();

    let recipe = |out: &Path| {
        let text = format!(
            r#"[run]
out = "{out}"
[ingest]
min_words = 5
[[ingest.sources]]
name = "cc"
paths = ["{cc}"]
[[ingest.sources]]
name = "planted"
paths = ["{planted}"]
[decontaminate]
input = "ingest"
[[decontaminate.benchmarks]]
name = "gsm8k"
paths = ["{gsm}"]
fields = ["question", "answer"]
[[decontaminate.benchmarks]]
name = "humaneval"
paths = ["{he}"]
fields = ["prompt", "canonical_solution"]
"#,
            out = out.display(),
            cc = data.join("web/cc2019-30.jsonl.gz").display(),
            planted = d.join("planted").display(),
            gsm = data.join("benchmarks/gsm8k-test.jsonl").display(),
            he = data.join("benchmarks/humaneval.jsonl.gz").display(),
        );
        let path = out.with_extension("toml");
        std::fs::write(&path, text).unwrap();
        path
    };
    let out = d.join("one");
    let r = recipe(&out);
    ok(grist(&["-q", "ingest", r.to_str().unwrap()], &[]));
    ok(grist(&["-q", "decontaminate", r.to_str().unwrap()], &[]));

    let before = docs_by_id(&out.join("ingest"));
    let after = docs_by_id(&out.join("decontaminate"));
    // The real crawl has no hits: every cc document is unchanged.
    for (id, (src, text)) in &before {
        if src == "cc" {
            assert_eq!(after.get(id).map(|x| &x.1), Some(text), "crawl document {id} changed");
        }
    }
    // Planted passages are cut exactly: ids are the ingest ids of the planted records.
    let planted_ids: BTreeMap<String, String> =
        before.iter().filter(|(_, (s, _))| s == "planted").map(|(id, (_, t))| (t.clone(), id.clone())).collect();
    for (name, text, p, e) in &planted {
        let id = &planted_ids[text];
        match expected(text, *p, *e) {
            Some(want) => assert_eq!(&after[id].1, &want, "{name}"),
            None => assert!(!after.contains_key(id), "{name} should be removed"),
        }
    }
    // Boilerplate passages: untouched.
    for (id, (_, text)) in before.iter().filter(|(_, (_, t))| t.contains(common_passage.as_str())) {
        assert_eq!(&after[id].1, text, "a passage in 12 documents is boilerplate");
    }
    // The many-piece document: removed, the ledger names the benchmark and the gram.
    let m = Manifest::read(&Loc::local(out.join("decontaminate/manifest.json"))).unwrap();
    let mut ledger = Vec::new();
    for f in &m.ledgers {
        ledger.extend(
            LedgerReader::open(&Loc::local(out.join("decontaminate").join(&f.path))).unwrap().entries().unwrap(),
        );
    }
    let many_id = &planted_ids.iter().find(|(t, _)| t.starts_with("filler text here.")).unwrap().1;
    let row = ledger.iter().find(|e| &e.id == *many_id).unwrap();
    assert_eq!(row.reason, "contaminated_too_many_pieces");
    assert!(row.detail.as_deref().unwrap().starts_with("gsm8k: \""), "{row:?}");
    assert!(m.counters["hits_gsm8k"] > 0 && m.counters["hits_humaneval"] > 0, "{:?}", m.counters);

    // Two slices write the same bytes.
    let out2 = d.join("two");
    let r2 = recipe(&out2);
    ok(grist(&["-q", "ingest", r2.to_str().unwrap()], &[]));
    for t in ["0", "1"] {
        ok(grist(&["-q", "decontaminate", r2.to_str().unwrap(), "--task", t, "--tasks", "2"], &[]));
    }
    for t in ["0", "1"] {
        ok(grist(&["-q", "decontaminate", r2.to_str().unwrap(), "--task", t, "--tasks", "2"], &[]));
    }
    assert!(common::shard_bytes(&out.join("decontaminate")) == common::shard_bytes(&out2.join("decontaminate")));
}
