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

/// Between stages, the plan estimates a stage's disk from what the stages before it wrote:
/// after `ingest`, the heuristic filters' row is the ingest shards' size (its upper bound:
/// every document kept), not the estimate from the input files.
#[test]
fn a_plan_between_stages_uses_what_earlier_stages_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = d.join("sample");
    ok(grist(&["synthetic", "--out", s.to_str().unwrap(), "--docs", "2000"], &[]));
    let recipe = concat!(env!("CARGO_MANIFEST_DIR"), "/recipes/demo.toml");
    let sets = [
        format!("run.out={}", d.join("out").display()),
        format!("synthetic.out={}", s.display()),
        format!("filters.language.model={}", s.join("lid.bin").display()),
        "synthetic.docs=2000".to_string(),
        format!("reddit.dumps=[\"{}\"]", s.join("reddit").display()),
        format!("ingest.sources.0.paths=[\"{}\"]", s.join("crawl").display()),
        format!("ingest.sources.1.paths=[\"{}\"]", s.join("cc").display()),
        format!("ingest.sources.2.paths=[\"{}\"]", s.join("books").display()),
    ];
    let with = |cmd: &str| -> Vec<String> {
        let mut a = vec![cmd.to_string(), recipe.to_string()];
        for x in &sets {
            a.extend(["--set".to_string(), x.clone()]);
        }
        a
    };
    let run = |cmd: &str| ok(grist(&with(cmd).iter().map(String::as_str).collect::<Vec<_>>(), &[]));
    let disk_of = |plan: &str, stage: &str| -> String {
        let row = plan.lines().find(|l| l.starts_with(&format!("{stage} "))).unwrap();
        row.split_whitespace().skip(1).take(2).collect::<Vec<_>>().join(" ")
    };
    let before = run("plan");
    run("reddit");
    run("ingest");
    let after = run("plan");
    let m = shards::Manifest::read(&shards::Loc::local(d.join("out/ingest/manifest.json"))).unwrap();
    let bytes: u64 = m.outputs.iter().map(|f| f.bytes).sum();
    // The plan prints one decimal in the unit it picks.
    let printed = disk_of(&after, "filters");
    let (x, unit) = printed.split_once(' ').unwrap();
    let scale = match unit {
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "B" => 1.0,
        u => panic!("unit {u}"),
    };
    let planned = x.parse::<f64>().unwrap() * scale;
    assert!((planned - bytes as f64).abs() <= 0.06 * bytes as f64, "{printed} vs {bytes} bytes\n{after}");
    assert_ne!(disk_of(&before, "filters"), printed, "the plan before ingest cannot know it");
}
