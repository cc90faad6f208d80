//! The cluster path: `deploy/local.sh` runs every stage of the demo recipe with
//! `grist run --stage NAME`, each slice of a sliced stage as its own process (as the Slurm and
//! Kubernetes scripts do), and the outputs equal one whole `grist run`, byte for byte, through
//! to the trained model's weights.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{grist, ok};

/// The demo recipe moved under `root`, with a short training run.
fn recipe(root: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/recipes/demo.toml")).unwrap();
    let text = text
        .replace("\"out/demo", &format!("\"{}", root.display()))
        .replace("total_tokens = 250000", "total_tokens = 8192")
        .replace("checkpoint_every = 100", "checkpoint_every = 3");
    let path = root.with_extension("toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Every file of a stage directory except the manifests and markers (which record timings).
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .filter(|(n, _)| !n.ends_with(".json"))
        .collect();
    out.sort();
    out
}

#[test]
fn stage_by_stage_in_slices_equals_one_whole_run() {
    let dir = tempfile::tempdir().unwrap();
    let (whole, sliced) = (dir.path().join("whole"), dir.path().join("sliced"));
    let out = ok(grist(&["-q", "run", recipe(&whole).to_str().unwrap()], &[]));
    assert!(out.contains("train    "), "{out}");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/local.sh");
    let o = std::process::Command::new("bash")
        .args([script, recipe(&sliced).to_str().unwrap(), "2", env!("CARGO_BIN_EXE_grist")])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    for stage in [
        "reddit",
        "ingest",
        "quality_filter",
        "dedup_signatures",
        "dedup_buckets",
        "dedup",
        "decontaminate_hits",
        "decontaminate",
        "tokenize",
        "blend",
    ] {
        let (a, b) = (files(&whole.join(stage)), files(&sliced.join(stage)));
        assert!(!a.is_empty(), "{stage}: no files");
        assert_eq!(a.iter().map(|f| &f.0).collect::<Vec<_>>(), b.iter().map(|f| &f.0).collect::<Vec<_>>(), "{stage}");
        for ((name, x), (_, y)) in a.iter().zip(&b) {
            assert!(x == y, "{stage}/{name} differs between the whole run and the sliced stages");
        }
    }
    let model = |root: &Path| {
        let latest = std::fs::read_to_string(root.join("train/checkpoints/latest")).unwrap();
        std::fs::read(root.join("train/checkpoints").join(latest.trim()).join("model.safetensors")).unwrap()
    };
    assert!(model(&whole) == model(&sliced), "the trained weights differ");
    assert!(sliced.join("report.html").exists());

    // A run killed twice (once in the data stages, once in training) and rerun to the end
    // gives the same files and weights as the uninterrupted run.
    let killed = dir.path().join("killed");
    let r = recipe(&killed);
    for marker in ["quality/model.gqm", "train/checkpoints/latest"] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_grist"))
            .args(["-q", "run", r.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        while !killed.join(marker).exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        child.kill().unwrap();
        assert!(child.wait().unwrap().code().is_none(), "the run ended before the kill at {marker}");
    }
    ok(grist(&["-q", "run", r.to_str().unwrap()], &[]));
    for stage in ["ingest", "quality_filter", "dedup", "decontaminate", "tokenize", "blend"] {
        assert!(files(&whole.join(stage)) == files(&killed.join(stage)), "{stage} differs after the kills");
    }
    assert!(model(&whole) == model(&killed), "the trained weights differ after the kills");
    // A stage the recipe does not have is a no-op, so one script serves every recipe.
    let r = recipe(&dir.path().join("third"));
    let text = std::fs::read_to_string(&r).unwrap();
    let cut = text.find("[train]").unwrap();
    std::fs::write(&r, &text[..cut]).unwrap();
    let o = ok(grist(&["run", r.to_str().unwrap(), "--stage", "train"], &[]));
    assert!(o.contains("not in this recipe"), "{o}");
}
