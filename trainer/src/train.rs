//! The training loop: GPT-3's recipe (AdamW with beta2 0.95, weight decay 0.1 on matrices,
//! gradient clipping at global norm 1.0, linear warmup then cosine decay to 10%, a linear
//! batch-size ramp) over the windows of `loader`, with gradient accumulation in micro-batches,
//! validation, metrics as JSON lines, checkpoints every N steps, and exact resume: a run
//! stopped at any point and restarted from its last checkpoint produces the same losses, bit
//! for bit, as the run that was never stopped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use shards::Loc;
use shards::metrics::{self, EvalRecord, MetricsLine, StepRecord};

use crate::backend::{Backend, BackendError, HostState};
use crate::checkpoint::{self, CheckpointError, Saved};
use crate::collective::{Collective, CollectiveError, Single};
use crate::loader::{Cursor, DataLoader, LoaderError};
use crate::model::{GPT2_VOCAB, GptConfig, Params};
use crate::optim::AdamW;
use crate::schedule::{BatchRamp, LrSchedule};

/// `grist train`'s configuration (a TOML table; every key can be overridden on the command line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// A preset (`tiny`, `small`, `gpt2-124m`, `gpt3-small` ... `gpt3-175b`), or `custom` with
    /// `layers`, `heads` and `channels`.
    #[serde(default = "default_model")]
    pub model: String,
    pub layers: Option<usize>,
    pub heads: Option<usize>,
    pub channels: Option<usize>,
    /// Context length T (default: the preset's).
    pub seq_len: Option<usize>,
    /// GPT-3's alternating locally banded attention: the band of the sparse layers.
    pub attention_band: Option<usize>,
    #[serde(default = "default_vocab")]
    pub vocab_size: usize,
    /// Start from this checkpoint's weights with a fresh optimizer (fine-tuning, or continued
    /// pretraining): a grist checkpoint or training output (its newest checkpoint), or any GPT-2
    /// checkpoint in Hugging Face's layout (`config.json`, `model.safetensors`). The model is the
    /// checkpoint's: `model` and `vocab_size` are not read, `layers`/`heads`/`channels` are
    /// refused, and `seq_len` may shorten the context. A run that has checkpoints of its own
    /// resumes from those, as always.
    pub init: Option<String>,
    /// Training token shards: a stage directory (`out/demo/blend`: its `*.side-train*.bin`),
    /// a directory of `.bin` shards, or one shard.
    pub train_data: String,
    /// Validation shards: a `grist tokenize` output (its `*.side-val*.bin`, reported per
    /// source), a directory of `.bin` shards, or one shard.
    pub val_data: Option<String>,
    /// Where metrics, checkpoints and the loss chart go.
    pub out: String,
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Sequences per forward pass.
    #[serde(default = "default_micro_batch")]
    pub micro_batch: usize,
    /// Sequences per optimizer step (a multiple of `micro_batch`; the rest is accumulated).
    pub batch_size: Option<usize>,
    /// The batch-size ramp: the first batch, in sequences (0: no ramp) ...
    #[serde(default)]
    pub ramp_start: usize,
    /// ... growing linearly to `batch_size` over this many tokens.
    #[serde(default)]
    pub ramp_tokens: u64,
    /// Peak learning rate.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// The floor after the cosine decay, as a fraction of the peak.
    #[serde(default = "default_min_lr")]
    pub min_lr_fraction: f64,
    #[serde(default)]
    pub warmup_tokens: u64,
    /// The end of the cosine decay (default: `total_tokens`).
    pub decay_tokens: Option<u64>,
    /// Stop after this many tokens ...
    pub total_tokens: Option<u64>,
    /// ... or this many steps, whichever comes first.
    pub steps: Option<u64>,
    #[serde(default = "default_beta1")]
    pub beta1: f32,
    #[serde(default = "default_beta2")]
    pub beta2: f32,
    #[serde(default = "default_eps")]
    pub eps: f32,
    #[serde(default = "default_wd")]
    pub weight_decay: f32,
    /// Clip the gradient to this global L2 norm (0: no clipping).
    #[serde(default = "default_clip")]
    pub grad_clip: f32,
    /// Validate every N steps (0: only at the end).
    #[serde(default)]
    pub eval_every: u64,
    /// Validation tokens per validation set.
    #[serde(default = "default_eval_tokens")]
    pub eval_tokens: u64,
    /// Checkpoint every N steps (0: only at the end).
    #[serde(default)]
    pub checkpoint_every: u64,
    #[serde(default = "default_keep")]
    pub keep_checkpoints: usize,
    /// The device: `cpu`, or `cuda` / `cuda:N` in a build with the `cuda` feature. Not part of
    /// the trajectory: a checkpoint resumes on either.
    #[serde(default = "default_backend", skip_serializing_if = "is_cpu")]
    pub backend: String,
}

fn default_backend() -> String {
    "cpu".into()
}
fn is_cpu(b: &str) -> bool {
    b == "cpu"
}

fn default_model() -> String {
    "tiny".into()
}
fn default_vocab() -> usize {
    GPT2_VOCAB
}
fn default_seed() -> u64 {
    1337
}
fn default_micro_batch() -> usize {
    4
}
fn default_lr() -> f64 {
    6e-4
}
fn default_min_lr() -> f64 {
    0.1
}
fn default_beta1() -> f32 {
    0.9
}
fn default_beta2() -> f32 {
    0.95
}
fn default_eps() -> f32 {
    1e-8
}
fn default_wd() -> f32 {
    0.1
}
fn default_clip() -> f32 {
    1.0
}
fn default_eval_tokens() -> u64 {
    32_768
}
fn default_keep() -> usize {
    3
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("train config: {0}")]
    Config(String),
    #[error(transparent)]
    Loader(#[from] LoaderError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(transparent)]
    Shard(#[from] shards::ShardError),
    #[error(
        "step {step}: the {what} is {value}; stopped before updating the parameters\nhint: the last good checkpoint is {last}; lower `lr` or raise `warmup_tokens`"
    )]
    NonFinite { step: u64, what: &'static str, value: f32, last: String },
    #[error(
        "{dir}: its checkpoint was made with a different config ({field}: {then} then, {now} now)\nhint: restore the config, or start over with --fresh (keeps nothing)"
    )]
    ConfigChanged { dir: String, field: String, then: String, now: String },
    #[error(
        "{dir}: its checkpoint was trained on other data (the training shards changed since)\nhint: start over with --fresh (keeps nothing)"
    )]
    DataChanged { dir: String },
}

/// Writes one metrics line (one JSON object and a newline).
fn write_line(f: &mut std::fs::File, path: &Path, line: &MetricsLine) -> Result<(), TrainError> {
    let json = serde_json::to_string(line).map_err(|e| TrainError::Config(format!("metrics line: {e}")))?;
    writeln!(f, "{json}").map_err(io_err(path))
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io { path: path.display().to_string(), source }
}

impl TrainConfig {
    /// The model this config describes.
    pub fn model_config(&self) -> Result<GptConfig, TrainError> {
        if let Some(init) = &self.init {
            if self.layers.is_some() || self.heads.is_some() || self.channels.is_some() {
                return Err(TrainError::Config(
                    "init: the model is the checkpoint's; drop layers/heads/channels".into(),
                ));
            }
            let dir = checkpoint::resolve(Path::new(init));
            let path = dir.join("config.json");
            let mut cfg = checkpoint::config_from_hf(&checkpoint::read_json(&path)?, &path)?;
            if let Some(t) = self.seq_len {
                if t == 0 || t > cfg.max_seq_len {
                    return Err(TrainError::Config(format!(
                        "seq_len {t}: the init checkpoint {} has {} positions",
                        dir.display(),
                        cfg.max_seq_len
                    )));
                }
                cfg.max_seq_len = t;
            }
            if self.attention_band.is_some() {
                cfg.attention_band = self.attention_band;
            }
            cfg.validate().map_err(TrainError::Config)?;
            return Ok(cfg);
        }
        let mut cfg = if self.model == "custom" {
            let need = |x: Option<usize>, k: &str| {
                x.ok_or_else(|| TrainError::Config(format!("model = \"custom\" needs `{k}`")))
            };
            let t = need(self.seq_len, "seq_len")?;
            GptConfig::new(
                t,
                self.vocab_size,
                need(self.layers, "layers")?,
                need(self.heads, "heads")?,
                need(self.channels, "channels")?,
                128,
            )
        } else {
            let mut c = GptConfig::preset(&self.model).ok_or_else(|| {
                TrainError::Config(format!(
                    "unknown model {:?}; presets: {}, or \"custom\"",
                    self.model,
                    GptConfig::PRESETS.join(", ")
                ))
            })?;
            if self.layers.is_some() || self.heads.is_some() || self.channels.is_some() {
                return Err(TrainError::Config("layers/heads/channels go with model = \"custom\"".into()));
            }
            if self.vocab_size != c.vocab_size {
                c = GptConfig::new(c.max_seq_len, self.vocab_size, c.num_layers, c.num_heads, c.channels, 128);
            }
            if let Some(t) = self.seq_len {
                c.max_seq_len = t;
            }
            c
        };
        cfg.attention_band = self.attention_band;
        cfg.validate().map_err(TrainError::Config)?;
        Ok(cfg)
    }

    fn batch(&self) -> usize {
        self.batch_size.unwrap_or(self.micro_batch)
    }

    /// Checks the settings that a run cannot start with.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::Config(m));
        if self.out.contains("://") && !self.out.starts_with("file://") {
            return bad(format!(
                "out = {:?}: checkpoints are written to a local (or shared) filesystem, with fsync and renames; the training data may be on an object store\nhint: set train.out to a local directory",
                self.out
            ));
        }
        if self.micro_batch == 0 {
            return bad("micro_batch must be at least 1".into());
        }
        if !self.batch().is_multiple_of(self.micro_batch) {
            return bad(format!("batch_size {} is not a multiple of micro_batch {}", self.batch(), self.micro_batch));
        }
        if self.total_tokens.is_none() && self.steps.is_none() {
            return bad("give `total_tokens` or `steps` (when to stop)".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite() && (0.0..=1.0).contains(&self.min_lr_fraction)) {
            return bad(format!("lr {} and min_lr_fraction {} (in 0..=1)", self.lr, self.min_lr_fraction));
        }
        if self.ramp_start > 0 && self.ramp_tokens == 0 {
            return bad("ramp_start needs ramp_tokens".into());
        }
        self.model_config().map(|_| ())
    }

    fn schedule(&self, t: usize) -> (LrSchedule, BatchRamp) {
        let decay = self.decay_tokens.or(self.total_tokens).unwrap_or_else(|| {
            self.steps.unwrap_or(0) * (self.batch() * t) as u64 // steps without total_tokens: the full batch
        });
        let lr = LrSchedule {
            peak: self.lr,
            warmup_tokens: self.warmup_tokens,
            decay_tokens: decay,
            min_fraction: self.min_lr_fraction,
        };
        let ramp = BatchRamp {
            full: self.batch(),
            start: self.ramp_start,
            ramp_tokens: self.ramp_tokens,
            micro_batch: self.micro_batch,
        };
        (lr, ramp)
    }

    /// The fields that shape the trajectory: a resumed run must agree on all of them (the stop
    /// point, evaluation, checkpointing and data paths may change).
    fn trajectory(&self) -> Vec<(&'static str, String)> {
        vec![
            ("model", format!("{:?}", self.model_config().ok())),
            ("init", format!("{:?}", self.init)),
            ("seed", self.seed.to_string()),
            ("micro_batch", self.micro_batch.to_string()),
            ("batch_size", self.batch().to_string()),
            ("ramp_start", self.ramp_start.to_string()),
            ("ramp_tokens", self.ramp_tokens.to_string()),
            ("lr", self.lr.to_string()),
            ("min_lr_fraction", self.min_lr_fraction.to_string()),
            ("warmup_tokens", self.warmup_tokens.to_string()),
            ("decay_tokens", format!("{:?}", self.decay_tokens.or(self.total_tokens))),
            ("adamw", format!("{} {} {} {}", self.beta1, self.beta2, self.eps, self.weight_decay)),
            ("grad_clip", self.grad_clip.to_string()),
        ]
    }
}

/// Held-out tokens to evaluate on, under a name (a source, or `val`).
#[derive(Debug, Clone, PartialEq)]
pub struct ValSet {
    pub name: String,
    pub tokens: Vec<u32>,
}

/// The training state saved beside every checkpoint (`state.json`): where the run is, and what
/// it was made by. Every field is required: a state that lacks one is refused, not read as 0.
/// Fields in alphabetical order, the order of the file's keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainState {
    /// AdamW steps taken (the bias corrections' t).
    pub adam_step: u64,
    /// The config that made the run; a resume with another trajectory is refused.
    pub config: TrainConfig,
    /// The data loader's position.
    pub cursor: Cursor,
    /// The loader's fingerprint of the training shards; other data is refused.
    pub data: String,
    pub step: u64,
    pub tokens: u64,
}

/// Something that happened, for a progress display.
#[derive(Debug, Clone)]
pub enum Event {
    Start {
        step: u64,
        tokens: u64,
        total_tokens: Option<u64>,
        steps: Option<u64>,
        resumed: Option<PathBuf>,
    },
    Step(StepRecord),
    Eval(EvalRecord),
    Checkpoint(PathBuf),
    /// Something the user should read (e.g. resuming from another checkpoint than `latest` names).
    Notice(String),
}

/// What a finished run reports.
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    pub steps: u64,
    pub tokens: u64,
    pub first_loss: Option<f32>,
    pub last_loss: Option<f32>,
    pub val_loss: Option<f32>,
    pub checkpoint: Option<String>,
    pub metrics: String,
    pub chart: String,
    pub resumed_from: Option<String>,
}

/// Loss per set over up to `eval_tokens` tokens of each, in micro-batches of `mb` windows of
/// T + 1 tokens (a short last micro-batch is padded with copies whose losses are dropped).
pub fn evaluate(
    backend: &mut dyn Backend,
    sets: &[ValSet],
    t: usize,
    mb: usize,
    eval_tokens: u64,
) -> Result<Vec<(String, f32, usize)>, TrainError> {
    evaluate_across(backend, &mut Single, sets, t, mb, eval_tokens)
}

/// [`evaluate`] shared by the ranks of a group: micro-batch c is evaluated by rank c mod N, and
/// the sums are added in micro-batch order, so every world size gives one process's figures.
pub fn evaluate_across(
    backend: &mut dyn Backend,
    comm: &mut dyn Collective,
    sets: &[ValSet],
    t: usize,
    mb: usize,
    eval_tokens: u64,
) -> Result<Vec<(String, f32, usize)>, TrainError> {
    let (rank, world) = (comm.rank(), comm.world());
    let mut out = Vec::new();
    for set in sets {
        let usable = set.tokens.len().min(eval_tokens as usize + 1);
        let windows = usable.saturating_sub(1) / t;
        if windows == 0 {
            continue;
        }
        let (mut sums, mut count) = (Vec::new(), 0usize);
        let (mut x, mut y, mut losses) = (vec![0u32; mb * t], vec![0u32; mb * t], vec![0.0f32; mb * t]);
        for (c, first) in (0..windows).step_by(mb).enumerate() {
            let real = (windows - first).min(mb);
            count += real * t;
            if c % world != rank {
                continue;
            }
            for row in 0..mb {
                let w = first + row.min(real - 1);
                x[row * t..(row + 1) * t].copy_from_slice(&set.tokens[w * t..w * t + t]);
                y[row * t..(row + 1) * t].copy_from_slice(&set.tokens[w * t + 1..w * t + t + 1]);
            }
            backend.forward(&x, Some(&y), mb, t)?;
            backend.position_losses(&y, &mut losses)?;
            sums.push(losses[..real * t].iter().map(|&l| l as f64).sum::<f64>());
        }
        let sum: f64 = in_batch_order(comm, &sums)?.iter().sum();
        out.push((set.name.clone(), (sum / count as f64) as f32, count));
    }
    Ok(out)
}

/// Opens the metrics file for appending, keeping the lines up to `step` (a killed run may have
/// logged past its last checkpoint), so the file reads as one uninterrupted run. Rewritten by an
/// atomic replace (a crash here keeps the old file), then appended to.
fn open_metrics(metrics_path: &Path, step: u64) -> Result<std::fs::File, TrainError> {
    let kept: Vec<String> = std::fs::read_to_string(metrics_path)
        .unwrap_or_default()
        .lines()
        .filter(|l| serde_json::from_str::<MetricsLine>(l).is_ok_and(|m| m.step() <= step))
        .map(String::from)
        .collect();
    let mut text = kept.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    shards::Loc::local(metrics_path).write_atomic(text.as_bytes())?;
    std::fs::OpenOptions::new().append(true).open(metrics_path).map_err(io_err(metrics_path))
}

fn group_err(e: CollectiveError) -> TrainError {
    TrainError::Backend(BackendError::Device(e.to_string()))
}

/// Refuses a launch whose ranks disagree: every rank's config (the fields that shape the run)
/// and data fingerprint against rank 0's, the first difference named.
fn agree(comm: &mut dyn Collective, cfg: &TrainConfig, data_print: &str) -> Result<(), TrainError> {
    let mut mine: Vec<(String, String)> = cfg.trajectory().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    mine.push(("out".into(), cfg.out.clone()));
    mine.push(("training data".into(), data_print.to_string()));
    let bytes = serde_json::to_vec(&mine).map_err(|e| TrainError::Config(e.to_string()))?;
    let all = comm.all_gather_bytes(&bytes).map_err(group_err)?;
    let lead: Vec<(String, String)> = serde_json::from_slice(&all[0]).unwrap_or_default();
    for (r, theirs) in all.iter().enumerate().skip(1) {
        let theirs: Vec<(String, String)> = serde_json::from_slice(theirs).unwrap_or_default();
        for ((field, a), (_, b)) in lead.iter().zip(&theirs) {
            if a != b {
                return Err(TrainError::Config(format!(
                    "ranks disagree at launch: {field} is {a} on rank 0 and {b} on rank {r}"
                )));
            }
        }
        if lead.len() != theirs.len() {
            return Err(TrainError::Config(format!("ranks disagree at launch: rank {r} sent another config")));
        }
    }
    Ok(())
}

/// Per-micro-batch values of every rank, back in micro-batch order (rank r held micro-batches
/// r, r + N, ...).
fn in_batch_order(comm: &mut dyn Collective, mine: &[f64]) -> Result<Vec<f64>, TrainError> {
    let world = comm.world();
    if world == 1 {
        return Ok(mine.to_vec());
    }
    // Each rank sends its count first, so the flat gather can be split back.
    let mut counted = vec![mine.len() as f64];
    counted.extend_from_slice(mine);
    let all = comm.all_gather_f64(&counted).map_err(group_err)?;
    let (mut per_rank, mut at) = (Vec::with_capacity(world), 0);
    for _ in 0..world {
        let n = all.get(at).copied().unwrap_or(0.0) as usize;
        per_rank.push(all.get(at + 1..at + 1 + n).unwrap_or_default().to_vec());
        at += 1 + n;
    }
    let total: usize = per_rank.iter().map(Vec::len).sum();
    Ok((0..total).map(|c| per_rank[c % world][c / world]).collect())
}

/// Trains, resuming from the output's checkpoint when it was made by the same config on the
/// same data. A checkpoint of another config or other data is neither resumed nor deleted: the
/// whole previous output folder is renamed to `{out}.prev-{step}-{hash}` beside it and
/// training starts over (what a recipe rerun after a change wants, without losing a run).
/// Returns the summary and, when it started over, a line saying why and where the old run went.
pub fn train_or_restart(
    cfg: &TrainConfig,
    train_shards: &[Loc],
    val: &[ValSet],
    on_event: &mut dyn FnMut(&Event),
) -> Result<(TrainSummary, Option<String>), TrainError> {
    match train(cfg, train_shards, val, false, on_event) {
        Ok(s) => Ok((s, None)),
        Err(why @ (TrainError::ConfigChanged { .. } | TrainError::DataChanged { .. })) => {
            let why = why.to_string().lines().next().unwrap_or_default().to_string();
            let aside = keep_aside(Path::new(&cfg.out))?;
            let note = format!("{why}; the previous run is kept in {}", aside.display());
            on_event(&Event::Notice(note.clone()));
            Ok((train(cfg, train_shards, val, false, on_event)?, Some(note)))
        }
        Err(e) => Err(e),
    }
}

/// Renames a training output folder out of the way: `{out}.prev-{step}-{xxh3 of its state}`
/// (a numbered suffix if that exists too). One rename: nothing is copied or deleted.
fn keep_aside(out: &Path) -> Result<PathBuf, TrainError> {
    let point = checkpoint::resume_point(&out.join("checkpoints")).unwrap_or_default();
    let tag = match &point.path {
        Some(p) => {
            let state = std::fs::read(p.join("state.json")).unwrap_or_default();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("step");
            format!("{name}-{}", &shards::checksum::xxh3_hex(&state)[..8])
        }
        None => "nocheckpoint".to_string(),
    };
    let base = out.file_name().and_then(|n| n.to_str()).unwrap_or("train").to_string();
    let mut aside = out.with_file_name(format!("{base}.prev-{tag}"));
    let mut k = 1;
    while aside.exists() {
        aside = out.with_file_name(format!("{base}.prev-{tag}-{k}"));
        k += 1;
    }
    std::fs::rename(out, &aside).map_err(io_err(out))?;
    if let Some(parent) = out.parent()
        && let Ok(d) = std::fs::File::open(parent)
    {
        let _ = d.sync_all();
    }
    Ok(aside)
}

/// Runs (or resumes) training. `fresh` ignores existing checkpoints and metrics.
pub fn train(
    cfg: &TrainConfig,
    train: &[Loc],
    val: &[ValSet],
    fresh: bool,
    on_event: &mut dyn FnMut(&Event),
) -> Result<TrainSummary, TrainError> {
    train_across(cfg, train, val, fresh, &mut Single, on_event)
}

/// [`train`] as one rank of a data-parallel group: every rank calls it with the same config and
/// data. Each global batch's micro-batches are dealt to the ranks in turn (micro-batch c to rank
/// c mod N), gradients are summed across ranks in rank order, and with more than one rank the
/// optimizer is sharded (ZeRO-1: each rank keeps and updates the moments of its shard of the
/// parameters, then gathers the others' new values). Rank 0 writes the metrics and checkpoints
/// (the same files as one process: a run resumes on any world size) and reports events; the
/// output folder must be on a file system every rank sees.
pub fn train_across(
    cfg: &TrainConfig,
    train: &[Loc],
    val: &[ValSet],
    fresh: bool,
    comm: &mut dyn Collective,
    on_event: &mut dyn FnMut(&Event),
) -> Result<TrainSummary, TrainError> {
    let (rank, world) = (comm.rank(), comm.world());
    let lead = rank == 0;
    let mut quiet = |_: &Event| {};
    let on_event: &mut dyn FnMut(&Event) = if lead { on_event } else { &mut quiet };
    cfg.validate()?;
    let model = cfg.model_config()?;
    for set in val {
        if let Some(i) = set.tokens.iter().position(|&x| x as usize >= model.vocab_size) {
            return Err(TrainError::Config(format!(
                "validation set {:?}: token {} (number {i}) is outside the model's vocabulary of {}",
                set.name, set.tokens[i], model.vocab_size
            )));
        }
    }
    let t = model.max_seq_len;
    let out = PathBuf::from(&cfg.out);
    let ckpt_dir = out.join("checkpoints");
    let metrics_path = out.join("metrics.jsonl");
    let mut loader = DataLoader::new(train, t, cfg.seed, model.vocab_size)?;
    let data_print = loader.fingerprint()?;
    if world > 1 {
        agree(comm, cfg, &data_print)?;
    }
    std::fs::create_dir_all(&out).map_err(io_err(&out))?;
    if fresh && lead {
        for p in [&ckpt_dir, &metrics_path] {
            if p.is_dir() {
                std::fs::remove_dir_all(p).map_err(io_err(p))?;
            } else if p.exists() {
                std::fs::remove_file(p).map_err(io_err(p))?;
            }
        }
    }
    let start = match &cfg.init {
        Some(init) => checkpoint::load_model_at(&checkpoint::resolve(Path::new(init)), Some(t))?,
        None => Params::gpt2_init(model, cfg.seed),
    };
    let mut backend = crate::backend::make(&cfg.backend, start)?;
    if world > 1 {
        backend.shard_optimizer(rank, world)?;
    }
    let (mut step, mut tokens) = (0u64, 0u64);
    // Rank 0 picks the checkpoint (setting a damaged one aside); every rank loads it.
    let resumed = if lead {
        let point = checkpoint::resume_point(&ckpt_dir)?;
        if let Some(note) = &point.note {
            on_event(&Event::Notice(note.clone()));
        }
        point.path
    } else {
        None
    };
    let resumed = if world > 1 {
        let picked = resumed.map(|p| p.display().to_string()).unwrap_or_default();
        let picked = comm.broadcast_bytes(picked.as_bytes(), 0).map_err(group_err)?;
        Some(PathBuf::from(String::from_utf8_lossy(&picked).into_owned())).filter(|p| !p.as_os_str().is_empty())
    } else {
        resumed
    };
    if let Some(dir) = &resumed {
        let saved = checkpoint::load::<TrainState>(dir)?;
        let state = &saved.state;
        let then = &state.config;
        for ((field, a), (_, b)) in then.trajectory().into_iter().zip(cfg.trajectory()) {
            if a != b {
                return Err(TrainError::ConfigChanged {
                    dir: dir.display().to_string(),
                    field: field.into(),
                    then: a,
                    now: b,
                });
            }
        }
        if state.data != data_print {
            return Err(TrainError::DataChanged { dir: dir.display().to_string() });
        }
        (step, tokens) = (state.step, state.tokens);
        loader.set_cursor(state.cursor)?;
        backend.load_state(&HostState { params: saved.params.data, m: saved.m, v: saved.v, step: state.adam_step })?;
    }
    // Metrics: keep the lines up to the resumed step (a killed run may have logged past its
    // last checkpoint), so the file reads as one uninterrupted run. Rank 0's alone; the others
    // write to nothing.
    let mut metrics = if lead { Some(open_metrics(&metrics_path, step)?) } else { None };
    on_event(&Event::Start {
        step,
        tokens,
        total_tokens: cfg.total_tokens,
        steps: cfg.steps,
        resumed: resumed.clone(),
    });
    if world > 1 {
        on_event(&Event::Notice(format!(
            "data parallel over {world} ranks, optimizer sharded (ZeRO-1): {:.1} MiB of moments on rank 0",
            backend.moment_bytes() as f64 / (1u64 << 20) as f64
        )));
    }
    let (lr_sched, ramp) = cfg.schedule(t);
    let opt = AdamW { beta1: cfg.beta1, beta2: cfg.beta2, eps: cfg.eps, weight_decay: cfg.weight_decay };
    let mb = cfg.micro_batch;
    let (mut x, mut y) = (vec![0u32; mb * t], vec![0u32; mb * t]);
    let nparams = model.num_params() as f64;
    let peak = backend.peak_flops();
    let started = Instant::now();
    let mut last_ckpt: Option<PathBuf> = resumed.clone();
    // A test hook: the loss of this step (1-based) becomes NaN, as a diverging run's would.
    let nan_at: Option<u64> = std::env::var(shards::env::TEST_NAN_AT_STEP).ok().and_then(|v| v.parse().ok());
    // Another: this rank dies at this step, as a crashed process would.
    let exit_at: Option<u64> = std::env::var(shards::env::TEST_EXIT_RANK_AT_STEP)
        .ok()
        .and_then(|v| v.split_once(':').and_then(|(r, s)| (r.parse() == Ok(rank)).then(|| s.parse().ok()).flatten()));
    let done =
        |step: u64, tokens: u64| cfg.steps.is_some_and(|s| step >= s) || cfg.total_tokens.is_some_and(|n| tokens >= n);
    // Every rank gathers the state (a collective); rank 0 writes it.
    let save = |backend: &dyn Backend,
                comm: &mut dyn Collective,
                step: u64,
                tokens: u64,
                cursor: Cursor|
     -> Result<Option<PathBuf>, TrainError> {
        let s = backend.state_across(comm)?;
        if !lead {
            return Ok(None);
        }
        let state =
            TrainState { adam_step: s.step, config: cfg.clone(), cursor, data: data_print.clone(), step, tokens };
        let mut params = Params::zeros(*backend.config());
        params.data = s.params;
        let saved = Saved { params, m: s.m, v: s.v, state };
        Ok(Some(checkpoint::save(&ckpt_dir, &format!("step-{step:08}"), &saved, cfg.keep_checkpoints)?))
    };
    while !done(step, tokens) {
        if exit_at == Some(step + 1) {
            std::process::exit(3);
        }
        let t0 = Instant::now();
        let seqs = ramp.at(tokens);
        let step_tokens = (seqs * t) as u64;
        let lr = lr_sched.at(tokens, step_tokens) as f32;
        let windows = loader.next_batch(seqs, 0, 1)?;
        backend.zero_grad()?;
        // This rank's micro-batches (c mod N == rank), each micro-batch's loss x rows.
        let mut losses = Vec::new();
        let scale = 1.0 / (seqs * t) as f32;
        for chunk in windows.chunks(mb).skip(rank).step_by(world) {
            loader.fill(chunk, &mut x, &mut y)?;
            let loss = backend.forward(&x, Some(&y), mb, t)?.unwrap_or(f32::NAN);
            losses.push(loss as f64 * chunk.len() as f64);
            backend.backward(&x, &y, scale)?;
        }
        backend.reduce_grads(comm)?;
        // Summed in micro-batch order, as one process sums them.
        let gathered = Instant::now();
        let loss_sum: f64 = in_batch_order(comm, &losses)?.iter().sum();
        let mut comm_s = gathered.elapsed().as_secs_f64();
        let mut loss = (loss_sum / seqs as f64) as f32;
        if nan_at == Some(step + 1) {
            loss = f32::NAN;
        }
        let norm = backend.grad_norm_across(comm)?;
        let last = || last_ckpt.as_ref().map_or("none (no checkpoint yet)".into(), |p| p.display().to_string());
        if !loss.is_finite() {
            return Err(TrainError::NonFinite { step: step + 1, what: "loss", value: loss, last: last() });
        }
        if !norm.is_finite() {
            return Err(TrainError::NonFinite { step: step + 1, what: "gradient norm", value: norm, last: last() });
        }
        let clip = if cfg.grad_clip > 0.0 && norm > cfg.grad_clip { cfg.grad_clip / norm } else { 1.0 };
        backend.step_across(comm, &opt, lr, clip)?;
        comm_s += backend.take_comm_seconds();
        step += 1;
        tokens += step_tokens;
        let secs = t0.elapsed().as_secs_f64();
        let tps = step_tokens as f64 / secs.max(1e-9);
        let line = StepRecord {
            batch: seqs,
            comm_s: (world > 1).then(|| (comm_s * 1e4).round() / 1e4),
            elapsed_s: (started.elapsed().as_secs_f64() * 1e3).round() / 1e3,
            grad_norm: Some(norm).filter(|x| x.is_finite()),
            loss: Some(loss).filter(|x| x.is_finite()),
            lr,
            mfu: ((6.0 * nparams * tps / peak) * 1e4).round() / 1e4,
            step,
            tokens,
            tokens_per_s: (tps * 10.0).round() / 10.0,
        };
        if let Some(f) = metrics.as_mut() {
            write_line(f, &metrics_path, &MetricsLine::Step(line.clone()))?;
        }
        on_event(&Event::Step(line));
        let finished = done(step, tokens);
        if !val.is_empty() && ((cfg.eval_every > 0 && step.is_multiple_of(cfg.eval_every)) || finished) {
            let res = evaluate_across(backend.as_mut(), comm, val, t, mb, cfg.eval_tokens)?;
            let total: usize = res.iter().map(|r| r.2).sum();
            let mean = res.iter().map(|r| r.1 as f64 * r.2 as f64).sum::<f64>() / total.max(1) as f64;
            let finite = |x: f32| Some(x).filter(|x| x.is_finite());
            let line = EvalRecord {
                step,
                tokens,
                val: res.iter().map(|(n, l, _)| (n.clone(), finite(*l))).collect(),
                val_loss: finite(mean as f32),
                val_tokens: total,
            };
            if let Some(f) = metrics.as_mut() {
                write_line(f, &metrics_path, &MetricsLine::Eval(line.clone()))?;
            }
            on_event(&Event::Eval(line));
        }
        if (cfg.checkpoint_every > 0 && step.is_multiple_of(cfg.checkpoint_every)) || finished {
            if let Some(f) = metrics.as_mut() {
                f.flush().map_err(io_err(&metrics_path))?;
            }
            if let Some(p) = save(backend.as_ref(), comm, step, tokens, loader.cursor())? {
                on_event(&Event::Checkpoint(p.clone()));
                last_ckpt = Some(p);
            }
        }
    }
    if let (true, Some(line)) = (lead, backend.report()) {
        on_event(&Event::Notice(line));
    }
    let chart = out.join("loss.svg");
    if let Some(f) = metrics.as_mut() {
        f.sync_all().map_err(io_err(&metrics_path))?;
    }
    // The other ranks read rank 0's finished metrics.
    comm.barrier().map_err(group_err)?;
    let text = std::fs::read_to_string(&metrics_path).map_err(io_err(&metrics_path))?;
    let lines = metrics::parse(&text, &metrics_path.display().to_string())?;
    if lead {
        std::fs::write(&chart, metrics::loss_chart(&lines)).map_err(io_err(&chart))?;
    }
    // The losses of the whole run, resumed parts included, from the metrics.
    let train_losses: Vec<f32> = lines
        .iter()
        .filter_map(|l| match l {
            MetricsLine::Step(s) => s.loss,
            MetricsLine::Eval(_) => None,
        })
        .collect();
    let val_losses: Vec<f32> = lines
        .iter()
        .filter_map(|l| match l {
            MetricsLine::Eval(e) => e.val_loss,
            MetricsLine::Step(_) => None,
        })
        .collect();
    let (first_loss, last_loss) = (train_losses.first().copied(), train_losses.last().copied());
    let val_loss = val_losses.last().copied();
    Ok(TrainSummary {
        steps: step,
        tokens,
        first_loss,
        last_loss,
        val_loss,
        checkpoint: last_ckpt.map(|p| p.display().to_string()),
        metrics: metrics_path.display().to_string(),
        chart: chart.display().to_string(),
        resumed_from: resumed.map(|p| p.display().to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuBackend;

    #[test]
    fn a_training_state_missing_a_field_is_refused_not_read_as_zero() {
        let cfg: TrainConfig =
            toml::from_str("model = \"tiny\"\ntrain_data = \"x\"\nout = \"y\"\nmicro_batch = 2\nsteps = 3").unwrap();
        let state = TrainState {
            adam_step: 5,
            config: cfg,
            cursor: Cursor { epoch: 1, offset: 9 },
            data: "abc".into(),
            step: 5,
            tokens: 640,
        };
        let v = serde_json::to_value(&state).unwrap();
        let back: TrainState = serde_json::from_value(v.clone()).unwrap();
        assert_eq!((back.step, back.tokens, back.cursor, back.adam_step), (5, 640, Cursor { epoch: 1, offset: 9 }, 5));
        for key in ["adam_step", "cursor", "data", "step", "tokens"] {
            let mut without = v.clone();
            without.as_object_mut().unwrap().remove(key);
            assert!(serde_json::from_value::<TrainState>(without).is_err(), "a state without {key} was accepted");
        }
        let mut extra = v;
        extra["bogus"] = 1.into();
        assert!(serde_json::from_value::<TrainState>(extra).is_err());
    }

    /// Token shards with runs to learn, and a small model's config over them.
    fn tiny_run(dir: &Path, out: &str, steps: u64) -> (TrainConfig, Vec<Loc>, Vec<ValSet>) {
        let mut state = 99u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        let mut train = Vec::new();
        for s in 0..2 {
            let toks: Vec<u32> = (0..6000).map(|i| (i / 7 + next() % 3) % 200).collect();
            let path = dir.join(format!("train-{s}.bin"));
            let loc = Loc::local(&path);
            if !path.exists() {
                shards::tokens::write_tokens(&loc, shards::tokens::TokenWidth::U16, &toks).unwrap();
            }
            train.push(loc);
        }
        let val = vec![ValSet { name: "val".into(), tokens: (0..2000).map(|i| (i / 5 + next() % 2) % 200).collect() }];
        let text = format!(
            "model = \"custom\"\nlayers = 2\nheads = 2\nchannels = 64\nseq_len = 32\nvocab_size = 256\n\
             train_data = \"x\"\nout = \"{}\"\nseed = 3\nmicro_batch = 2\nbatch_size = 12\nlr = 3e-3\n\
             warmup_tokens = 500\ndecay_tokens = 12000\nsteps = {steps}\neval_every = 3\neval_tokens = 600\ncheckpoint_every = 3\n",
            dir.join(out).display()
        );
        (toml::from_str(&text).unwrap(), train, val)
    }

    /// Trains with `world` ranks as threads of this process; rank 0's summary.
    fn run_ranks(cfg: &TrainConfig, train: &[Loc], val: &[ValSet], world: usize) -> Result<TrainSummary, String> {
        let handles: Vec<_> = crate::collective::LocalGroup::group(world)
            .into_iter()
            .map(|mut comm| {
                let (cfg, train, val) = (cfg.clone(), train.to_vec(), val.to_vec());
                std::thread::spawn(move || train_across(&cfg, &train, &val, false, &mut comm, &mut |_| {}))
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().expect("rank thread")).collect();
        let mut results = results.into_iter();
        let first = results.next().expect("rank 0");
        for r in results {
            r.map_err(|e| e.to_string())?;
        }
        first.map_err(|e| e.to_string())
    }

    fn losses(out: &Path) -> Vec<(String, f64)> {
        std::fs::read_to_string(out.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                let kind = if v.get("val_loss").is_some() { "val" } else { "train" };
                let x = v.get("val_loss").or(v.get("loss")).and_then(|x| x.as_f64()).unwrap();
                (format!("{kind} {}", v["step"]), x)
            })
            .collect()
    }

    #[test]
    fn data_parallel_ranks_follow_one_process_and_repeat_bit_for_bit() {
        let dir = tempfile::tempdir().unwrap();
        let (one, train, val) = tiny_run(dir.path(), "one", 6);
        run_ranks(&one, &train, &val, 1).unwrap();
        let want = losses(&dir.path().join("one"));
        assert_eq!(want.len(), 6 + 2);
        for world in [2, 3] {
            let mut got = Vec::new();
            for run in 0..2 {
                let (cfg, _, _) = tiny_run(dir.path(), &format!("w{world}-{run}"), 6);
                run_ranks(&cfg, &train, &val, world).unwrap();
                got.push(losses(&dir.path().join(format!("w{world}-{run}"))));
            }
            assert_eq!(got[0], got[1], "{world} ranks twice: the same bits");
            // Step 1 sees the same parameters, and the loss sums its micro-batches in the same
            // order: identical. Later steps differ by the order the gradient was summed in.
            assert_eq!(got[0][0], want[0], "{world} ranks, first step");
            for ((name, a), (_, b)) in got[0].iter().zip(&want) {
                assert!((a - b).abs() <= 2e-4 * b.abs(), "{world} ranks, {name}: {a} vs one process {b}");
            }
        }
    }

    #[test]
    fn zero1_shards_the_moments_and_checkpoints_resume_on_other_world_sizes() {
        // The moments per rank fall as 1/N.
        let cfg = GptConfig::new(32, 256, 4, 2, 256, 64);
        let full = CpuBackend::new(Params::gpt2_init(cfg, 1)).moment_bytes();
        for world in [2, 3, 4] {
            let mut total = 0;
            for rank in 0..world {
                let mut b = CpuBackend::new(Params::gpt2_init(cfg, 1));
                b.shard_optimizer(rank, world);
                assert!(b.moment_bytes() <= full / world + 8 * crate::backend::NORM_BLOCK, "{world} ranks");
                total += b.moment_bytes();
            }
            assert_eq!(total, full, "the shards cover every moment once");
        }

        // 6 steps straight on one process, against 3 on 2 ranks, then 3 on 1 rank; and 2 -> 3.
        let dir = tempfile::tempdir().unwrap();
        let (straight, train, val) = tiny_run(dir.path(), "straight", 6);
        run_ranks(&straight, &train, &val, 2).unwrap();
        let want = losses(&dir.path().join("straight"));
        for (first, then) in [(2, 1), (2, 3)] {
            let out = format!("resume-{first}-{then}");
            let (half, _, _) = tiny_run(dir.path(), &out, 3);
            run_ranks(&half, &train, &val, first).unwrap();
            let (rest, _, _) = tiny_run(dir.path(), &out, 6);
            let summary = run_ranks(&rest, &train, &val, then).unwrap();
            assert!(summary.resumed_from.is_some());
            let got = losses(&dir.path().join(&out));
            assert_eq!(got.len(), want.len());
            // Up to the checkpoint the run is 2 ranks' own; after it, the new world size's
            // summation order: close, and the data order and schedule exactly the same.
            assert_eq!(got[..4], want[..4], "{first} -> {then}: before the checkpoint");
            for ((name, a), (_, b)) in got.iter().zip(&want) {
                assert!((a - b).abs() <= 2e-4 * b.abs(), "{first} -> {then}, {name}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn ranks_that_disagree_or_leave_stop_the_run_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let (cfg, train, val) = tiny_run(dir.path(), "x", 6);
        let mut other = cfg.clone();
        other.lr *= 2.0;
        let mut group = crate::collective::LocalGroup::group(2).into_iter();
        let (mut a, mut b) = (group.next().unwrap(), group.next().unwrap());
        let (t2, v2) = (train.clone(), val.clone());
        let h = std::thread::spawn(move || train_across(&other, &t2, &v2, false, &mut b, &mut |_| {}).map(|_| ()));
        let err = train_across(&cfg, &train, &val, false, &mut a, &mut |_| {}).unwrap_err().to_string();
        assert!(err.contains("ranks disagree at launch: lr is"), "{err}");
        let _ = h.join();

        // A rank that stops (here: its thread returns after the launch check) ends the other's
        // run with an error instead of a hang.
        let mut group = crate::collective::LocalGroup::group(2).into_iter();
        let (mut a, mut b) = (group.next().unwrap(), group.next().unwrap());
        let h = std::thread::spawn(move || {
            let _ = b.barrier();
            drop(b);
        });
        let _ = a.barrier();
        h.join().unwrap();
        let err = train_across(&cfg, &train, &val, true, &mut a, &mut |_| {}).unwrap_err().to_string();
        assert!(err.contains("rank 1 left the group"), "{err}");
    }

    #[test]
    fn a_fine_tune_starts_from_the_given_weights_exactly_with_a_fresh_optimizer() {
        let dir = tempfile::tempdir().unwrap();
        let (base, train_shards, val) = tiny_run(dir.path(), "base", 6);
        let s = train(&base, &train_shards, &val, false, &mut |_| {}).unwrap();
        let ckpt = PathBuf::from(s.checkpoint.unwrap());
        let mut ft = base.clone();
        // A training output names its newest checkpoint; the context is cut from 32 to 16.
        ft.init = Some(dir.path().join("base").display().to_string());
        (ft.layers, ft.heads, ft.channels, ft.seq_len) = (None, None, None, Some(16));
        ft.out = dir.path().join("ft").display().to_string();
        (ft.steps, ft.seed, ft.warmup_tokens, ft.eval_every) = (Some(2), 11, 0, 0);
        let got = train(&ft, &train_shards, &[], false, &mut |_| {}).unwrap();
        // The first step's loss, computed here from the checkpoint's weights on the same batch.
        let params = checkpoint::load_model_at(&ckpt, Some(16)).unwrap();
        let whole = checkpoint::load_model(&ckpt).unwrap();
        assert_eq!(params.get(crate::model::Param::Wpe), &whole.get(crate::model::Param::Wpe)[..16 * 64]);
        assert_eq!(params.get(crate::model::Param::QkvW), whole.get(crate::model::Param::QkvW));
        let mut b = CpuBackend::new(params);
        let mut loader = DataLoader::new(&train_shards, 16, 11, 256).unwrap();
        let windows = loader.next_batch(12, 0, 1).unwrap();
        let (mut x, mut y) = (vec![0u32; 32], vec![0u32; 32]);
        let mut sum = 0.0f64;
        for chunk in windows.chunks(2) {
            loader.fill(chunk, &mut x, &mut y).unwrap();
            sum += b.forward(&x, Some(&y), 2, 16).unwrap().unwrap() as f64 * 2.0;
        }
        let want = (sum / 12.0) as f32;
        assert_eq!(got.first_loss, Some(want), "the fine-tune's first loss is the checkpoint's");
        // A fresh optimizer: two AdamW steps in the new run, not the base's six plus two.
        let saved = checkpoint::load::<TrainState>(Path::new(got.checkpoint.as_ref().unwrap())).unwrap();
        assert_eq!((saved.state.adam_step, saved.state.step), (2, 2));
        // From scratch (no init) the same seed starts elsewhere: the test could fail.
        let mut scratch = ft.clone();
        (scratch.init, scratch.model, scratch.layers, scratch.heads, scratch.channels) =
            (None, "custom".into(), Some(2), Some(2), Some(64));
        scratch.out = dir.path().join("scratch").display().to_string();
        let other = train(&scratch, &train_shards, &[], false, &mut |_| {}).unwrap();
        assert_ne!(other.first_loss, got.first_loss);
        // Longer than the checkpoint's context: refused.
        let mut long = ft.clone();
        long.seq_len = Some(64);
        assert!(long.validate().unwrap_err().to_string().contains("has 32 positions"));
    }
}
