//! The command line's shape: every command, argument and flag (clap). Nothing runs here.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use pipeline::{Recipe, TaskSlice};

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
    pub verbose: u8,
    /// Only warnings and errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Worker threads (default: all cores; RAYON_NUM_THREADS also works).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a recipe: every stage that exists, in order; a rerun resumes where it stopped.
    Run {
        /// Recipe TOML file (see recipes/).
        #[arg(required_unless_present = "list_stages")]
        recipe: Option<PathBuf>,
        /// Override a recipe key, e.g. --set ingest.min_words=5 (the key must exist).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// This task's slice index (with --tasks; or SLURM_ARRAY_TASK_ID / JOB_COMPLETION_INDEX).
        #[arg(long)]
        task: Option<usize>,
        /// Number of slices the stage is split into.
        #[arg(long)]
        tasks: Option<usize>,
        /// Run only this stage (one slice of it with --task/--tasks), for batch schedulers;
        /// `--list-stages` names them.
        #[arg(long, value_name = "NAME")]
        stage: Option<String>,
        /// Print every stage in order as NAME:SLICED lines (SLICED 1: one task per slice) and exit.
        #[arg(long)]
        list_stages: bool,
    },
    /// List the recipe's steps in order: name, recipe table, shape, what they do.
    Stages,
    /// Write the built-in synthetic corpus (deterministic from a seed).
    Synthetic {
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
    /// URL lists, language ID, Gopher, C4, FineWeb and PII filters (datatrove's rules), each
    /// removal ledgered with its rule and measured value.
    Filters(StageArgs),
    /// The quality classifier: train it, filter by it, score files with it.
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
        /// Print the mixture (shares, available and target tokens, epochs) and exit.
        #[arg(long)]
        mixture: bool,
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
        /// Fine-tune (or continue pretraining) from this checkpoint's weights with a fresh
        /// optimizer: a grist checkpoint or training output, or a Hugging Face GPT-2 directory
        /// (config.json, model.safetensors). Same as --set init=DIR.
        #[arg(long, value_name = "DIR")]
        init: Option<String>,
    },
    /// Does the recipe make better models? Train the same small GPT on arms that differ only in
    /// which data stages apply (raw, + filters, + quality, + dedup, the recipe's mixture) and
    /// compare them on held-out sets ([ablate] in the recipe; docs/eval.md).
    Ablate {
        /// Recipe TOML file with an [ablate] table.
        recipe: PathBuf,
        /// Override a recipe key, as for `grist run`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Only these arms, in this order (comma separated; default: ablate.arms, else all).
        #[arg(long, value_delimiter = ',')]
        arms: Vec<String>,
    },
    /// Evaluate a checkpoint (grist's or a Hugging Face GPT-2's): loss and bits per byte on
    /// held-out text with bootstrap intervals, and tasks zero-, one- or few-shot (docs/eval.md).
    Eval {
        /// A checkpoint directory, or a training output (its newest checkpoint).
        #[arg(long)]
        checkpoint: String,
        /// A held-out set, NAME=PATH[,PATH...] (any format ingest reads); repeatable.
        #[arg(long = "eval", value_name = "NAME=PATHS")]
        sets: Vec<String>,
        /// A task file (JSON lines: ctx/endings/label for multiple choice, question/answer for
        /// free-form); repeatable.
        #[arg(long = "task", value_name = "FILE")]
        tasks: Vec<PathBuf>,
        /// Examples before each item (0: zero-shot), drawn from --examples, else from the
        /// task's other items.
        #[arg(long, default_value_t = 0)]
        shots: usize,
        /// The task's training split, where the shots are drawn from.
        #[arg(long, value_name = "FILE")]
        examples: Option<PathBuf>,
        /// Print each item's prompt, the scores of its endings or its generated answer.
        #[arg(long)]
        show_prompts: bool,
        /// Only the first N items of each task.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Free-form: tokens generated at most per answer.
        #[arg(long, default_value_t = 256)]
        max_tokens: usize,
        /// Held-out text files longer than this are split into documents at paragraph breaks
        /// (0: one document per file).
        #[arg(long, default_value_t = 0)]
        split_bytes: u64,
        /// Evaluate at this context length (at most the model's).
        #[arg(long)]
        seq_len: Option<usize>,
        /// Sequences per forward pass.
        #[arg(long, default_value_t = 8)]
        micro_batch: usize,
        /// Bootstrap resamples for the intervals.
        #[arg(long, default_value_t = 1000)]
        reps: usize,
        /// Seed of the shots and the bootstrap.
        #[arg(long, default_value_t = 1234)]
        seed: u64,
        /// Where held-out sets are ingested (kept, reused when up to date); default a temporary folder.
        #[arg(long)]
        work: Option<PathBuf>,
        #[arg(long)]
        json: bool,
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
pub struct InspectArgs {
    #[command(subcommand)]
    pub what: Option<InspectCmd>,
    /// A stage output directory, e.g. out/demo/ingest.
    #[arg(required = true)]
    pub dir: Option<String>,
    /// Check files against manifests and documents in = out + ledger; exit 3 on problems.
    #[arg(long)]
    pub verify: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also print the first N documents (id, source, url, and the text up to --chars).
    #[arg(long, value_name = "N")]
    pub head: Option<usize>,
    /// Characters of text shown per document with --head.
    #[arg(long, default_value_t = 400)]
    pub chars: usize,
}

#[derive(Debug, Subcommand)]
pub enum InspectCmd {
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
        filters: crate::inspect_cmd::Filters,
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
        filters: crate::inspect_cmd::Filters,
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
pub enum DedupStep {
    /// Exact keys, MinHash signatures and sorted band keys (sliced by input shard).
    Signatures,
    /// Candidate pairs from the band keys (sliced by band and key range).
    Buckets,
    /// Verification, union-find and representatives (one task).
    Clusters,
    /// The input minus the removed documents (sliced by input shard).
    Filter,
}

impl DedupStep {
    /// The registry step it names.
    pub fn step(self) -> &'static pipeline::steps::Step {
        use pipeline::steps::dedup;
        match self {
            DedupStep::Signatures => &dedup::SIGNATURES_STEP,
            DedupStep::Buckets => &dedup::BUCKETS_STEP,
            DedupStep::Clusters => &dedup::CLUSTERS_STEP,
            DedupStep::Filter => &dedup::FILTER_STEP,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum QualityCmd {
    /// The `quality` step: train on the ingest output into {run.out}/quality/ (model.gqm,
    /// train_report.json); skipped when a model of the same config and input is there.
    Train(StageArgs),
    /// The `quality_filter` step: score documents and keep them by GPT-3's Pareto rule.
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
pub struct StageArgs {
    /// Recipe TOML file (see recipes/).
    pub recipe: PathBuf,
    /// Override a recipe key, e.g. --set ingest.min_words=5 (the key must exist).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// This task's slice index (with --tasks; or SLURM_ARRAY_TASK_ID / JOB_COMPLETION_INDEX).
    #[arg(long)]
    pub task: Option<usize>,
    /// Number of slices the stage is split into.
    #[arg(long)]
    pub tasks: Option<usize>,
}

impl StageArgs {
    pub fn load(&self) -> Result<(Recipe, TaskSlice)> {
        let recipe = Recipe::load(&self.recipe, &self.overrides)?;
        let slice = TaskSlice::resolve(self.task, self.tasks, |k| std::env::var(k).ok())?;
        tracing::info!("resolved recipe ({slice}):\n{}", recipe.to_toml());
        Ok((recipe, slice))
    }
}
