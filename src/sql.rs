//! `grist inspect sql DIR [QUERY]`: SQL over a stage output or a whole run directory, through
//! polars' lazy Parquet scans and its streaming engine (a query reads only the columns it
//! names).
//!
//! Tables, from the manifests (so half-written or foreign files are never read):
//! - a stage output: `docs` (its Parquet outputs: documents, or the stage's table such as
//!   tokenize's per-document sidecar) and `ledger` (its ledger shards), also under the stage's
//!   own names (`ingest`, `ingest_ledger`);
//! - a run directory: for each stage `STAGE` and `STAGE_ledger`, and `ledger`, every stage's
//!   ledger in one table.
//!
//! Built with the `sql` feature only: with polars a clean release build took 23 minutes
//! instead of 4 on 2 cores, so the default build leaves it out and says how to get it.

/// Runs `query` (or, without one, lists the tables) and prints the result.
#[cfg(not(feature = "sql"))]
pub fn run(_dir: &str, _query: Option<&str>, _limit: usize, _chars: usize, _json: bool) -> anyhow::Result<()> {
    anyhow::bail!(
        "this grist was built without SQL; rebuild with `cargo build --release --features sql` \
         (adds polars: a clean release build took 23 minutes instead of 4 on 2 cores), or read \
         the Parquet shards with polars or DuckDB directly"
    )
}

#[cfg(feature = "sql")]
pub use imp::run;

#[cfg(feature = "sql")]
mod imp {
    use std::path::{Path, PathBuf};

    use anyhow::{Context, Result, anyhow, bail};
    use polars::prelude::*;
    use polars::sql::SQLContext;
    use serde_json::Value;
    use shards::{Loc, Manifest};

    /// One table: its name and the Parquet files behind it.
    struct Table {
        name: String,
        files: Vec<PathBuf>,
        /// The sizes the manifests record, file by file.
        bytes: Vec<u64>,
        rows: u64,
    }

    /// Runs `query` (or, without one, lists the tables) and prints the result.
    pub fn run(dir: &str, query: Option<&str>, limit: usize, chars: usize, json: bool) -> Result<()> {
        let loc = Loc::parse(dir)?;
        let Some(root) = loc.as_local() else {
            bail!(
                "{dir}: inspect sql reads local directories; for an object store, query its Parquet shards with polars or DuckDB directly"
            )
        };
        let tables = tables(root)?;
        let mut ctx = SQLContext::new();
        for t in &tables {
            ctx.register(&t.name, scan(t)?);
        }
        let Some(query) = query else {
            return list(&mut ctx, &tables, json);
        };
        let lf = ctx.execute(query).map_err(|e| {
            let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
            anyhow!("query: {e}\n  tables here: {}", names.join(", "))
        })?;
        let take = IdxSize::try_from(limit.saturating_add(1)).unwrap_or(IdxSize::MAX);
        let df = lf
            .limit(take)
            .collect_with_engine(Engine::Streaming)
            .map_err(|e| anyhow!("query over {dir}: {e}"))?
            .unwrap_single();
        let shown = df.height().min(limit);
        if json {
            for i in 0..shown {
                let mut o = serde_json::Map::new();
                for c in df.columns() {
                    o.insert(c.name().to_string(), cell(&c.get(i)?));
                }
                println!("{}", Value::Object(o));
            }
        } else {
            print!("{}", render(&df, shown, chars)?);
            if df.height() > limit {
                println!("(first {limit} rows; --limit N for more)");
            } else {
                println!("({shown} rows)");
            }
        }
        Ok(())
    }

    /// The tables of a stage output or a run directory, from the manifests.
    fn tables(root: &Path) -> Result<Vec<Table>> {
        let mut out = Vec::new();
        if root.join(pipeline::MANIFEST).exists() {
            let m = manifest(root)?;
            for (docs, ledger) in
                [("docs".to_string(), "ledger".to_string()), (m.stage.clone(), format!("{}_ledger", m.stage))]
            {
                let (d, l) = stage_tables(root, &m, &docs, &ledger);
                out.extend(d.into_iter().chain(l));
            }
        } else {
            let mut stages: Vec<PathBuf> = std::fs::read_dir(root)
                .with_context(|| format!("{}: cannot list", root.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.join(pipeline::MANIFEST).is_file())
                .collect();
            stages.sort();
            if stages.is_empty() {
                bail!(
                    "{}: neither a stage output nor a run directory (no manifest.json in it or its subdirectories)",
                    root.display()
                );
            }
            let mut all = Table { name: "ledger".into(), files: Vec::new(), bytes: Vec::new(), rows: 0 };
            for dir in &stages {
                let m = manifest(dir)?;
                let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let (docs, ledger) = stage_tables(dir, &m, &name, &format!("{name}_ledger"));
                if let Some(l) = &ledger {
                    all.files.extend(l.files.iter().cloned());
                    all.bytes.extend(&l.bytes);
                    all.rows += l.rows;
                }
                out.extend(docs.into_iter().chain(ledger));
            }
            if !all.files.is_empty() {
                out.push(all);
            }
        }
        // A missing file, or one shorter or longer than its manifest says (truncated, or
        // rewritten since), is reported before polars reads it.
        for t in &out {
            for (f, &want) in t.files.iter().zip(&t.bytes) {
                let got = std::fs::metadata(f)
                    .with_context(|| format!("{}: listed in a manifest but missing", f.display()))?
                    .len();
                if got != want {
                    bail!(
                        "{}: {got} bytes, but its manifest says {want} (truncated or rewritten; `grist inspect --verify` checks the whole stage)",
                        f.display()
                    );
                }
            }
        }
        Ok(out)
    }

    fn manifest(dir: &Path) -> Result<Manifest> {
        Manifest::read(&Loc::local(dir.join(pipeline::MANIFEST)))
            .with_context(|| format!("{}: unreadable manifest", dir.display()))
    }

    /// A stage's Parquet outputs as `docs_name` and its ledgers as `ledger_name` (each only
    /// when it has files).
    fn stage_tables(dir: &Path, m: &Manifest, docs_name: &str, ledger_name: &str) -> (Option<Table>, Option<Table>) {
        let pick = |entries: &[shards::manifest::FileEntry], name: &str| {
            let files: Vec<&shards::manifest::FileEntry> =
                entries.iter().filter(|f| f.path.ends_with(".parquet")).collect();
            (!files.is_empty()).then(|| Table {
                name: name.to_string(),
                files: files.iter().map(|f| dir.join(&f.path)).collect(),
                bytes: files.iter().map(|f| f.bytes).collect(),
                rows: files.iter().map(|f| f.rows).sum(),
            })
        };
        (pick(&m.outputs, docs_name), pick(&m.ledgers, ledger_name))
    }

    /// A lazy scan of a table's files, in manifest order.
    fn scan(t: &Table) -> Result<LazyFrame> {
        let paths: Vec<PlRefPath> = t.files.iter().map(|p| PlRefPath::new(p.to_string_lossy().as_ref())).collect();
        // The manifest names every file: no globbing of `[` or `*` in paths, and no Hive
        // partition columns made up from a `key=value` directory above the run.
        let args = ScanArgsParquet {
            glob: false,
            hive_options: HiveOptions { enabled: Some(false), ..HiveOptions::default() },
            ..ScanArgsParquet::default()
        };
        LazyFrame::scan_parquet_files(paths.into_iter().collect(), args)
            .map_err(|e| anyhow!("table {}: cannot scan {}: {e}", t.name, t.files[0].display()))
    }

    /// Without a query: each table, its rows and files, and its columns with their types.
    fn list(ctx: &mut SQLContext, tables: &[Table], json: bool) -> Result<()> {
        let mut rows = Vec::new();
        for t in tables {
            let mut lf = ctx.execute(&format!("SELECT * FROM {}", t.name))?;
            let schema = lf.collect_schema().map_err(|e| anyhow!("table {}: {}: {e}", t.name, t.files[0].display()))?;
            let cols: Vec<(String, String)> = schema.iter().map(|(n, d)| (n.to_string(), d.to_string())).collect();
            rows.push((t, cols));
        }
        if json {
            for (t, cols) in &rows {
                let cols: serde_json::Map<String, Value> =
                    cols.iter().map(|(n, d)| (n.clone(), Value::from(d.as_str()))).collect();
                println!(
                    "{}",
                    serde_json::json!({"table": t.name, "rows": t.rows, "files": t.files.len(), "columns": cols})
                );
            }
            return Ok(());
        }
        println!("{:<28} {:>12} {:>6}  columns", "table", "rows", "files");
        for (t, cols) in &rows {
            let c: Vec<String> = cols.iter().map(|(n, d)| format!("{n} {d}")).collect();
            println!("{:<28} {:>12} {:>6}  {}", t.name, t.rows, t.files.len(), c.join(", "));
        }
        println!(
            "\ne.g. grist inspect sql DIR \"SELECT reason, COUNT(*) AS n FROM ledger GROUP BY reason ORDER BY n DESC\""
        );
        Ok(())
    }

    /// A cell as JSON: numbers as numbers (NaN and infinities as null), text as text.
    fn cell(v: &AnyValue) -> Value {
        let d = v.dtype();
        match v {
            AnyValue::Null => Value::Null,
            AnyValue::Boolean(b) => Value::Bool(*b),
            _ if d.is_signed_integer() => v.extract::<i64>().map_or(Value::Null, Value::from),
            _ if d.is_unsigned_integer() => v.extract::<u64>().map_or(Value::Null, Value::from),
            _ if d.is_float() => {
                v.extract::<f64>().and_then(serde_json::Number::from_f64).map_or(Value::Null, Value::Number)
            }
            _ => Value::String(v.get_str().map_or_else(|| v.to_string(), str::to_string)),
        }
    }

    /// An aligned text table of the first `n` rows: cells cut to `chars` characters (newlines
    /// shown as `⏎`), floats to 4 decimals (`--json` keeps every digit).
    fn render(df: &DataFrame, n: usize, chars: usize) -> Result<String> {
        let cols = df.columns();
        let mut grid: Vec<Vec<String>> = vec![cols.iter().map(|c| c.name().to_string()).collect()];
        for i in 0..n {
            let mut row = Vec::with_capacity(cols.len());
            for c in cols {
                let s = match cell(&c.get(i)?) {
                    Value::Null => "null".to_string(),
                    Value::String(s) => s,
                    Value::Number(x) if c.dtype().is_float() => format!("{:.4}", x.as_f64().unwrap_or(f64::NAN)),
                    v => v.to_string(),
                };
                let mut cut: String = s.chars().map(|ch| if ch == '\n' { '⏎' } else { ch }).take(chars).collect();
                if s.chars().nth(chars).is_some() {
                    cut.push('…');
                }
                row.push(cut);
            }
            grid.push(row);
        }
        let numeric: Vec<bool> = cols.iter().map(|c| c.dtype().is_primitive_numeric()).collect();
        let widths: Vec<usize> =
            (0..cols.len()).map(|j| grid.iter().map(|r| r[j].chars().count()).max().unwrap_or(0)).collect();
        let mut out = String::new();
        for (i, r) in grid.iter().enumerate() {
            let line: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(j, s)| {
                    if numeric[j] && i > 0 {
                        format!("{s:>w$}", w = widths[j])
                    } else {
                        format!("{s:<w$}", w = widths[j])
                    }
                })
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
        Ok(out)
    }
}
