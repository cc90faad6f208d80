//! The stage contract on an object store (`memory://`, the in-process store): inputs read
//! and outputs written through the storage layer, verified like a local run.
#![allow(clippy::unwrap_used)]

use pipeline::inspect::verify;
use pipeline::steps::ingest;
use pipeline::{Recipe, TaskSlice};
use shards::{DocReader, Loc};

#[test]
fn ingest_reads_and_writes_object_store_paths() {
    let input = Loc::parse("memory://grist-it/corpus/a.jsonl").unwrap();
    let lines: String = (0..50)
        .map(|i| format!("{{\"text\": \"document {i} with a few words\", \"url\": \"https://e.com/{i}\"}}\n"))
        .collect();
    input.write_atomic(format!("{lines}{{\"text\": \"\"}}\n").as_bytes()).unwrap();
    let recipe = Recipe::parse(
        r#"
[run]
out = "memory://grist-it/run"
[ingest]
min_words = 2
[[ingest.sources]]
name = "web"
paths = ["memory://grist-it/corpus"]
"#,
        "inline",
        &[],
    )
    .unwrap();
    let out = Loc::parse(&recipe.run.out).unwrap().join(ingest::STAGE);
    let rep = ingest::run(&recipe.ingest, &out, TaskSlice::ALL, None).unwrap();
    assert!(rep.stage_complete);
    assert_eq!((rep.accounting.docs_in, rep.accounting.docs_out, rep.accounting.docs_ledger), (51, 50, 1));
    let docs = DocReader::open(&out.join("part-00000.parquet")).unwrap().read_docs().unwrap();
    assert_eq!(docs[49].url.as_deref(), Some("https://e.com/49"));
    let v = verify::verify(&out).unwrap();
    assert!(v.ok(), "{:?}", v.problems);
    // A rerun skips the completed unit.
    let again = ingest::run(&recipe.ingest, &out, TaskSlice::ALL, None).unwrap();
    assert_eq!((again.units_done, again.units_skipped), (0, 1));
}
