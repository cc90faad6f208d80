//! The quality classifier on real data (`recipes/quality-real.toml` with the paths pointed at
//! GRIST_TEST_DATA): what it measures, that spilling the design changes nothing, and
//! `grist quality score` on files, including a malformed one.
#![allow(clippy::unwrap_used)]

mod common;

use common::{grist, ok, stderr, test_data};
use shards::Loc;

fn recipe_sets(data: &std::path::Path, out: &std::path::Path) -> Vec<String> {
    let d = |p: &str| format!("[\"{}\"]", data.join(p).display());
    let two = |a: &str, b: &str| format!("[\"{}\", \"{}\"]", data.join(a).display(), data.join(b).display());
    vec![
        format!("run.out={}", out.display()),
        format!("ingest.sources.0.paths={}", d("curated/sotu")),
        format!("ingest.sources.1.paths={}", two("curated/moby-dick.txt", "curated/tinyshakespeare.txt")),
        format!("ingest.sources.2.paths={}", d("curated/wikitext-2")),
        format!("ingest.sources.3.paths={}", two("web/cc_en_head-0091.jsonl.gz", "web/cc_en_head-0174.jsonl.gz")),
        format!("ingest.sources.4.paths={}", d("web/cc2019-30.jsonl.gz")),
        format!("ingest.sources.5.paths={}", d("web/cc2020-34.warc.gz")),
        format!("ingest.sources.6.paths={}", d("negatives/spam-assassin.jsonl.zst")),
    ]
}

fn run(cmd: &[&str], sets: &[String], extra: &[&str]) -> String {
    let recipe = concat!(env!("CARGO_MANIFEST_DIR"), "/recipes/quality-real.toml");
    let mut args: Vec<&str> = vec!["-q"];
    args.extend(cmd);
    args.push(recipe);
    for s in sets {
        args.extend(["--set", s.as_str()]);
    }
    for s in extra {
        args.extend(["--set", s]);
    }
    ok(grist(&args, &[]))
}

#[test]
fn real_data_classifier_separates_prose_from_crawl_and_spam() {
    let Some(data) = test_data("real_data_classifier_separates_prose_from_crawl_and_spam") else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let sets = recipe_sets(&data, &out);
    run(&["ingest"], &sets, &[]);
    let printed = run(&["quality", "train"], &sets, &[]);
    assert!(printed.contains("held-out AUC") && printed.contains("tuned Pareto alpha"), "{printed}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("quality/train_report.json")).unwrap()).unwrap();
    let auc = report["holdout_auc"].as_f64().unwrap();
    assert!(auc > 0.995, "held-out AUC {auc}");
    assert!(report["holdout_accuracy"].as_f64().unwrap() > 0.98, "{report}");
    // Early stopping kept the best iteration, and the history shows its loss was the lowest.
    let history = report["history"].as_array().unwrap();
    let best = report["best_iteration"].as_u64().unwrap() as usize;
    assert!(best >= 1 && best <= history.len());
    assert!(!report["top_positive_terms"].as_array().unwrap().is_empty());
    let tuned = report["tuned_alpha"].as_f64().unwrap();
    assert!((0.25..=64.0).contains(&tuned), "{tuned}");

    // A design spilled to disk (1 MiB in memory) trains the same weights.
    let model = std::fs::read(out.join("quality/model.gqm")).unwrap();
    let printed = run(&["quality", "train"], &sets, &["quality.memory_mb=1"]);
    assert!(printed.contains("the design spilled to disk"), "{printed}");
    let spilled = std::fs::read(out.join("quality/model.gqm")).unwrap();
    let weights = 4 << 18;
    assert_eq!(model[model.len() - weights..], spilled[spilled.len() - weights..], "weights differ after spilling");
    assert!(
        std::fs::read_dir(out.join("quality")).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".tmp"))
    );

    // Scoring files: one line per document, in input order, the scores the model gives.
    let m = pipeline::steps::quality::model::QualityModel::load(&Loc::local(out.join("quality/model.gqm"))).unwrap();
    let jsonl = dir.path().join("docs.jsonl");
    let texts = [
        "It is a truth universally acknowledged, that a single man in possession of a good fortune must be in want of a wife.",
        "CHEAP pills!!! click here now >> free bonus | casino | login | register",
    ];
    let body: String =
        texts.iter().enumerate().map(|(i, t)| format!("{}\n", serde_json::json!({"id": i, "text": t}))).collect();
    std::fs::write(&jsonl, body).unwrap();
    let model_path = out.join("quality/model.gqm");
    let o = ok(grist(&["quality", "score", "--model", model_path.to_str().unwrap(), jsonl.to_str().unwrap()], &[]));
    let lines: Vec<(f64, String)> =
        o.lines().map(|l| l.split_once('\t').unwrap()).map(|(s, id)| (s.parse().unwrap(), id.to_string())).collect();
    assert_eq!(lines.iter().map(|l| l.1.as_str()).collect::<Vec<_>>(), ["0", "1"]);
    for ((s, _), t) in lines.iter().zip(texts) {
        assert!((s - m.score(t)).abs() < 1e-6);
    }
    assert!(lines[0].0 > 0.5 && lines[1].0 < 0.5, "{lines:?}");

    // A malformed line is an error naming the file, the offset and the line.
    std::fs::write(&jsonl, "{\"text\": \"fine\"}\n{\"text\": oops}\n").unwrap();
    let o = grist(&["quality", "score", "--model", model_path.to_str().unwrap(), jsonl.to_str().unwrap()], &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("docs.jsonl") && err.contains("17") && err.contains("line 2"), "{err}");
}

#[test]
fn reference_sets_report_the_keep_rate_the_rule_gives_text_the_classifier_never_saw() {
    let dir = tempfile::tempdir().unwrap();
    common::sample(dir.path(), 300);
    let out = dir.path().join("run");
    let recipe = common::sample_recipe(dir.path(), &out, "");
    let spam = dir.path().join("spam.jsonl");
    let lines: Vec<String> = (0..20)
        .map(|i| serde_json::json!({ "text": format!("BUY cheap pills {i} now!!! Click here now. Click here now. casino bonus win win") }).to_string())
        .collect();
    std::fs::write(&spam, lines.join("\n")).unwrap();
    let heldout = dir.path().join("sample/heldout/prose.jsonl");
    let mut text = std::fs::read_to_string(&recipe).unwrap();
    text += &format!(
        "\n[quality]\npositives = [\"books\"]\nnegatives = [\"common_crawl\"]\n\n[[quality.reference]]\nname = \"prose\"\npaths = [\"{}\"]\n\n[[quality.reference]]\nname = \"spam\"\npaths = [\"{}\"]\n",
        heldout.display(),
        spam.display()
    );
    std::fs::write(&recipe, text).unwrap();
    ok(grist(&["-q", "ingest", recipe.to_str().unwrap()], &[]));
    let said = ok(grist(&["-q", "quality", "train", recipe.to_str().unwrap()], &[]));
    assert!(said.contains("quality  reference prose: 60 documents"), "{said}");
    let shown = ok(grist(&["inspect", out.join("quality").to_str().unwrap()], &[]));
    assert!(shown.contains("held-out AUC") && shown.contains("reference spam: 20 documents"), "{shown}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("quality/train_report.json")).unwrap()).unwrap();
    let refs = report["reference"].as_array().unwrap();
    assert_eq!(refs.len(), 2);
    let keep = |i: usize| refs[i]["keep_rate"].as_f64().unwrap();
    assert!(keep(0) > keep(1), "prose {} vs spam {}", keep(0), keep(1));
    // The same figure from `grist quality score` on the reference's documents, by the rule's law.
    let model = out.join("quality/model.gqm");
    for (i, name) in ["prose", "spam"].iter().enumerate() {
        let shards: Vec<String> = std::fs::read_dir(out.join("quality/reference").join(name))
            .unwrap()
            .map(|e| e.unwrap().path().display().to_string())
            .filter(|p| p.ends_with(".parquet") && !p.contains("ledger"))
            .collect();
        let mut args = vec!["quality", "score", "--model", model.to_str().unwrap()];
        args.extend(shards.iter().map(|s| s.as_str()));
        let scores: Vec<f64> =
            ok(grist(&args, &[])).lines().map(|l| l.split('\t').next().unwrap().parse().unwrap()).collect();
        assert_eq!(scores.len() as u64, refs[i]["docs"].as_u64().unwrap());
        let law = scores.iter().map(|s| (2.0 - s).powf(-9.0)).sum::<f64>() / scores.len() as f64;
        assert!((law - keep(i)).abs() < 1e-4, "{name}: {law} vs {}", keep(i));
    }
}

#[test]
fn word_bigrams_train_a_model_that_scores_with_its_bigrams() {
    let dir = tempfile::tempdir().unwrap();
    common::sample(dir.path(), 200);
    let out = dir.path().join("run");
    let recipe = common::sample_recipe(dir.path(), &out, "");
    let mut text = std::fs::read_to_string(&recipe).unwrap();
    text += "\n[quality]\npositives = [\"books\"]\nnegatives = [\"common_crawl\"]\nngrams = 2\n";
    std::fs::write(&recipe, text).unwrap();
    ok(grist(&["-q", "ingest", recipe.to_str().unwrap()], &[]));
    ok(grist(&["-q", "quality", "train", recipe.to_str().unwrap()], &[]));
    let model_path = out.join("quality/model.gqm");
    let m = pipeline::steps::quality::model::QualityModel::load(&Loc::local(&model_path)).unwrap();
    assert_eq!(m.header.ngrams, 2);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("quality/train_report.json")).unwrap()).unwrap();
    // The report names bigrams among its strongest terms: they are features like any token.
    let terms: Vec<&str> = ["top_positive_terms", "top_negative_terms"]
        .iter()
        .flat_map(|k| report[k].as_array().unwrap().iter().map(|t| t[0].as_str().unwrap()))
        .collect();
    let bigram = terms.iter().find(|t| t.contains(' ')).unwrap_or_else(|| panic!("no bigram among {terms:?}"));

    // `grist quality score` gives the bigram model's scores, which are not what its weights
    // give the tokens alone (the texts hold one of its strongest bigrams).
    let texts = [format!("so {bigram} again"), bigram.to_string()];
    let jsonl = dir.path().join("docs.jsonl");
    let body: String = texts.iter().map(|t| format!("{}\n", serde_json::json!({ "text": t }))).collect();
    std::fs::write(&jsonl, body).unwrap();
    let o = ok(grist(&["quality", "score", "--model", model_path.to_str().unwrap(), jsonl.to_str().unwrap()], &[]));
    let scores: Vec<f64> = o.lines().map(|l| l.split('\t').next().unwrap().parse().unwrap()).collect();
    assert_eq!(scores.len(), 2);
    let mut unigram = m.clone();
    unigram.header.ngrams = 1;
    for (s, t) in scores.iter().zip(&texts) {
        let by_hand = 1.0 / (1.0 + (-m.logit(t)).exp());
        assert!((s - by_hand).abs() < 1e-6, "{t}: {s} vs {by_hand}");
        assert!((m.logit(t) - unigram.logit(t)).abs() > 1e-9, "{t}: bigrams changed nothing");
    }
}
