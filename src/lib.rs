//! The `grist` command line: parses arguments (`cli`), calls the library, prints. The steps,
//! their order and the recipe run live in `pipeline` (`pipeline::steps::STEPS`,
//! `pipeline::run`); training lives in `trainer`. This crate wires the two together: it gives
//! the pipeline's run a `Host` that trains (`train_cmd`), and prints what comes back.
//!
//! Exit codes: 0 success; 1 error (the message names the file and offset where one applies,
//! and ends with a hint when the fix is known); 2 command-line usage error; 3 `inspect
//! --verify` (or a run's verification) found an inconsistent output.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use pipeline::Recipe;
use pipeline::run::RunEnd;
use pipeline::steps::{Outcome, STEPS, Step};
use shards::Loc;

mod ablate_cmd;
pub mod cli;
pub mod eval_cmd;
mod inspect_cmd;
mod sql;
mod train_cmd;

pub use cli::{Cli, Command, EXIT_USAGE, EXIT_VERIFY_FAILED};
use cli::{InspectArgs, InspectCmd, QualityCmd, StageArgs};

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

/// The exit code of a run's end, after printing verification problems.
fn end_code(end: RunEnd) -> ExitCode {
    match end {
        RunEnd::Complete | RunEnd::Partial => ExitCode::SUCCESS,
        RunEnd::VerifyFailed(problems) => {
            for p in &problems {
                eprintln!("verify: {p}");
            }
            ExitCode::from(EXIT_VERIFY_FAILED)
        }
    }
}

/// Runs the recipe steps that `select` picks for one slice and prints each step's typed
/// report as JSON: the report itself for one step, an object by step name for several.
fn run_selected(args: &StageArgs, select: &dyn Fn(&Step) -> bool) -> Result<ExitCode> {
    let (recipe, slice) = args.load()?;
    let (end, done) = pipeline::run::run_steps(&recipe, slice, &train_cmd::TrainHost, select, &mut std::io::sink())?;
    if done.is_empty() && !matches!(end, RunEnd::VerifyFailed(_)) {
        let tables: Vec<&str> = STEPS.iter().filter(|s| select(s)).map(|s| s.table).collect();
        anyhow::bail!("the recipe has no [{}] table", tables.first().copied().unwrap_or("?"));
    }
    print_reports(&done)?;
    Ok(end_code(end))
}

fn print_reports(done: &[(&'static Step, Outcome)]) -> Result<()> {
    if let [(_, one)] = done {
        println!("{}", serde_json::to_string_pretty(&one.report)?);
    } else {
        let map: serde_json::Map<String, serde_json::Value> = done
            .iter()
            .map(|(s, o)| Ok((s.name.to_string(), serde_json::to_value(&o.report)?)))
            .collect::<Result<_>>()?;
        println!("{}", serde_json::to_string_pretty(&map)?);
    }
    Ok(())
}

/// Runs one command.
fn dispatch(command: Command) -> Result<ExitCode> {
    match command {
        Command::Run { list_stages: true, .. } => print!("{}", pipeline::run::list_stages()),
        Command::Run { recipe, overrides, task, tasks, stage, list_stages: false } => {
            let args = StageArgs { recipe: recipe.context("grist run RECIPE")?, overrides, task, tasks };
            let (recipe, slice) = args.load()?;
            let host = train_cmd::TrainHost;
            if let Some(name) = stage {
                match pipeline::run::run_stage(&recipe, &name, slice, &host)? {
                    None => println!("stage {name}: not in this recipe, nothing to do"),
                    Some(o) => print!("{}", o.text),
                }
                return Ok(ExitCode::SUCCESS);
            }
            let mut out = std::io::stdout().lock();
            let end = pipeline::run::run_recipe(&recipe, slice, &host, &mut out)?;
            out.flush()?;
            return Ok(end_code(end));
        }
        Command::Stages => {
            for s in STEPS {
                println!("{:<20} [{}] {:?}: {}", s.name, s.table, s.shape, s.about);
            }
        }
        Command::Synthetic { out, seed, docs } => {
            let rep = pipeline::steps::synthetic::write(&Loc::parse(&out)?, seed, docs)?;
            println!("{}", serde_json::to_string_pretty(&rep)?);
        }
        Command::Reddit(args) => return run_selected(&args, &|s| s.name == pipeline::steps::reddit::STEP.name),
        Command::Ingest(args) => return run_selected(&args, &|s| s.name == pipeline::steps::ingest::STEP.name),
        Command::Filters(args) => return run_selected(&args, &|s| s.name == pipeline::steps::filters::STEP.name),
        Command::Dedup { args, step: Some(step) } => return run_selected(&args, &|s| s.name == step.step().name),
        Command::Dedup { args, step: None } => {
            return run_selected(&args, &|s| s.table == pipeline::steps::dedup::FILTER_STEP.table);
        }
        Command::Decontaminate(args) => {
            return run_selected(&args, &|s| s.table == pipeline::steps::decontaminate::STEP.table);
        }
        Command::Tokenize(args) => return run_selected(&args, &|s| s.name == pipeline::steps::tokenize::STEP.name),
        Command::Blend { args, mixture: true } => {
            let (recipe, _) = args.load()?;
            let cfg = pipeline::steps::need(&recipe.blend, "blend")?;
            print!("{}", pipeline::steps::blend::mixture(cfg, &Loc::parse(&recipe.run.out)?)?.render());
        }
        Command::Blend { args, mixture: false } => {
            return run_selected(&args, &|s| s.name == pipeline::steps::blend::STEP.name);
        }
        Command::Quality(QualityCmd::Filter(args)) => {
            return run_selected(&args, &|s| s.name == pipeline::steps::quality::filter::STEP.name);
        }
        Command::Quality(QualityCmd::Train(args)) => {
            let (recipe, slice) = args.load()?;
            let step = &pipeline::steps::quality::train::STEP;
            let o = pipeline::run::run_stage(&recipe, step.name, slice, &train_cmd::TrainHost)?.with_context(|| {
                format!("the recipe has no [{}] table\nhint: add it with positives and negatives", step.table)
            })?;
            print!("{}", o.text);
            if let Some(p) = o.points_to {
                println!("{p}");
            }
        }
        Command::Quality(QualityCmd::Score { model, files, field, stats }) => {
            quality_score(&model, &files, &field, stats)?;
        }
        Command::Warc { files, json } => inspect_cmd::warc_counts(&files, json)?,
        Command::Plan { recipe, overrides } => {
            let r = Recipe::load(&recipe, &overrides)?;
            let p = pipeline::plan::plan(&r, rayon::current_num_threads(), &train_cmd::TrainHost);
            print!("{}", p.text);
            if !p.problems.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Report { run, out } => {
            let path = pipeline::inspect::report::write_report(&run, out.as_deref())?;
            println!("report   {}", path.display());
        }
        Command::Train { config, mut overrides, fresh, init } => {
            if let Some(dir) = init {
                overrides.push(format!("init={}", toml::Value::String(dir)));
            }
            let cfg = train_cmd::load_config(&config, &overrides)?;
            let start = if fresh { train_cmd::Start::Fresh } else { train_cmd::Start::Resume };
            let (summary, _) = train_cmd::run_training(&cfg, start)?;
            train_cmd::print_summary(&summary);
        }
        Command::Ablate { recipe, overrides, arms } => return ablate_cmd::ablate(&recipe, &overrides, &arms),
        Command::Eval {
            checkpoint,
            sets,
            tasks,
            shots,
            examples,
            show_prompts,
            limit,
            max_tokens,
            split_bytes,
            seq_len,
            micro_batch,
            reps,
            seed,
            work,
            json,
        } => {
            let run = eval_cmd::TaskRun { shots, seed, limit, max_tokens, micro_batch, show_prompts, reps };
            eval_cmd::eval(&eval_cmd::EvalRequest {
                checkpoint,
                sets,
                tasks,
                examples,
                work,
                run,
                seq_len,
                split_bytes,
                json,
            })?;
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
            let code = inspect_cmd::inspect(&dir, verify, json)?;
            if let Some(n) = head {
                inspect_cmd::print_head(&Loc::parse(&dir)?, n, chars)?;
            }
            return Ok(code);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `grist quality score`: a score per document (or the totals with `--stats`).
fn quality_score(model: &str, files: &[String], field: &str, stats: bool) -> Result<()> {
    let model = pipeline::steps::quality::model::QualityModel::load(&Loc::parse(model)?)?;
    let files: Vec<Loc> = files.iter().map(|f| Loc::parse(f)).collect::<Result<_, _>>()?;
    let start = std::time::Instant::now();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut failed = None;
    let t = pipeline::steps::quality::score::score_files(&model, &files, field, |id, s| {
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
    Ok(())
}
