//! `grist train` and `grist generate`: the training config (a standalone TOML file, or a
//! recipe's `[train]` table), the token shards it names, a progress bar, and sampling text from
//! a checkpoint with GPT-2's BPE.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use pipeline::Recipe;
use pipeline::StageError;
use pipeline::steps::{Estimate, Host, Outcome, StepCtx, StepReport, TrainedReport};
use shards::{Loc, Manifest};
use trainer::backend::CpuBackend;
use trainer::generate::{Sampling, generate};
use trainer::train::{Event, TrainConfig, TrainSummary, ValSet};

/// Reads a training config: a file whose top level is the config, or a recipe with a `[train]`
/// table (then `train_data`, `val_data` and `out` default to the recipe's blend, tokenize and
/// train directories). `overrides` are `key=value` (or `train.key=value`), values read as TOML.
pub fn load_config(path: &Path, overrides: &[String]) -> Result<TrainConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read the config", path.display()))?;
    let mut doc: toml::Table = toml::from_str(&text).with_context(|| format!("{}: not valid TOML", path.display()))?;
    let mut table = match doc.remove("train") {
        Some(toml::Value::Table(t)) => {
            let out = doc.get("run").and_then(|r| r.get("out")).and_then(|o| o.as_str()).unwrap_or("out").to_string();
            recipe_defaults(t, &out)
        }
        Some(_) => bail!("{}: `train` must be a table", path.display()),
        None => doc,
    };
    for o in overrides {
        let (key, raw) =
            o.split_once('=').with_context(|| format!("override {o:?} is not KEY=VALUE (e.g. --set lr=3e-4)"))?;
        let key = key.trim().trim_start_matches("train.");
        let raw = raw.trim();
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.to_string()));
        table.insert(key.to_string(), value);
    }
    let cfg: TrainConfig =
        toml::Value::Table(table).try_into().with_context(|| format!("{}: the training config", path.display()))?;
    cfg.validate()?;
    Ok(cfg)
}

/// A recipe's `[train]` with its data and output defaults under `run.out`.
pub fn recipe_defaults(mut t: toml::Table, out: &str) -> toml::Table {
    for (k, v) in [("train_data", "blend"), ("val_data", "tokenize"), ("out", "train")] {
        t.entry(k).or_insert_with(|| toml::Value::String(format!("{out}/{v}")));
    }
    t
}

/// Token shards of a split (`train` or `val`): the side files of that split a stage's manifest
/// lists (never a listing of the folder, which could hold files of an earlier run), a folder of
/// `.bin` files that is not a grist stage (llm.c's), or one file.
pub fn resolve_shards(path: &str, split: &str) -> Result<Vec<Loc>> {
    let loc = Loc::parse(path)?;
    if loc.as_local().is_none() {
        return remote_shards(&loc, path, split);
    }
    let p = Path::new(path);
    let manifest = p.join(pipeline::MANIFEST);
    let mut files: Vec<String> = if manifest.exists() {
        let m = Manifest::read(&Loc::local(&manifest))?;
        let tag = format!(".side-{split}");
        m.side.iter().map(|f| f.path.clone()).filter(|f| f.contains(&tag) && f.ends_with(".bin")).collect()
    } else if p.is_dir() {
        let names: Vec<String> = std::fs::read_dir(p)
            .with_context(|| format!("{path}: cannot list"))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        // A grist stage directory without its manifest is not complete: its files may be a
        // mix of runs. Only a folder of shards from elsewhere (llm.c's) is listed by name.
        if names.iter().any(|n| n.ends_with(".done.json")) {
            bail!(
                "{path}: a stage directory without {}: the stage has not completed, so its shards are not a dataset yet\nhint: rerun the stage (completed units are skipped)",
                pipeline::MANIFEST
            );
        }
        names.into_iter().filter(|n| n.ends_with(".bin")).collect()
    } else if p.is_file() {
        return Ok(vec![Loc::local(p)]);
    } else {
        bail!("{path}: no such token shard or directory\nhint: run the recipe's tokenize and blend stages first");
    };
    files.sort();
    if files.is_empty() {
        bail!("{path}: no {split} token shards there");
    }
    Ok(files.iter().map(|f| Loc::local(p.join(f))).collect())
}

/// Token shards on an object store (read by ranges as training goes, see `TokenShard`): a
/// stage directory through its manifest (object stores have no cheap listing to trust), or
/// one shard.
fn remote_shards(loc: &Loc, path: &str, split: &str) -> Result<Vec<Loc>> {
    let manifest = loc.join(pipeline::MANIFEST);
    if manifest.exists()? {
        let m = Manifest::read(&manifest)?;
        let tag = format!(".side-{split}");
        let mut files: Vec<String> =
            m.side.iter().map(|f| f.path.clone()).filter(|f| f.contains(&tag) && f.ends_with(".bin")).collect();
        files.sort();
        if files.is_empty() {
            bail!("{path}: its manifest lists no {split} token shards");
        }
        return Ok(files.iter().map(|f| loc.join(f)).collect());
    }
    if path.ends_with(".bin") && loc.exists()? {
        return Ok(vec![loc.clone()]);
    }
    bail!(
        "{path}: no {} there and no such token shard\nhint: run the recipe's tokenize and blend stages first (a stage directory on an object store is read through its manifest)",
        pipeline::MANIFEST
    )
}

/// Validation sets: per source from a tokenize output's sidecars, else all `.bin` shards
/// of the path as one set `val`.
pub fn val_sets(path: &str, eval_tokens: u64) -> Result<Vec<ValSet>> {
    let dir = Loc::parse(path)?;
    let manifest = dir.join(pipeline::MANIFEST);
    if manifest.exists()? && Manifest::read(&manifest)?.stage == pipeline::steps::tokenize::STAGE {
        let sets = pipeline::steps::tokenize::val_sets(&dir, eval_tokens)?;
        return Ok(sets.into_iter().map(|(name, tokens)| ValSet { name, tokens }).collect());
    }
    let mut tokens = Vec::new();
    for loc in resolve_shards(path, "val")? {
        let s = shards::TokenShard::open(&loc)?;
        let take = (eval_tokens as usize + 1).saturating_sub(tokens.len()).min(s.len());
        let mut buf = vec![0u32; take];
        s.read_into(0, &mut buf)?;
        tokens.extend_from_slice(&buf);
    }
    Ok(vec![ValSet { name: "val".into(), tokens }])
}

/// Where training starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// From the output's checkpoint if there is one (an error if it was made otherwise).
    Resume,
    /// From scratch: the output's checkpoints and metrics are removed.
    Fresh,
    /// From the checkpoint if it was made by the same config on the same data, else from
    /// scratch (a recipe rerun after a change).
    ResumeOrRestart,
}

/// Trains by `cfg` with a progress bar on a terminal (a log line per eval and checkpoint).
/// Returns the summary and, when a checkpoint was replaced, why.
pub fn run_training(cfg: &TrainConfig, start: Start) -> Result<(TrainSummary, Option<String>)> {
    // N copies started by a launcher train as the ranks of one run (with MPI built in), or are
    // refused: each would train alone and write the same output.
    if let Some((launcher, rank, world)) = trainer::collective::launched()
        && world > 1
    {
        #[cfg(feature = "mpi")]
        return run_ranked(cfg, start, launcher, rank, world);
        #[cfg(not(feature = "mpi"))]
        bail!(
            "this process is rank {rank} of {world} started by {launcher}, but this grist was built \
             without MPI: each copy would train alone and overwrite the others' output\nhint: \
             build with `--features mpi` (Open MPI: apt-get install openmpi-bin libopenmpi-dev \
             libclang-dev), or launch one process (`grist train` alone uses every core)"
        );
    }
    let train = resolve_shards(&cfg.train_data, "train")?;
    let val = match &cfg.val_data {
        Some(v) => val_sets(v, cfg.eval_tokens)?,
        None => Vec::new(),
    };
    let model = cfg.model_config()?;
    tracing::info!(
        "training {} ({} parameters, T={}) on {} shards, validating on {} sets; out {}",
        cfg.model,
        model.num_params(),
        model.max_seq_len,
        train.len(),
        val.len(),
        cfg.out
    );
    let bar = if std::io::stderr().is_terminal() { ProgressBar::new(1) } else { ProgressBar::hidden() };
    if let Ok(style) = ProgressStyle::with_template("   train [{bar:30}] {pos}/{len} {msg} eta {eta}") {
        bar.set_style(style.progress_chars("=> "));
    }
    let mut on_event = |e: &Event| match e {
        Event::Start { step, tokens, total_tokens, steps, resumed } => {
            match (total_tokens, steps) {
                (Some(n), _) => {
                    bar.set_length(*n);
                    bar.set_position(*tokens);
                }
                (None, Some(s)) => {
                    bar.set_length(*s);
                    bar.set_position(*step);
                }
                _ => {}
            }
            if let Some(r) = resumed {
                tracing::info!("resuming from {} (step {step}, {tokens} tokens)", r.display());
            }
        }
        Event::Step(v) => {
            bar.set_position(if cfg.total_tokens.is_some() { v.tokens } else { v.step });
            bar.set_message(format!(
                "step {} loss {:.4} {:.0} tok/s",
                v.step,
                v.loss.unwrap_or(f32::NAN),
                v.tokens_per_s
            ));
        }
        Event::Eval(v) => bar.suspend(|| {
            tracing::info!(
                "step {}: validation loss {:.4} {}",
                v.step,
                v.val_loss.unwrap_or(f32::NAN),
                v.val.iter().map(|(k, l)| format!("{k} {:.4}", l.unwrap_or(f32::NAN))).collect::<Vec<_>>().join(", ")
            )
        }),
        Event::Checkpoint(p) => bar.suspend(|| tracing::debug!("checkpoint {}", p.display())),
        Event::Notice(n) => bar.suspend(|| tracing::warn!("{n}")),
    };
    let summary = match start {
        Start::Resume | Start::Fresh => {
            trainer::train::train(cfg, &train, &val, start == Start::Fresh, &mut on_event).map(|s| (s, None))
        }
        Start::ResumeOrRestart => trainer::train::train_or_restart(cfg, &train, &val, &mut on_event),
    };
    bar.finish_and_clear();
    Ok(summary?)
}

/// One rank of a data-parallel run over MPI: every rank trains its share, rank 0 logs and
/// writes. Resumes from the output's checkpoint (of any world size) or starts fresh; a changed
/// config is refused rather than set aside (the ranks would race to rename the folder).
#[cfg(feature = "mpi")]
fn run_ranked(
    cfg: &TrainConfig,
    start: Start,
    launcher: &str,
    rank: usize,
    world: usize,
) -> Result<(TrainSummary, Option<String>)> {
    let mut comm = trainer::collective::mpi_group::MpiGroup::init().context("MPI is initialized already")?;
    use trainer::collective::Collective;
    if comm.rank() != rank || comm.world() != world {
        bail!(
            "{launcher} says rank {rank} of {world}, MPI says rank {} of {}: launch grist with the \
             MPI it was built against",
            comm.rank(),
            comm.world()
        );
    }
    let train = resolve_shards(&cfg.train_data, "train")?;
    let val = match &cfg.val_data {
        Some(v) => val_sets(v, cfg.eval_tokens)?,
        None => Vec::new(),
    };
    if rank == 0 {
        tracing::info!("training over {world} ranks ({launcher}); out {}", cfg.out);
    }
    let mut on_event = |e: &Event| match e {
        Event::Step(v) if v.step % 10 == 0 => {
            tracing::info!("step {} loss {:.4} {:.0} tok/s", v.step, v.loss.unwrap_or(f32::NAN), v.tokens_per_s)
        }
        Event::Eval(v) => tracing::info!("step {}: validation loss {:.4}", v.step, v.val_loss.unwrap_or(f32::NAN)),
        Event::Notice(n) => tracing::warn!("{n}"),
        _ => {}
    };
    let fresh = start == Start::Fresh;
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        trainer::train::train_across(cfg, &train, &val, fresh, &mut comm, &mut on_event)
    }));
    match run {
        Ok(Ok(summary)) => Ok((summary, None)),
        // The other ranks may be waiting in a collective for this one: end them all.
        Ok(Err(e)) => {
            eprintln!("error: rank {rank} of {world}: {e}");
            comm.abort(1)
        }
        Err(_) => {
            eprintln!("error: rank {rank} of {world} panicked (message above)");
            comm.abort(101)
        }
    }
}

/// Prints a training summary.
pub fn print_summary(s: &TrainSummary) {
    // Rank 0 of a data-parallel run speaks for all.
    if trainer::collective::launched().is_some_and(|(_, rank, world)| world > 1 && rank != 0) {
        return;
    }
    let f = |x: Option<f32>| x.map_or("-".to_string(), |v| format!("{v:.4}"));
    println!("steps    {} ({} tokens)", s.steps, s.tokens);
    println!("loss     {} -> {}   validation {}", f(s.first_loss), f(s.last_loss), f(s.val_loss));
    if let Some(c) = &s.checkpoint {
        println!("model    {c}   (Hugging Face GPT-2: GPT2LMHeadModel.from_pretrained)");
    }
    println!("metrics  {}", s.metrics);
    println!("chart    {}", s.chart);
}

/// `grist generate`: continues a prompt with a checkpoint's model.
pub fn run_generate(checkpoint: &str, prompt: &str, tokens: usize, sampling: Sampling) -> Result<String> {
    let dir = trainer::checkpoint::resolve(Path::new(checkpoint));
    let params = trainer::checkpoint::load_model(&dir)?;
    let vocab = params.config.vocab_size;
    if vocab != pipeline::steps::tokenize::GPT2_VOCAB {
        bail!(
            "{}: the model has a vocabulary of {vocab}, not GPT-2's {}; grist generate encodes and decodes with GPT-2's BPE",
            dir.display(),
            pipeline::steps::tokenize::GPT2_VOCAB
        );
    }
    let eot = pipeline::steps::tokenize::EOT;
    let mut ids = vec![eot];
    ids.extend(pipeline::steps::tokenize::gpt2_tokens(prompt));
    let mut model = CpuBackend::new(params);
    let out = generate(&mut model, &ids, tokens, &sampling, Some(eot))?;
    let text: Vec<u32> = out.into_iter().filter(|&t| t != eot).collect();
    Ok(format!("{prompt}{}", pipeline::steps::tokenize::gpt2_decode_lossy(&text)))
}

/// Runs the recipe's `train` step for `grist run`: the pipeline's steps reach the trainer
/// through this.
#[derive(Debug)]
pub struct TrainHost;

impl Host for TrainHost {
    fn train(&self, ctx: &StepCtx) -> Result<Outcome, StageError> {
        train_step(ctx).map_err(|e| StageError::Step { step: "train".into(), source: e.into() })
    }

    fn estimate_train(&self, recipe: &Recipe) -> Result<Estimate, String> {
        estimate(recipe).map_err(|e| e.to_string())
    }
}

/// MFU the CPU trainer reaches on small models (0.45-0.74 in `just bench-train`).
const PLAN_MFU: f64 = 0.5;

/// `grist plan`'s `train` row: parameters, tokens to read, the GEMM peak measured now.
fn estimate(recipe: &Recipe) -> Result<Estimate> {
    let t = pipeline::steps::need(&recipe.train, "train")?;
    let cfg: TrainConfig = toml::Value::Table(recipe_defaults(t.clone(), &recipe.run.out)).try_into()?;
    cfg.validate()?;
    let model = cfg.model_config()?;
    let n = model.num_params() as f64;
    let seq = cfg.batch_size.unwrap_or(cfg.micro_batch) * model.max_seq_len;
    let steps_tokens = cfg.steps.map(|s| s as f64 * seq as f64);
    let total = match (cfg.total_tokens.map(|x| x as f64), steps_tokens) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => 0.0,
    };
    let mut cpu = CpuBackend::new(trainer::model::Params::zeros(trainer::model::GptConfig::new(8, 64, 1, 1, 8, 64)));
    let peak = trainer::backend::Backend::peak_flops(&mut cpu);
    let ws = trainer::forward::Workspace::<f32>::new(model, cfg.micro_batch, model.max_seq_len).len() as f64;
    let mut notes = Vec::new();
    if let Some(b) = &recipe.blend
        && total > 4.0 * b.total_tokens as f64
    {
        notes.push(format!(
            "[train] reads {} tokens, {:.1} passes over the blend's {}",
            total as u64,
            total / b.total_tokens as f64,
            b.total_tokens
        ));
    }
    Ok(Estimate {
        reads: cfg.train_data.clone(),
        writes: format!("{} ({} checkpoints kept)", cfg.out, cfg.keep_checkpoints),
        disk: n * 12.0 * cfg.keep_checkpoints as f64,
        // Live: parameters, gradients and two moments (16 bytes a parameter) and the workspace;
        // a checkpoint copies parameters and moments out of the backend (12) and the parameters
        // into Hugging Face's layout (4); and the process itself (~32 MB, measured).
        memory: n * 32.0 + ws * 4.0 + 32e6,
        seconds: 6.0 * n * total / (PLAN_MFU * peak),
        notes,
    })
}

/// The text a recipe's model writes after training, to show what it learned.
const GENERATED: &str = "generated.txt";

fn train_step(ctx: &StepCtx) -> Result<Outcome> {
    let t = pipeline::steps::need(&ctx.recipe.train, "train")?;
    let table = recipe_defaults(t.clone(), &ctx.recipe.run.out);
    let cfg: TrainConfig = toml::Value::Table(table).try_into().context("the recipe's [train] table")?;
    let (s, restarted) = run_training(&cfg, Start::ResumeOrRestart)?;
    let mut text = String::new();
    if let Some(why) = restarted {
        text += &format!("train    {why}; training again from step 0\n");
    }
    let f = |x: Option<f32>| x.map_or("-".into(), |l| format!("{l:.3}"));
    text += &format!(
        "\ntrain    {} steps, {} tokens: loss {} -> {}, validation {}\n",
        s.steps,
        s.tokens,
        f(s.first_loss),
        f(s.last_loss),
        f(s.val_loss)
    );
    if cfg.vocab_size == pipeline::steps::tokenize::GPT2_VOCAB
        && let Some(c) = &s.checkpoint
    {
        let sampling = Sampling { temperature: 0.8, top_k: 40, seed: ctx.seed() };
        let generated = run_generate(c, "The", 48, sampling)?;
        let generated = generated.split_whitespace().collect::<Vec<_>>().join(" ");
        let path = Path::new(&cfg.out).join(GENERATED);
        std::fs::write(&path, format!("{generated}\n")).with_context(|| format!("{}", path.display()))?;
        text += &format!("generated {generated}\n");
    }
    let mut points = Vec::new();
    if let Some(c) = &s.checkpoint {
        points.push(format!("gpt      {c}/ (Hugging Face GPT-2: model.safetensors, config.json)"));
    }
    points.push(format!("curves   {} and {}", s.metrics, s.chart));
    points.push(format!("generate grist generate --checkpoint {} --prompt \"...\"", cfg.out));
    let report = TrainedReport {
        steps: s.steps,
        tokens: s.tokens,
        first_loss: s.first_loss,
        last_loss: s.last_loss,
        val_loss: s.val_loss,
        checkpoint: s.checkpoint.clone(),
        out: cfg.out.clone(),
    };
    Ok(Outcome {
        report: StepReport::Trained(report),
        complete: true,
        up_to_date: false,
        text,
        points_to: Some(points.join("\n")),
    })
}
