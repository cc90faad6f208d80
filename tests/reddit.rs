//! `grist reddit` and the WebText join in `grist ingest`, end to end through the binary.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;

use common::*;
use shards::{LedgerReader, Loc, Manifest};

fn report(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn pushshift_2005_selects_gpt2s_links() {
    let Some(data) = test_data("pushshift_2005_selects_gpt2s_links") else { return };
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("r.toml");
    let dump = data.join("reddit/RS_2005.zst");
    std::fs::write(
        &recipe,
        format!(
            "[run]\nout = \"{}\"\n[reddit]\ndumps = [\"{}\"]\n[ingest]\n[[ingest.sources]]\nname = \"x\"\npaths = [\"{}\"]\n",
            dir.path().join("out").display(),
            dump.display(),
            dump.display()
        ),
    )
    .unwrap();
    let rep = report(&ok(grist(&["-q", "reddit", recipe.to_str().unwrap()], &[])));
    // The data README: 1,182 lines, 840 submissions with score >= 3, no self posts.
    assert_eq!(rep["accounting"]["docs_in"], 1182);
    let m = Manifest::read(&Loc::local(dir.path().join("out/reddit/manifest.json"))).unwrap();
    assert_eq!(m.counters["low_score"], 1182 - 840);
    let selected = m.accounting.docs_out;
    let others: u64 = ["duplicate_url", "media_link", "excluded_domain", "not_http", "no_url"]
        .iter()
        .map(|r| m.counters.get(*r).copied().unwrap_or(0))
        .sum();
    assert_eq!(selected + others, 840);
    assert!(selected > 800, "{selected}");
    // Duplicates point at the submission that was kept.
    let ledger =
        LedgerReader::open(&Loc::local(dir.path().join("out/reddit/ledger-00000.parquet"))).unwrap().entries().unwrap();
    assert!(
        ledger
            .iter()
            .filter(|e| e.reason == "duplicate_url")
            .all(|e| e.duplicate_of.as_deref().is_some_and(|d| d.starts_with("t3_")))
    );
    ok(grist(&["inspect", "--verify", dir.path().join("out/reddit").to_str().unwrap()], &[]));

    // Without the long window the zstd frame is refused with a message that says what to set.
    let o = grist(
        &[
            "-q",
            "reddit",
            recipe.to_str().unwrap(),
            "--set",
            "reddit.zstd_window_log=27",
            "--set",
            &format!("run.out={}", dir.path().join("o2").display()),
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("RS_2005.zst") && e.contains("zstd_window_log = 31"), "{e}");
}

#[test]
fn long_lines_and_a_broken_stream_are_ledgered_and_counted() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let line = |i: usize| {
        format!("{{\"id\": \"s{i}\", \"url\": \"http://site{i}.example/page\", \"score\": 10, \"is_self\": false}}\n")
    };
    let mut plain = String::new();
    for i in 0..300 {
        plain += &line(i);
        if i == 100 {
            // A 3 MiB line (over a 1 MiB cap): skipped without being held, ledgered.
            plain += &format!("{{\"id\": \"huge\", \"selftext\": \"{}\"}}\n", "x".repeat(3 << 20));
        }
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(plain.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    // The dump is cut: the records before the break stay, the break is one row, the unread
    // bytes are counted.
    let dump = dir.path().join("RS_cut.gz");
    std::fs::write(&dump, &gz[..gz.len() - 200]).unwrap();
    let recipe = dir.path().join("r.toml");
    std::fs::write(
        &recipe,
        format!(
            "[run]\nout = \"{}\"\n[reddit]\ndumps = [\"{}\"]\nmax_line_bytes = 1048576\n[ingest]\n[[ingest.sources]]\nname = \"x\"\npaths = [\"{}\"]\n",
            dir.path().join("out").display(),
            dump.display(),
            dump.display()
        ),
    )
    .unwrap();
    ok(grist(&["-q", "reddit", recipe.to_str().unwrap()], &[]));
    let stage = dir.path().join("out/reddit");
    let m = Manifest::read(&Loc::local(stage.join("manifest.json"))).unwrap();
    assert_eq!(m.counters.get("too_large"), Some(&1), "{:?}", m.counters);
    assert_eq!(m.counters.get("corrupt_input"), Some(&1), "{:?}", m.counters);
    assert_eq!(m.counters.get("input_streams_broken"), Some(&1), "{:?}", m.counters);
    assert!(m.accounting.docs_out > 250 && m.accounting.docs_out < 300, "{:?}", m.accounting);
    let ledger = LedgerReader::open(&Loc::local(stage.join("ledger-00000.parquet"))).unwrap().entries().unwrap();
    let big = ledger.iter().find(|e| e.reason == "too_large").unwrap();
    assert!(big.detail.as_deref().unwrap().contains("max_line_bytes 1048576"), "{big:?}");
    let v = ok(grist(&["inspect", "--verify", stage.to_str().unwrap()], &[]));
    assert!(v.contains("WARNING: input lost: 1 files whose compressed stream broke"), "{v}");
}

#[test]
fn crawled_pages_at_reddit_links_become_webtext() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut dump = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    for (i, (url, score)) in [
        ("https://www.news.example/story?utm_source=reddit", 10),
        ("http://blog.example/post/", 3),
        ("http://low.example/", 2),
    ]
    .iter()
    .enumerate()
    {
        writeln!(dump, "{}", serde_json::json!({"id": format!("s{i}"), "url": url, "score": score, "is_self": false, "subreddit": "news", "created_utc": 1_120_000_000 + i})).unwrap();
    }
    writeln!(dump, "{{\"id\": \"self\", \"url\": \"https://www.reddit.com/r/x/1\", \"score\": 50, \"is_self\": true}}")
        .unwrap();
    std::fs::write(d.join("RS_test.zst"), dump.finish().unwrap()).unwrap();
    let crawl: String = [
        ("http://news.example/story", "the story as it was crawled"),
        ("https://blog.example/post", "a blog post worth reading"),
        ("http://low.example/", "a page few people liked"),
        ("http://other.example/", "a page nobody linked"),
    ]
    .iter()
    .map(|(u, t)| format!("{}\n", serde_json::json!({"url": u, "text": t})))
    .collect();
    std::fs::write(d.join("crawl.jsonl"), crawl).unwrap();
    let recipe = d.join("r.toml");
    std::fs::write(
        &recipe,
        format!(
            "[run]\nout = \"{out}\"\n[reddit]\ndumps = [\"{dump}\"]\n[ingest]\n[[ingest.sources]]\nname = \"common_crawl\"\npaths = [\"{crawl}\"]\n[ingest.webtext]\nfrom = [\"common_crawl\"]\n",
            out = d.join("out").display(),
            dump = d.join("RS_test.zst").display(),
            crawl = d.join("crawl.jsonl").display()
        ),
    )
    .unwrap();
    let o = ok(grist(&["-q", "run", recipe.to_str().unwrap()], &[]));
    assert!(o.contains("4 submissions in = 2 URLs selected + 2 in the ledger"), "{o}");
    let docs =
        shards::DocReader::open(&Loc::local(d.join("out/ingest/part-00000.parquet"))).unwrap().read_docs().unwrap();
    let sources: Vec<(&str, &str)> = docs.iter().map(|d| (d.url.as_deref().unwrap(), d.source.as_str())).collect();
    assert_eq!(
        sources,
        [
            ("http://news.example/story", "webtext"),
            ("https://blog.example/post", "webtext"),
            ("http://low.example/", "common_crawl"),
            ("http://other.example/", "common_crawl")
        ]
    );
    // Ingest without the reddit stage is refused with a hint.
    let o = grist(
        &["-q", "ingest", recipe.to_str().unwrap(), "--set", &format!("run.out={}", d.join("fresh").display())],
        &[],
    );
    assert!(stderr(&o).contains("hint: run `grist reddit`"), "{}", stderr(&o));
}

#[test]
fn the_demo_recipe_runs_end_to_end_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let s = d.join("sample");
    let recipe = concat!(env!("CARGO_MANIFEST_DIR"), "/recipes/demo.toml");
    let sets = [
        format!("run.out={}", d.join("out").display()),
        format!("synthetic.out={}", s.display()),
        format!("filters.language.model={}", s.join("lid.bin").display()),
        format!("reddit.dumps=[\"{}\"]", s.join("reddit").display()),
        format!("ingest.sources.0.paths=[\"{}\"]", s.join("crawl").display()),
        format!("ingest.sources.1.paths=[\"{}\"]", s.join("cc").display()),
        format!("ingest.sources.2.paths=[\"{}\"]", s.join("books").display()),
        format!("decontaminate.benchmarks.0.paths=[\"{}\"]", s.join("benchmarks/sample-bench.jsonl").display()),
        // A short training run (a debug build trains the demo's full run in minutes).
        "train.total_tokens=12288".to_string(),
        "train.eval_every=10".to_string(),
    ];
    let mut args = vec!["-q", "run", recipe];
    for x in &sets {
        args.extend(["--set", x.as_str()]);
    }
    let first = ok(grist(&args, &[]));
    for stage in ["ingest", "filters", "quality_filter", "dedup", "decontaminate", "tokenize", "blend"] {
        assert!(first.contains(&format!("verify   {stage}: ")), "{stage} was not verified:\n{first}");
    }
    let planted: serde_json::Value = serde_json::from_slice(&std::fs::read(s.join("synthetic.json")).unwrap()).unwrap();
    let m = Manifest::read(&Loc::local(d.join("out/ingest/manifest.json"))).unwrap();
    // Every selected Reddit link points at a sample page, and every one of them is found.
    assert_eq!(m.counters["webtext_matched"], planted["reddit_selected_links"].as_u64().unwrap());
    assert!(m.counters["not_html"] >= 1 && m.counters["http_status"] >= 1, "{:?}", m.counters);
    let summary = report(&ok(grist(&["inspect", "--json", d.join("out/ingest").to_str().unwrap()], &[])));
    assert_eq!(summary["sources"]["webtext"]["docs"], m.counters["webtext_matched"]);

    // The quality classifier trained on the sample: a model file that loads, and metrics.
    assert!(first.contains("quality  trained on"), "{first}");
    let model =
        pipeline::steps::quality::model::QualityModel::load(&Loc::local(d.join("out/quality/model.gqm"))).unwrap();
    let auc = model.header.metrics["holdout_auc"].as_f64().unwrap();
    assert!(auc > 0.9, "held-out AUC {auc}");
    assert!(
        model.score("The quiet river crossed the valley beside the old harbor.")
            > model.score("CASINO bonus free click winner slots jackpot!!!")
    );

    // The filter kept exactly the documents GPT-3's rule keeps: draw > 1 - score.
    assert!(first.contains("quality_filter 3 units done"), "{first}");
    let fdir = d.join("out/quality_filter");
    let fm = Manifest::read(&Loc::local(fdir.join("manifest.json"))).unwrap();
    // ... on what FineWeb's rules kept of the ingest output.
    let hm = Manifest::read(&Loc::local(d.join("out/filters/manifest.json"))).unwrap();
    assert_eq!(hm.accounting.docs_in, m.accounting.docs_out);
    assert!(hm.accounting.docs_ledger > 0 && hm.accounting.docs_out > 0, "{:?}", hm.accounting);
    assert_eq!(fm.accounting.docs_in, hm.accounting.docs_out);
    for f in &fm.ledgers {
        for e in LedgerReader::open(&Loc::local(fdir.join(&f.path))).unwrap().entries().unwrap() {
            assert_eq!(e.reason, "low_quality");
            assert!(e.draw.unwrap() <= 1.0 - e.score.unwrap(), "{e:?}");
        }
    }
    for f in &fm.outputs {
        let r = shards::DocReader::open(&Loc::local(fdir.join(&f.path))).unwrap();
        for b in r.batches(Some(&["quality_score", "keep_draw"]), 1024).unwrap() {
            let b = b.unwrap();
            let col =
                |i: usize| b.column(i).as_any().downcast_ref::<shards::arrow::array::Float64Array>().unwrap().clone();
            let (s, dr) = (col(0), col(1));
            assert!((0..b.num_rows()).all(|i| dr.value(i) > 1.0 - s.value(i)));
        }
    }
    // WebText is kept far more often than raw crawl, and the run prints the keep report.
    let rate = |src: &str| {
        let (k, r) = (fm.counters[&format!("kept_{src}")], fm.counters[&format!("removed_{src}")]);
        k as f64 / (k + r) as f64
    };
    assert!(rate("webtext") > 5.0 * rate("common_crawl"), "{:?}", fm.counters);
    assert!(first.contains("keep rate by source (Pareto alpha 9.00)") && first.contains("keep curve"), "{first}");

    // Sliced three ways, the filter writes the same bytes; mode "tuned" uses the model's alpha.
    for (name, extra) in [("out2", None), ("out3", Some("quality_filter.mode=\"tuned\""))] {
        let o2 = d.join(name);
        for sub in ["ingest", "filters", "quality"] {
            copy_dir(&d.join("out").join(sub), &o2.join(sub));
        }
        let out_set = format!("run.out={}", o2.display());
        for t in 0..3 {
            let task = t.to_string();
            let mut a = vec!["-q", "quality", "filter", recipe, "--set", &out_set, "--task", &task, "--tasks", "3"];
            if let Some(x) = extra {
                a.extend(["--set", x]);
            }
            ok(grist(&a, &[]));
        }
        let m2 = Manifest::read(&Loc::local(o2.join("quality_filter/manifest.json"))).unwrap();
        if extra.is_none() {
            for f in fm.outputs.iter().chain(&fm.ledgers) {
                let (a, b) = (fdir.join(&f.path), o2.join("quality_filter").join(&f.path));
                assert!(std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(), "{} differs", f.path);
            }
            assert_eq!(m2.counters, fm.counters);
        } else {
            let tuned = model.header.metrics["tuned_alpha"].as_f64().unwrap();
            assert_eq!(m2.config["effective_alpha"].as_f64(), Some(tuned));
            assert!(tuned > 0.25 && tuned < 64.0, "{tuned}");
        }
    }

    // The later stages find what the sample planted: duplicates, and benchmark passages.
    let dm = Manifest::read(&Loc::local(d.join("out/dedup/manifest.json"))).unwrap();
    assert!(dm.accounting.docs_ledger > 0, "dedup found no planted copy after the filter");
    let cm = Manifest::read(&Loc::local(d.join("out/decontaminate/manifest.json"))).unwrap();
    assert!(cm.counters.get("documents_cut").copied().unwrap_or(0) > 0, "{:?}", cm.counters);
    assert!(first.contains("decontam ") && first.contains("documents cut"), "{first}");

    // Tokens and the mixture: the blend gives every source its planned share, exceeded by
    // less than one document, in llm.c shards.
    let bm = Manifest::read(&Loc::local(d.join("out/blend/manifest.json"))).unwrap();
    let recipe_toml: toml::Value = toml::from_str(&std::fs::read_to_string(recipe).unwrap()).unwrap();
    let total = recipe_toml["blend"]["total_tokens"].as_integer().unwrap() as f64;
    let weights = recipe_toml["blend"]["sources"].as_array().unwrap();
    let sum: f64 = weights.iter().map(|w| w["weight"].as_float().unwrap()).sum();
    for w in weights {
        let name = w["name"].as_str().unwrap();
        let target = (w["weight"].as_float().unwrap() / sum * total).round() as u64;
        let got = bm.counters[&format!("tokens_source_{name}")];
        assert!(got >= target && got < target + 3000, "{name}: {got} tokens for a plan of {target}");
    }
    for f in &bm.side {
        let t = shards::tokens::TokenShard::open(&Loc::local(d.join("out/blend").join(&f.path))).unwrap();
        assert_eq!(t.len() as u64, f.rows);
        assert_eq!(t.get(0).unwrap(), 50256, "every document starts with <|endoftext|>");
    }

    // A model whose feature count differs from the recipe's is refused.
    let o = grist(&["-q", "quality", "filter", recipe, "--set", &sets[0], "--set", "quality.num_features=1024"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("model.gqm") && stderr(&o).contains("1024"), "{}", stderr(&o));

    // The GPT trained on the blend: falling loss, a validation loss, a checkpoint that loads.
    assert!(first.contains("train    ") && first.contains("generated The"), "{first}");
    let metrics = std::fs::read_to_string(d.join("out/train/metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = metrics.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let losses: Vec<f64> = lines.iter().filter_map(|v| v["loss"].as_f64()).collect();
    assert!(losses.len() >= 10 && losses[losses.len() - 1] < losses[0] - 1.0, "{losses:?}");
    assert!(lines.iter().any(|v| v["val_loss"].as_f64().is_some_and(|l| l < losses[0])), "{metrics}");
    let latest = std::fs::read_to_string(d.join("out/train/checkpoints/latest")).unwrap();
    let gpt = trainer::checkpoint::load_model(&d.join("out/train/checkpoints").join(latest.trim())).unwrap();
    assert_eq!(gpt.config.vocab_size, 50257);

    // The report: every section, well-formed SVG, and the run's figures in it.
    assert!(first.contains("report   "), "{first}");
    let html = std::fs::read_to_string(d.join("out/report.html")).unwrap();
    for id in ["funnel", "removals", "sources", "quality", "dedup", "decontaminate", "mixture", "training", "documents"]
    {
        assert!(html.contains(&format!("<section id=\"{id}\">")), "section {id} missing");
    }
    assert!(!html.contains("<script") && !html.contains(" src=") && !html.contains("href=\"http"), "self-contained");
    let svgs: Vec<&str> = html.split("<svg").skip(1).map(|s| s.split("</svg>").next().unwrap()).collect();
    assert!(svgs.len() >= 5, "{} charts", svgs.len());
    for svg in &svgs {
        assert_balanced(&format!("<svg{svg}</svg>"));
    }
    assert!(html.contains(&format!("<td>{}</td>", m.accounting.docs_in)), "the funnel shows ingest's documents in");
    assert!(html.contains("Text generated by the trained model"));

    // `inspect why` follows a document removed at each stage, and a cut one to the mixture.
    let run = d.join("out");
    let first_removed = |stage: &str| {
        let m = Manifest::read(&Loc::local(run.join(stage).join("manifest.json"))).unwrap();
        m.ledgers
            .iter()
            .flat_map(|f| LedgerReader::open(&Loc::local(run.join(stage).join(&f.path))).unwrap().entries().unwrap())
            .next()
            .unwrap()
    };
    let chain = ["ingest", "filters", "quality_filter", "dedup"];
    for (stage, reason) in [
        ("ingest", "REMOVED: "),
        ("filters", "REMOVED: fineweb."),
        ("quality_filter", "REMOVED: low_quality (score"),
        ("dedup", "duplicate"),
    ] {
        let e = first_removed(stage);
        let why = ok(grist(&["inspect", "why", &e.id, "--run", run.to_str().unwrap()], &[]));
        let last = why.lines().last().unwrap();
        assert!(last.trim_start().starts_with(stage) && last.contains(reason), "{stage}: {why}");
        assert_eq!(why.lines().count(), 2 + chain.iter().position(|s| *s == stage).unwrap());
    }
    let cm = Manifest::read(&Loc::local(run.join("decontaminate/manifest.json"))).unwrap();
    let cuts = cm.side.iter().find(|f| f.path.contains("side-cuts") && f.rows > 0).unwrap();
    let (src, _) =
        shards::parquet_io::ParquetSource::open_any(&Loc::local(run.join("decontaminate").join(&cuts.path))).unwrap();
    let b = src.batches(None, 16).unwrap().next().unwrap().unwrap();
    let cut_id = shards::str_col(&b, "id").unwrap().value(0).to_string();
    let why = ok(grist(&["inspect", "why", &cut_id, "--run", run.to_str().unwrap(), "--json"], &[]));
    let v: serde_json::Value = serde_json::from_str(&why).unwrap();
    let stages: Vec<&str> = v["stages"].as_array().unwrap().iter().map(|s| s["stage"].as_str().unwrap()).collect();
    assert_eq!(stages[..6], ["ingest", "filters", "quality_filter", "dedup", "decontaminate", "tokenize"]);
    assert_eq!(v["stages"][4]["at"]["cuts"][0]["benchmark"], "sample-bench");
    // `inspect RUN`: the stages chain (each one's input is the last one's output), the mixture
    // and the training; `inspect` of dedup and decontaminate gives their own figures.
    let v = report(&ok(grist(&["inspect", "--json", run.to_str().unwrap()], &[])));
    let st = v["stages"].as_array().unwrap();
    let at = |name: &str| st.iter().find(|x| x["stage"] == name).unwrap();
    for (a, b) in
        [("ingest", "filters"), ("filters", "quality_filter"), ("quality_filter", "dedup"), ("dedup", "decontaminate")]
    {
        assert_eq!(at(a)["kept"], at(b)["in"], "{a} -> {b}");
    }
    assert_eq!(v["mixture"].as_array().unwrap().len(), 4);
    assert!(v["training"]["steps"].as_u64().unwrap() > 0 && v["training"]["val_loss"].is_number());
    let dd = report(&ok(grist(&["inspect", "--json", run.join("dedup").to_str().unwrap()], &[])));
    let largest = &dd["details"]["largest_clusters"][0];
    assert!(largest["size"].as_u64().unwrap() >= 2 && !largest["text"].as_str().unwrap().is_empty(), "{dd}");
    let dc = report(&ok(grist(&["inspect", "--json", run.join("decontaminate").to_str().unwrap()], &[])));
    assert!(dc["details"]["gram_hits_by_benchmark"]["sample-bench"].as_u64().unwrap() > 0, "{dc}");
    let hf = report(&ok(grist(&["inspect", "--json", run.join("filters").to_str().unwrap()], &[])));
    // The language ID first: every page labelled (the sample's model knows its words), then
    // FineWeb's rules, which remove crawl pages whose lines lack punctuation.
    let filters = &hf["details"]["filters"]["filters"];
    assert_eq!((filters[0][0].as_str(), filters[1][0].as_str()), (Some("language"), Some("fineweb")), "{hf}");
    assert_eq!(filters[0][1][0][1]["histogram"][0][1], m.accounting.docs_out, "{hf}");
    assert_eq!(filters[1][1][0][0], "line_punct_ratio", "{hf}");
    assert!(filters[1][1][0][1]["removed"].as_u64().unwrap() > 0, "{hf}");
    let b = shards::DocReader::open(&Loc::local(run.join("filters/part-00000.parquet")))
        .unwrap()
        .batches(Some(&["language"]), 16)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(shards::str_col(&b, "language").unwrap().value(0), "en");
    let o = grist(&["inspect", "why", "no-such-id", "--run", run.to_str().unwrap()], &[]);
    assert!(!o.status.success() && stdout(&o).contains("not in any stage"));

    let again = ok(grist(&args, &[]));
    assert!(again.contains("0 units done, 1 skipped") && again.contains("0 units done, 3 skipped"), "{again}");
    assert!(again.contains("quality  model up to date"), "{again}");
    // Training resumes from its last checkpoint, which has already reached total_tokens.
    let train_line = |o: &str| o.lines().find(|l| l.starts_with("train    ")).map(String::from);
    assert_eq!(train_line(&again), train_line(&first), "{again}");
    // A changed [quality] value retrains.
    let mut changed = args.clone();
    changed.extend(["--set", "quality.l2=2.0"]);
    let third = ok(grist(&changed, &[]));
    assert!(third.contains("quality  trained on"), "{third}");
    // A changed mixture changes the training shards: the GPT is trained again from step 0, and
    // the previous run is kept aside whole (checkpoints, metrics), never deleted.
    let old_latest = std::fs::read_to_string(run.join("train/checkpoints/latest")).unwrap();
    let old_metrics = std::fs::read(run.join("train/metrics.jsonl")).unwrap();
    let mut remixed = args.clone();
    remixed.extend(["--set", "blend.total_tokens=50000"]);
    let fourth = ok(grist(&remixed, &[]));
    assert!(fourth.contains("trained on other data") && fourth.contains("training again from step 0"), "{fourth}");
    let kept = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("train.prev-"))
        .expect("the previous run kept aside");
    assert!(fourth.contains(&format!("the previous run is kept in {}", kept.display())), "{fourth}");
    assert_eq!(std::fs::read_to_string(kept.join("checkpoints/latest")).unwrap(), old_latest);
    assert_eq!(std::fs::read(kept.join("metrics.jsonl")).unwrap(), old_metrics);
    assert!(trainer::checkpoint::validate(&kept.join("checkpoints").join(old_latest.trim())).is_ok());
}

/// Asserts that the elements of an XML fragment open and close in order.
fn assert_balanced(xml: &str) {
    let mut stack: Vec<String> = Vec::new();
    for tag in xml.split('<').skip(1).map(|t| t.split('>').next().unwrap()) {
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name.trim()), "in {xml}");
        } else if !tag.ends_with('/') {
            stack.push(tag.split_whitespace().next().unwrap().to_string());
        }
    }
    assert!(stack.is_empty(), "unclosed {stack:?}");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A dump's selected links in bounded memory: with `reddit.memory_mb = 0` every link is
/// spilled as its own sorted run and the runs are merged, and the URL table is the same bytes as
/// with every link held in memory; the ledger holds the same submissions for the same reasons,
/// the accounting agrees, every duplicate found in the merge points at a kept submission, and
/// no spill file is left.
#[test]
fn spilled_links_equal_links_held_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("RS_TEST.ndjson");
    let mut f = std::fs::File::create(&dump).unwrap();
    let mut r = 11u64;
    let mut next = |n: u64| {
        r = r.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (r >> 33) % n
    };
    for i in 0..3000 {
        let page = next(700);
        // The same page as people post it: www., a tracking parameter, either scheme.
        let url = match next(3) {
            0 => format!("https://www.site{}.example/p/{page}", page % 7),
            1 => format!("https://site{}.example/p/{page}?utm_source=reddit", page % 7),
            _ => format!("http://site{}.example/p/{page}", page % 7),
        };
        let score = next(12) as i64; // ties, and some under 3
        writeln!(
            f,
            r#"{{"id": "s{i}", "url": "{url}", "score": {score}, "is_self": {}, "subreddit": "r{}", "created_utc": {}}}"#,
            next(20) == 0,
            next(5),
            1_200_000_000 + i
        )
        .unwrap();
    }
    drop(f);
    let run = |out: &str, mb: &str| -> Manifest {
        let recipe = dir.path().join(format!("{out}.toml"));
        std::fs::write(
            &recipe,
            format!(
                "[run]\nout = \"{}\"\n[reddit]\ndumps = [\"{}\"]\nmemory_mb = {mb}\n[ingest]\n[[ingest.sources]]\nname = \"x\"\npaths = [\"{}\"]\n",
                dir.path().join(out).display(),
                dump.display(),
                dump.display()
            ),
        )
        .unwrap();
        ok(grist(&["-q", "reddit", recipe.to_str().unwrap()], &[]));
        Manifest::read(&Loc::local(dir.path().join(out).join("reddit/manifest.json"))).unwrap()
    };
    let (held, spilled) = (run("held", "1024"), run("spilled", "0"));
    assert!(spilled.counters.get("link_spills").copied().unwrap_or(0) > 100, "{:?}", spilled.counters);
    assert!(!held.counters.contains_key("link_spills"));
    let table = |out: &str| std::fs::read(dir.path().join(out).join("reddit/part-00000.parquet")).unwrap();
    assert!(table("held") == table("spilled"), "the URL tables differ");
    assert_eq!(held.accounting, spilled.accounting);
    assert!(held.accounting.docs_out > 500 && held.counters["duplicate_url"] > 1000, "{:?}", held.counters);
    assert_eq!(held.counters["duplicate_url"], spilled.counters["duplicate_url"]);
    let ledger = |out: &str| {
        LedgerReader::open(&Loc::local(dir.path().join(out).join("reddit/ledger-00000.parquet")))
            .unwrap()
            .entries()
            .unwrap()
    };
    let rows = |out: &str| -> std::collections::BTreeSet<(String, String)> {
        ledger(out).into_iter().map(|e| (e.id, e.reason)).collect()
    };
    assert_eq!(rows("held"), rows("spilled"));
    let kept: std::collections::BTreeSet<String> = {
        let all: std::collections::BTreeSet<String> = (0..3000).map(|i| format!("t3_s{i}")).collect();
        let gone: std::collections::BTreeSet<String> = ledger("spilled").into_iter().map(|e| e.id).collect();
        all.difference(&gone).cloned().collect()
    };
    assert_eq!(kept.len() as u64, spilled.accounting.docs_out);
    assert!(
        ledger("spilled")
            .iter()
            .filter(|e| e.reason == "duplicate_url")
            .all(|e| kept.contains(e.duplicate_of.as_deref().unwrap_or(""))),
        "a duplicate found in the merge points at a submission that was not kept"
    );
    let temps = std::fs::read_dir(dir.path().join("spilled/reddit"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".tmp"))
        .count();
    assert_eq!(temps, 0);
}
