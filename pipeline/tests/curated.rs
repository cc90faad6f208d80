//! Curated corpora: Parquet files written by other tools, and large text files split at
//! paragraph breaks.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use pipeline::steps::ingest;
use pipeline::{Recipe, TaskSlice};
use shards::arrow::array::{ArrayRef, LargeStringArray, StringArray};
use shards::arrow::datatypes::{DataType, Field, Schema};
use shards::arrow::record_batch::RecordBatch;
use shards::{DocReader, LedgerReader, Loc};

fn run(dir: &std::path::Path, source: &str) -> (Vec<shards::Doc>, Vec<shards::LedgerEntry>) {
    let text = format!("[run]\nout = \"{}\"\n[ingest]\n[[ingest.sources]]\n{source}\n", dir.join("out").display());
    let recipe = Recipe::parse(&text, "inline", &[]).unwrap();
    let out = Loc::local(dir.join("out/ingest"));
    let rep = ingest::run(&recipe.ingest, &out, TaskSlice::ALL, None).unwrap();
    assert!(rep.stage_complete);
    let docs = DocReader::open(&out.join("part-00000.parquet")).unwrap().read_docs().unwrap();
    let ledger = LedgerReader::open(&out.join("ledger-00000.parquet")).unwrap().entries().unwrap();
    (docs, ledger)
}

#[test]
fn parquet_from_another_tool_with_renamed_columns() {
    let dir = tempfile::tempdir().unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("content", DataType::LargeUtf8, true),
        Field::new("link", DataType::Utf8, true),
        Field::new("other", DataType::Utf8, true),
    ]));
    let cols: Vec<ArrayRef> = vec![
        Arc::new(LargeStringArray::from(vec![Some("first document text"), None, Some("third document text")])),
        Arc::new(StringArray::from(vec![Some("https://a.example/1"), Some("https://a.example/2"), None])),
        Arc::new(StringArray::from(vec![Some("x"), Some("y"), Some("z")])),
    ];
    let path = dir.path().join("wiki.parquet");
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema.clone(), None).unwrap();
    w.write(&RecordBatch::try_new(schema, cols).unwrap()).unwrap();
    w.close().unwrap();
    let (docs, ledger) = run(
        dir.path(),
        &format!(
            "name = \"wikipedia\"\npaths = [\"{}\"]\ntext_field = \"content\"\nurl_field = \"link\"",
            path.display()
        ),
    );
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0].url.as_deref(), Some("https://a.example/1"));
    assert_eq!((docs[1].text.as_str(), docs[1].url.as_deref()), ("third document text", None));
    assert_eq!(
        (ledger.len(), ledger[0].reason.as_str(), ledger[0].location.as_deref()),
        (1, "missing_text", Some("wiki.parquet@1"))
    );

    let (docs, _) = run(
        &dir.path().join("b"),
        &format!("name = \"w\"\npaths = [\"{}\"]\ntext_field = \"content\"", path.display()),
    );
    assert!(docs.iter().all(|d| d.url.is_none()), "no `url` column: no URLs");
}

#[test]
fn a_missing_text_column_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new("body", DataType::Utf8, false)]));
    let path = dir.path().join("x.parquet");
    let mut w =
        parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema.clone(), None).unwrap();
    w.write(&RecordBatch::try_new(schema, vec![Arc::new(StringArray::from(vec!["a"])) as ArrayRef]).unwrap()).unwrap();
    w.close().unwrap();
    let text = format!(
        "[run]\nout = \"{}\"\n[ingest]\n[[ingest.sources]]\nname = \"w\"\npaths = [\"{}\"]\n",
        dir.path().join("out").display(),
        path.display()
    );
    let recipe = Recipe::parse(&text, "inline", &[]).unwrap();
    let e = ingest::run(&recipe.ingest, &Loc::local(dir.path().join("out/ingest")), TaskSlice::ALL, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("x.parquet") && e.contains("no column `text`") && e.contains("hint:"), "{e}");
}

#[test]
fn a_long_book_splits_at_paragraph_breaks() {
    let dir = tempfile::tempdir().unwrap();
    let paragraphs: Vec<String> = (0..200).map(|i| format!("Paragraph {i} says something about the sea.")).collect();
    let book = paragraphs.join("\n\n");
    std::fs::write(dir.path().join("book.txt"), &book).unwrap();
    let (whole, _) = run(
        &dir.path().join("a"),
        &format!("name = \"books\"\npaths = [\"{}\"]", dir.path().join("book.txt").display()),
    );
    assert_eq!(whole.len(), 1);
    let (parts, _) = run(
        &dir.path().join("b"),
        &format!("name = \"books\"\npaths = [\"{}\"]\nsplit_bytes = 1000", dir.path().join("book.txt").display()),
    );
    assert!(parts.len() > 5, "{}", parts.len());
    assert_eq!(parts.iter().map(|d| d.text.as_str()).collect::<String>(), book, "the pieces are the book, in order");
    assert!(parts[..parts.len() - 1].iter().all(|d| d.text.ends_with("\n\n") && d.text.len() >= 1000));
    let ids: std::collections::BTreeSet<_> = parts.iter().map(|d| &d.id).collect();
    assert_eq!(ids.len(), parts.len());
}

#[test]
fn crlf_books_split_too_and_oversized_pieces_are_ledgered() {
    let dir = tempfile::tempdir().unwrap();
    let book: String = (0..100).map(|i| format!("Paragraph {i} of a Windows book.\r\n\r\n")).collect();
    std::fs::write(dir.path().join("crlf.txt"), &book).unwrap();
    let (parts, _) = run(
        &dir.path().join("a"),
        &format!("name = \"books\"\npaths = [\"{}\"]\nsplit_bytes = 500", dir.path().join("crlf.txt").display()),
    );
    assert!(parts.len() > 3, "{}", parts.len());
    assert_eq!(parts.iter().map(|d| d.text.as_str()).collect::<String>(), book);

    std::fs::write(dir.path().join("big.txt"), "word ".repeat(10_000)).unwrap();
    let text = format!(
        "[run]\nout = \"{}\"\n[ingest]\nmax_doc_bytes = 1000\n[[ingest.sources]]\nname = \"b\"\npaths = [\"{}\"]\n",
        dir.path().join("c/out").display(),
        dir.path().join("big.txt").display()
    );
    let recipe = Recipe::parse(&text, "inline", &[]).unwrap();
    let out = Loc::local(dir.path().join("c/out/ingest"));
    let rep = ingest::run(&recipe.ingest, &out, TaskSlice::ALL, None).unwrap();
    assert_eq!((rep.accounting.docs_out, rep.accounting.docs_ledger), (0, 1));
    let ledger = LedgerReader::open(&out.join("ledger-00000.parquet")).unwrap().entries().unwrap();
    assert_eq!(ledger[0].reason, "too_large");
}
