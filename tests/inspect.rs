//! `grist inspect query` and `sample` on real crawl (../shared/data): every document shown
//! passes the filters, and the count equals an independent scan of the shards.
#![allow(clippy::unwrap_used)]

mod common;

use common::{grist, ok};
use shards::{DocReader, Loc, Manifest};

#[test]
fn query_and_sample_on_real_crawl_match_an_independent_scan() {
    let Some(data) = common::test_data("query_and_sample_on_real_crawl_match_an_independent_scan") else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let recipe = common::ingest_recipe(
        dir.path(),
        &out,
        &[("cc", data.join("web/cc2019-30.jsonl.gz")), ("cc_head", data.join("web/cc_en_head-0091.jsonl.gz"))],
    );
    ok(grist(&["-q", "ingest", recipe.to_str().unwrap()], &[]));
    let ingest = out.join("ingest");
    // The independent count: documents of source cc with 500..=5000 characters mentioning
    // "the" as a word (case-insensitive), by reading the shards directly.
    let m = Manifest::read(&Loc::local(ingest.join("manifest.json"))).unwrap();
    let mut want = 0;
    for f in &m.outputs {
        for d in DocReader::open(&Loc::local(ingest.join(&f.path))).unwrap().read_docs().unwrap() {
            let n = d.text.chars().count();
            let has_the = d.text.split(|c: char| !c.is_alphanumeric()).any(|w| w.eq_ignore_ascii_case("the"));
            if d.source == "cc" && (500..=5000).contains(&n) && has_the {
                want += 1;
            }
        }
    }
    assert!(want > 10, "too few documents to test with: {want}");
    let dir_s = ingest.to_str().unwrap();
    let filters = ["--source", "cc", "--min-chars", "500", "--max-chars", "5000", "--regex", r"(?i)\bthe\b"];
    let mut args = vec!["inspect", "query", dir_s, "--json", "--limit", "100000"];
    args.extend(filters);
    let lines: Vec<serde_json::Value> =
        ok(grist(&args, &[])).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), want);
    for d in &lines {
        let n = d["chars"].as_u64().unwrap();
        assert!(d["source"] == "cc" && (500..=5000).contains(&n), "{d}");
    }
    // A sample: n of those, the same for a seed, another for another seed.
    let sample = |seed: &str| {
        let mut a = vec!["inspect", "sample", dir_s, "--json", "-n", "5", "--seed", seed];
        a.extend(filters);
        ok(grist(&a, &[]))
    };
    let s1 = sample("1");
    assert_eq!(s1.lines().count(), 5);
    assert_eq!(s1, sample("1"));
    assert_ne!(s1, sample("2"));
    let ids: Vec<String> = lines.iter().map(|d| d["id"].as_str().unwrap().to_string()).collect();
    for l in s1.lines() {
        let d: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(ids.contains(&d["id"].as_str().unwrap().to_string()), "a sampled document outside the query");
    }
    // Score filters need scores: refused on the ingest output, with the reason.
    let o = grist(&["inspect", "query", dir_s, "--min-score", "0.5"], &[]);
    assert!(!o.status.success() && common::stderr(&o).contains("no quality scores here"));
}
