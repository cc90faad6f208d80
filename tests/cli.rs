//! The command-line surface: help text (snapshot) and exit codes.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;

#[test]
fn help_lists_every_command() {
    let help = stdout(&grist(&["--help"], &[]));
    insta::assert_snapshot!(help, @r"
    GPT-3's data recipe, from Common Crawl to a trained GPT, in one Rust tool

    Usage: grist [OPTIONS] <COMMAND>

    Commands:
      run            Run a recipe: every stage that exists, in order; a rerun resumes where it stopped
      stages         List the recipe's steps in order: name, recipe table, shape, what they do
      synthetic      Write the built-in synthetic corpus (deterministic from a seed)
      reddit         Select WebText URLs from Pushshift Reddit dumps (score >= 3, outbound, normalized)
      ingest         Ingest Common Crawl WARC/WET and corpora (JSON lines, text folders) into document shards
      filters        URL lists, language ID, Gopher, C4, FineWeb and PII filters (datatrove's rules), each removal ledgered with its rule and measured value
      quality        The quality classifier: train it, filter by it, score files with it
      dedup          Remove exact and near-duplicate documents (MinHash-LSH, GPT-3's Spark settings by default)
      decontaminate  Cut benchmark 13-grams out of training documents (GPT-3 Appendix C)
      tokenize       GPT-2 BPE into llm.c token shards, with a validation split and a per-document sidecar
      blend          Mix the tokenized sources by the recipe's weights into shuffled llm.c training shards
      train          Train a GPT on token shards (GPT-3's schedule, checkpoints, exact resume)
      ablate         Does the recipe make better models? Train the same small GPT on arms that differ only in which data stages apply (raw, + filters, + quality, + dedup, the recipe's mixture) and compare them on held-out sets ([ablate] in the recipe; docs/eval.md)
      eval           Evaluate a checkpoint (grist's or a Hugging Face GPT-2's): loss and bits per byte on held-out text with bootstrap intervals, and tasks zero-, one- or few-shot (docs/eval.md)
      generate       Continue a prompt with a trained model (temperature and top-k sampling)
      plan           Dry run: per stage what it reads and writes, estimates of disk, memory and time, and problems
      report         Write a run's HTML report (funnel, removals, quality, mixture, training, documents)
      warc           Count the records of WARC/WET files by type, and bad stretches by reason
      inspect        Summarize a stage output or run (--verify checks it); or follow a document (why), read documents by source, score, length and regex (query, sample), or ask in SQL (sql)
      help           Print this message or the help of the given subcommand(s)

    Options:
      -v, --verbose...         More log output (-v debug, -vv trace); RUST_LOG overrides
      -q, --quiet              Only warnings and errors on stderr
          --threads <THREADS>  Worker threads (default: all cores; RAYON_NUM_THREADS also works)
      -h, --help               Print help
      -V, --version            Print version
    ");
}

#[test]
fn usage_errors_exit_2() {
    let o = grist(&["ingest"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("<RECIPE>"));
}

#[test]
fn the_gpt3_recipe_plans_table_2_2() {
    let recipe = concat!(env!("CARGO_MANIFEST_DIR"), "/recipes/gpt3.toml");
    let out = ok(grist(&["-q", "blend", recipe, "--mixture"], &[]));
    let row = |name: &str| out.lines().find(|l| l.starts_with(name)).unwrap_or_default().to_string();
    assert!(row("common_crawl ").ends_with("0.435"), "{out}");
    assert!(row("books2 ").ends_with("0.432"), "{out}");
    assert!(out.contains("weights sum to 101.0%: normalized to 100%"), "{out}");
}

#[test]
fn the_stage_list_comes_from_the_registry() {
    let listed = ok(grist(&["run", "--list-stages"], &[]));
    let names: Vec<&str> = listed.lines().map(|l| l.split_once(':').unwrap().0).collect();
    let expected: Vec<&str> = pipeline::steps::STEPS.iter().map(|s| s.name).collect();
    assert_eq!(names, expected);
    for l in listed.lines() {
        let (name, sliced) = l.split_once(':').unwrap();
        let step = pipeline::steps::step(name).unwrap();
        assert_eq!(sliced == "1", step.shape == pipeline::steps::Shape::Sliced, "{l}");
    }
    // `grist stages` shows the same steps, in the same order, with their tables.
    let shown = ok(grist(&["stages"], &[]));
    let first_words: Vec<&str> = shown.lines().filter_map(|l| l.split_whitespace().next()).collect();
    assert_eq!(first_words, expected);
    assert!(shown.contains("[quality_filter]") && shown.contains("[dedup]"), "{shown}");
    // An unknown stage is a usage error that lists the real ones.
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/recipes/demo.toml");
    let o = grist(&["run", demo, "--stage", "quality_train"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown stage") && stderr(&o).contains("dedup_clusters"), "{}", stderr(&o));
}
