//! `grist eval`: a checkpoint (grist's, or any GPT-2 checkpoint in Hugging Face's layout) on
//! held-out text (loss and bits per byte per set, with bootstrap intervals over documents) and on
//! tasks, zero-, one- or few-shot (multiple choice scored by completion loss, free-form answers by
//! exact match after greedy decoding). The prompt formats are in docs/eval.md and printed by
//! `--show-prompts`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use pipeline::steps::tokenize::{EOT, GPT2_VOCAB, gpt2_decode_lossy, gpt2_tokens};
use serde::Serialize;
use shards::Loc;
use trainer::backend::{Backend, CpuBackend};
use trainer::eval::{Completion, Interval, Loss, Resampler, bits_per_byte, bootstrap, completion_losses, greedy};

/// Bootstrap settings: resamples and seed.
#[derive(Debug, Clone, Copy)]
pub struct Boot {
    pub reps: usize,
    pub seed: u64,
}

/// A held-out set's documents as token sequences (`<|endoftext|>` first) and their UTF-8 bytes.
#[derive(Debug, Clone)]
pub struct HeldOut {
    pub name: String,
    pub docs: Vec<Vec<u32>>,
    pub bytes: Vec<u64>,
}

/// Reads a held-out set: its paths are ingested (any format `ingest` reads) into `work/NAME`
/// (skipped when up to date there), then every document is tokenized with GPT-2's BPE.
/// `split_bytes` cuts one-document-per-file text into documents (0: files whole).
pub fn read_heldout(name: &str, paths: &[String], split_bytes: u64, work: &Path) -> Result<HeldOut> {
    let out = Loc::local(work.join(name));
    let files = pipeline::steps::ingest::ingest_set(name, paths, split_bytes, &out)
        .with_context(|| format!("reading the held-out set {name} ({})", paths.join(", ")))?;
    let mut texts = Vec::new();
    for shard in &files {
        for d in shards::DocReader::open(shard)?.read_docs()? {
            texts.push(d.text);
        }
    }
    if texts.is_empty() {
        bail!("held-out set {name}: no documents in {} (see {}'s ledger)", paths.join(", "), out);
    }
    use rayon::prelude::*;
    let docs: Vec<Vec<u32>> = texts
        .par_iter()
        .map(|t| {
            let mut v = vec![EOT];
            v.extend(gpt2_tokens(t));
            v
        })
        .collect();
    let bytes = texts.iter().map(|t| t.len() as u64).collect();
    Ok(HeldOut { name: name.to_string(), docs, bytes })
}

/// One held-out set's result for one model.
#[derive(Debug, Clone, Serialize)]
pub struct SetResult {
    pub set: String,
    pub docs: usize,
    pub tokens: usize,
    pub bytes: u64,
    /// Mean loss per token (nats), and its interval.
    pub loss: Interval,
    /// Bits per byte, and its interval.
    pub bits_per_byte: Interval,
    /// Each document's summed loss (nats), in set order: paired comparisons between models.
    #[serde(skip)]
    pub doc_nats: Vec<f64>,
}

/// Scores a model on a held-out set.
pub fn score_heldout(backend: &mut dyn Backend, set: &HeldOut, mb: usize, boot: Boot) -> Result<SetResult> {
    let losses: Vec<Loss> = trainer::eval::document_losses(backend, &set.docs, mb)?;
    let nats: Vec<f64> = losses.iter().map(|l| l.nats).collect();
    let tokens: Vec<f64> = losses.iter().map(|l| l.tokens as f64).collect();
    let bytes: Vec<f64> = set.bytes.iter().map(|&b| b as f64).collect();
    let total_bytes: u64 = set.bytes.iter().sum();
    let bpb = bootstrap(&[&nats], &bytes, 1.0 / std::f64::consts::LN_2, boot.reps, boot.seed);
    debug_assert!((bpb.value - bits_per_byte(nats.iter().sum(), total_bytes)).abs() < 1e-9);
    Ok(SetResult {
        set: set.name.clone(),
        docs: set.docs.len(),
        tokens: losses.iter().map(|l| l.tokens).sum(),
        bytes: total_bytes,
        loss: bootstrap(&[&nats], &tokens, 1.0, boot.reps, boot.seed),
        bits_per_byte: bpb,
        doc_nats: nats,
    })
}

/// A task's items.
#[derive(Debug, Clone)]
pub enum Task {
    /// HellaSwag's format: a context, endings, the index of the right one.
    Choice(Vec<ChoiceItem>),
    /// GSM8K's format: a question and an answer (the part after `####`, if any, is the target).
    FreeForm(Vec<FreeItem>),
}

#[derive(Debug, Clone)]
pub struct ChoiceItem {
    pub ctx: String,
    pub endings: Vec<String>,
    pub label: usize,
}

#[derive(Debug, Clone)]
pub struct FreeItem {
    pub question: String,
    pub answer: String,
}

/// Reads a task file (JSON lines): lines with `ctx`, `endings` and `label` (an integer or a
/// string of one) are multiple choice; lines with `question` and `answer` are free-form. Every
/// line must be of the same kind. Errors name the file and line.
pub fn read_task(path: &Path) -> Result<Task> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("{}: cannot read the task file", path.display()))?;
    let (mut choice, mut free) = (Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = || format!("{}:{}", path.display(), i + 1);
        let v: serde_json::Value = serde_json::from_str(line).with_context(|| format!("{}: not JSON", at()))?;
        if let Some(endings) = v.get("endings") {
            let endings: Vec<String> = endings
                .as_array()
                .with_context(|| format!("{}: `endings` is not a list", at()))?
                .iter()
                .map(|e| e.as_str().map(String::from).with_context(|| format!("{}: an ending is not a string", at())))
                .collect::<Result<_>>()?;
            let label = match &v["label"] {
                serde_json::Value::Number(n) => n.as_u64().map(|x| x as usize),
                serde_json::Value::String(s) => s.trim().parse().ok(),
                _ => None,
            };
            let label = label.filter(|&l| l < endings.len()).with_context(|| {
                format!("{}: `label` must index `endings` ({} of them), got {}", at(), endings.len(), v["label"])
            })?;
            let ctx = v["ctx"].as_str().with_context(|| format!("{}: `ctx` missing", at()))?.to_string();
            if endings.len() < 2 || endings.iter().any(|e| e.trim().is_empty()) {
                bail!("{}: a multiple-choice item needs at least two non-empty endings", at());
            }
            choice.push(ChoiceItem { ctx, endings, label });
        } else if let (Some(q), Some(a)) = (v["question"].as_str(), v["answer"].as_str()) {
            free.push(FreeItem { question: q.to_string(), answer: a.to_string() });
        } else {
            bail!("{}: neither multiple choice (ctx, endings, label) nor free-form (question, answer)", at());
        }
        if !choice.is_empty() && !free.is_empty() {
            bail!("{}: the file mixes multiple-choice and free-form items", at());
        }
    }
    match (choice.is_empty(), free.is_empty()) {
        (false, _) => Ok(Task::Choice(choice)),
        (_, false) => Ok(Task::FreeForm(free)),
        _ => bail!("{}: no items", path.display()),
    }
}

impl Task {
    fn len(&self) -> usize {
        match self {
            Task::Choice(v) => v.len(),
            Task::FreeForm(v) => v.len(),
        }
    }
}

/// The target of a free-form answer: the text after the last `####` (GSM8K), else the whole
/// answer; then normalized (see [`normalize`]).
pub fn target(answer: &str) -> String {
    normalize(answer.rsplit_once("####").map_or(answer, |(_, a)| a))
}

/// What exact match compares: trimmed, lowercased, a trailing period dropped, commas between
/// digits dropped (`1,000` is `1000`), inner whitespace runs made one space.
pub fn normalize(s: &str) -> String {
    let s = s.trim().trim_end_matches('.').trim().to_lowercase();
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        let between_digits =
            i > 0 && i + 1 < chars.len() && chars[i - 1].is_ascii_digit() && chars[i + 1].is_ascii_digit();
        if c == ',' && between_digits {
            continue;
        }
        out.push(c);
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The K examples for item `i`: drawn without replacement by a [`Resampler`] seeded with
/// `seed + i`, from `pool` (a training split) or, without one, from the task's other items.
pub fn shots_for(i: usize, k: usize, pool_len: usize, same_pool: bool, seed: u64) -> Result<Vec<usize>> {
    let available = pool_len - usize::from(same_pool && i < pool_len);
    if k > available {
        bail!("{k} shots asked, but only {available} examples to draw them from");
    }
    let mut r = Resampler::new(seed.wrapping_add(i as u64));
    let mut picked = Vec::with_capacity(k);
    while picked.len() < k {
        let j = r.index(pool_len);
        if (same_pool && j == i) || picked.contains(&j) {
            continue;
        }
        picked.push(j);
    }
    Ok(picked)
}

/// The prompt of a multiple-choice item after `shots`: each example as its context, a space and
/// its right ending, examples separated by a blank line, then the item's context. The endings are
/// scored as ` ENDING` (a space, then the ending) after it.
pub fn choice_prompt(item: &ChoiceItem, shots: &[&ChoiceItem]) -> String {
    let mut p: String = shots.iter().map(|s| format!("{} {}\n\n", s.ctx, s.endings[s.label])).collect();
    p.push_str(&item.ctx);
    p
}

/// The prompt of a free-form item after `shots`: `Question: Q\nAnswer: A` per example, a blank
/// line between them, then `Question: Q\nAnswer:`; the model continues it greedily until a blank
/// line, `<|endoftext|>` or the token limit.
pub fn free_prompt(item: &FreeItem, shots: &[&FreeItem]) -> String {
    let mut p: String =
        shots.iter().map(|s| format!("Question: {}\nAnswer: {}\n\n", s.question, s.answer.trim())).collect();
    p.push_str(&format!("Question: {}\nAnswer:", item.question));
    p
}

/// How to run a task.
#[derive(Debug, Clone)]
pub struct TaskRun {
    pub shots: usize,
    pub seed: u64,
    pub limit: Option<usize>,
    pub max_tokens: usize,
    pub micro_batch: usize,
    pub show_prompts: bool,
    pub reps: usize,
}

/// A task's result.
#[derive(Debug, Clone, Serialize)]
pub struct TaskResult {
    pub task: String,
    pub kind: &'static str,
    pub shots: usize,
    pub items: usize,
    /// Multiple choice: the ending of lowest mean loss per token is right (llm.c's `acc_norm`);
    /// free-form: exact match. With its bootstrap interval over items.
    pub accuracy: Interval,
    /// Multiple choice only: the ending of lowest summed loss is right (llm.c's `acc`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy_sum: Option<f64>,
}

/// Runs a task: its items (the first `limit`), K examples each from `pool` (else from the task).
pub fn run_task(
    backend: &mut dyn Backend,
    name: &str,
    task: &Task,
    pool: Option<&Task>,
    run: &TaskRun,
) -> Result<TaskResult> {
    let n = run.limit.map_or(task.len(), |l| l.min(task.len()));
    let pool = pool.unwrap_or(task);
    let same = std::ptr::eq(pool, task);
    let mut right = Vec::with_capacity(n);
    let mut right_sum = 0usize;
    match (task, pool) {
        (Task::Choice(items), Task::Choice(examples)) => {
            for (i, item) in items.iter().enumerate().take(n) {
                let shots: Vec<&ChoiceItem> = shots_for(i, run.shots, examples.len(), same, run.seed)?
                    .into_iter()
                    .map(|j| &examples[j])
                    .collect();
                let prompt = choice_prompt(item, &shots);
                let mut context = vec![EOT];
                context.extend(gpt2_tokens(&prompt));
                let asks: Vec<Completion> = item
                    .endings
                    .iter()
                    .map(|e| Completion { context: context.clone(), completion: gpt2_tokens(&format!(" {e}")) })
                    .collect();
                let losses =
                    completion_losses(backend, &asks, run.micro_batch).with_context(|| format!("{name} item {i}"))?;
                let best = |f: &dyn Fn(&Loss) -> f64| {
                    (0..losses.len()).min_by(|&a, &b| f(&losses[a]).total_cmp(&f(&losses[b])).then(a.cmp(&b)))
                };
                let (by_mean, by_sum) = (best(&|l| l.mean()), best(&|l| l.nats));
                right.push(f64::from(by_mean == Some(item.label)));
                right_sum += usize::from(by_sum == Some(item.label));
                if run.show_prompts {
                    println!("=== {name} item {i} ({} shots)\n{prompt}", run.shots);
                    for (k, (e, l)) in item.endings.iter().zip(&losses).enumerate() {
                        let mark = if k == item.label { "*" } else { " " };
                        println!("  {mark}{k} [{:.4} mean, {:.3} sum] {e}", l.mean(), l.nats);
                    }
                    println!("  -> {}", by_mean.map_or("-".into(), |b| b.to_string()));
                }
            }
        }
        (Task::FreeForm(items), Task::FreeForm(examples)) => {
            let vocab = backend.config().vocab_size;
            if vocab != GPT2_VOCAB {
                bail!("free-form answers are decoded with GPT-2's BPE; this model's vocabulary is {vocab}");
            }
            for (i, item) in items.iter().enumerate().take(n) {
                let shots: Vec<&FreeItem> = shots_for(i, run.shots, examples.len(), same, run.seed)?
                    .into_iter()
                    .map(|j| &examples[j])
                    .collect();
                let prompt = free_prompt(item, &shots);
                let mut ids = vec![EOT];
                ids.extend(gpt2_tokens(&prompt));
                let out = greedy(backend, &ids, run.max_tokens, &mut |g| {
                    g.last() == Some(&EOT) || gpt2_decode_lossy(&g[g.len().saturating_sub(3)..]).contains("\n\n")
                })?;
                let text = gpt2_decode_lossy(&out.into_iter().filter(|&t| t != EOT).collect::<Vec<_>>());
                let answer = text.split("\n\n").next().unwrap_or_default();
                let (got, want) = (target(answer), target(&item.answer));
                right.push(f64::from(!want.is_empty() && got == want));
                if run.show_prompts {
                    println!("=== {name} item {i} ({} shots)\n{prompt}", run.shots);
                    println!("  generated: {answer:?}\n  -> {got:?} (want {want:?})");
                }
            }
        }
        _ => bail!("{name}: the examples for shots are not the same kind of task"),
    }
    let ones = vec![1.0; right.len()];
    Ok(TaskResult {
        task: name.to_string(),
        kind: if matches!(task, Task::Choice(_)) { "multiple choice" } else { "free-form" },
        shots: run.shots,
        items: right.len(),
        accuracy: bootstrap(&[&right], &ones, 1.0, run.reps, run.seed),
        accuracy_sum: matches!(task, Task::Choice(_)).then(|| right_sum as f64 / right.len().max(1) as f64),
    })
}

/// `NAME=PATH[,PATH...]` of `--eval`.
pub fn parse_set(spec: &str) -> Result<(String, Vec<String>)> {
    let (name, paths) = spec.split_once('=').with_context(|| format!("--eval {spec:?}: not NAME=PATH[,PATH...]"))?;
    let paths: Vec<String> = paths.split(',').filter(|p| !p.is_empty()).map(String::from).collect();
    if name.is_empty() || paths.is_empty() {
        bail!("--eval {spec:?}: not NAME=PATH[,PATH...]");
    }
    Ok((name.to_string(), paths))
}

/// Everything `grist eval` was asked.
#[derive(Debug, Clone)]
pub struct EvalRequest {
    pub checkpoint: String,
    pub sets: Vec<String>,
    pub tasks: Vec<PathBuf>,
    pub examples: Option<PathBuf>,
    pub work: Option<PathBuf>,
    pub run: TaskRun,
    pub seq_len: Option<usize>,
    pub split_bytes: u64,
    pub json: bool,
}

/// `grist eval`.
pub fn eval(req: &EvalRequest) -> Result<()> {
    if req.sets.is_empty() && req.tasks.is_empty() {
        bail!("nothing to evaluate: give --eval NAME=PATH and/or --task FILE");
    }
    let dir = trainer::checkpoint::resolve(Path::new(&req.checkpoint));
    let params = trainer::checkpoint::load_model_at(&dir, req.seq_len)?;
    let vocab = params.config.vocab_size;
    if vocab != GPT2_VOCAB {
        bail!("{}: a vocabulary of {vocab}; grist eval tokenizes with GPT-2's BPE ({GPT2_VOCAB})", dir.display());
    }
    let mut backend = CpuBackend::new(params);
    let boot = Boot { reps: req.run.reps, seed: req.run.seed };
    let tmp;
    let work = match &req.work {
        Some(w) => w.clone(),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    let mut sets = Vec::new();
    for spec in &req.sets {
        let (name, paths) = parse_set(spec)?;
        let held = read_heldout(&name, &paths, req.split_bytes, &work)?;
        sets.push(score_heldout(&mut backend, &held, req.run.micro_batch, boot)?);
    }
    let pool = req.examples.as_deref().map(read_task).transpose()?;
    let mut tasks = Vec::new();
    for path in &req.tasks {
        let task = read_task(path)?;
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("task").trim_end_matches(".jsonl").to_string();
        tasks.push(run_task(&mut backend, &name, &task, pool.as_ref(), &req.run)?);
    }
    if req.json {
        let doc = serde_json::json!({ "checkpoint": dir.display().to_string(), "sets": sets, "tasks": tasks });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!("checkpoint {}", dir.display());
    if !sets.is_empty() {
        println!(
            "\n{:<20} {:>6} {:>9} {:>24} {:>24}",
            "held-out set", "docs", "tokens", "loss [95% CI]", "bits/byte [95% CI]"
        );
        for s in &sets {
            println!("{:<20} {:>6} {:>9} {:>24} {:>24}", s.set, s.docs, s.tokens, ci(&s.loss), ci(&s.bits_per_byte));
        }
    }
    if !tasks.is_empty() {
        println!(
            "\n{:<20} {:<16} {:>5} {:>6} {:>24} {:>9}",
            "task", "kind", "shots", "items", "accuracy [95% CI]", "acc(sum)"
        );
        for t in &tasks {
            let sum = t.accuracy_sum.map_or("-".into(), |a| format!("{a:.4}"));
            println!("{:<20} {:<16} {:>5} {:>6} {:>24} {:>9}", t.task, t.kind, t.shots, t.items, ci(&t.accuracy), sum);
        }
    }
    Ok(())
}

/// `0.1234 [0.1200, 0.1270]`.
pub fn ci(i: &Interval) -> String {
    format!("{:.4} [{:.4}, {:.4}]", i.value, i.lo, i.hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_normalization() {
        assert_eq!(target("She pays 3 + 4 = 7.\n#### 1,072"), "1072");
        assert_eq!(target("  Paris. "), "paris");
        assert_eq!(normalize("a,  b 1,2"), "a, b 12");
    }

    #[test]
    fn shots_are_distinct_seeded_and_never_the_item_itself() {
        for i in 0..10 {
            let s = shots_for(i, 3, 10, true, 5).unwrap();
            assert_eq!(s.len(), 3);
            assert!(!s.contains(&i));
            let mut d = s.clone();
            d.sort();
            d.dedup();
            assert_eq!(d.len(), 3);
            assert_eq!(s, shots_for(i, 3, 10, true, 5).unwrap(), "deterministic");
        }
        assert!(shots_for(0, 10, 10, true, 1).is_err(), "9 others for 10 shots");
        assert_eq!(shots_for(0, 10, 10, false, 1).unwrap().len(), 10, "a separate pool may give all");
    }

    #[test]
    fn prompts_are_built_as_documented() {
        let a = ChoiceItem { ctx: "A man sits".into(), endings: vec!["down.".into(), "up.".into()], label: 0 };
        let b = ChoiceItem { ctx: "The sun".into(), endings: vec!["sets.".into(), "eats.".into()], label: 0 };
        assert_eq!(choice_prompt(&a, &[]), "A man sits");
        assert_eq!(choice_prompt(&a, &[&b, &b]), "The sun sets.\n\nThe sun sets.\n\nA man sits");
        let q = FreeItem { question: "2+2?".into(), answer: "4\n#### 4".into() };
        let r = FreeItem { question: "3+3?".into(), answer: "6".into() };
        assert_eq!(free_prompt(&r, &[&q]), "Question: 2+2?\nAnswer: 4\n#### 4\n\nQuestion: 3+3?\nAnswer:");
    }
}
