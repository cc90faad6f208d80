//! The `grist` command line: argument parsing, logging, and wiring the pipeline and the
//! trainer together. No stage logic lives here; every command calls a library function.
//!
//! Exit codes: 0 success; 1 error (the message names the file and offset where one applies,
//! and ends with a hint when the fix is known); 2 command-line usage error; 3 `inspect
//! --verify` found an inconsistent output.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use pipeline::{Recipe, TaskSlice, ingest, sample, summary, verify};
use shards::Loc;

mod inspect_cmd;
mod plan;
mod report;
mod sql;
mod train_cmd;

/// Exit code of command-line usage errors (clap's, and slices that do not exist).
pub const EXIT_USAGE: u8 = 2;
/// Exit code when `inspect --verify` finds problems.
pub const EXIT_VERIFY_FAILED: u8 = 3;

/// GPT-3's data recipe, from Common Crawl to training tokens, in one tool.
#[derive(Debug, Parser)]
#[command(name = "grist", version, about, propagate_version = true)]
pub struct Cli {
    /// More log output (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only warnings and errors on stderr.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Worker threads (default: all cores; RAYON_NUM_THREADS also works).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a recipe: every stage that exists, in order; a rerun resumes where it stopped.
    Run {
        #[command(flatten)]
        args: StageArgs,
        /// Run only this stage (one slice of it with --task/--tasks), for batch schedulers:
        /// sample, reddit, ingest, quality_train, quality_filter, dedup_signatures,
        /// dedup_buckets, dedup_clusters, dedup_filter, decontaminate, tokenize, blend, train,
        /// report.
        #[arg(long, value_name = "NAME")]
        stage: Option<String>,
    },
    /// Write the built-in synthetic sample corpus (deterministic from a seed).
    Sample {
        /// Output folder.
        #[arg(long)]
        out: String,
        #[arg(long, default_value_t = 20200528)]
        seed: u64,
        /// Number of crawl-like documents.
        #[arg(long, default_value_t = 600)]
        docs: usize,
    },
    /// Select WebText URLs from Pushshift Reddit dumps (score >= 3, outbound, normalized).
    Reddit(StageArgs),
    /// Ingest Common Crawl WARC/WET and corpora (JSON lines, text folders) into document shards.
    Ingest(StageArgs),
    /// Train the quality classifier (Spark features + logistic regression) on ingested documents.
    #[command(subcommand)]
    Quality(QualityCmd),
    /// Remove exact and near-duplicate documents (MinHash-LSH, GPT-3's Spark settings by default).
    Dedup {
        #[command(flatten)]
        args: StageArgs,
        /// Run only this step (its earlier steps must be complete): for batch schedulers.
        #[arg(long, value_enum)]
        step: Option<DedupStep>,
    },
    /// Cut benchmark 13-grams out of training documents (GPT-3 Appendix C).
    Decontaminate(StageArgs),
    /// GPT-2 BPE into llm.c token shards, with a validation split and a per-document sidecar.
    Tokenize(StageArgs),
    /// Mix the tokenized sources by the recipe's weights into shuffled llm.c training shards.
    Blend {
        #[command(flatten)]
        args: StageArgs,
        /// Print the mixture plan (weights, tokens, epochs) and exit.
        #[arg(long)]
        plan: bool,
    },
    /// Train a GPT on token shards (GPT-3's schedule, checkpoints, exact resume).
    Train {
        /// A training config (TOML), or a recipe with a [train] table.
        #[arg(long)]
        config: PathBuf,
        /// Override a config key, e.g. --set lr=3e-4 --set steps=200.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Start over: remove the run's checkpoints and metrics instead of resuming.
        #[arg(long)]
        fresh: bool,
    },
    /// Continue a prompt with a trained model (temperature and top-k sampling).
    Generate {
        /// A checkpoint directory, or a training output (its latest checkpoint).
        #[arg(long)]
        checkpoint: String,
        #[arg(long, default_value = "")]
        prompt: String,
        /// Tokens to generate (at most; <|endoftext|> ends early).
        #[arg(long, default_value_t = 100)]
        tokens: usize,
        /// 0 is greedy.
        #[arg(long, default_value_t = 0.8)]
        temperature: f32,
        /// Sample among the k most likely tokens (0: all).
        #[arg(long, default_value_t = 40)]
        top_k: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// How many samples.
        #[arg(long, default_value_t = 1)]
        samples: usize,
    },
    /// Dry run: per stage what it reads and writes, estimates of disk, memory and time, and problems.
    Plan {
        /// Recipe TOML file.
        recipe: PathBuf,
        /// Override a recipe key, as for `grist run`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
    },
    /// Write a run's HTML report (funnel, removals, quality, mixture, training, documents).
    Report {
        /// A run directory (the recipe's run.out, e.g. out/demo).
        run: PathBuf,
        /// Where to write it (default: RUN/report.html).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Count the records of WARC/WET files by type, and bad stretches by reason.
    Warc {
        /// WARC or WET files (plain or gzip).
        files: Vec<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Summarize a stage output or run (--verify checks it); or follow a document (why), read
    /// documents by source, score, length and regex (query, sample), or ask in SQL (sql).
    Inspect(InspectArgs),
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct InspectArgs {
    #[command(subcommand)]
    what: Option<InspectCmd>,
    /// A stage output directory, e.g. out/demo/ingest.
    #[arg(required = true)]
    dir: Option<String>,
    /// Check files against manifests and documents in = out + ledger; exit 3 on problems.
    #[arg(long)]
    verify: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Also print the first N documents (id, source, url, and the text up to --chars).
    #[arg(long, value_name = "N")]
    head: Option<usize>,
    /// Characters of text shown per document with --head.
    #[arg(long, default_value_t = 400)]
    chars: usize,
}

#[derive(Debug, Subcommand)]
enum InspectCmd {
    /// Every stage a document passed through, and where and why it was removed.
    Why {
        /// The document id (as in the shards and ledgers).
        id: String,
        /// The run directory (the recipe's run.out).
        #[arg(long, default_value = "out/demo")]
        run: String,
        #[arg(long)]
        json: bool,
    },
    /// The first documents of a stage output that match the filters.
    Query {
        /// A stage output directory, e.g. out/demo/quality_filter.
        dir: String,
        #[command(flatten)]
        filters: inspect_cmd::Filters,
        /// How many documents at most.
        #[arg(long, default_value_t = 10)]
        limit: usize,
        /// Characters of text shown per document.
        #[arg(long, default_value_t = 400)]
        chars: usize,
        /// One JSON object per line, with the whole text.
        #[arg(long)]
        json: bool,
    },
    /// A seeded random sample of the documents of a stage output that match the filters.
    Sample {
        dir: String,
        #[command(flatten)]
        filters: inspect_cmd::Filters,
        #[arg(short, long, default_value_t = 5)]
        n: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 400)]
        chars: usize,
        #[arg(long)]
        json: bool,
    },
    /// SQL over a stage output or a run directory (polars; needs a build with `--features sql`).
    /// Without a query, lists the tables and their columns.
    Sql {
        /// A stage output (tables `docs`, `ledger`) or a run directory (a table per stage and
        /// `STAGE_ledger`, and `ledger` for all of them).
        dir: String,
        /// The query, e.g. "SELECT source, COUNT(*) AS n FROM docs GROUP BY source".
        query: Option<String>,
        /// Rows shown at most.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Characters shown per cell (JSON output is never cut).
        #[arg(long, default_value_t = 60)]
        chars: usize,
        /// One JSON object per row.
        #[arg(long)]
        json: bool,
    },
}

/// `grist dedup --step`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum DedupStep {
    /// Exact keys, MinHash signatures and sorted band keys (sliced by input shard).
    Signatures,
    /// Candidate pairs from the band keys (sliced by band and key range).
    Buckets,
    /// Verification, union-find and representatives (one task).
    Clusters,
    /// The input minus the removed documents (sliced by input shard).
    Filter,
}

impl From<DedupStep> for pipeline::dedup::DedupStep {
    fn from(s: DedupStep) -> Self {
        match s {
            DedupStep::Signatures => Self::Signatures,
            DedupStep::Buckets => Self::Buckets,
            DedupStep::Clusters => Self::Clusters,
            DedupStep::Filter => Self::Filter,
        }
    }
}

#[derive(Debug, Subcommand)]
enum QualityCmd {
    /// Train on the ingest output: writes {run.out}/quality/model.gqm and train_report.json.
    Train(StageArgs),
    /// Score the ingest output and keep documents by GPT-3's Pareto rule.
    Filter(StageArgs),
    /// Score JSON-lines files or document shards with a model: prints `score<TAB>id` lines.
    Score {
        /// A model file written by `grist quality train` (model.gqm).
        #[arg(long)]
        model: String,
        /// JSON lines (optionally compressed) or grist document shards (.parquet).
        files: Vec<String>,
        /// The JSON field holding the text.
        #[arg(long, default_value = "text")]
        field: String,
        /// Print only the totals and throughput (to stdout), not one line per document.
        #[arg(long)]
        stats: bool,
    },
}

#[derive(Debug, Clone, Args)]
struct StageArgs {
    /// Recipe TOML file (see recipes/).
    recipe: PathBuf,
    /// Override a recipe key, e.g. --set ingest.min_words=5 (the key must exist).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// This task's slice index (with --tasks; or SLURM_ARRAY_TASK_ID / JOB_COMPLETION_INDEX).
    #[arg(long)]
    task: Option<usize>,
    /// Number of slices the stage is split into.
    #[arg(long)]
    tasks: Option<usize>,
}

impl StageArgs {
    fn load(&self) -> Result<(Recipe, TaskSlice)> {
        let recipe = Recipe::load(&self.recipe, &self.overrides)?;
        let slice = TaskSlice::resolve(self.task, self.tasks, |k| std::env::var(k).ok())?;
        tracing::info!("resolved recipe ({slice}):\n{}", recipe.to_toml());
        Ok((recipe, slice))
    }
}

/// Entry point of the binary: parse, run, print errors with their causes, map exit codes.
pub fn main() -> ExitCode {
    // Output piped into `head` and closed early: end quietly as Unix tools do, rather than
    // panicking on a write to a closed pipe.
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any thread exists; restoring the default
    // disposition of SIGPIPE has no other effect on the process.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            match e.downcast_ref::<pipeline::StageError>() {
                Some(pipeline::StageError::Usage(_)) => ExitCode::from(EXIT_USAGE),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

fn init_logging(verbose: u8, quiet: bool) {
    use tracing_subscriber::EnvFilter;
    let level = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!("warn,grist={level},pipeline={level},shards={level},trainer={level}"))
    });
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).try_init();
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    if let Some(n) = cli.threads {
        rayon::ThreadPoolBuilder::new().num_threads(n).build_global().context("setting --threads")?;
    }
    dispatch(cli.command)
}

/// One stage of a recipe as its own command (`grist run --stage NAME`).
fn run_stage(name: &str, args: StageArgs) -> Result<ExitCode> {
    // A stage the recipe does not have is a no-op, so one scheduler script serves every recipe.
    let recipe = Recipe::load(&args.recipe, &args.overrides)?;
    let table = match name {
        "quality_train" => recipe.quality.is_some(),
        "quality_filter" => recipe.quality_filter.is_some(),
        n if n.starts_with("dedup") => recipe.dedup.is_some(),
        "sample" => recipe.sample.is_some(),
        "reddit" => recipe.reddit.is_some(),
        "decontaminate" => recipe.decontaminate.is_some(),
        "tokenize" => recipe.tokenize.is_some(),
        "blend" => recipe.blend.is_some(),
        "train" => recipe.train.is_some(),
        _ => true,
    };
    if !table {
        println!("stage {name}: not in this recipe, nothing to do");
        return Ok(ExitCode::SUCCESS);
    }
    let dedup = |step| Command::Dedup { args: StageArgs { ..args.clone() }, step: Some(step) };
    let cmd = match name {
        "sample" => {
            let s = recipe.sample.context("the recipe has no [sample] table")?;
            Command::Sample { out: s.out, seed: s.seed, docs: s.docs }
        }
        "reddit" => Command::Reddit(args),
        "ingest" => Command::Ingest(args),
        "quality_train" => Command::Quality(QualityCmd::Train(args)),
        "quality_filter" => Command::Quality(QualityCmd::Filter(args)),
        "dedup_signatures" => dedup(DedupStep::Signatures),
        "dedup_buckets" => dedup(DedupStep::Buckets),
        "dedup_clusters" => dedup(DedupStep::Clusters),
        "dedup_filter" | "dedup" => dedup(DedupStep::Filter),
        "decontaminate" => Command::Decontaminate(args),
        "tokenize" => Command::Tokenize(args),
        "blend" => Command::Blend { args, plan: false },
        "train" => {
            if args.tasks.is_some_and(|n| n > 1) {
                anyhow::bail!("train runs as one task (no --tasks)");
            }
            Command::Train { config: args.recipe, overrides: args.overrides, fresh: false }
        }
        "report" => Command::Report { run: PathBuf::from(recipe.run.out), out: None },
        other => {
            return Err(pipeline::StageError::Usage(format!(
                "unknown stage {other:?}\nhint: sample, reddit, ingest, quality_train, quality_filter, dedup_signatures, dedup_buckets, dedup_clusters, dedup_filter, decontaminate, tokenize, blend, train, report"
            ))
            .into());
        }
    };
    dispatch(cmd)
}

/// Runs one command.
fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Sample { out, seed, docs } => {
            let rep = sample::write_sample(&Loc::parse(&out)?, seed, docs)?;
            println!("{}", serde_json::to_string_pretty(&rep)?);
        }
        Command::Reddit(args) => {
            let (recipe, slice) = args.load()?;
            let cfg = recipe
                .reddit
                .as_ref()
                .context("the recipe has no [reddit] table\nhint: add [reddit] with dumps = [...]")?;
            let rep = pipeline::reddit::run(cfg, &stage_dir(&recipe, pipeline::reddit::STAGE)?, slice)?;
            println!("{}", serde_json::to_string_pretty(&rep)?);
        }
        Command::Ingest(args) => {
            let (recipe, slice) = args.load()?;
            let rep = run_ingest(&recipe, slice)?;
            println!("{}", serde_json::to_string_pretty(&rep)?);
        }
        Command::Run { args, stage: Some(name) } => return run_stage(&name, args),
        Command::Run { args, stage: None } => return run_recipe(&args),
        Command::Dedup { args, step } => {
            let (recipe, slice) = args.load()?;
            let cfg = recipe.dedup.as_ref().context("the recipe has no [dedup] table")?;
            let rep =
                pipeline::dedup::run(cfg, recipe.run.seed, &Loc::parse(&recipe.run.out)?, slice, step.map(Into::into))?;
            println!("{}", serde_json::to_string_pretty(&rep)?);
        }
        Command::Decontaminate(args) => {
            let (recipe, slice) = args.load()?;
            let cfg = recipe.decontaminate.as_ref().context("the recipe has no [decontaminate] table")?;
            let rep = pipeline::decontam::run(cfg, &Loc::parse(&recipe.run.out)?, slice)?;
            println!("{}", serde_json::to_string_pretty(&rep)?);
        }
        Command::Tokenize(args) => {
            let (recipe, slice) = args.load()?;
            let cfg = recipe.tokenize.as_ref().context("the recipe has no [tokenize] table")?;
            let rep = pipeline::tokenize::run(cfg, recipe.run.seed, &Loc::parse(&recipe.run.out)?, slice)?;
            println!("{}", serde_json::to_string_pretty(&rep)?);
        }
        Command::Blend { args, plan } => {
            let (recipe, slice) = args.load()?;
            let cfg = recipe.blend.as_ref().context("the recipe has no [blend] table")?;
            let out = Loc::parse(&recipe.run.out)?;
            if plan {
                print!("{}", pipeline::blend::plan(cfg, &out)?.render());
                return Ok(ExitCode::SUCCESS);
            }
            let rep = pipeline::blend::run(cfg, recipe.run.seed, &out, slice)?;
            print!("{}", rep.plan.render());
            println!("{}", serde_json::to_string_pretty(&rep.stage)?);
        }
        Command::Warc { files, json } => warc_counts(&files, json)?,
        Command::Plan { recipe, overrides } => {
            let r = Recipe::load(&recipe, &overrides)?;
            let p = plan::plan(&r, rayon::current_num_threads())?;
            print!("{}", p.text);
            if !p.problems.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Report { run, out } => {
            let path = report::write_report(&run, out.as_deref())?;
            println!("report   {}", path.display());
        }
        Command::Train { config, overrides, fresh } => {
            let cfg = train_cmd::load_config(&config, &overrides)?;
            let summary = train_cmd::run_training(&cfg, fresh)?;
            train_cmd::print_summary(&summary);
        }
        Command::Generate { checkpoint, prompt, tokens, temperature, top_k, seed, samples } => {
            for i in 0..samples as u64 {
                let s = trainer::generate::Sampling { temperature, top_k, seed: seed + i };
                if samples > 1 {
                    println!("--- sample {} (seed {})", i + 1, seed + i);
                }
                println!("{}", train_cmd::run_generate(&checkpoint, &prompt, tokens, s)?);
            }
        }
        Command::Quality(QualityCmd::Filter(args)) => {
            let (recipe, slice) = args.load()?;
            let rep = run_filter(&recipe, slice)?;
            println!("{}", serde_json::to_string_pretty(&rep)?);
            if rep.stage_complete {
                let dir = stage_dir(&recipe, pipeline::quality_filter::STAGE)?;
                let m = shards::Manifest::read(&dir.join(pipeline::stage::MANIFEST))?;
                print!("{}", render_keep(&pipeline::quality_filter::keep_report(&m)));
            }
        }
        Command::Quality(QualityCmd::Train(args)) => {
            let (recipe, _) = args.load()?;
            let cfg = recipe
                .quality
                .as_ref()
                .context("the recipe has no [quality] table\nhint: add [quality] with positives and negatives")?;
            let out = stage_dir(&recipe, "quality")?;
            let rep = pipeline::quality_train::train(cfg, recipe.run.seed, &stage_dir(&recipe, ingest::STAGE)?, &out)?;
            print_train(&rep);
            println!("report   {out}/train_report.json");
        }
        Command::Quality(QualityCmd::Score { model, files, field, stats }) => {
            let model = pipeline::quality::QualityModel::load(&Loc::parse(&model)?)?;
            let files: Vec<Loc> = files.iter().map(|f| Loc::parse(f)).collect::<Result<_, _>>()?;
            let start = std::time::Instant::now();
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            let mut failed = None;
            let t = pipeline::quality_score::score_files(&model, &files, &field, |id, s| {
                if !stats && failed.is_none() {
                    failed = writeln!(out, "{s:.6}\t{id}").err();
                }
            })?;
            if let Some(e) = failed {
                return Err(e.into());
            }
            if stats {
                let mb = t.text_bytes as f64 / 1e6;
                let threads = rayon::current_num_threads();
                writeln!(
                    out,
                    "{} documents, {mb:.1} MB of text: scoring {:.3} s ({:.1} MB/s on {threads} threads), {:.3} s in all",
                    t.docs,
                    t.score_seconds,
                    mb / t.score_seconds.max(1e-9),
                    start.elapsed().as_secs_f64()
                )?;
            }
            out.flush()?;
        }
        Command::Inspect(InspectArgs { what: Some(what), .. }) => match what {
            InspectCmd::Why { id, run, json } => {
                if !inspect_cmd::why(&run, &id, json)? {
                    return Ok(ExitCode::FAILURE);
                }
            }
            InspectCmd::Query { dir, filters, limit, chars, json } => {
                inspect_cmd::query(&dir, &filters, limit, chars, json)?
            }
            InspectCmd::Sample { dir, filters, n, seed, chars, json } => {
                inspect_cmd::sample(&dir, &filters, n, seed, chars, json)?
            }
            InspectCmd::Sql { dir, query, limit, chars, json } => {
                sql::run(&dir, query.as_deref().filter(|q| !q.trim().is_empty()), limit, chars, json)?
            }
        },
        Command::Inspect(InspectArgs { what: None, dir, verify, json, head, chars }) => {
            let dir = dir.context("grist inspect DIR (or why / query / sample / sql)")?;
            let code = inspect(&dir, verify, json)?;
            if let Some(n) = head {
                print_head(&Loc::parse(&dir)?, n, chars)?;
            }
            return Ok(code);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn stage_dir(recipe: &Recipe, stage: &str) -> Result<Loc> {
    Ok(Loc::parse(&recipe.run.out)?.join(stage))
}

/// Runs the quality filter over the ingest output with the recipe's model.
fn run_filter(recipe: &Recipe, slice: TaskSlice) -> Result<pipeline::stage::TaskReport> {
    let cfg = recipe.quality_filter.as_ref().context("the recipe has no [quality_filter] table")?;
    let q = recipe.quality.as_ref().context("[quality_filter] needs [quality]")?;
    let model = match &cfg.model {
        Some(m) => Loc::parse(m)?,
        None => stage_dir(recipe, "quality")?.join("model.gqm"),
    };
    Ok(pipeline::quality_filter::run(
        cfg,
        recipe.run.seed,
        q.num_features,
        &model,
        &stage_dir(recipe, ingest::STAGE)?,
        &stage_dir(recipe, pipeline::quality_filter::STAGE)?,
        slice,
    )?)
}

/// Runs `ingest`, with the reddit stage's URLs when the recipe asks for WebText.
fn run_ingest(recipe: &Recipe, slice: TaskSlice) -> Result<pipeline::stage::TaskReport> {
    let webtext_dir = match &recipe.ingest.webtext {
        Some(w) => Some(match &w.urls {
            Some(u) => Loc::parse(u)?,
            None => stage_dir(recipe, pipeline::reddit::STAGE)?,
        }),
        None => None,
    };
    Ok(ingest::run(&recipe.ingest, &stage_dir(recipe, ingest::STAGE)?, slice, webtext_dir.as_ref())?)
}

fn run_recipe(args: &StageArgs) -> Result<ExitCode> {
    let (recipe, slice) = args.load()?;
    if let Some(s) = &recipe.sample {
        let out = Loc::parse(&s.out)?;
        let marker = out.join("sample.json");
        let want = serde_json::json!({ "seed": s.seed, "docs": s.docs });
        let fresh = marker
            .read()
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .map(|v| v["config"] == want);
        if fresh == Some(true) {
            tracing::info!(out = %out, "built-in sample already written; keeping it");
        } else {
            let rep = sample::write_sample(&out, s.seed, s.docs)?;
            tracing::info!(out = %out, files = rep.crawl_files + rep.book_files, "wrote the built-in sample");
            let doc = serde_json::json!({ "config": want, "report": rep });
            marker.write_atomic(serde_json::to_string_pretty(&doc)?.as_bytes())?;
        }
    }
    if let Some(cfg) = &recipe.reddit {
        let rep = pipeline::reddit::run(cfg, &stage_dir(&recipe, pipeline::reddit::STAGE)?, slice)?;
        if !print_stage(&rep, "submissions", "URLs selected", slice) {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let out = stage_dir(&recipe, ingest::STAGE)?;
    let rep = run_ingest(&recipe, slice)?;
    if !print_stage(&rep, "documents", "kept", slice) {
        return Ok(ExitCode::SUCCESS);
    }
    let v = verify::verify(&out)?;
    if !v.ok() {
        for p in &v.problems {
            eprintln!("verify: {p}");
        }
        return Ok(ExitCode::from(EXIT_VERIFY_FAILED));
    }
    println!("verify   ok: {} files match their manifests; accounting balances", v.files_checked);
    if let Some(cfg) = &recipe.quality {
        let qdir = stage_dir(&recipe, "quality")?;
        match pipeline::quality_train::completed(cfg, recipe.run.seed, &out, &qdir)? {
            Some(q) => println!(
                "quality  model up to date (same config, seed and input); held-out AUC {:.4}; not retrained",
                q.holdout_auc
            ),
            None => print_train(&pipeline::quality_train::train(cfg, recipe.run.seed, &out, &qdir)?),
        }
    }
    let mut last = out.clone();
    if recipe.quality_filter.is_some() {
        let rep = run_filter(&recipe, slice)?;
        if !print_stage(&rep, "documents", "kept", slice) {
            return Ok(ExitCode::SUCCESS);
        }
        last = stage_dir(&recipe, pipeline::quality_filter::STAGE)?;
        if let Some(code) = verify_failed(&last)? {
            return Ok(code);
        }
        let m = shards::Manifest::read(&last.join(pipeline::stage::MANIFEST))?;
        print!("{}", render_keep(&pipeline::quality_filter::keep_report(&m)));
    }
    if let Some(cfg) = &recipe.dedup {
        let rep = pipeline::dedup::run(cfg, recipe.run.seed, &Loc::parse(&recipe.run.out)?, slice, None)?;
        let Some(sigs) = &rep.signatures else { return Ok(ExitCode::SUCCESS) };
        if !print_stage(sigs, "documents", "signed", slice) {
            return Ok(ExitCode::SUCCESS);
        }
        if let Some(b) = &rep.buckets
            && !print_stage(b, "candidate pairs", "written", slice)
        {
            return Ok(ExitCode::SUCCESS);
        }
        if let Some(c) = &rep.clusters {
            println!(
                "dedup    {} documents: {} exact and {} near duplicates removed ({} candidate pairs over {} documents, {} joined; {} without features) ({:.2} s)",
                c.docs,
                c.exact_duplicates,
                c.near_duplicates,
                c.candidate_pairs,
                c.candidate_docs,
                c.verified_pairs,
                c.docs_without_features,
                c.seconds
            );
        }
        if let Some(f) = &rep.filter {
            if !print_stage(f, "documents", "kept", slice) {
                return Ok(ExitCode::SUCCESS);
            }
            last = stage_dir(&recipe, pipeline::dedup::STAGE)?;
            if let Some(code) = verify_failed(&last)? {
                return Ok(code);
            }
        }
    }
    if let Some(cfg) = &recipe.decontaminate {
        let rep = pipeline::decontam::run(cfg, &Loc::parse(&recipe.run.out)?, slice)?;
        if !print_stage(&rep.hits, "gram counts", "written", slice) {
            return Ok(ExitCode::SUCCESS);
        }
        if let Some(c) = &rep.clean {
            if !print_stage(c, "documents", "kept", slice) {
                return Ok(ExitCode::SUCCESS);
            }
            last = stage_dir(&recipe, pipeline::decontam::STAGE)?;
            if let Some(code) = verify_failed(&last)? {
                return Ok(code);
            }
            let m = shards::Manifest::read(&last.join(pipeline::stage::MANIFEST))?;
            let hits: Vec<String> =
                m.counters.iter().filter_map(|(k, v)| k.strip_prefix("hits_").map(|b| format!("{b} {v}"))).collect();
            println!(
                "decontam {} documents cut, {} removed; benchmark gram hits: {}",
                m.counters.get("documents_cut").copied().unwrap_or(0),
                m.accounting.docs_ledger,
                if hits.is_empty() { "none".to_string() } else { hits.join(", ") }
            );
        }
    }
    if let Some(cfg) = &recipe.tokenize {
        let rep = pipeline::tokenize::run(cfg, recipe.run.seed, &Loc::parse(&recipe.run.out)?, slice)?;
        if !print_stage(&rep, "documents", "tokenized", slice) {
            return Ok(ExitCode::SUCCESS);
        }
        let dir = stage_dir(&recipe, pipeline::tokenize::STAGE)?;
        if let Some(code) = verify_failed(&dir)? {
            return Ok(code);
        }
        let m = shards::Manifest::read(&dir.join(pipeline::stage::MANIFEST))?;
        let c = |k: &str| m.counters.get(k).copied().unwrap_or(0);
        println!(
            "tokens   {} train + {} validation GPT-2 tokens in {} llm.c shards under {dir}/",
            c("tokens_train"),
            c("tokens_val"),
            m.side.len()
        );
    }
    if let Some(cfg) = &recipe.blend {
        let rep = pipeline::blend::run(cfg, recipe.run.seed, &Loc::parse(&recipe.run.out)?, slice)?;
        print!("\n{}", rep.plan.render());
        if !print_stage(&rep.stage, "documents", "written", slice) {
            return Ok(ExitCode::SUCCESS);
        }
        let dir = stage_dir(&recipe, pipeline::blend::STAGE)?;
        if let Some(code) = verify_failed(&dir)? {
            return Ok(code);
        }
        let realized: Vec<String> = rep
            .plan
            .sources
            .iter()
            .map(|p| format!("{} {} of {}", p.name, rep.realized.get(&p.name).copied().unwrap_or(0), p.target_tokens))
            .collect();
        println!("blend    realized tokens (of planned): {}", realized.join(", "));
    }
    let mut trained = None;
    if let Some(t) = &recipe.train {
        if slice.count > 1 {
            println!(
                "train    runs as one task: run `grist train --config {}` after every slice",
                args.recipe.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        let table = train_cmd::recipe_defaults(t.clone(), &recipe.run.out);
        let cfg: trainer::train::TrainConfig =
            toml::Value::Table(table).try_into().context("the recipe's [train] table")?;
        let s = match train_cmd::run_training(&cfg, false) {
            Ok(s) => s,
            // A recipe reruns a stage whose config or input changed: train again from scratch.
            Err(e) => match e.downcast_ref::<trainer::train::TrainError>() {
                Some(
                    why @ (trainer::train::TrainError::ConfigChanged { .. }
                    | trainer::train::TrainError::DataChanged { .. }),
                ) => {
                    let first = why.to_string();
                    println!("train    {}; training again from scratch", first.lines().next().unwrap_or_default());
                    train_cmd::run_training(&cfg, true)?
                }
                _ => return Err(e),
            },
        };
        println!(
            "\ntrain    {} steps, {} tokens: loss {} -> {}, validation {}",
            s.steps,
            s.tokens,
            s.first_loss.map_or("-".into(), |l| format!("{l:.3}")),
            s.last_loss.map_or("-".into(), |l| format!("{l:.3}")),
            s.val_loss.map_or("-".into(), |l| format!("{l:.3}"))
        );
        if cfg.vocab_size == pipeline::tokenize::GPT2_VOCAB {
            if let Some(c) = &s.checkpoint {
                let sampling = trainer::generate::Sampling { temperature: 0.8, top_k: 40, seed: recipe.run.seed };
                let text = train_cmd::run_generate(c, "The", 48, sampling)?;
                let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
                let path = Path::new(&cfg.out).join("sample.txt");
                std::fs::write(&path, format!("{text}\n")).with_context(|| format!("{}", path.display()))?;
                println!("sample   {text}");
            }
        }
        trained = Some(s);
    }
    println!();
    print!("{}", summary::summarize(&last)?.render());
    println!("\noutputs  {last}/ (manifest.json, part-*.parquet, ledger-*.parquet)");
    if recipe.quality.is_some() {
        println!("model    {}/model.gqm, train_report.json", stage_dir(&recipe, "quality")?);
    }
    if recipe.tokenize.is_some() {
        println!(
            "tokens   {}/ (llm.c shards part-*.side-{{train,val}}-*.bin, sidecar part-*.parquet)",
            stage_dir(&recipe, pipeline::tokenize::STAGE)?
        );
    }
    if recipe.blend.is_some() {
        println!(
            "training {}/ (the mixture: llm.c shards part-*.side-train.bin)",
            stage_dir(&recipe, pipeline::blend::STAGE)?
        );
    }
    let report = report::write_report(Path::new(&recipe.run.out), None)?;
    println!("report   {}", report.display());
    if let Some(s) = &trained {
        if let Some(c) = &s.checkpoint {
            println!("gpt      {c}/ (Hugging Face GPT-2: model.safetensors, config.json)");
        }
        println!("curves   {} and {}", s.metrics, s.chart);
        println!("next     grist inspect {last}  |  grist generate --checkpoint {} --prompt \"...\"", cfg_out(s));
    } else {
        println!("next     grist inspect {last}");
    }
    Ok(ExitCode::SUCCESS)
}

/// A training run's output directory (where its checkpoints are).
fn cfg_out(s: &trainer::train::TrainSummary) -> String {
    Path::new(&s.metrics).parent().map_or(".".into(), |p| p.display().to_string())
}

/// Verifies a stage output; on problems, prints them and gives the exit code to return.
fn verify_failed(dir: &Loc) -> Result<Option<ExitCode>> {
    let v = verify::verify(dir)?;
    for p in &v.problems {
        eprintln!("verify: {p}");
    }
    Ok((!v.ok()).then(|| ExitCode::from(EXIT_VERIFY_FAILED)))
}

/// What quality training measured, in two lines.
fn print_train(q: &pipeline::quality_train::TrainReport) {
    println!(
        "quality  trained on {} documents ({} positive, {} negative): held-out AUC {:.4}, accuracy {:.4}, log loss {:.4} ({:.2} s)",
        q.train_docs + q.holdout_docs,
        q.positives,
        q.negatives,
        q.holdout_auc,
        q.holdout_accuracy,
        q.holdout_log_loss,
        q.seconds
    );
    let tuned = match (q.tuned_alpha, q.tuned_ks) {
        (Some(a), Some(d)) => format!("; tuned Pareto alpha {a:.2} (KS distance {d:.3})"),
        _ => String::new(),
    };
    println!(
        "quality  {} iterations, parameters of iteration {} kept (best held-out loss){}{tuned}",
        q.iterations,
        q.best_iteration,
        if q.spilled { "; the design spilled to disk" } else { "" }
    );
}

/// The quality filter's keep rate per source and, under the Pareto rule, the keep curve
/// per score decile beside the law (2 - s)^-alpha at the decile's midpoint.
fn render_keep(r: &pipeline::quality_filter::KeepReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ =
        writeln!(s, "\nkeep rate by source{}", r.alpha.map(|a| format!(" (Pareto alpha {a:.2})")).unwrap_or_default());
    for (name, k) in &r.sources {
        let _ = writeln!(
            s,
            "  {name:<20} {:>8} docs {:>8} kept  {:>6.1}%",
            k.docs,
            k.kept,
            100.0 * k.kept as f64 / k.docs.max(1) as f64
        );
    }
    if r.alpha.is_some() {
        let _ = writeln!(s, "keep curve, all sources: score decile, docs, kept, expected by the law (2-s)^-alpha");
        for bin in 0..10 {
            let (n, kept, expected) = r.sources.values().fold((0, 0, 0.0), |acc, k| {
                let d = k.deciles.get(bin).copied().unwrap_or((0, 0, 0.0));
                (acc.0 + d.0, acc.1 + d.1, acc.2 + d.2)
            });
            if n > 0 {
                let _ = writeln!(
                    s,
                    "  [{:.1}, {:.1})  {n:>8} {kept:>8} {expected:>10.1}",
                    bin as f64 / 10.0,
                    (bin + 1) as f64 / 10.0
                );
            }
        }
    }
    s
}

/// One line per stage run by `grist run`; false when other tasks still have units to do.
fn print_stage(rep: &pipeline::stage::TaskReport, items: &str, kept: &str, slice: TaskSlice) -> bool {
    let a = &rep.accounting;
    println!(
        "{:<8} {} units done, {} skipped; {} {items} in = {} {kept} + {} in the ledger ({:.2} s)",
        rep.stage, rep.units_done, rep.units_skipped, a.docs_in, a.docs_out, a.docs_ledger, rep.seconds
    );
    if !rep.stage_complete {
        println!("{:<8} {slice} finished; other tasks still have units to do", rep.stage);
    }
    rep.stage_complete
}

fn inspect(dir: &str, verify_only: bool, json: bool) -> Result<ExitCode> {
    let loc = Loc::parse(dir)?;
    if verify_only {
        let v = verify::verify(&loc)?;
        if json {
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else if v.ok() {
            println!(
                "ok: stage {} in {}: {} units, {} files match their manifests; {} in = {} out + {} in the ledger",
                v.stage, v.dir, v.units, v.files_checked, v.docs_in, v.docs_out, v.docs_ledger
            );
        } else {
            println!("FAILED: stage {} in {}: {} problems", v.stage, v.dir, v.problems.len());
            for p in &v.problems {
                println!("  - {p}");
            }
        }
        return Ok(if v.ok() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_VERIFY_FAILED) });
    }
    if !loc.join(pipeline::stage::MANIFEST).exists()? && loc.join("ingest").join(pipeline::stage::MANIFEST).exists()? {
        // A run directory: every stage, the mixture and the training.
        let v = inspect_cmd::run_overview(&loc)?;
        if json {
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            print!("{}", inspect_cmd::render_overview(&v));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let s = summary::summarize(&loc)?;
    let details = inspect_cmd::details(&loc)?;
    if json {
        let mut v = serde_json::to_value(&s)?;
        v["details"] = details;
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}{}", s.render(), inspect_cmd::render_details(&details));
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the first `n` documents of a stage output.
fn print_head(dir: &Loc, n: usize, chars: usize) -> Result<()> {
    let m = shards::Manifest::read(&dir.join(pipeline::stage::MANIFEST))?;
    let mut shown = 0;
    for f in &m.outputs {
        for d in shards::DocReader::open(&dir.join(&f.path))?.read_docs()? {
            if shown == n {
                return Ok(());
            }
            let text: String = d.text.chars().take(chars).collect();
            let more = if d.text.chars().count() > chars { " [...]" } else { "" };
            println!("\n--- {} ({}) {}\n{text}{more}", d.id, d.source, d.url.as_deref().unwrap_or("-"));
            shown += 1;
        }
    }
    Ok(())
}

/// `grist warc`: streams each file through the WARC reader and counts what it finds.
fn warc_counts(files: &[String], json: bool) -> Result<()> {
    use std::collections::BTreeMap;
    let start = std::time::Instant::now();
    let mut total: BTreeMap<String, u64> = BTreeMap::new();
    let mut bytes = 0u64;
    for f in files {
        let loc = Loc::parse(f)?;
        bytes += loc.size()?;
        let raw = pipeline::warc::Counted::new(std::io::BufReader::with_capacity(1 << 16, loc.open()?));
        for item in pipeline::warc::open(raw).with_context(|| format!("opening {f}"))? {
            let key = match item.with_context(|| format!("reading {f}"))? {
                pipeline::warc::WarcItem::Record(r) => format!("record {}", r.record_type()),
                pipeline::warc::WarcItem::Bad { reason, .. } => format!("bad {reason}"),
                pipeline::warc::WarcItem::Skipped { .. } => "skipped tail".to_string(),
            };
            *total.entry(key).or_default() += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if json {
        let doc = serde_json::json!({ "files": files.len(), "bytes": bytes, "seconds": secs, "counts": total });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        for (k, v) in &total {
            println!("{v:>10}  {k}");
        }
        println!("{} files, {bytes} bytes in {secs:.3} s", files.len());
    }
    Ok(())
}
