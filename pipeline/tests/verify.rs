//! `inspect --verify` on tampered manifests: it opens only regular files of the stage's own
//! directory, and the unit markers must list, together, exactly the manifest's files.
#![allow(clippy::unwrap_used)]

use std::io::Write;

use pipeline::inspect::verify::verify;
use pipeline::steps::ingest;
use pipeline::{Recipe, TaskSlice};
use shards::{Loc, Manifest};

/// An ingest output of two sources (two units) in `dir/out/ingest`.
fn stage(dir: &std::path::Path) -> Loc {
    for name in ["a", "b"] {
        let mut f = std::fs::File::create(dir.join(format!("{name}.jsonl"))).unwrap();
        for i in 0..5 {
            writeln!(f, "{}", serde_json::json!({ "text": format!("document {i} of {name} with some words") }))
                .unwrap();
        }
    }
    let d = dir.display();
    let text = format!(
        "[run]\nout = \"{d}/out\"\n[ingest]\n[[ingest.sources]]\nname = \"a\"\npaths = [\"{d}/a.jsonl\"]\n[[ingest.sources]]\nname = \"b\"\npaths = [\"{d}/b.jsonl\"]\n"
    );
    let recipe = Recipe::parse(&text, "inline", &[]).unwrap();
    let out = Loc::local(dir.join("out/ingest"));
    assert!(ingest::run(&recipe.ingest, &out, TaskSlice::ALL, None).unwrap().stage_complete);
    out
}

fn rewrite(out: &Loc, edit: impl FnOnce(&mut Manifest)) {
    let loc = out.join(pipeline::MANIFEST);
    let mut m = Manifest::read(&loc).unwrap();
    edit(&mut m);
    m.write(&loc).unwrap();
}

#[test]
fn a_manifest_path_outside_the_stage_directory_is_refused_even_when_the_file_is_intact() {
    let dir = tempfile::tempdir().unwrap();
    let out = stage(dir.path());
    assert!(verify(&out).unwrap().ok());
    // The same shard, byte for byte, one folder up: its size and checksum still match.
    let local = dir.path().join("out/ingest");
    std::fs::copy(local.join("part-00000.parquet"), dir.path().join("out/stolen.parquet")).unwrap();
    rewrite(&out, |m| m.outputs[0].path = "../stolen.parquet".into());
    let v = verify(&out).unwrap();
    assert!(v.problems.iter().any(|p| p.contains("own stage directory")), "{:?}", v.problems);
    // The same for an absolute path.
    let absolute = dir.path().join("out/stolen.parquet").display().to_string();
    rewrite(&out, |m| m.outputs[0].path = absolute.clone());
    assert!(verify(&out).unwrap().problems.iter().any(|p| p.contains("own stage directory")));
}

#[cfg(unix)]
#[test]
fn a_link_to_a_device_is_not_opened() {
    let dir = tempfile::tempdir().unwrap();
    let out = stage(dir.path());
    let local = dir.path().join("out/ingest");
    std::os::unix::fs::symlink("/dev/zero", local.join("zero.parquet")).unwrap();
    rewrite(&out, |m| m.outputs[0].path = "zero.parquet".into());
    let v = verify(&out).unwrap();
    assert!(v.problems.iter().any(|p| p.contains("not a regular file")), "{:?}", v.problems);
}

#[test]
fn the_markers_must_list_the_manifests_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = stage(dir.path());
    // A shard dropped from the manifest (with its documents), still listed by its marker:
    // the manifest alone would balance, the markers say otherwise.
    rewrite(&out, |m| {
        let gone = m.outputs.remove(1);
        m.accounting.docs_out -= gone.rows;
        m.accounting.docs_in -= gone.rows;
    });
    let v = verify(&out).unwrap();
    assert!(
        v.problems.iter().any(|p| p.contains("in a unit's marker but not in the stage manifest")),
        "{:?}",
        v.problems
    );
}
