//! Helpers shared by the end-to-end tests: run the `grist` binary, write recipes, compare outputs.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `grist` with `args` and extra environment variables.
pub fn grist(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_grist"));
    cmd.args(args).env_remove("RUST_LOG").env("NO_COLOR", "1");
    for var in
        ["SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "JOB_COMPLETION_INDEX", "GRIST_TASKS"]
    {
        cmd.env_remove(var);
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("failed to start grist")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stdout.
pub fn ok(o: Output) -> String {
    assert!(o.status.success(), "grist failed ({:?})\nstdout:\n{}\nstderr:\n{}", o.status, stdout(&o), stderr(&o));
    stdout(&o)
}

/// Writes the built-in sample into `dir/sample` and returns its report.
pub fn sample(dir: &Path, docs: usize) -> serde_json::Value {
    let out = dir.join("sample");
    let s = ok(grist(&["synthetic", "--out", out.to_str().unwrap(), "--docs", &docs.to_string()], &[]));
    serde_json::from_str(&s).unwrap()
}

/// A recipe over the sample in `dir/sample`, writing to `out`.
pub fn sample_recipe(dir: &Path, out: &Path, extra_ingest: &str) -> PathBuf {
    let s = dir.join("sample");
    let text = format!(
        r#"[run]
out = "{out}"
seed = 7

[ingest]
min_words = 5
{extra_ingest}

[[ingest.sources]]
name = "common_crawl"
paths = ["{crawl}"]
url_field = "metadata.url"

[[ingest.sources]]
name = "books"
paths = ["{books}"]
"#,
        out = out.display(),
        crawl = s.join("crawl").display(),
        books = s.join("books").display(),
    );
    let path = out.with_extension("toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Writes `dir/r.toml`: an ingest-only recipe writing to `out`, one source per (name, path).
pub fn ingest_recipe(dir: &Path, out: &Path, sources: &[(&str, PathBuf)]) -> PathBuf {
    let mut text = format!("[run]\nout = \"{}\"\n\n[ingest]\n", out.display());
    for (name, path) in sources {
        text.push_str(&format!("[[ingest.sources]]\nname = \"{name}\"\npaths = [\"{}\"]\n\n", path.display()));
    }
    let recipe = dir.join("r.toml");
    std::fs::write(&recipe, text).unwrap();
    recipe
}

/// Every visible file under `dir` except stats and manifests (which hold timings), with its bytes.
pub fn shard_bytes(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".parquet") {
            out.insert(name, std::fs::read(e.path()).unwrap());
        }
    }
    out
}

/// The real test data folder, or `None` (with a printed message) when GRIST_TEST_DATA is unset.
pub fn test_data(test: &str) -> Option<PathBuf> {
    match std::env::var("GRIST_TEST_DATA") {
        Ok(d) if Path::new(&d).is_dir() => Some(PathBuf::from(d)),
        _ => {
            println!("skipping {test}: GRIST_TEST_DATA is not set to the shared data folder");
            None
        }
    }
}
