//! A recipe run through the library, without the binary: the steps in registry order, the
//! stop at an incomplete step, a global step skipped when up to date, `--stage` semantics.
#![allow(clippy::unwrap_used)]

use std::io::Write;

use pipeline::run::{RunEnd, run_recipe, run_stage, run_steps};
use pipeline::steps::{Host, Outcome, StepCtx, StepReport};
use pipeline::{Recipe, StageError, TaskSlice};

/// A host for recipes without training: being asked to train is a failure.
struct NoTrainer;

impl Host for NoTrainer {
    fn train(&self, _: &StepCtx) -> Result<Outcome, StageError> {
        Err(StageError::Usage("this test recipe has no [train]".into()))
    }
    fn estimate_train(&self, _: &Recipe) -> Result<pipeline::steps::Estimate, String> {
        Err("this test recipe has no [train]".into())
    }
}

/// JSON lines of `n` prose-like documents of source `web` and `n` of `books`.
fn corpus(dir: &std::path::Path, n: usize) {
    for (name, word) in
        [("web", "buy cheap deals now click here"), ("books", "the river ran quietly past the old mill")]
    {
        let mut f = std::fs::File::create(dir.join(format!("{name}.jsonl"))).unwrap();
        for i in 0..n {
            let text = format!("{word} {i} ").repeat(20 + i % 7);
            writeln!(f, "{}", serde_json::json!({ "text": text })).unwrap();
        }
    }
}

fn recipe(dir: &std::path::Path, extra: &str) -> Recipe {
    let d = dir.display();
    let text = format!(
        r#"
[run]
out = "{d}/out"
seed = 7

[ingest]
[[ingest.sources]]
name = "web"
paths = ["{d}/web.jsonl"]
[[ingest.sources]]
name = "books"
paths = ["{d}/books.jsonl"]

[quality]
positives = ["books"]
negatives = ["web"]
max_iters = 20
{extra}
"#
    );
    Recipe::parse(&text, "inline", &[]).unwrap()
}

#[test]
fn a_run_goes_in_registry_order_and_a_rerun_skips_what_is_done() {
    let dir = tempfile::tempdir().unwrap();
    corpus(dir.path(), 40);
    let r = recipe(dir.path(), "[quality_filter]\n");
    let mut out = Vec::new();
    assert_eq!(run_recipe(&r, TaskSlice::ALL, &NoTrainer, &mut out).unwrap(), RunEnd::Complete);
    let text = String::from_utf8(out).unwrap();
    let at = |s: &str| text.find(s).unwrap_or_else(|| panic!("no {s:?} in\n{text}"));
    assert!(at("ingest ") < at("quality  trained on"), "{text}");
    assert!(at("quality  trained on") < at("quality_filter "), "{text}");
    assert!(text.contains("keep rate by source"), "{text}");
    assert!(text.contains("outputs  ") && text.contains("/quality_filter/"), "{text}");
    assert!(dir.path().join("out/report.html").exists());

    // The rerun: every unit is skipped, and the global step says it is up to date.
    let (end, done) = run_steps(&r, TaskSlice::ALL, &NoTrainer, &|_| true, &mut std::io::sink()).unwrap();
    assert_eq!(end, RunEnd::Complete);
    let names: Vec<&str> = done.iter().map(|(s, _)| s.name).collect();
    assert_eq!(names, ["ingest", "quality", "quality_filter", "report"]);
    for (s, o) in &done {
        match (&o.report, s.name) {
            (StepReport::Units(t), _) => assert_eq!((t.units_done, t.stage_complete), (0, true), "{}", s.name),
            (StepReport::Quality(_), _) => assert!(o.up_to_date, "the classifier was trained again"),
            (StepReport::Wrote { .. }, "report") => {}
            (other, name) => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn a_slice_stops_at_a_step_other_tasks_still_have_units_of() {
    let dir = tempfile::tempdir().unwrap();
    corpus(dir.path(), 10);
    let r = recipe(dir.path(), "");
    let mut out = Vec::new();
    // Two sources are two units: task 0 of 2 does one, and the run stops there.
    let end = run_recipe(&r, TaskSlice { index: 0, count: 2 }, &NoTrainer, &mut out).unwrap();
    assert_eq!(end, RunEnd::Partial);
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("other tasks still have units to do") && !text.contains("quality  "), "{text}");
    // The other task completes ingest and runs on (the classifier is global: any task runs it).
    let end = run_recipe(&r, TaskSlice { index: 1, count: 2 }, &NoTrainer, &mut std::io::sink()).unwrap();
    assert_eq!(end, RunEnd::Complete);
    assert!(dir.path().join("out/quality/train_report.json").exists());
}

#[test]
fn one_stage_alone_needs_its_input_and_a_missing_table_is_a_no_op() {
    let dir = tempfile::tempdir().unwrap();
    corpus(dir.path(), 10);
    let r = recipe(dir.path(), "[quality_filter]\n");
    // The filter before ingest and quality: an error naming the missing manifest.
    let e = run_stage(&r, "quality_filter", TaskSlice::ALL, &NoTrainer).unwrap_err().to_string();
    assert!(e.contains("model.gqm") || e.contains("manifest.json"), "{e}");
    assert!(run_stage(&r, "dedup", TaskSlice::ALL, &NoTrainer).unwrap().is_none(), "no [dedup]: nothing to do");
    let e = run_stage(&r, "nonesuch", TaskSlice::ALL, &NoTrainer).unwrap_err().to_string();
    assert!(e.contains("unknown stage") && e.contains("quality_filter"), "{e}");
    for name in ["ingest", "quality", "quality_filter"] {
        assert!(run_stage(&r, name, TaskSlice::ALL, &NoTrainer).unwrap().is_some_and(|o| o.complete), "{name}");
    }
}
