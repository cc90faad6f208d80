//! `grist plan`: estimates for every stage of a recipe, and the problems it flags before a run.
#![allow(clippy::unwrap_used)]

mod common;

use common::{grist, ok, stdout};

#[test]
fn the_demo_plan_estimates_every_stage_and_finds_no_problem() {
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/recipes/demo.toml");
    let out = ok(grist(&["plan", demo], &[]));
    for stage in [
        "synthetic",
        "reddit",
        "ingest",
        "quality",
        "quality_filter",
        "dedup",
        "decontaminate",
        "tokenize",
        "blend",
        "train",
        "all",
    ] {
        let row = out
            .lines()
            .find(|l| l.starts_with(&format!("{stage} ")))
            .unwrap_or_else(|| panic!("no row for {stage}:\n{out}"));
        // disk, peak memory and time, each with a unit.
        assert!(row.matches(" B ").count() + row.matches("B ").count() >= 2, "{row}");
    }
    assert!(out.contains("no problems found") && out.contains("note: [train] reads 250000 tokens"), "{out}");
}

#[test]
fn missing_inputs_bad_weights_and_an_impossible_budget_are_flagged() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("books")).unwrap();
    std::fs::write(d.join("books/a.txt"), "a small book. ".repeat(100)).unwrap();
    let recipe = d.join("r.toml");
    std::fs::write(
        &recipe,
        format!(
            r#"[run]
out = "{out}"

[ingest]
[[ingest.sources]]
name = "crawl"
paths = ["{missing}"]

[[ingest.sources]]
name = "books"
paths = ["{books}"]

[tokenize]

[blend]
total_tokens = 1000000
[[blend.sources]]
name = "crawl"
weight = 0.6
[[blend.sources]]
name = "books"
weight = 0.5
"#,
            out = d.join("out").display(),
            missing = d.join("nowhere/*.warc.gz").display(),
            books = d.join("books").display()
        ),
    )
    .unwrap();
    let o = grist(&["plan", recipe.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(1));
    let text = stdout(&o);
    assert!(text.contains("ingest source `crawl`") && text.contains("nowhere"), "{text}");
    assert!(text.contains("weights sum to 1.1000"), "{text}");
    // 1,000,000 x 0.5 / 1.1 tokens from a 1.4 kB book: thousands of epochs.
    assert!(text.contains("`books` needs") && text.contains("epochs"), "{text}");
    assert!(!d.join("out").exists(), "a plan writes nothing");
}
