//! `grist dedup` on the built-in sample, run on the ingest output: every planted copy of a
//! prose page is found (exact copies as exact duplicates, near copies as near duplicates with
//! their measured Jaccard), the index side (WebText) is never removed, accounting balances,
//! and four task slices write the same bytes as one.
#![allow(clippy::unwrap_used)]

mod common;

use common::{grist, ok};
use shards::{LedgerReader, Loc, Manifest};

fn run_dedup(d: &std::path::Path, out: &str, tasks: usize) {
    let s = d.join("sample");
    let recipe = concat!(env!("CARGO_MANIFEST_DIR"), "/recipes/demo.toml");
    let mut sets = vec![
        format!("run.out={}", d.join(out).display()),
        format!("synthetic.out={}", s.display()),
        format!("filters.language.model={}", s.join("lid.bin").display()),
        format!("reddit.dumps=[\"{}\"]", s.join("reddit").display()),
        format!("ingest.sources.0.paths=[\"{}\"]", s.join("crawl").display()),
        format!("ingest.sources.1.paths=[\"{}\"]", s.join("cc").display()),
        format!("ingest.sources.2.paths=[\"{}\"]", s.join("books").display()),
        format!("decontaminate.benchmarks.0.paths=[\"{}\"]", s.join("benchmarks/sample-bench.jsonl").display()),
        "dedup.input=\"ingest\"".to_string(),
    ];
    if tasks > 1 {
        sets.push("dedup.partitions=3".into());
    }
    let with = |cmd: &str, args: &mut Vec<String>| {
        args.clear();
        args.extend(["-q".to_string(), cmd.to_string(), recipe.to_string()]);
        for x in &sets {
            args.push("--set".into());
            args.push(x.clone());
        }
    };
    let mut args: Vec<String> = Vec::new();
    for cmd in ["reddit", "ingest"] {
        with(cmd, &mut args);
        ok(grist(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]));
    }
    if tasks == 1 {
        with("dedup", &mut args);
        ok(grist(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]));
        return;
    }
    // As a job array per step would run it: the tasks of a step at once, as processes.
    for step in ["signatures", "buckets", "clusters", "filter"] {
        let outputs: Vec<std::process::Output> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..tasks)
                .map(|t| {
                    let mut args = Vec::new();
                    with("dedup", &mut args);
                    args.extend([
                        "--step".into(),
                        step.into(),
                        "--task".into(),
                        t.to_string(),
                        "--tasks".into(),
                        tasks.to_string(),
                    ]);
                    s.spawn(move || grist(&args.iter().map(String::as_str).collect::<Vec<_>>(), &[]))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for o in outputs {
            ok(o);
        }
    }
}

#[test]
fn planted_copies_are_found_and_slicing_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = d.join("sample");
    let planted: serde_json::Value =
        serde_json::from_str(&ok(grist(&["synthetic", "--out", s.to_str().unwrap(), "--docs", "600"], &[]))).unwrap();
    run_dedup(d, "one", 1);
    let out = d.join("one/dedup");
    let m = Manifest::read(&Loc::local(out.join("manifest.json"))).unwrap();
    assert_eq!(m.accounting.docs_in, m.accounting.docs_out + m.accounting.docs_ledger);
    // Source of every input document, to see which side each representative is on.
    let ingest = d.join("one/ingest");
    let im = Manifest::read(&Loc::local(ingest.join("manifest.json"))).unwrap();
    let mut source_of = std::collections::BTreeMap::<String, String>::new();
    for f in &im.outputs {
        for doc in shards::DocReader::open(&Loc::local(ingest.join(&f.path))).unwrap().read_docs().unwrap() {
            source_of.insert(doc.id, doc.source);
        }
    }
    let mut copies_of_index = 0;
    let mut reasons = std::collections::BTreeMap::<String, u64>::new();
    for f in &m.ledgers {
        for e in LedgerReader::open(&Loc::local(out.join(&f.path))).unwrap().entries().unwrap() {
            assert_ne!(e.source, "webtext", "the index side is never removed: {e:?}");
            assert!(e.cluster_id.is_some() && e.duplicate_of.is_some(), "{e:?}");
            if source_of[e.duplicate_of.as_ref().unwrap()] == "webtext" {
                copies_of_index += 1;
            }
            if e.reason == "near_duplicate" {
                let j: f64 = e.detail.as_deref().unwrap().trim_start_matches("jaccard ").parse().unwrap();
                assert!(j >= 0.8, "{e:?}");
            }
            *reasons.entry(e.reason).or_default() += 1;
        }
    }
    // Every planted copy is removed (the original, or a WebText page, stays).
    let near = planted["planted_near_duplicates"].as_u64().unwrap();
    let exact = planted["planted_exact_duplicates"].as_u64().unwrap();
    assert!(near > 0 && exact > 0);
    assert_eq!(reasons.get("near_duplicate").copied().unwrap_or(0), near, "{reasons:?}");
    assert_eq!(reasons.get("exact_duplicate").copied().unwrap_or(0), exact, "{reasons:?}");
    // Across corpora: crawl copies of WebText pages went, the WebText pages stayed.
    assert!(copies_of_index > 0, "no crawl copy of a WebText page was removed");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("one/dedup_clusters/report.json")).unwrap()).unwrap();
    assert_eq!(report["removed"].as_u64().unwrap(), near + exact);

    // Four slices at once (one more than the input has shards; the clusters step in small
    // groups, so its phases have several units each): the same shards, ledgers and removals.
    run_dedup(d, "four", 4);
    for f in m.outputs.iter().chain(&m.ledgers) {
        let a = std::fs::read(out.join(&f.path)).unwrap();
        let b = std::fs::read(d.join("four/dedup").join(&f.path)).unwrap();
        assert!(a == b, "{} differs between 1 and 4 tasks", f.path);
    }

    // The intermediate steps verify too (their exchange files block by block), and a damaged
    // exchange file is named.
    for stage in ["dedup_buckets", "dedup_clusters/verify", "dedup_clusters/reps"] {
        let o = grist(&["inspect", "--verify", d.join("one").join(stage).to_str().unwrap()], &[]);
        assert!(o.status.success(), "{stage}: {}{}", common::stdout(&o), common::stderr(&o));
    }
    let four = d.join("four/dedup_buckets");
    let exch = std::fs::read_dir(&four)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".side-pairs.exch") && std::fs::metadata(p).unwrap().len() > 200)
        .unwrap();
    let mut bytes = std::fs::read(&exch).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x10;
    std::fs::write(&exch, &bytes).unwrap();
    let o = grist(&["inspect", "--verify", four.to_str().unwrap()], &[]);
    let all = format!("{}{}", common::stdout(&o), common::stderr(&o));
    assert!(!o.status.success() && all.contains(exch.file_name().unwrap().to_str().unwrap()), "{all}");

    // A step whose earlier step is incomplete is refused with the command to run.
    let o = grist(
        &[
            "-q",
            "dedup",
            concat!(env!("CARGO_MANIFEST_DIR"), "/recipes/demo.toml"),
            "--step",
            "filter",
            "--set",
            &format!("run.out={}", d.join("one").display()),
            "--set",
            "dedup.input=\"ingest\"",
        ],
        &[],
    );
    assert!(o.status.success(), "the filter step after a complete run just skips: {}", common::stderr(&o));
    std::fs::remove_file(d.join("one/dedup_clusters/report.json")).unwrap();
    let o = grist(
        &[
            "-q",
            "dedup",
            concat!(env!("CARGO_MANIFEST_DIR"), "/recipes/demo.toml"),
            "--step",
            "filter",
            "--set",
            &format!("run.out={}", d.join("one").display()),
            "--set",
            "dedup.input=\"ingest\"",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(common::stderr(&o).contains("grist dedup --step clusters"), "{}", common::stderr(&o));

    // The removal guard: a cap below the duplicate rate fails the stage with a clear message.
    let recipe = concat!(env!("CARGO_MANIFEST_DIR"), "/recipes/demo.toml");
    let o = grist(
        &[
            "-q",
            "dedup",
            recipe,
            "--set",
            &format!("run.out={}", d.join("one").display()),
            "--set",
            "dedup.input=\"ingest\"",
            "--set",
            "dedup.max_removal=0.001",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(common::stderr(&o).contains("more than dedup.max_removal"), "{}", common::stderr(&o));
}

#[test]
fn killed_dedup_resumes_to_the_uninterrupted_output() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    common::sample(d, 20_000);
    let recipe_for = |out: &std::path::Path| {
        let r = common::sample_recipe(d, out, "unit_bytes = 1");
        let mut text = std::fs::read_to_string(&r).unwrap();
        text.push_str("\n[dedup]\ninput = \"ingest\"\nmode = \"shingles\"\n");
        std::fs::write(&r, text).unwrap();
        r
    };
    let clean = d.join("clean");
    let clean_recipe = recipe_for(&clean);
    ok(grist(&["-q", "ingest", clean_recipe.to_str().unwrap()], &[]));
    ok(grist(&["-q", "dedup", clean_recipe.to_str().unwrap()], &[]));

    let out = d.join("killed");
    let recipe = recipe_for(&out);
    ok(grist(&["-q", "ingest", recipe.to_str().unwrap()], &[]));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_grist"))
        .args(["-q", "dedup", recipe.to_str().unwrap()])
        .env("RAYON_NUM_THREADS", "1")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // SIGKILL as soon as the first signature unit is complete.
    let first = out.join("dedup_signatures/part-00000.done.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !first.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    ok(grist(&["-q", "dedup", recipe.to_str().unwrap()], &[]));
    let (a, b) = (common::shard_bytes(&clean.join("dedup")), common::shard_bytes(&out.join("dedup")));
    assert!(!a.is_empty() && a == b, "the resumed dedup output differs from the uninterrupted one");
    let removals = |o: &std::path::Path| std::fs::read(o.join("dedup_clusters/removals.parquet")).unwrap();
    assert_eq!(removals(&clean), removals(&out));

    // Removals are bound to the clusters run that computed them: a shard's removals table
    // changed since (here one byte; or one copied in from another run) is refused before use.
    let table_path = out.join("dedup_clusters/removals/part-00000.side-removals-00000.parquet");
    let mut table = std::fs::read(&table_path).unwrap();
    let mid = table.len() / 2;
    table[mid] ^= 0x01;
    std::fs::write(&table_path, &table).unwrap();
    std::fs::remove_file(out.join("dedup/manifest.json")).unwrap();
    std::fs::remove_file(out.join("dedup/part-00000.done.json")).unwrap();
    let o = grist(&["-q", "dedup", recipe.to_str().unwrap(), "--step", "filter"], &[]);
    let err = common::stderr(&o);
    assert!(!o.status.success() && err.contains("side-removals-00000.parquet") && err.contains("checksum"), "{err}");
}

/// Incremental dedup through the CLI: dump A (the sample's first crawl file, and the books),
/// then dump B (its second crawl file and the first again) with `dedup.index = [A's run.out]`, removes the same
/// documents for the same reasons as one run over all of them with `dedup.dumps`; B's run
/// signs only B's shards.
#[test]
fn a_new_dump_against_an_index_run_equals_one_run_over_both() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = d.join("sample");
    ok(grist(&["synthetic", "--out", s.to_str().unwrap(), "--docs", "600"], &[]));
    // Dump B: the second crawl file, and the first one again (its pages recrawled).
    std::fs::create_dir(s.join("dump-b")).unwrap();
    std::fs::rename(s.join("crawl/crawl-00001.jsonl.zst"), s.join("dump-b/crawl-00001.jsonl.zst")).unwrap();
    std::fs::copy(s.join("crawl/crawl-00000.jsonl.gz"), s.join("dump-b/crawl-00000.jsonl.gz")).unwrap();
    let recipe = |name: &str, sources: &[(&str, &str)], dedup: &str| {
        let mut text = format!("[run]\nout = \"{}\"\n\n[ingest]\nmin_words = 5\n\n", d.join(name).display());
        for (source, sub) in sources {
            text.push_str(&format!(
                "[[ingest.sources]]\nname = \"{source}\"\npaths = [\"{}\"]\nurl_field = \"metadata.url\"\n\n",
                s.join(sub).display()
            ));
        }
        text.push_str(&format!("[dedup]\ninput = \"ingest\"\nmode = \"shingles\"\nmax_removal = 0.9\n{dedup}\n"));
        let path = d.join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        for cmd in ["ingest", "dedup"] {
            ok(grist(&["-q", cmd, path.to_str().unwrap()], &[]));
        }
    };
    let (first, second, books) = (("dump-a", "crawl"), ("dump-b", "dump-b"), ("books", "books"));
    recipe("a", &[first, books], "dumps = [\"dump-a\"]");
    recipe("b", &[second], &format!("index = [\"{}\"]", d.join("a").display()));
    recipe("ab", &[first, second, books], "dumps = [\"dump-a\", \"dump-b\"]");
    let removed = |run: &str| -> std::collections::BTreeSet<(String, String, Option<String>, Option<String>)> {
        let dir = d.join(run).join("dedup");
        let m = Manifest::read(&Loc::local(dir.join("manifest.json"))).unwrap();
        let mut out = std::collections::BTreeSet::new();
        for f in &m.ledgers {
            for e in LedgerReader::open(&Loc::local(dir.join(&f.path))).unwrap().entries().unwrap() {
                out.insert((e.id, e.reason, e.duplicate_of, e.detail));
            }
        }
        out
    };
    let (a, b, ab) = (removed("a"), removed("b"), removed("ab"));
    assert!(!a.is_empty() && !b.is_empty(), "both dumps have duplicates: {} {}", a.len(), b.len());
    let both: std::collections::BTreeSet<_> = a.union(&b).cloned().collect();
    assert_eq!(both, ab, "A then B incrementally != one run over A and B in dump order");
    // Some of B's removals are copies of A's documents: the index at work.
    let a_ids: std::collections::BTreeSet<String> = {
        let ingest = d.join("a/ingest");
        let m = Manifest::read(&Loc::local(ingest.join("manifest.json"))).unwrap();
        m.outputs
            .iter()
            .flat_map(|f| shards::DocReader::open(&Loc::local(ingest.join(&f.path))).unwrap().read_docs().unwrap())
            .map(|doc| doc.id)
            .collect()
    };
    let of_a = b.iter().filter(|r| a_ids.contains(r.2.as_deref().unwrap())).count();
    assert!(of_a > 0, "no B document was removed for an A one");
    let sig = |run: &str| Manifest::read(&Loc::local(d.join(run).join("dedup_signatures/manifest.json"))).unwrap();
    let ingest_b = Manifest::read(&Loc::local(d.join("b/ingest/manifest.json"))).unwrap();
    assert_eq!(sig("b").units, ingest_b.units, "B's run signs B's shards only");
    assert_eq!(sig("ab").units, sig("a").units + sig("b").units);
    println!("removed: A {}, B {} ({of_a} as copies of A), one run {}", a.len(), b.len(), ab.len());
}
