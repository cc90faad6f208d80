//! The `filters` step end to end through the library: hand-made documents whose fate each
//! rule decides, the ledger (rule and measured value), C4's rewrites and the edits side table,
//! the report read back from the manifest, and the same bytes for one task or two.
#![allow(clippy::unwrap_used)]

use std::io::Write;

use pipeline::steps::filters::FilterReport;
use pipeline::{Recipe, TaskSlice};
use shards::arrow::array::Array;
use shards::{DocReader, LedgerReader, Loc, Manifest, str_col};

const PROSE: &str = "The history of the printing press is one of the most important stories of the modern age. Before it, books were copied by hand, and that made them rare and expensive.
With movable type, a workshop could produce hundreds of copies of a text in the time that a scribe needed for one, and the price of books fell.
Ideas travelled faster than ever before, and scholars in distant cities could read and answer each other within months rather than years.
The change was slow at first, but it reshaped religion, science and politics, and it has been compared with the arrival of the internet.
Historians still argue about how much of the modern world we owe to it, but few doubt that it was a turning point to be remembered.";

/// Two files (two units) of documents: (id, text).
fn corpus(dir: &std::path::Path) -> Vec<(String, String)> {
    let spam = "Buy cheap watches online now and save money today!\n".repeat(8);
    let docs = vec![
        ("good".to_string(), PROSE.to_string()),
        ("edited".to_string(), format!("{PROSE}\nPlease enable JavaScript to view this page properly.\nShare")),
        ("spam".to_string(), spam),
        ("short".to_string(), "Hello world. This is a tiny document.".to_string()),
        ("lorem".to_string(), format!("Lorem ipsum dolor sit amet, consectetur adipiscing elit.\n{PROSE}")),
        ("good2".to_string(), PROSE.replace("printing press", "steam engine")),
        (
            "mail".to_string(),
            format!("{PROSE}\nWrite to jane.doe@example.org or to the server at 8.8.8.8, not 10.0.0.1."),
        ),
    ];
    for (f, part) in [("a.jsonl", &docs[..3]), ("b.jsonl", &docs[3..])] {
        let mut w = std::fs::File::create(dir.join(f)).unwrap();
        for (id, text) in part {
            writeln!(w, "{}", serde_json::json!({ "id": id, "text": text })).unwrap();
        }
    }
    docs
}

fn recipe(dir: &std::path::Path, out: &str) -> Recipe {
    let d = dir.display();
    let text = format!(
        r#"
[run]
out = "{d}/{out}"
[ingest]
[[ingest.sources]]
name = "web"
paths = ["{d}/a.jsonl", "{d}/b.jsonl"]
[filters]
keep_removed_lines = true
[filters.gopher_repetition]
[filters.gopher_quality]
[filters.c4]
[filters.fineweb]
[filters.pii]
"#
    );
    Recipe::parse(&text, "inline", &[]).unwrap()
}

/// Ingest then the filters, each step by every task of the slicing in turn (last task first).
fn run(r: &Recipe, tasks: usize) {
    let out = Loc::parse(&r.run.out).unwrap();
    let slices = (0..tasks).rev().map(|index| TaskSlice { index, count: tasks });
    for s in slices.clone() {
        pipeline::steps::ingest::run(&r.ingest, &out.join("ingest"), s, None).unwrap();
    }
    let cfg = r.filters.as_ref().unwrap();
    for s in slices {
        pipeline::steps::filters::run(cfg, &out.join("ingest"), &out.join("filters"), s).unwrap();
    }
}

#[test]
fn each_rule_decides_its_document_and_the_output_does_not_depend_on_slicing() {
    let dir = tempfile::tempdir().unwrap();
    let docs = corpus(dir.path());
    let one = recipe(dir.path(), "one");
    run(&one, 1);
    let two = recipe(dir.path(), "two");
    run(&two, 2);

    // Ingest names documents by a hash: back to the corpus' names through their texts.
    let idir = dir.path().join("one/ingest");
    let im = Manifest::read(&Loc::local(&idir).join("manifest.json")).unwrap();
    let mut names = std::collections::HashMap::new();
    for o in &im.outputs {
        for b in DocReader::open(&Loc::local(idir.join(&o.path))).unwrap().batches(None, 100).unwrap() {
            let b = b.unwrap();
            let (ids, texts) = (str_col(&b, "id").unwrap(), str_col(&b, "text").unwrap());
            for i in 0..b.num_rows() {
                let name = docs.iter().find(|d| d.1 == texts.value(i)).map(|d| d.0.clone()).unwrap();
                names.insert(ids.value(i).to_string(), name);
            }
        }
    }
    let name = |id: &str| names[id].clone();
    let fdir = dir.path().join("one/filters");
    let m = Manifest::read(&Loc::local(&fdir).join("manifest.json")).unwrap();
    assert_eq!((m.accounting.docs_in, m.accounting.docs_out, m.accounting.docs_ledger), (7, 4, 3));

    // The ledger: rule and measured value.
    let mut removed: Vec<(String, String, f64)> = Vec::new();
    for l in &m.ledgers {
        for e in LedgerReader::open(&Loc::local(fdir.join(&l.path))).unwrap().entries().unwrap() {
            assert_eq!(e.stage, "filters");
            removed.push((name(&e.id), e.reason, e.score.unwrap()));
        }
    }
    removed.sort_by(|a, b| a.0.cmp(&b.0));
    let reasons: Vec<(&str, &str)> = removed.iter().map(|(i, r, _)| (i.as_str(), r.as_str())).collect();
    assert_eq!(
        reasons,
        [
            ("lorem", "c4.lorem_ipsum"),
            ("short", "gopher_repetition.top_2_gram"),
            ("spam", "gopher_repetition.dup_line_frac")
        ]
    );
    // One paragraph (no blank line); 7 duplicate lines of 9 pieces (the final "\n" leaves an
    // empty last piece, as Python's re.split does).
    let spam_value = removed.iter().find(|r| r.0 == "spam").unwrap().2;
    assert_eq!(spam_value, 7.0 / 9.0);

    // Kept documents, the edited one without its JavaScript line and its short last line.
    let mut kept = Vec::new();
    for o in &m.outputs {
        for b in DocReader::open(&Loc::local(fdir.join(&o.path))).unwrap().batches(None, 100).unwrap() {
            let b = b.unwrap();
            let (ids, texts) = (str_col(&b, "id").unwrap(), str_col(&b, "text").unwrap());
            for i in 0..b.num_rows() {
                kept.push((name(ids.value(i)), texts.value(i).to_string()));
            }
        }
    }
    kept.sort();
    let ids: Vec<&str> = kept.iter().map(|k| k.0.as_str()).collect();
    assert_eq!(ids, ["edited", "good", "good2", "mail"]);
    assert_eq!(kept[0].1, PROSE, "C4 removed the two lines and nothing else");
    // The PII formatter: the e-mail and the public address replaced, the private one kept.
    assert!(kept[3].1.ends_with("\nWrite to email@example.com or to the server at 22.214.171.124, not 10.0.0.1."));

    // The edits side table: per rule counts, and the removed lines.
    let mut edits = Vec::new();
    for f in m.side.iter().filter(|f| f.path.contains(".side-edits")) {
        let (src, _) = shards::parquet_io::ParquetSource::open_any(&Loc::local(fdir.join(&f.path))).unwrap();
        for b in src.batches(None, 100).unwrap() {
            let b = b.unwrap();
            let (ids, rules, lines) =
                (str_col(&b, "id").unwrap(), str_col(&b, "rule").unwrap(), str_col(&b, "lines").unwrap());
            for i in 0..b.num_rows() {
                let l = if lines.is_null(i) { None } else { Some(lines.value(i).to_string()) };
                edits.push((name(ids.value(i)), rules.value(i).to_string(), l));
            }
        }
    }
    assert!(edits.contains(&("edited".into(), "javascript".into(), None)), "{edits:?}");
    assert!(
        edits.contains(&("mail".into(), "email".into(), None)) && edits.contains(&("mail".into(), "ip".into(), None))
    );
    assert!(edits.contains(&("edited".into(), "no_terminal_punct".into(), None)), "{edits:?}");
    assert!(
        edits.contains(&(
            "edited".into(),
            "lines".into(),
            Some("Please enable JavaScript to view this page properly.\nShare".into())
        )),
        "{edits:?}"
    );

    // `inspect why` shows a kept document's edits.
    let mail_id = names.iter().find(|(_, n)| n.as_str() == "mail").map(|(id, _)| id.clone()).unwrap();
    let trail = pipeline::inspect::why::why(&Loc::local(dir.path().join("one")), &mail_id).unwrap();
    let at = &trail.stages.iter().find(|v| v.stage == "filters").unwrap().at;
    let pipeline::inspect::why::At::Kept { edits, .. } = at else { panic!("{at:?}") };
    let kinds: Vec<(&str, &str, u64)> = edits.iter().map(|e| (e.filter.as_str(), e.rule.as_str(), e.count)).collect();
    assert_eq!(kinds, [("pii", "email", 1), ("pii", "ip", 1)]);

    // The report: removals per rule, every measured document counted, thresholds from the config.
    let r = FilterReport::read(&m).unwrap();
    let rule = |f: &str, name: &str| {
        r.filters.iter().find(|x| x.0 == f).and_then(|x| x.1.iter().find(|y| y.0 == name)).map(|y| y.1.clone()).unwrap()
    };
    assert_eq!(rule("gopher_repetition", "dup_para_frac").measured(), 7);
    assert_eq!(rule("gopher_repetition", "dup_para_frac").removed, 0);
    assert_eq!(rule("gopher_repetition", "dup_line_frac").measured(), 7);
    assert_eq!((r.pii_replaced["email"], r.pii_replaced["ip"], r.edited["pii"]), (1, 1, 1));
    assert_eq!(rule("gopher_repetition", "dup_line_frac").removed, 1);
    // The spam document's value, 7/9, in the bin of [0.75, 0.8).
    assert!(rule("gopher_repetition", "dup_line_frac").histogram.contains(&(0.75, 1)));
    assert_eq!(rule("gopher_repetition", "dup_para_frac").threshold, Some(0.3));
    assert_eq!(rule("c4", "lorem_ipsum").removed, 1);
    assert_eq!(rule("fineweb", "list_ratio").measured(), 4);
    let names: Vec<&str> = r.filters.iter().map(|x| x.0.as_str()).collect();
    assert_eq!(names, ["gopher_repetition", "gopher_quality", "c4", "fineweb"]);
    assert!(r.render().contains("gopher_repetition.top_2_gram"));

    // One task or two: the same bytes.
    for o in m.outputs.iter().chain(&m.ledgers).chain(&m.side) {
        let a = std::fs::read(fdir.join(&o.path)).unwrap();
        let b = std::fs::read(dir.path().join("two/filters").join(&o.path)).unwrap();
        assert!(a == b, "{} differs between one task and two", o.path);
    }
}

/// A dense softmax fastText model of dim 2: words `english` and `french` point at labels `en`
/// and `fr`.
fn tiny_lid() -> Vec<u8> {
    pipeline::text::fasttext::dense_model_bytes(
        2,
        &["</s>", "english", "french"],
        &[("__label__en", 1), ("__label__fr", 1)],
        &[0.0, 0.0, 1.0, 0.0, 0.0, 1.0],
        &[4.0, 0.0, 0.0, 4.0],
        3,
    )
}

#[test]
fn language_id_keeps_the_asked_languages_and_labels_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("lid.bin"), tiny_lid()).unwrap();
    let mut w = std::fs::File::create(d.join("a.jsonl")).unwrap();
    for t in ["english english english", "french french\nfrench", "english french"] {
        writeln!(w, "{}", serde_json::json!({ "text": t })).unwrap();
    }
    let text = format!(
        "[run]\nout = \"{0}/out\"\n[ingest]\nmin_words = 0\n[[ingest.sources]]\nname = \"web\"\npaths = [\"{0}/a.jsonl\"]\n[filters]\n[filters.language]\nmodel = \"{0}/lid.bin\"\nlanguages = [\"en\"]\n",
        d.display()
    );
    let r = Recipe::parse(&text, "inline", &[]).unwrap();
    run(&r, 1);
    let fdir = d.join("out/filters");
    let m = Manifest::read(&Loc::local(&fdir).join("manifest.json")).unwrap();
    assert_eq!((m.accounting.docs_out, m.accounting.docs_ledger), (1, 2));
    // The kept one: language and language_score columns, the softmax of (4 * 3/4, 0).
    let b = DocReader::open(&Loc::local(fdir.join(&m.outputs[0].path)))
        .unwrap()
        .batches(None, 10)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(str_col(&b, "language").unwrap().value(0), "en");
    let score = b
        .column_by_name("language_score")
        .unwrap()
        .as_any()
        .downcast_ref::<shards::arrow::array::Float64Array>()
        .unwrap()
        .value(0);
    let want = 1.0 / (1.0 + (-3f64).exp()) + 1e-5;
    assert!((score - want).abs() < 1e-6, "{score} vs {want}");
    // The removed ones: their `en` score and the language they are most likely in.
    let mut removed: Vec<(String, f64, String)> = LedgerReader::open(&Loc::local(fdir.join(&m.ledgers[0].path)))
        .unwrap()
        .entries()
        .unwrap()
        .into_iter()
        .map(|e| (e.reason, e.score.unwrap(), e.detail.unwrap()))
        .collect();
    removed.sort_by(|a, b| a.1.total_cmp(&b.1));
    assert!(removed.iter().all(|r| r.0 == "language.below_threshold"), "{removed:?}");
    // "french french\nfrench": newlines are spaces, so three words (and </s>): fr.
    assert!(removed[0].2.contains("most likely fr"), "{removed:?}");
    // "english french": a tie, 0.5 each: not above 0.65.
    assert!((removed[1].1 - (0.5 + 1e-5)).abs() < 1e-6, "{removed:?}");
    // A file that is not a model: an error naming it.
    std::fs::write(d.join("lid.bin"), b"not a model").unwrap();
    let cfg = r.filters.as_ref().unwrap();
    let e = pipeline::steps::filters::run(
        cfg,
        &Loc::local(d.join("out/ingest")),
        &Loc::local(d.join("out2")),
        TaskSlice::ALL,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("lid.bin") && e.contains("magic"), "{e}");
}

#[test]
fn the_url_filter_reads_the_url_column_and_keeps_documents_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("ut1/adult")).unwrap();
    std::fs::write(d.join("ut1/adult/domains"), "blocked-site.com\n").unwrap();
    let mut w = std::fs::File::create(d.join("a.jsonl")).unwrap();
    for (t, u) in [
        ("one", Some("https://www.blocked-site.com/x")),
        ("two", Some("https://fine.example/free-porn")),
        ("three", None),
        ("four", Some("https://fine.example/ok")),
    ] {
        let mut v = serde_json::json!({ "text": format!("document {t}") });
        if let Some(u) = u {
            v["url"] = u.into();
        }
        writeln!(w, "{v}").unwrap();
    }
    let text = format!(
        "[run]\nout = \"{0}/out\"\n[ingest]\nmin_words = 0\n[[ingest.sources]]\nname = \"web\"\npaths = [\"{0}/a.jsonl\"]\n[filters]\n[filters.url]\ndomains = [\"{0}/ut1\"]\nbanned_words = [\"porn\"]\n",
        d.display()
    );
    let r = Recipe::parse(&text, "inline", &[]).unwrap();
    run(&r, 1);
    let fdir = d.join("out/filters");
    let m = Manifest::read(&Loc::local(&fdir).join("manifest.json")).unwrap();
    let mut reasons: Vec<String> = LedgerReader::open(&Loc::local(fdir.join(&m.ledgers[0].path)))
        .unwrap()
        .entries()
        .unwrap()
        .into_iter()
        .map(|e| e.reason)
        .collect();
    reasons.sort();
    assert_eq!(reasons, ["url.domain", "url.hard_blacklisted"]);
    assert_eq!((m.accounting.docs_out, m.accounting.docs_ledger), (2, 2));
    let rep = FilterReport::read(&m).unwrap();
    assert_eq!(rep.url_missing, 1);
    assert!(m.config["url_lists_xxh3"].is_string());
    // A list that is not there: an error naming it.
    let bad = Recipe::parse(&text.replace("/ut1", "/nope"), "inline", &[]).unwrap();
    let e = pipeline::steps::filters::run(
        bad.filters.as_ref().unwrap(),
        &Loc::local(d.join("out/ingest")),
        &Loc::local(d.join("o2")),
        TaskSlice::ALL,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("nope") && e.contains("no such file"), "{e}");
}
