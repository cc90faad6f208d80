//! End-to-end tests of `grist ingest`, `grist run` and `grist inspect` through the binary:
//! accounting, determinism across task and thread counts, resume after a kill, verification
//! of tampered outputs, bad input, and real Common Crawl text.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;

use common::*;
use shards::{DocReader, LedgerReader, Loc, Manifest};

fn report(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

/// Every Parquet file under a real (not temporary) name opens and validates.
fn assert_visible_files_complete(stage: &std::path::Path) {
    for name in shard_bytes(stage).keys() {
        let loc = Loc::local(stage.join(name));
        if name.starts_with("ledger-") {
            LedgerReader::open(&loc).unwrap();
        } else {
            DocReader::open(&loc).unwrap();
        }
    }
}

#[test]
fn accounting_matches_what_the_sample_planted() {
    let dir = tempfile::tempdir().unwrap();
    let planted = sample(dir.path(), 400);
    let out = dir.path().join("run");
    let recipe = sample_recipe(dir.path(), &out, "");
    let rep = report(&ok(grist(&["-q", "ingest", recipe.to_str().unwrap()], &[])));
    let records = planted["crawl_records"].as_u64().unwrap() + planted["book_files"].as_u64().unwrap();
    assert_eq!(rep["accounting"]["docs_in"], records);

    let m = Manifest::read(&Loc::local(out.join("ingest/manifest.json"))).unwrap();
    assert!(m.accounting.balanced());
    for (reason, key) in [
        ("empty", "planted_empty"),
        ("too_short", "planted_short"),
        ("malformed_json", "planted_malformed_json"),
        ("invalid_utf8", "planted_invalid_utf8"),
    ] {
        assert_eq!(m.counters.get(reason).copied().unwrap_or(0), planted[key].as_u64().unwrap(), "{reason}");
    }
    // The ledger holds exactly the removed documents, each with a location in its input.
    let ledgered: Vec<_> = m
        .ledgers
        .iter()
        .flat_map(|f| LedgerReader::open(&Loc::local(out.join("ingest").join(&f.path))).unwrap().entries().unwrap())
        .collect();
    assert_eq!(ledgered.len() as u64, m.accounting.docs_ledger);
    assert!(ledgered.iter().all(|e| e.stage == "ingest" && e.location.as_deref().is_some_and(|l| l.contains('@'))));
    // Kept documents carry their source and, for the crawl, a URL.
    let docs = DocReader::open(&Loc::local(out.join("ingest/part-00000.parquet"))).unwrap().read_docs().unwrap();
    assert!(
        docs.iter().all(|d| d.source == "common_crawl" && d.url.as_deref().is_some_and(|u| u.starts_with("https://")))
    );
}

#[test]
fn byte_identical_for_any_task_and_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    sample(dir.path(), 600);
    // Small units so the plan has several of them to deal out.
    let run = |name: &str, tasks: usize, threads: &str| {
        let out = dir.path().join(name);
        let recipe = sample_recipe(dir.path(), &out, "unit_bytes = 4096\nrow_group_bytes = 8192");
        for t in 0..tasks {
            ok(grist(
                &["-q", "ingest", recipe.to_str().unwrap(), "--task", &t.to_string(), "--tasks", &tasks.to_string()],
                &[("RAYON_NUM_THREADS", threads)],
            ));
        }
        out.join("ingest")
    };
    let one = run("one", 1, "1");
    let three = run("three", 3, "2");
    let m1 = Manifest::read(&Loc::local(one.join("manifest.json"))).unwrap();
    let m3 = Manifest::read(&Loc::local(three.join("manifest.json"))).unwrap();
    assert!(m1.units >= 4, "the test needs several units, got {}", m1.units);
    assert_eq!(m1.outputs, m3.outputs);
    assert_eq!(m1.ledgers, m3.ledgers);
    assert_eq!(m1.accounting, m3.accounting);
    let (b1, b3) = (shard_bytes(&one), shard_bytes(&three));
    assert_eq!(b1.len() as u64, 2 * m1.units);
    assert!(b1 == b3, "shard bytes differ between 1 task and 3 tasks");
    // Three task stats files, and only the last task to finish wrote the stage manifest.
    assert_eq!(std::fs::read_dir(three.join("stats")).unwrap().count(), 3);
}

#[test]
fn killed_run_leaves_no_partial_file_and_rerun_equals_uninterrupted() {
    let dir = tempfile::tempdir().unwrap();
    sample(dir.path(), 600);
    let extra = "unit_bytes = 4096\nrow_group_bytes = 8192";
    let clean_out = dir.path().join("clean");
    ok(grist(&["-q", "ingest", sample_recipe(dir.path(), &clean_out, extra).to_str().unwrap()], &[]));

    let out = dir.path().join("killed");
    let recipe = sample_recipe(dir.path(), &out, extra);
    let killed = grist(
        &["-q", "ingest", recipe.to_str().unwrap()],
        &[("GRIST_TEST_ABORT_AFTER_DOCS", "400"), ("RAYON_NUM_THREADS", "1")],
    );
    assert!(!killed.status.success(), "the abort hook did not fire");
    let stage = out.join("ingest");
    assert!(!stage.join("manifest.json").exists(), "a killed run must not leave a stage manifest");
    // Every visible file is complete: each Parquet file opens and validates.
    let visible = shard_bytes(&stage);
    let temps = std::fs::read_dir(&stage)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".tmp"))
        .count();
    assert!(temps > 0, "the kill should have interrupted a unit mid-write");
    assert!(!visible.is_empty(), "some units should have completed before the kill");
    assert_visible_files_complete(&stage);

    let rerun = report(&ok(grist(&["-q", "ingest", recipe.to_str().unwrap()], &[])));
    assert!(rerun["units_skipped"].as_u64().unwrap() >= 1, "completed units must be skipped: {rerun}");
    assert!(rerun["stage_complete"].as_bool().unwrap());
    assert!(
        shard_bytes(&stage) == shard_bytes(&clean_out.join("ingest")),
        "resumed output differs from the uninterrupted run"
    );
    let hidden: Vec<_> = std::fs::read_dir(&stage)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "the rerun must clean up the killed unit's temporary files: {hidden:?}");
}

#[test]
fn verify_fails_loudly_on_tampered_output() {
    let dir = tempfile::tempdir().unwrap();
    sample(dir.path(), 200);
    let out = dir.path().join("run");
    let recipe = sample_recipe(dir.path(), &out, "");
    ok(grist(&["-q", "ingest", recipe.to_str().unwrap()], &[]));
    let stage = out.join("ingest");
    let good = grist(&["inspect", "--verify", stage.to_str().unwrap()], &[]);
    assert!(stdout(&good).starts_with("ok: stage ingest"), "{}", stdout(&good));

    // Swap one unit's ledger for the other's: both valid Parquet, but not what the manifest recorded.
    std::fs::copy(stage.join("ledger-00001.parquet"), stage.join("ledger-00000.parquet")).unwrap();
    let bad = grist(&["inspect", "--verify", stage.to_str().unwrap()], &[]);
    assert_eq!(bad.status.code(), Some(3));
    let text = stdout(&bad);
    assert!(text.contains("FAILED") && text.contains("ledger-00000.parquet") && text.contains("mismatch"), "{text}");

    // A missing marker is reported too.
    std::fs::remove_file(stage.join("part-00001.done.json")).unwrap();
    let text = stdout(&grist(&["inspect", "--verify", "--json", stage.to_str().unwrap()], &[]));
    let v = report(&text);
    assert!(
        v["problems"].as_array().unwrap().iter().any(|p| p.as_str().unwrap().contains("unit 1: completion marker")),
        "{text}"
    );
}

#[test]
fn truncated_gzip_keeps_complete_records_and_ledgers_the_break() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut body = Vec::new();
    for i in 0..2000 {
        writeln!(body, "{}", serde_json::json!({"text": format!("record number {i} has enough words in it to keep")}))
            .unwrap();
    }
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&body).unwrap();
    let gz = enc.finish().unwrap();
    std::fs::write(data.join("cut.jsonl.gz"), &gz[..gz.len() * 2 / 3]).unwrap();
    let recipe = dir.path().join("r.toml");
    let out = dir.path().join("out");
    std::fs::write(
        &recipe,
        format!(
            "[run]\nout = \"{}\"\n[ingest]\n[[ingest.sources]]\nname = \"web\"\npaths = [\"{}\"]\n",
            out.display(),
            data.display()
        ),
    )
    .unwrap();

    let rep = report(&ok(grist(&["-q", "ingest", recipe.to_str().unwrap()], &[])));
    let kept = rep["accounting"]["docs_out"].as_u64().unwrap();
    assert!(kept > 500 && kept < 2000, "kept {kept}");
    let ledger = LedgerReader::open(&Loc::local(out.join("ingest/ledger-00000.parquet"))).unwrap().entries().unwrap();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].reason, "corrupt_input");
    assert!(ledger[0].detail.as_deref().unwrap().contains("compressed byte"), "{:?}", ledger[0]);
    // The kept records are exactly the first `kept` ones, in order.
    let docs = DocReader::open(&Loc::local(out.join("ingest/part-00000.parquet"))).unwrap().read_docs().unwrap();
    assert!(docs.iter().enumerate().all(|(i, d)| d.text.starts_with(&format!("record number {i} "))));

    // Under --strict the same input is an error naming the file and the offset.
    let strict = grist(
        &[
            "-q",
            "ingest",
            recipe.to_str().unwrap(),
            "--set",
            "ingest.strict=true",
            "--set",
            &format!("run.out={}", dir.path().join("strict").display()),
        ],
        &[],
    );
    assert_eq!(strict.status.code(), Some(1));
    let err = stderr(&strict);
    assert!(err.contains("cut.jsonl.gz (byte ") && err.contains("corrupt_input"), "{err}");
}

#[test]
fn recipe_and_path_mistakes_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("r.toml");
    std::fs::write(
        &recipe,
        "[run]\nout = \"o\"\n[ingest]\nmin_wordz = 3\n[[ingest.sources]]\nname = \"a\"\npaths = [\"x\"]\n",
    )
    .unwrap();
    let e = stderr(&grist(&["ingest", recipe.to_str().unwrap()], &[]));
    assert!(e.contains("r.toml") && e.contains("unknown field `min_wordz`"), "{e}");

    std::fs::write(
        &recipe,
        "[run]\nout = \"o\"\n[ingest]\n[[ingest.sources]]\nname = \"a\"\npaths = [\"/nonexistent/grist\"]\n",
    )
    .unwrap();
    let e = stderr(&grist(&["ingest", recipe.to_str().unwrap(), "--set", "ingest.min_wordz=1"], &[]));
    assert!(e.contains("no key `min_wordz`") && e.contains("min_words"), "{e}");
    let o = grist(&["ingest", recipe.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("/nonexistent/grist"), "{}", stderr(&o));

    let o = grist(&["ingest", recipe.to_str().unwrap(), "--task", "3", "--tasks", "3"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("task 3 of 3 does not exist"), "{}", stderr(&o));
    let o = grist(&["inspect", dir.path().to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("manifest.json") && stderr(&o).contains("not found"), "{}", stderr(&o));
}

#[test]
fn slurm_array_variables_select_the_slice() {
    let dir = tempfile::tempdir().unwrap();
    sample(dir.path(), 200);
    let out = dir.path().join("run");
    let recipe = sample_recipe(dir.path(), &out, "");
    // A 1-based Slurm array of 2 tasks: index 2 is slice 1, which owns unit 1 (books).
    let o = ok(grist(
        &["-q", "ingest", recipe.to_str().unwrap()],
        &[("SLURM_ARRAY_TASK_ID", "2"), ("SLURM_ARRAY_TASK_COUNT", "2"), ("SLURM_ARRAY_TASK_MIN", "1")],
    ));
    let rep = report(&o);
    assert_eq!(
        (rep["task"].as_u64(), rep["units_done"].as_u64(), rep["stage_complete"].as_bool()),
        (Some(1), Some(1), Some(false))
    );
    assert!(out.join("ingest/part-00001.parquet").exists() && !out.join("ingest/part-00000.parquet").exists());
}

#[test]
fn real_common_crawl_text_from_shared_data() {
    let Some(data) = test_data("real_common_crawl_text_from_shared_data") else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let recipe = dir.path().join("r.toml");
    std::fs::write(
        &recipe,
        format!(
            "[run]\nout = \"{}\"\n[ingest]\nmin_words = 5\n[[ingest.sources]]\nname = \"common_crawl\"\npaths = [\"{}\"]\nurl_field = \"metadata.warc_url\"\n",
            out.display(),
            data.join("web/cc2019-30.jsonl.gz").display()
        ),
    )
    .unwrap();
    let rep = report(&ok(grist(&["-q", "ingest", recipe.to_str().unwrap()], &[])));
    // The data README: 697 documents, 44 of them empty or under 5 words.
    assert_eq!(rep["accounting"]["docs_in"], 697);
    assert_eq!(rep["accounting"]["docs_ledger"], 44);
    let docs = DocReader::open(&Loc::local(out.join("ingest/part-00000.parquet"))).unwrap().read_docs().unwrap();
    assert_eq!(docs.len(), 653);
    assert!(docs.iter().all(|d| d.url.as_deref().is_some_and(|u| u.starts_with("http"))));
    let ids: std::collections::BTreeSet<_> = docs.iter().map(|d| &d.id).collect();
    assert_eq!(ids.len(), docs.len(), "ids must be unique");
    ok(grist(&["inspect", "--verify", out.join("ingest").to_str().unwrap()], &[]));
}

#[test]
fn strict_fails_on_bad_records_but_not_on_filtered_documents() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("a.jsonl"),
        "{\"text\": \"two words\"}\n{\"text\": \"\"}\n{\"text\": \"five words are enough here\"}\n",
    )
    .unwrap();
    let recipe = dir.path().join("r.toml");
    let out = dir.path().join("out");
    let body = format!(
        "[run]\nout = \"{}\"\n[ingest]\nmin_words = 5\nstrict = true\n[[ingest.sources]]\nname = \"web\"\npaths = [\"{}\"]\n",
        out.display(),
        data.display()
    );
    std::fs::write(&recipe, &body).unwrap();
    let rep = report(&ok(grist(&["-q", "ingest", recipe.to_str().unwrap()], &[])));
    assert_eq!((rep["accounting"]["docs_out"].as_u64(), rep["accounting"]["docs_ledger"].as_u64()), (Some(1), Some(2)));

    std::fs::write(data.join("a.jsonl"), "{\"text\": \"five words are enough here\"}\n{\"text\": oops}\n").unwrap();
    let o = grist(&["-q", "ingest", recipe.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("a.jsonl (byte 39)") && stderr(&o).contains("malformed_json"), "{}", stderr(&o));
}

#[test]
fn files_that_would_share_ids_are_refused_and_overlaps_read_once() {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["a", "b"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        std::fs::write(dir.path().join(sub).join("x.jsonl"), "{\"text\": \"some text here\"}\n").unwrap();
    }
    let recipe = dir.path().join("r.toml");
    let write = |paths: &str| {
        let out = dir.path().join("out");
        std::fs::write(
            &recipe,
            format!(
                "[run]\nout = \"{}\"\n[ingest]\n[[ingest.sources]]\nname = \"web\"\npaths = [{paths}]\n",
                out.display()
            ),
        )
        .unwrap();
    };
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    write(&format!("\"{}\", \"{}\"", a.display(), b.display()));
    let o = grist(&["-q", "ingest", recipe.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("two files at path `x.jsonl`"), "{}", stderr(&o));

    write(&format!("\"{}\", \"{}/*.jsonl\"", a.display(), a.display()));
    let rep = report(&ok(grist(&["-q", "ingest", recipe.to_str().unwrap()], &[])));
    assert_eq!(rep["accounting"]["docs_in"], 1, "a file named twice is read once");
}

#[test]
fn a_manifest_from_a_newer_grist_is_refused_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    sample(dir.path(), 100);
    let out = dir.path().join("run");
    ok(grist(&["-q", "ingest", sample_recipe(dir.path(), &out, "").to_str().unwrap()], &[]));
    let path = out.join("ingest/manifest.json");
    let text = std::fs::read_to_string(&path).unwrap().replace("\"format_version\": 1", "\"format_version\": 99");
    std::fs::write(&path, text).unwrap();
    let o = grist(&["inspect", out.join("ingest").to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("manifest.json") && e.contains("version 99 is newer") && e.contains("hint: upgrade grist"),
        "{e}"
    );
}

#[test]
fn sigkill_mid_run_then_rerun_equals_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    sample(dir.path(), 20_000);
    let extra = "unit_bytes = 1\nrow_group_bytes = 65536";
    let clean_out = dir.path().join("clean");
    ok(grist(&["-q", "ingest", sample_recipe(dir.path(), &clean_out, extra).to_str().unwrap()], &[]));

    let out = dir.path().join("killed");
    let recipe = sample_recipe(dir.path(), &out, extra);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_grist"))
        .args(["-q", "ingest", recipe.to_str().unwrap()])
        .env("RAYON_NUM_THREADS", "1")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill (SIGKILL) as soon as the first unit is complete.
    let first = out.join("ingest/part-00000.done.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !first.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Whatever the kill left, every file under a real name is complete.
    assert_visible_files_complete(&out.join("ingest"));
    let rerun = report(&ok(grist(&["-q", "ingest", recipe.to_str().unwrap()], &[])));
    assert!(rerun["units_skipped"].as_u64().unwrap() >= 1, "{rerun}");
    assert!(shard_bytes(&out.join("ingest")) == shard_bytes(&clean_out.join("ingest")));
}

#[test]
fn inspect_json_reports_per_source_counts_and_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let planted = sample(dir.path(), 300);
    let out = dir.path().join("run");
    ok(grist(&["-q", "ingest", sample_recipe(dir.path(), &out, "").to_str().unwrap()], &[]));
    let s = report(&ok(grist(&["inspect", "--json", out.join("ingest").to_str().unwrap()], &[])));
    assert_eq!(s["sources"]["books"]["docs"], planted["book_files"]);
    assert_eq!(s["sources"]["common_crawl"]["removed"]["malformed_json"], planted["planted_malformed_json"]);
    let kept: u64 = ["books", "common_crawl"].iter().map(|k| s["sources"][k]["docs"].as_u64().unwrap()).sum();
    assert_eq!(kept, s["docs_out"].as_u64().unwrap());
    let b = &s["sources"]["books"];
    assert!(b["chars_min"].as_u64() <= b["chars_p50"].as_u64() && b["chars_p50"].as_u64() <= b["chars_max"].as_u64());
}

/// A recipe with one source of the given paths and format, writing under `dir/out`.
fn one_source_recipe(
    dir: &std::path::Path,
    paths: &[std::path::PathBuf],
    format: &str,
    min_words: usize,
) -> std::path::PathBuf {
    let list: Vec<String> = paths.iter().map(|p| format!("\"{}\"", p.display())).collect();
    let recipe = dir.join("r.toml");
    std::fs::write(
        &recipe,
        format!(
            "[run]\nout = \"{}\"\n[ingest]\nmin_words = {min_words}\nunit_bytes = 1\n[[ingest.sources]]\nname = \"common_crawl\"\nformat = \"{format}\"\npaths = [{}]\n",
            dir.join("out").display(),
            list.join(", ")
        ),
    )
    .unwrap();
    recipe
}

fn all_docs(stage: &std::path::Path) -> Vec<shards::Doc> {
    let m = Manifest::read(&Loc::local(stage.join("manifest.json"))).unwrap();
    m.outputs
        .iter()
        .flat_map(|f| DocReader::open(&Loc::local(stage.join(&f.path))).unwrap().read_docs().unwrap())
        .collect()
}

#[test]
fn warc_and_wet_of_one_capture_give_one_document_id() {
    let Some(data) = test_data("warc_and_wet_of_one_capture_give_one_document_id") else { return };
    let dir = tempfile::tempdir().unwrap();
    let web = data.join("web");
    let recipe =
        one_source_recipe(dir.path(), &[web.join("whirlwind.warc.gz"), web.join("whirlwind.warc.wet.gz")], "auto", 0);
    let rep = report(&ok(grist(&["-q", "ingest", recipe.to_str().unwrap()], &[])));
    assert_eq!(rep["accounting"]["docs_out"], 2);
    let docs = all_docs(&dir.path().join("out/ingest"));
    assert_eq!(docs[0].id, docs[1].id, "the WARC response and its WET conversion are one capture");
    assert_eq!(docs[0].url, docs[1].url);
    assert_eq!(docs[0].url.as_deref(), Some("https://an.wikipedia.org/wiki/Escopete"));
    // Extraction from HTML keeps the article: its text is part of what the WET holds.
    let first_words: Vec<&str> = docs[0].text.split_whitespace().take(3).collect();
    assert!(docs[1].text.contains(&first_words.join(" ")), "{}\n---\n{}", docs[0].text, docs[1].text);
}

#[test]
fn html_extraction_on_real_pages_drops_boilerplate() {
    let Some(data) = test_data("html_extraction_on_real_pages_drops_boilerplate") else { return };
    let dir = tempfile::tempdir().unwrap();
    let web = data.join("web");
    let recipe = one_source_recipe(
        dir.path(),
        &[web.join("dolma-sample-0000.warc.gz"), web.join("dolma-sample-0001.warc.gz")],
        "warc",
        0,
    );
    let rep = report(&ok(grist(&["-q", "ingest", recipe.to_str().unwrap()], &[])));
    assert_eq!(rep["accounting"]["docs_in"], 37, "22 + 15 responses");
    let docs = all_docs(&dir.path().join("out/ingest"));
    for d in &docs {
        for junk in ["<script", "function(", "{display:", "</div>", "var "] {
            assert!(
                !d.text.contains(junk),
                "{junk:?} in {}: {}",
                d.url.as_deref().unwrap_or("-"),
                &d.text[..d.text.len().min(300)]
            );
        }
    }
    let weld =
        docs.iter().find(|d| d.url.as_deref() == Some("https://www.cs.washington.edu/people/faculty/weld")).unwrap();
    assert!(weld.text.contains("Professor Emeritus at the Paul G. Allen School"), "{}", weld.text);
    // Main text, not the whole page: the site's navigation menu is gone.
    assert!(!weld.text.contains("Skip to main content"), "{}", &weld.text[..600.min(weld.text.len())]);
    ok(grist(&["inspect", "--verify", dir.path().join("out/ingest").to_str().unwrap()], &[]));
}

#[test]
fn malformed_warcs_become_ledger_entries_and_arc_files_errors() {
    let Some(data) = test_data("malformed_warcs_become_ledger_entries_and_arc_files_errors") else { return };
    let dir = tempfile::tempdir().unwrap();
    let edge = data.join("web/edge");
    let files: Vec<_> =
        ["example.warc.gz", "example-trunc.warc", "resiliparse-clipped.warc.gz", "example-iana.org-chunked.warc"]
            .iter()
            .map(|f| edge.join(f))
            .collect();
    let recipe = one_source_recipe(dir.path(), &files, "warc", 0);
    ok(grist(&["-q", "ingest", recipe.to_str().unwrap()], &[]));
    let stage = dir.path().join("out/ingest");
    let m = Manifest::read(&Loc::local(stage.join("manifest.json"))).unwrap();
    assert_eq!(m.counters.get("truncated_gzip"), Some(&1), "{:?}", m.counters);
    assert_eq!(m.counters.get("warc_missing_trailer"), Some(&1), "{:?}", m.counters);
    let docs = all_docs(&stage);
    assert!(docs.iter().any(|d| d.text.contains("illustrative examples")), "example.com's page");
    assert!(
        docs.iter().any(|d| d.url.as_deref().is_some_and(|u| u.contains("iana.org"))),
        "the chunked page is decoded"
    );
    ok(grist(&["inspect", "--verify", stage.to_str().unwrap()], &[]));

    let recipe = one_source_recipe(dir.path(), &[edge.join("bad.arc")], "warc", 0);
    let o = grist(
        &["-q", "ingest", recipe.to_str().unwrap(), "--set", &format!("run.out={}", dir.path().join("arc").display())],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("bad.arc (byte 0)") && stderr(&o).contains("legacy ARC"), "{}", stderr(&o));
}

#[test]
fn a_lying_content_length_loses_one_record_and_verify_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let conversion = |i: usize, len: Option<usize>| {
        let body = format!("page {i} has enough words in it to be kept as a document");
        format!(
            "WARC/1.0\r\nWARC-Type: conversion\r\nWARC-Target-URI: http://x/{i}\r\nWARC-Record-ID: <urn:uuid:{i}>\r\nContent-Length: {}\r\n\r\n{body}\r\n\r\n",
            len.unwrap_or(body.len())
        )
    };
    // Record 3's length is a digit flip (900,000,000); record 7's overruns by tens of MiB's worth.
    let wet: String = (0..12)
        .map(|i| conversion(i, [(3, 900_000_000), (7, 30 << 20)].iter().find(|p| p.0 == i).map(|p| p.1)))
        .collect();
    let file = dir.path().join("lying.warc.wet");
    std::fs::write(&file, &wet).unwrap();
    let recipe = one_source_recipe(dir.path(), &[file], "warc", 0);
    ok(grist(&["-q", "ingest", recipe.to_str().unwrap()], &[]));
    let stage = dir.path().join("out/ingest");
    let urls: Vec<String> = all_docs(&stage).into_iter().filter_map(|d| d.url).collect();
    // Every record but the digit-flipped one is a document; 7 was cut at record 8.
    let want: Vec<String> = (0..12).filter(|&i| i != 3).map(|i| format!("http://x/{i}")).collect();
    assert_eq!(urls, want);
    let m = Manifest::read(&Loc::local(stage.join("manifest.json"))).unwrap();
    let lost = conversion(3, Some(900_000_000)).len() as u64;
    assert_eq!(m.counters.get("warc_bytes_not_in_records"), Some(&lost), "{:?}", m.counters);
    assert_eq!(m.counters.get("warc_bytes_in_records"), Some(&(wet.len() as u64 - lost)), "{:?}", m.counters);
    assert_eq!(m.counters.get("warc_short_content_length"), Some(&1), "{:?}", m.counters);
    let ledger = LedgerReader::open(&Loc::local(stage.join("ledger-00000.parquet"))).unwrap().entries().unwrap();
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].reason, "bad_content_length");
    assert!(ledger[0].detail.as_deref().unwrap().contains(&format!("{lost} bytes skipped")), "{:?}", ledger[0]);
    // Verify passes (the stage is consistent) but says loudly that the source lost bytes.
    let v = ok(grist(&["inspect", "--verify", stage.to_str().unwrap()], &[]));
    assert!(v.contains(&format!("WARNING: input lost: {lost} decompressed WARC bytes")), "{v}");
    let summary = ok(grist(&["inspect", stage.to_str().unwrap()], &[]));
    assert!(summary.contains(&format!("warc_bytes_not_in_records {lost}")), "{summary}");
}

/// Units are fingerprinted one by one: adding a source (a new crawl dump) to a finished run
/// redoes only the new source's units, and the result equals a fresh run over both.
#[test]
fn a_new_source_redoes_only_its_own_units() {
    let dir = tempfile::tempdir().unwrap();
    sample(dir.path(), 400);
    let s = dir.path().join("sample");
    let out = dir.path().join("grown");
    let one = ingest_recipe(dir.path(), &out, &[("common_crawl", s.join("crawl"))]);
    let first = report(&ok(grist(&["-q", "ingest", one.to_str().unwrap()], &[])));
    let crawl_units = first["units_done"].as_u64().unwrap();
    assert!(crawl_units >= 1);
    let before = shard_bytes(&out.join("ingest"));
    let both = [("common_crawl", s.join("crawl")), ("books", s.join("books"))];
    let two = ingest_recipe(dir.path(), &out, &both);
    let second = report(&ok(grist(&["-q", "ingest", two.to_str().unwrap()], &[])));
    assert_eq!(second["units_skipped"].as_u64(), Some(crawl_units), "{second}");
    assert!(second["units_done"].as_u64().unwrap() >= 1, "{second}");
    let after = shard_bytes(&out.join("ingest"));
    assert!(before.iter().all(|(name, bytes)| after.get(name) == Some(bytes)), "the first source's shards changed");
    let fresh_out = dir.path().join("fresh");
    let fresh = ingest_recipe(dir.path(), &fresh_out, &both);
    ok(grist(&["-q", "ingest", fresh.to_str().unwrap()], &[]));
    assert_eq!(after, shard_bytes(&fresh_out.join("ingest")), "grown run != fresh run");
    // A changed setting of the first source redoes its units, not the second's.
    let mut text = std::fs::read_to_string(&two).unwrap();
    text = text.replacen("name = \"common_crawl\"\n", "name = \"common_crawl\"\ntext_field = \"body\"\n", 1);
    std::fs::write(&two, text).unwrap();
    let third = report(&ok(grist(&["-q", "ingest", two.to_str().unwrap()], &[])));
    assert_eq!(third["units_done"].as_u64(), Some(crawl_units), "{third}");
}
