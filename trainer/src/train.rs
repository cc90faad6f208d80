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

use crate::backend::{Backend, BackendError, CpuBackend, HostState};
use crate::checkpoint::{self, CheckpointError, Saved};
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
    let mut out = Vec::new();
    for set in sets {
        let usable = set.tokens.len().min(eval_tokens as usize + 1);
        let windows = usable.saturating_sub(1) / t;
        if windows == 0 {
            continue;
        }
        let (mut sum, mut count) = (0.0f64, 0usize);
        let (mut x, mut y, mut losses) = (vec![0u32; mb * t], vec![0u32; mb * t], vec![0.0f32; mb * t]);
        for first in (0..windows).step_by(mb) {
            let real = (windows - first).min(mb);
            for row in 0..mb {
                let w = first + row.min(real - 1);
                x[row * t..(row + 1) * t].copy_from_slice(&set.tokens[w * t..w * t + t]);
                y[row * t..(row + 1) * t].copy_from_slice(&set.tokens[w * t + 1..w * t + t + 1]);
            }
            backend.forward(&x, Some(&y), mb, t)?;
            backend.position_losses(&y, &mut losses)?;
            sum += losses[..real * t].iter().map(|&l| l as f64).sum::<f64>();
            count += real * t;
        }
        out.push((set.name.clone(), (sum / count as f64) as f32, count));
    }
    Ok(out)
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
    std::fs::create_dir_all(&out).map_err(io_err(&out))?;
    if fresh {
        for p in [&ckpt_dir, &metrics_path] {
            if p.is_dir() {
                std::fs::remove_dir_all(p).map_err(io_err(p))?;
            } else if p.exists() {
                std::fs::remove_file(p).map_err(io_err(p))?;
            }
        }
    }
    let mut loader = DataLoader::new(train, t, cfg.seed, model.vocab_size)?;
    let data_print = loader.fingerprint();
    let mut backend = CpuBackend::new(Params::gpt2_init(model, cfg.seed));
    let (mut step, mut tokens) = (0u64, 0u64);
    let point = checkpoint::resume_point(&ckpt_dir)?;
    if let Some(note) = &point.note {
        on_event(&Event::Notice(note.clone()));
    }
    let resumed = point.path;
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
    // last checkpoint), so the file reads as one uninterrupted run.
    let kept: Vec<String> = std::fs::read_to_string(&metrics_path)
        .unwrap_or_default()
        .lines()
        .filter(|l| serde_json::from_str::<MetricsLine>(l).is_ok_and(|m| m.step() <= step))
        .map(String::from)
        .collect();
    // Rewritten by an atomic replace (a crash here keeps the old file), then appended to.
    let mut text = kept.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    shards::Loc::local(&metrics_path).write_atomic(text.as_bytes())?;
    let mut metrics = std::fs::OpenOptions::new().append(true).open(&metrics_path).map_err(io_err(&metrics_path))?;
    on_event(&Event::Start {
        step,
        tokens,
        total_tokens: cfg.total_tokens,
        steps: cfg.steps,
        resumed: resumed.clone(),
    });

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
    let done =
        |step: u64, tokens: u64| cfg.steps.is_some_and(|s| step >= s) || cfg.total_tokens.is_some_and(|n| tokens >= n);
    let save = |backend: &CpuBackend, step: u64, tokens: u64, cursor: Cursor| -> Result<PathBuf, TrainError> {
        let s = backend.state()?;
        let state =
            TrainState { adam_step: s.step, config: cfg.clone(), cursor, data: data_print.clone(), step, tokens };
        let mut params = Params::zeros(backend.params().config);
        params.data = s.params;
        let saved = Saved { params, m: s.m, v: s.v, state };
        Ok(checkpoint::save(&ckpt_dir, &format!("step-{step:08}"), &saved, cfg.keep_checkpoints)?)
    };
    while !done(step, tokens) {
        let t0 = Instant::now();
        let seqs = ramp.at(tokens);
        let step_tokens = (seqs * t) as u64;
        let lr = lr_sched.at(tokens, step_tokens) as f32;
        let windows = loader.next_batch(seqs, 0, 1)?;
        backend.zero_grad()?;
        let mut loss_sum = 0.0f64;
        let scale = 1.0 / (seqs * t) as f32;
        for chunk in windows.chunks(mb) {
            loader.fill(chunk, &mut x, &mut y);
            let loss = backend.forward(&x, Some(&y), mb, t)?.unwrap_or(f32::NAN);
            loss_sum += loss as f64 * chunk.len() as f64;
            backend.backward(&x, &y, scale)?;
        }
        let mut loss = (loss_sum / seqs as f64) as f32;
        if nan_at == Some(step + 1) {
            loss = f32::NAN;
        }
        let norm = backend.grad_norm()?;
        let last = || last_ckpt.as_ref().map_or("none (no checkpoint yet)".into(), |p| p.display().to_string());
        if !loss.is_finite() {
            return Err(TrainError::NonFinite { step: step + 1, what: "loss", value: loss, last: last() });
        }
        if !norm.is_finite() {
            return Err(TrainError::NonFinite { step: step + 1, what: "gradient norm", value: norm, last: last() });
        }
        let clip = if cfg.grad_clip > 0.0 && norm > cfg.grad_clip { cfg.grad_clip / norm } else { 1.0 };
        backend.step(&opt, lr, clip)?;
        step += 1;
        tokens += step_tokens;
        let secs = t0.elapsed().as_secs_f64();
        let tps = step_tokens as f64 / secs.max(1e-9);
        let line = StepRecord {
            batch: seqs,
            elapsed_s: (started.elapsed().as_secs_f64() * 1e3).round() / 1e3,
            grad_norm: Some(norm).filter(|x| x.is_finite()),
            loss: Some(loss).filter(|x| x.is_finite()),
            lr,
            mfu: ((6.0 * nparams * tps / peak) * 1e4).round() / 1e4,
            step,
            tokens,
            tokens_per_s: (tps * 10.0).round() / 10.0,
        };
        write_line(&mut metrics, &metrics_path, &MetricsLine::Step(line.clone()))?;
        on_event(&Event::Step(line));
        let finished = done(step, tokens);
        if !val.is_empty() && ((cfg.eval_every > 0 && step.is_multiple_of(cfg.eval_every)) || finished) {
            let res = evaluate(&mut backend, val, t, mb, cfg.eval_tokens)?;
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
            write_line(&mut metrics, &metrics_path, &MetricsLine::Eval(line.clone()))?;
            on_event(&Event::Eval(line));
        }
        if (cfg.checkpoint_every > 0 && step.is_multiple_of(cfg.checkpoint_every)) || finished {
            metrics.flush().map_err(io_err(&metrics_path))?;
            let p = save(&backend, step, tokens, loader.cursor())?;
            on_event(&Event::Checkpoint(p.clone()));
            last_ckpt = Some(p);
        }
    }
    metrics.sync_all().map_err(io_err(&metrics_path))?;
    let chart = out.join("loss.svg");
    let text = std::fs::read_to_string(&metrics_path).map_err(io_err(&metrics_path))?;
    let lines = metrics::parse(&text, &metrics_path.display().to_string())?;
    std::fs::write(&chart, metrics::loss_chart(&lines)).map_err(io_err(&chart))?;
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
}
