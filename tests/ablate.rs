//! `grist ablate` end to end on the built-in sample: arms share the run's stage outputs (only
//! their own tokens and model are new), train on the same number of tokens, and a rerun redoes
//! nothing and writes the same `ablate.json`; the paired differences are the arms' differences.
#![allow(clippy::unwrap_used)]

mod common;

use common::{grist, ok};

#[test]
fn arms_share_the_runs_stages_train_alike_and_a_rerun_is_identical() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let text =
        std::fs::read_to_string("recipes/ablate-demo.toml").unwrap().replace("out/ablate-demo", out.to_str().unwrap());
    let recipe = dir.path().join("ablate.toml");
    std::fs::write(&recipe, text).unwrap();
    let args = [
        "--quiet",
        "ablate",
        recipe.to_str().unwrap(),
        "--arms",
        "raw,decontaminate,recipe",
        "--set",
        "ablate.train.total_tokens=4096",
        "--set",
        "ablate.reps=200",
    ];
    let first = ok(grist(&args, &[]));
    let json = out.join("ablate/ablate.json");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let arms = report["arms"].as_array().unwrap();
    let names: Vec<&str> = arms.iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["raw", "decontaminate", "recipe"]);
    // Shared: `raw` tokenizes the run's ingest into its own folder; `decontaminate` is what the
    // recipe tokenizes, so it trains on the run's own tokenize output; `recipe` on the blend.
    let dirs: Vec<String> = arms.iter().map(|a| a["tokens_dir"].as_str().unwrap().to_string()).collect();
    assert_eq!(dirs[0], out.join("ablate/raw/tokenize").display().to_string());
    assert_eq!(dirs[1], out.join("tokenize").display().to_string());
    assert_eq!(dirs[2], out.join("blend").display().to_string());
    let raw_manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("ablate/raw/tokenize/manifest.json")).unwrap()).unwrap();
    let inputs = raw_manifest["inputs"].as_array().unwrap();
    assert!(!inputs.is_empty());
    for i in inputs {
        let p = i["path"].as_str().unwrap();
        assert!(p.starts_with(&out.join("ingest").display().to_string()), "reads the run's ingest: {p}");
    }
    let mut own: Vec<String> = std::fs::read_dir(out.join("ablate"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    own.sort();
    assert_eq!(own, ["ablate.json", "decontaminate", "eval", "raw", "recipe"]);
    let mut raw_own: Vec<String> = std::fs::read_dir(out.join("ablate/raw"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    raw_own.sort();
    assert_eq!(raw_own, ["tokenize", "train"], "an arm holds its tokens and its model, nothing else");
    // The same budget for every arm, and different data: different curves.
    for a in arms {
        assert_eq!(a["tokens_trained"], 4096, "{a}");
    }
    assert_ne!(arms[0]["last_loss"], arms[1]["last_loss"]);
    // Differences are the arms' own bits per byte minus the first arm's.
    let (set, scores) = (&report["sets"][0][0], report["sets"][0][1].as_array().unwrap());
    assert_eq!(set, "heldout_prose");
    assert!(scores[0]["vs_first"].is_null());
    let bpb = |i: usize| scores[i]["bits_per_byte"]["value"].as_f64().unwrap();
    for (i, score) in scores.iter().enumerate().skip(1) {
        let d = &score["vs_first"];
        assert!((d["value"].as_f64().unwrap() - (bpb(i) - bpb(0))).abs() < 1e-9);
        let called = d["lo"].as_f64().unwrap() > 0.0 || d["hi"].as_f64().unwrap() < 0.0;
        assert_eq!(score["called"].as_bool(), Some(called));
    }
    assert!(first.contains("bits/byte - raw [95% CI]"), "{first}");
    // The HTML report's section: every arm's curve on one chart, the held-out table.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let section = &html[html.find(r#"<section id="ablation">"#).expect("an Ablation section")..];
    assert_eq!(section.matches("<polyline").count(), 3, "one curve per arm");
    assert!(section.contains("held-out heldout_prose") && section.contains("vs the first arm"));
    // A rerun: every stage and every arm's training is up to date; the same report, byte for byte.
    let bytes = std::fs::read(&json).unwrap();
    let metrics = std::fs::read(out.join("ablate/raw/train/metrics.jsonl")).unwrap();
    ok(grist(&args, &[]));
    assert_eq!(std::fs::read(&json).unwrap(), bytes);
    assert_eq!(std::fs::read(out.join("ablate/raw/train/metrics.jsonl")).unwrap(), metrics);
    // An arm the recipe does not have is refused, naming the ones it has.
    let bad = grist(&["ablate", recipe.to_str().unwrap(), "--arms", "nope"], &[]);
    assert!(common::stderr(&bad).contains("raw, filters, quality, dedup, decontaminate, recipe"));
}
