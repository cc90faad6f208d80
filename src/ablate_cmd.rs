//! `grist ablate RECIPE`: does the recipe make better models? The recipe's data stages run once
//! (shared by every arm, and by a later `grist run`); each arm's documents are tokenized (or the
//! recipe's own tokens or mixture reused), the same small GPT is trained on each with the same
//! seed, schedule and token budget (`[ablate.train]`), and every arm's final model is evaluated
//! on the held-out sets (`[[ablate.eval]]`): loss and bits per byte with bootstrap intervals, and
//! each arm's difference from the first arm with a paired interval over the same documents.
//! Writes `{run.out}/ablate/ablate.json` and prints a table.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use pipeline::ablate::{Arm, ArmData};
use pipeline::run::RunEnd;
use pipeline::{Recipe, TaskSlice};
use serde::Serialize;
use shards::metrics::MetricsLine;
use trainer::backend::CpuBackend;
use trainer::eval::{Interval, bootstrap};
use trainer::train::TrainConfig;

use crate::eval_cmd::{self, Boot, SetResult, ci};
use crate::train_cmd::{self, Start, TrainHost};

/// One arm's training.
#[derive(Debug, Serialize)]
pub struct ArmRun {
    pub name: String,
    pub data: ArmData,
    pub about: String,
    /// The token shards it trained on.
    pub tokens_dir: String,
    /// Training tokens those shards hold (the budget may take more or less than one pass).
    pub tokens_available: u64,
    pub tokens_trained: u64,
    pub checkpoint: String,
    pub first_loss: Option<f32>,
    pub last_loss: Option<f32>,
    /// (tokens, training loss) of every step.
    pub curve: Vec<(u64, f32)>,
}

/// One arm on one held-out set.
#[derive(Debug, Serialize)]
pub struct ArmScore {
    pub arm: String,
    #[serde(flatten)]
    pub result: SetResult,
    /// Bits per byte of this arm minus the first arm's, over the same documents (paired
    /// bootstrap); absent for the first arm.
    pub vs_first: Option<Interval>,
    /// Whether the difference is called: its interval excludes 0.
    pub called: Option<bool>,
}

/// `ablate.json`.
#[derive(Debug, Serialize)]
pub struct AblateReport {
    pub recipe: String,
    pub train: toml::Table,
    pub arms: Vec<ArmRun>,
    /// Per held-out set, every arm's score.
    pub sets: Vec<(String, Vec<ArmScore>)>,
}

/// The training config of an arm: `[ablate.train]` with its data and output.
fn arm_config(table: &toml::Table, tokens: &str, out: &str) -> Result<TrainConfig> {
    for k in ["train_data", "val_data", "out"] {
        if table.contains_key(k) {
            bail!("[ablate.train] sets `{k}`; every arm has its own (they are set by grist ablate)");
        }
    }
    let mut t = table.clone();
    t.insert("train_data".into(), toml::Value::String(tokens.into()));
    t.insert("out".into(), toml::Value::String(out.into()));
    let cfg: TrainConfig = toml::Value::Table(t).try_into().context("[ablate.train]")?;
    cfg.validate()?;
    if cfg.total_tokens.is_none() {
        bail!("[ablate.train] needs `total_tokens`: every arm trains on the same number of tokens");
    }
    Ok(cfg)
}

/// Trains one arm (resuming, or skipping a finished run of the same config and data).
fn train_arm(recipe: &Recipe, arm: &Arm, table: &toml::Table) -> Result<(ArmRun, TrainConfig)> {
    let tokens = pipeline::ablate::arm_tokens(recipe, arm)?;
    let out = pipeline::ablate::arm_dir(recipe, &arm.name)?.join("train");
    let out = out.as_local().context("grist ablate trains into a local run.out")?.display().to_string();
    let cfg = arm_config(table, &tokens.to_string(), &out)?;
    let shards = train_cmd::resolve_shards(&tokens.to_string(), "train")?;
    let mut available = 0u64;
    for s in &shards {
        available += shards::TokenShard::open(s)?.len() as u64;
    }
    let (s, restarted) = train_cmd::run_training(&cfg, Start::ResumeOrRestart)?;
    if let Some(why) = restarted {
        println!("ablate   {}: {why}", arm.name);
    }
    let text = std::fs::read_to_string(&s.metrics).with_context(|| s.metrics.clone())?;
    let curve = shards::metrics::parse(&text, &s.metrics)?
        .into_iter()
        .filter_map(|l| match l {
            MetricsLine::Step(v) => v.loss.map(|x| (v.tokens, x)),
            MetricsLine::Eval(_) => None,
        })
        .collect();
    let run = ArmRun {
        name: arm.name.clone(),
        data: arm.data.clone(),
        about: arm.about.clone(),
        tokens_dir: tokens.to_string(),
        tokens_available: available,
        tokens_trained: s.tokens,
        checkpoint: s.checkpoint.clone().context("the arm's training wrote no checkpoint")?,
        first_loss: s.first_loss,
        last_loss: s.last_loss,
        curve,
    };
    Ok((run, cfg))
}

/// `grist ablate`.
pub fn ablate(path: &Path, overrides: &[String], select: &[String]) -> Result<ExitCode> {
    let recipe = Recipe::load(path, overrides)?;
    let cfg = pipeline::steps::need(&recipe.ablate, "ablate")?.clone();
    let select = if select.is_empty() { cfg.arms.clone() } else { select.to_vec() };
    let arms = pipeline::ablate::arms(&recipe, &select)?;
    if arms.is_empty() {
        bail!("no arms to train");
    }
    // Check the training table before hours of stages.
    arm_config(&cfg.train, "x", "x")?;
    // The recipe's data stages, shared by every arm (and by `grist run` later).
    let mut stdout = std::io::stdout().lock();
    let data_steps = |s: &pipeline::steps::Step| !matches!(s.name, "train" | "report");
    let (end, _) = pipeline::run::run_steps(&recipe, TaskSlice::ALL, &TrainHost, &data_steps, &mut stdout)?;
    drop(stdout);
    match end {
        RunEnd::Complete => {}
        RunEnd::Partial => bail!("the recipe's stages did not complete"),
        RunEnd::VerifyFailed(problems) => {
            for p in &problems {
                eprintln!("verify: {p}");
            }
            return Ok(ExitCode::from(crate::EXIT_VERIFY_FAILED));
        }
    }
    let mut runs = Vec::new();
    let mut micro_batch = 8;
    for arm in &arms {
        println!("ablate   arm {}: {}", arm.name, arm.about);
        let (run, tc) = train_arm(&recipe, arm, &cfg.train)?;
        micro_batch = tc.micro_batch;
        println!(
            "ablate   arm {}: {} tokens ({:.2} passes over {}), loss {} -> {}",
            arm.name,
            run.tokens_trained,
            run.tokens_trained as f64 / run.tokens_available.max(1) as f64,
            run.tokens_available,
            run.first_loss.map_or("-".into(), |l| format!("{l:.3}")),
            run.last_loss.map_or("-".into(), |l| format!("{l:.3}")),
        );
        runs.push(run);
    }
    let work = pipeline::ablate::arm_dir(&recipe, "eval")?;
    let work = work.as_local().context("grist ablate needs a local run.out")?.to_path_buf();
    let boot = Boot { reps: cfg.reps, seed: recipe.run.seed };
    let held: Vec<eval_cmd::HeldOut> = cfg
        .eval
        .iter()
        .map(|set| eval_cmd::read_heldout(&set.name, &set.paths, set.split_bytes, &work))
        .collect::<Result<_>>()?;
    // Each arm's model is loaded once and scores every set; results[arm][set].
    let mut results: Vec<Vec<SetResult>> = Vec::with_capacity(runs.len());
    for run in &runs {
        let mut backend = CpuBackend::new(trainer::checkpoint::load_model(Path::new(&run.checkpoint))?);
        results.push(
            held.iter().map(|h| eval_cmd::score_heldout(&mut backend, h, micro_batch, boot)).collect::<Result<_>>()?,
        );
    }
    let mut sets = Vec::new();
    for (k, h) in held.iter().enumerate() {
        let bytes: Vec<f64> = h.bytes.iter().map(|&b| b as f64).collect();
        let first = &results[0][k].doc_nats;
        let scores: Vec<ArmScore> = runs
            .iter()
            .zip(&results)
            .enumerate()
            .map(|(a, (run, r))| {
                let result = r[k].clone();
                let vs_first = (a > 0).then(|| {
                    bootstrap(&[&result.doc_nats, first], &bytes, 1.0 / std::f64::consts::LN_2, boot.reps, boot.seed)
                });
                let called = vs_first.map(|d| d.excludes(0.0));
                ArmScore { arm: run.name.clone(), result, vs_first, called }
            })
            .collect();
        sets.push((h.name.clone(), scores));
    }
    let report = AblateReport { recipe: path.display().to_string(), train: cfg.train.clone(), arms: runs, sets };
    let json_path = work.parent().unwrap_or(&work).join("ablate.json");
    // Replaced whole (a crash keeps the previous report).
    shards::Loc::local(&json_path).write_atomic(serde_json::to_string_pretty(&report)?.as_bytes())?;
    let mut out = std::io::stdout().lock();
    write!(out, "{}", table(&report))?;
    writeln!(out, "ablate   {}", json_path.display())?;
    let html = pipeline::inspect::report::write_report(Path::new(&recipe.run.out), None)?;
    writeln!(out, "report   {} (section Ablation)", html.display())?;
    Ok(ExitCode::SUCCESS)
}

/// The terminal table: per set, per arm, loss and bits per byte with intervals, and the paired
/// difference from the first arm.
pub fn table(r: &AblateReport) -> String {
    let mut s = String::new();
    if r.sets.is_empty() {
        s.push_str("\nno [[ablate.eval]] sets: the arms are trained, nothing is compared\n");
    }
    for (name, scores) in &r.sets {
        let first = scores.first().map_or("-", |x| x.arm.as_str());
        s.push_str(&format!(
            "\nheld-out {name} ({} documents, {} bytes)\n{:<14} {:>26} {:>26} {:>30}\n",
            scores.first().map_or(0, |x| x.result.docs),
            scores.first().map_or(0, |x| x.result.bytes),
            "arm",
            "loss [95% CI]",
            "bits/byte [95% CI]",
            format!("bits/byte - {first} [95% CI]"),
        ));
        for sc in scores {
            let diff = match (&sc.vs_first, sc.called) {
                (Some(d), Some(called)) => {
                    format!("{:+.4} [{:+.4}, {:+.4}]{}", d.value, d.lo, d.hi, if called { " *" } else { "  " })
                }
                _ => "-".into(),
            };
            s.push_str(&format!(
                "{:<14} {:>26} {:>26} {:>30}\n",
                sc.arm,
                ci(&sc.result.loss),
                ci(&sc.result.bits_per_byte),
                diff
            ));
        }
    }
    if r.sets.iter().any(|(_, v)| v.len() > 1) {
        s.push_str("* the paired interval excludes 0: the difference is larger than the resampling noise\n");
    }
    s
}
