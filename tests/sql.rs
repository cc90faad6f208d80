//! `grist inspect sql`. Built with `--features sql`: over real crawl (../shared/data), SQL
//! answers equal an independent scan of the shards and ledgers, on a stage output and on the
//! run directory; bad queries and truncated shards get clear errors. Without the feature, the
//! command says how to get it.
#![allow(clippy::unwrap_used)]

mod common;

use common::{grist, stderr};

#[cfg(not(feature = "sql"))]
#[test]
fn sql_without_the_feature_says_how_to_get_it() {
    let o = grist(&["inspect", "sql", ".", "SELECT 1"], &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--features sql"), "{}", stderr(&o));
}

#[cfg(feature = "sql")]
#[test]
fn sql_on_real_crawl_matches_an_independent_scan() {
    use std::collections::BTreeMap;

    use common::ok;
    use serde_json::{Value, json};
    use shards::{DocReader, LedgerReader, Loc, Manifest};

    let Some(data) = common::test_data("sql_on_real_crawl_matches_an_independent_scan") else { return };
    let dir = tempfile::tempdir().unwrap();
    // A path polars would glob (`[a]`) and read Hive partitions from (`run=1`) unless told not to.
    let out = dir.path().join("run=1").join("out [a]");
    let recipe = common::ingest_recipe(
        dir.path(),
        &out,
        &[
            ("cc", data.join("web/cc2019-30.jsonl.gz")),
            ("spam", data.join("negatives/spam-assassin.jsonl.zst")),
            ("edge", data.join("web/edge/example-trunc.warc")),
        ],
    );
    ok(grist(&["-q", "ingest", recipe.to_str().unwrap()], &[]));
    let ingest = out.join("ingest");
    let m = Manifest::read(&Loc::local(ingest.join("manifest.json"))).unwrap();

    // The independent answers, from our own readers.
    let mut per_source: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let mut matching = Vec::new();
    let re = regex::Regex::new(r"(?i)\bthe\b").unwrap();
    for f in &m.outputs {
        for d in DocReader::open(&Loc::local(ingest.join(&f.path))).unwrap().read_docs().unwrap() {
            let n = d.text.chars().count() as u64;
            let e = per_source.entry(d.source.clone()).or_default();
            e.0 += 1;
            e.1 += n;
            if d.source == "cc" && (500..=5000).contains(&n) && re.is_match(&d.text) {
                matching.push(d.id.clone());
            }
        }
    }
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    for f in &m.ledgers {
        for e in LedgerReader::open(&Loc::local(ingest.join(&f.path))).unwrap().entries().unwrap() {
            *reasons.entry(e.reason).or_default() += 1;
        }
    }
    assert!(per_source.len() >= 2 && matching.len() > 10, "too little to test with: {per_source:?}");
    assert!(!reasons.is_empty(), "the ingest ledger is empty; the test needs removals");

    let rows = |dir: &std::path::Path, q: &str| -> Vec<Value> {
        let o = ok(grist(&["inspect", "sql", dir.to_str().unwrap(), q, "--json", "--limit", "1000000"], &[]));
        o.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };

    // Documents and characters per source.
    let got = rows(
        &ingest,
        "SELECT source, COUNT(*) AS n, SUM(LENGTH(text)) AS chars FROM docs GROUP BY source ORDER BY source",
    );
    let want: Vec<Value> = per_source.iter().map(|(s, (n, c))| json!({"source": s, "n": n, "chars": c})).collect();
    assert_eq!(got, want);

    // A regular expression over the text, with length bounds, in manifest order.
    let got = rows(
        &ingest,
        r"SELECT id FROM docs WHERE source = 'cc' AND LENGTH(text) BETWEEN 500 AND 5000 AND REGEXP_LIKE(text, '(?i)\bthe\b')",
    );
    let got: Vec<&str> = got.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(got, matching);

    // Removal reasons, on the stage and on the run directory (the union of all ledgers).
    let q = "SELECT reason, COUNT(*) AS n FROM ledger GROUP BY reason ORDER BY reason";
    let want: Vec<Value> = reasons.iter().map(|(r, n)| json!({"reason": r, "n": n})).collect();
    assert_eq!(rows(&ingest, q), want);
    assert_eq!(rows(&out, q), want);
    let q = "SELECT COUNT(*) AS n FROM ingest_ledger WHERE stage = 'ingest'";
    assert_eq!(rows(&out, q), vec![json!({"n": reasons.values().sum::<u64>()})]);

    // Without a query: the tables, with rows from the manifests and the columns polars sees.
    let listed = ok(grist(&["inspect", "sql", out.to_str().unwrap(), "--json"], &[]));
    let listed: Vec<Value> = listed.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let names: Vec<&str> = listed.iter().map(|t| t["table"].as_str().unwrap()).collect();
    assert_eq!(names, ["ingest", "ingest_ledger", "ledger"]);
    assert_eq!(listed[0]["rows"], json!(per_source.values().map(|v| v.0).sum::<u64>()));
    assert_eq!(listed[0]["columns"]["text"], json!("str"));
    assert_eq!(listed[1]["columns"]["reason"], json!("str"));

    // The terminal table: a header, right-aligned numbers, a row count.
    let t = ok(grist(
        &[
            "inspect",
            "sql",
            ingest.to_str().unwrap(),
            "SELECT source, COUNT(*) AS n FROM docs GROUP BY source ORDER BY source",
        ],
        &[],
    ));
    let lines: Vec<&str> = t.lines().collect();
    assert!(lines[0].starts_with("source") && lines[0].ends_with('n'), "{t}");
    assert_eq!(lines.last().copied(), Some(format!("({} rows)", per_source.len()).as_str()));
    // --limit cuts and says so.
    let t = ok(grist(&["inspect", "sql", ingest.to_str().unwrap(), "SELECT id FROM docs", "--limit", "3"], &[]));
    assert_eq!(t.lines().count(), 5, "{t}");
    assert!(t.ends_with("(first 3 rows; --limit N for more)\n"), "{t}");

    // A query naming a missing table fails and lists the tables there.
    let o = grist(&["inspect", "sql", out.to_str().unwrap(), "SELECT * FROM nosuch"], &[]);
    assert!(!o.status.success() && stderr(&o).contains("tables here: ingest, ingest_ledger, ledger"), "{}", stderr(&o));
    // A truncated shard is named before polars reads it.
    let shard = ingest.join(&m.outputs[0].path);
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() / 2]).unwrap();
    let o = grist(&["inspect", "sql", ingest.to_str().unwrap(), "SELECT COUNT(*) FROM docs"], &[]);
    let e = stderr(&o);
    assert!(!o.status.success() && e.contains(&m.outputs[0].path) && e.contains("manifest says"), "{e}");
}
