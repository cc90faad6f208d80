//! Running a recipe: every step of [`STEPS`] whose table the recipe has, in order, for one
//! task slice; each document and token output verified against its manifests as it
//! completes; a closing summary. Also one step on its own (`--stage`, for schedulers) and a
//! group of steps (`grist dedup`). This module decides order and when to stop; the steps
//! decide everything else. It writes what it has to say to `out`, never to stdout.

use std::io::Write;

use shards::Loc;

use crate::core::error::StageError;
use crate::core::recipe::Recipe;
use crate::core::slice::TaskSlice;
use crate::inspect::{summary, verify};
use crate::steps::{Host, Outcome, Produces, STEPS, Shape, Step, StepCtx};

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// Every step of the recipe is complete.
    Complete,
    /// This task did its share; a step still has other tasks' units to do (or, in a sliced
    /// run, training is next and runs as one process).
    Partial,
    /// A step's output does not match its manifests: the problems found.
    VerifyFailed(Vec<String>),
}

/// The steps a run ran, in order, with what each did.
pub type Done = Vec<(&'static Step, Outcome)>;

fn io(e: std::io::Error) -> StageError {
    StageError::Shard(shards::ShardError::io(shards::At::file("the run's output"), e))
}

/// Runs the steps of `recipe` that `select` picks (all of them for `grist run`), in registry
/// order, for `slice`. Stops at the first step that is not complete after this task's share.
pub fn run_steps(
    recipe: &Recipe,
    slice: TaskSlice,
    host: &dyn Host,
    select: &dyn Fn(&Step) -> bool,
    out: &mut dyn Write,
) -> Result<(RunEnd, Done), StageError> {
    let ctx = StepCtx { recipe, out: Loc::parse(&recipe.run.out)?, slice, host };
    let mut done = Vec::new();
    for step in STEPS.iter().copied().filter(|s| select(s) && s.in_recipe(recipe)) {
        if step.shape == Shape::Single && slice.count > 1 {
            writeln!(
                out,
                "{:<8} runs as one task: run `grist run RECIPE --stage {}` after every slice",
                step.name, step.name
            )
            .map_err(io)?;
            return Ok((RunEnd::Partial, done));
        }
        let outcome = (step.run)(&ctx)?;
        write!(out, "{}", outcome.text).map_err(io)?;
        if !outcome.complete {
            writeln!(out, "{:<8} {slice} finished; other tasks still have units to do", step.name).map_err(io)?;
            done.push((step, outcome));
            return Ok((RunEnd::Partial, done));
        }
        if matches!(step.produces, Produces::Documents | Produces::Tokens | Produces::Mixture) {
            let v = verify::verify(&ctx.dir(step.name))?;
            if !v.ok() {
                return Ok((RunEnd::VerifyFailed(v.problems), done));
            }
            writeln!(
                out,
                "verify   {}: {} files match their manifests; accounting balances",
                step.name, v.files_checked
            )
            .map_err(io)?;
        }
        done.push((step, outcome));
    }
    Ok((RunEnd::Complete, done))
}

/// `grist run RECIPE`: every step, then the closing summary (the last document output, and
/// where each step's output is).
pub fn run_recipe(
    recipe: &Recipe,
    slice: TaskSlice,
    host: &dyn Host,
    out: &mut dyn Write,
) -> Result<RunEnd, StageError> {
    let (end, done) = run_steps(recipe, slice, host, &|_| true, out)?;
    if end != RunEnd::Complete {
        return Ok(end);
    }
    let run = Loc::parse(&recipe.run.out)?;
    let Some(last) = done.iter().rev().find(|(s, _)| s.produces == Produces::Documents).map(|(s, _)| run.join(s.name))
    else {
        return Ok(end);
    };
    writeln!(out).map_err(io)?;
    write!(out, "{}", summary::summarize(&last)?.render()).map_err(io)?;
    writeln!(out, "\noutputs  {last}/ (manifest.json, part-*.parquet, ledger-*.parquet)").map_err(io)?;
    for (_, o) in &done {
        if let Some(p) = &o.points_to {
            writeln!(out, "{p}").map_err(io)?;
        }
    }
    writeln!(out, "next     grist inspect {run}  |  grist inspect why DOC_ID --run {run}").map_err(io)?;
    Ok(end)
}

/// `grist run RECIPE --stage NAME`: one step for this slice, for batch schedulers. A step the
/// recipe does not have is a no-op (one scheduler script serves every recipe); an earlier step
/// that is not complete is an error.
pub fn run_stage(
    recipe: &Recipe,
    name: &str,
    slice: TaskSlice,
    host: &dyn Host,
) -> Result<Option<Outcome>, StageError> {
    let step = crate::steps::step(name).ok_or_else(|| {
        StageError::Usage(format!("unknown stage {name:?}\nhint: the stages are {}", crate::steps::names()))
    })?;
    if !step.in_recipe(recipe) {
        return Ok(None);
    }
    if step.shape == Shape::Single && slice.count > 1 {
        return Err(StageError::Usage(format!("{name} runs as one task (no --tasks)")));
    }
    let ctx = StepCtx { recipe, out: Loc::parse(&recipe.run.out)?, slice, host };
    (step.run)(&ctx).map(Some)
}

/// `grist run --list-stages`: one `NAME:SLICED` line per step in order (`SLICED` is 1 for a
/// step divided between tasks, 0 for one task), as `deploy/stages.sh` reads it.
pub fn list_stages() -> String {
    STEPS.iter().map(|s| format!("{}:{}\n", s.name, u8::from(s.shape == Shape::Sliced))).collect()
}
