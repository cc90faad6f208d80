//! The recipe's steps: one module (or folder) each, and [`STEPS`], the one ordered list of
//! them. `grist run`, `grist run --stage`, `--list-stages` (and through it `deploy/`), `grist
//! plan`, `grist inspect` and `grist report` all read this list; nothing else names the steps
//! in order. A step is a [`Step`] row (name = `--stage` name = directory under `run.out`,
//! recipe table, default input, shape, run function) defined in its own module.
//!
//! Adding a step: write its module with a config, a run function and its `STEP` row, then add
//! one line to [`STEPS`] (and, since a recipe is typed, its table to `core::recipe::Recipe`).

use std::fmt::Write as _;

use serde::Serialize;
use shards::Loc;

use crate::core::error::StageError;
use crate::core::recipe::Recipe;
use crate::core::slice::TaskSlice;
use crate::core::stage::TaskReport;

pub mod blend;
pub mod decontaminate;
pub mod dedup;
pub mod filters;
pub mod ingest;
pub mod quality;
pub mod reddit;
pub mod synthetic;
pub mod tokenize;

/// Every step of a recipe, in the order `grist run` runs them. A step whose recipe table is
/// absent is skipped.
pub static STEPS: &[&Step] = &[
    &synthetic::STEP,
    &reddit::STEP,
    &ingest::STEP,
    &filters::STEP,
    &quality::train::STEP,
    &quality::filter::STEP,
    &dedup::SIGNATURES_STEP,
    &dedup::BUCKETS_STEP,
    &dedup::CLUSTERS_STEP,
    &dedup::FILTER_STEP,
    &decontaminate::HITS_STEP,
    &decontaminate::STEP,
    &tokenize::STEP,
    &blend::STEP,
    &TRAIN,
    &REPORT,
];

/// How a step divides its work between the tasks of a sliced run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// Units divided between tasks (`--task I --tasks N`); every task runs its own slice.
    Sliced,
    /// One piece of work over the whole input, deterministic: any task may run it (the ones
    /// that do write the same files), and a finished one is skipped.
    Global,
    /// One process only (training): a sliced run stops before it.
    Single,
}

/// What a step produces, for inspection and verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Produces {
    /// Document shards with a ledger: verified after the step, summarized by `inspect`.
    Documents,
    /// llm.c token shards with a sidecar, per document: verified after the step.
    Tokens,
    /// The training mixture: llm.c shards of document copies, verified after the step.
    Mixture,
    /// Intermediate tables another step of the same group reads (dedup signatures, pairs,
    /// decontamination gram counts).
    Tables,
    /// Files that are not a stage output (the corpus, a model, a checkpoint, a report).
    Files,
}

/// One step of the recipe.
#[derive(Debug)]
pub struct Step {
    /// The step's one name: its `--stage` name and its directory under `run.out`.
    pub name: &'static str,
    /// The recipe table that configures it; the step is part of a recipe iff the table is.
    pub table: &'static str,
    /// The step a recipe's `input` key names by default (the documents it reads), if any.
    pub input: Option<&'static str>,
    pub shape: Shape,
    pub produces: Produces,
    /// One line on what it does.
    pub about: &'static str,
    /// Runs this task's part of the step.
    pub run: fn(&StepCtx) -> Result<Outcome, StageError>,
}

impl Step {
    /// Whether `recipe` has this step's table.
    pub fn in_recipe(&self, recipe: &Recipe) -> bool {
        recipe.has_table(self.table)
    }
}

/// The step of this name, if there is one.
pub fn step(name: &str) -> Option<&'static Step> {
    STEPS.iter().copied().find(|s| s.name == name)
}

/// The step names, comma separated (for hints).
pub fn names() -> String {
    STEPS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
}

/// What the steps that live outside this crate need from whoever links them: training (the
/// trainer crate never meets the pipeline crate; the binary links both).
pub trait Host: Sync {
    /// Trains by the recipe's `[train]` table on this run's tokens.
    fn train(&self, ctx: &StepCtx) -> Result<Outcome, StageError>;
    /// `grist plan`'s estimate of the `train` step; an error is a problem with `[train]`.
    fn estimate_train(&self, recipe: &Recipe) -> Result<Estimate, String>;
}

/// A step's estimate for `grist plan`: what it reads and writes, disk and peak memory in
/// bytes, time in seconds on this machine, and notes worth knowing.
#[derive(Debug, Clone, Default)]
pub struct Estimate {
    pub reads: String,
    pub writes: String,
    pub disk: f64,
    pub memory: f64,
    pub seconds: f64,
    pub notes: Vec<String>,
}

/// Everything a step's run function gets.
pub struct StepCtx<'a> {
    pub recipe: &'a Recipe,
    /// The run's output root (`run.out`); step `X` writes to `{out}/X`.
    pub out: Loc,
    pub slice: TaskSlice,
    pub host: &'a dyn Host,
}

impl StepCtx<'_> {
    /// The directory of step `name` in this run.
    pub fn dir(&self, name: &str) -> Loc {
        self.out.join(name)
    }
    /// The run seed.
    pub fn seed(&self) -> u64 {
        self.recipe.run.seed
    }
}

/// What a step's run did, typed; `grist` prints it as JSON for one step, and as text lines in
/// a whole run.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum StepReport {
    /// A sliced step: this task's units.
    Units(TaskReport),
    Synthetic(synthetic::SyntheticReport),
    Quality(quality::train::TrainReport),
    Clusters(dedup::ClusterReport),
    Blend(blend::BlendRun),
    Trained(TrainedReport),
    /// A file written (the HTML report).
    Wrote {
        path: String,
    },
}

/// What training did, as the run prints it (filled in by the `Host`).
#[derive(Debug, Clone, Serialize)]
pub struct TrainedReport {
    pub steps: u64,
    pub tokens: u64,
    pub first_loss: Option<f32>,
    pub last_loss: Option<f32>,
    pub val_loss: Option<f32>,
    /// The latest checkpoint directory, if one was written.
    pub checkpoint: Option<String>,
    /// The training output directory.
    pub out: String,
}

/// What one step's run did.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub report: StepReport,
    /// Whether the step is complete (every unit, or the global work), so later steps may run.
    pub complete: bool,
    /// Whether the global work was skipped as already done (same config and inputs).
    #[serde(skip)]
    pub up_to_date: bool,
    /// Lines for the user, printed by a whole run.
    #[serde(skip)]
    pub text: String,
    /// Where the run's closing lines say the step's output is (`model    out/demo/quality/...`).
    #[serde(skip)]
    pub points_to: Option<String>,
}

impl Outcome {
    /// The outcome of a sliced step's task: one line (`ingest   3 units done, ...`).
    pub fn units(rep: TaskReport, items: &str, kept: &str) -> Outcome {
        let a = &rep.accounting;
        let text = format!(
            "{:<8} {} units done, {} skipped; {} {items} in = {} {kept} + {} in the ledger ({:.2} s)\n",
            rep.stage, rep.units_done, rep.units_skipped, a.docs_in, a.docs_out, a.docs_ledger, rep.seconds
        );
        Outcome {
            complete: rep.stage_complete,
            report: StepReport::Units(rep),
            up_to_date: false,
            text,
            points_to: None,
        }
    }
    /// The same, with more lines once the step is complete.
    pub fn then(mut self, more: impl FnOnce() -> Result<String, StageError>) -> Result<Outcome, StageError> {
        if self.complete {
            let extra = more()?;
            let _ = write!(self.text, "{extra}");
        }
        Ok(self)
    }
    /// The same, pointing the closing lines at the output.
    pub fn pointing(mut self, to: String) -> Outcome {
        self.points_to = Some(to);
        self
    }
    /// The task report of a sliced step.
    pub fn task(&self) -> Option<&TaskReport> {
        match &self.report {
            StepReport::Units(t) => Some(t),
            StepReport::Blend(b) => Some(&b.stage),
            _ => None,
        }
    }
}

/// `train`: the step lives in the trainer; the `Host` runs it.
pub static TRAIN: Step = Step {
    name: "train",
    table: "train",
    input: Some("blend"),
    shape: Shape::Single,
    produces: Produces::Files,
    about: "train a GPT on the blend's token shards (checkpoints, metrics, a generated sample)",
    run: |ctx| ctx.host.train(ctx),
};

/// `report`: the run's HTML report, written last (every recipe has it).
pub static REPORT: Step = Step {
    name: "report",
    table: "run",
    input: None,
    shape: Shape::Global,
    produces: Produces::Files,
    about: "write the run's self-contained HTML report",
    run: |ctx| {
        let dir = ctx.out.as_local().ok_or_else(|| {
            StageError::Usage(format!("the report is written into a local run directory, not {}", ctx.out))
        })?;
        let path = crate::inspect::report::write_report(dir, None)?.display().to_string();
        Ok(Outcome {
            report: StepReport::Wrote { path: path.clone() },
            complete: true,
            up_to_date: false,
            text: String::new(),
            points_to: Some(format!("report   {path}")),
        })
    },
};

/// A step's recipe table, or an error naming it.
pub fn need<'a, T>(table: &'a Option<T>, name: &str) -> Result<&'a T, StageError> {
    table.as_ref().ok_or_else(|| StageError::Recipe(format!("the recipe has no [{name}] table")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_usable_as_directories() {
        let mut seen = std::collections::BTreeSet::new();
        for s in STEPS {
            assert!(seen.insert(s.name), "{} twice", s.name);
            assert!(s.name.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{}", s.name);
            assert!(step(s.name).is_some_and(|x| std::ptr::eq(x, *s)));
        }
        assert!(step("nonesuch").is_none());
    }

    #[test]
    fn every_default_input_is_an_earlier_step() {
        for (i, s) in STEPS.iter().enumerate() {
            if let Some(input) = s.input {
                let at = STEPS.iter().position(|x| x.name == input);
                assert!(at.is_some_and(|a| a < i), "{} reads {input}, which does not run before it", s.name);
            }
        }
    }

    #[test]
    fn every_table_is_a_recipe_table() {
        // A full recipe has every table; `has_table` finds each step's.
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../recipes/demo.toml")).unwrap();
        let recipe = Recipe::parse(&text, "demo.toml", &[]).unwrap();
        for s in STEPS {
            assert!(s.in_recipe(&recipe), "the demo recipe has no [{}] for {}", s.table, s.name);
        }
        let without = text.replace("[dedup]", "[dedup_gone]");
        assert!(Recipe::parse(&without, "x", &[]).is_err(), "unknown tables are refused");
    }

    #[test]
    fn config_defaults_name_the_registry_inputs() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../recipes/demo.toml")).unwrap();
        // Drop every `input = ...` line: the defaults must be the registry's.
        let bare: String = text.lines().filter(|l| !l.starts_with("input =")).collect::<Vec<_>>().join("\n");
        let r = Recipe::parse(&bare, "demo.toml", &[]).unwrap();
        let input = |s: &Step| s.input.unwrap_or_default();
        assert_eq!(r.quality.as_ref().unwrap().input, input(&quality::train::STEP));
        assert_eq!(r.quality_filter.as_ref().unwrap().input, input(&quality::filter::STEP));
        assert_eq!(r.dedup.as_ref().unwrap().input, input(&dedup::SIGNATURES_STEP));
        assert_eq!(r.decontaminate.as_ref().unwrap().input, input(&decontaminate::STEP));
        assert_eq!(r.tokenize.as_ref().unwrap().input, input(&tokenize::STEP));
        assert_eq!(r.blend.as_ref().unwrap().input, input(&blend::STEP));
    }
}
