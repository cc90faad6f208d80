//! Checkpoints that Hugging Face `transformers` loads as they are, plus the training state for an
//! exact resume. A checkpoint is a directory:
//!
//! - `model.safetensors`: the weights under GPT-2's names and layouts (`transformer.wte.weight`
//!   (V, C) without the vocabulary padding, `transformer.h.0.attn.c_attn.weight` in Conv1D's
//!   (in, out) layout, ...); the output embedding is tied to `wte`, so there is no `lm_head`;
//! - `config.json`: a `GPT2Config` (`GPT2LMHeadModel.from_pretrained(dir)` reads both);
//! - `optimizer.safetensors`: AdamW's moments in grist's flat parameter layout;
//! - `state.json`: the step, tokens seen, data cursor and the training config.
//!
//! A checkpoint is written into `NAME.tmp`, synced, then renamed, so a crash leaves either the
//! whole checkpoint or none; `latest` names the newest and is replaced by a rename too.
//!
//! safetensors: an 8-byte little-endian header length, a JSON header (name -> dtype, shape,
//! byte offsets; `__metadata__`), then the data; written and read here directly.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::model::{GptConfig, Param, Params};

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: {msg}")]
    Format { path: String, msg: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io { path: path.display().to_string(), source }
}

fn format_err(path: &Path, msg: impl Into<String>) -> CheckpointError {
    CheckpointError::Format { path: path.display().to_string(), msg: msg.into() }
}

/// A named f32 tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Writes f32 tensors as a safetensors file (header padded to 8 bytes, as the reference
/// writer does).
pub fn write_safetensors(
    path: &Path,
    tensors: &[Tensor],
    metadata: &BTreeMap<String, String>,
) -> Result<(), CheckpointError> {
    let views: Vec<(&str, &[usize], &[f32])> =
        tensors.iter().map(|t| (t.name.as_str(), t.shape.as_slice(), t.data.as_slice())).collect();
    write_views(path, &views, metadata)
}

/// [`write_safetensors`] over borrowed tensors (name, shape, data): nothing is copied but one
/// 64 KiB buffer at a time, so saving a model costs no second copy of its moments.
fn write_views(
    path: &Path,
    tensors: &[(&str, &[usize], &[f32])],
    metadata: &BTreeMap<String, String>,
) -> Result<(), CheckpointError> {
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), json!(metadata));
    }
    let mut at = 0usize;
    for (name, shape, data) in tensors {
        if shape.iter().product::<usize>() != data.len() {
            return Err(format_err(path, format!("{name}: shape {shape:?} does not hold {} values", data.len())));
        }
        let end = at + data.len() * 4;
        header.insert(name.to_string(), json!({"dtype": "F32", "shape": shape, "data_offsets": [at, end]}));
        at = end;
    }
    let mut text = serde_json::to_vec(&Value::Object(header)).map_err(|e| format_err(path, e.to_string()))?;
    while text.len() % 8 != 0 {
        text.push(b' ');
    }
    let file = std::fs::File::create(path).map_err(io(path))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 16, file);
    w.write_all(&(text.len() as u64).to_le_bytes()).map_err(io(path))?;
    w.write_all(&text).map_err(io(path))?;
    for (_, _, data) in tensors {
        for x in *data {
            w.write_all(&x.to_le_bytes()).map_err(io(path))?;
        }
    }
    let file = w.into_inner().map_err(|e| io(path)(e.into_error()))?;
    file.sync_all().map_err(io(path))
}

/// Reads every tensor of a safetensors file (F32, and F16 or BF16 widened to f32, as Hugging Face
/// checkpoints may store them), checking the header's offsets against the file.
pub fn read_safetensors(path: &Path) -> Result<(Vec<Tensor>, BTreeMap<String, String>), CheckpointError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let n =
        bytes.get(..8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default())).ok_or_else(|| {
            format_err(path, format!("{} bytes: too short for a safetensors header length", bytes.len()))
        })? as usize;
    let body = 8usize.checked_add(n).filter(|&e| e <= bytes.len()).ok_or_else(|| {
        format_err(path, format!("header of {n} bytes at offset 8 runs past the end ({} bytes)", bytes.len()))
    })?;
    let header: serde_json::Map<String, Value> =
        serde_json::from_slice(&bytes[8..body]).map_err(|e| format_err(path, format!("header at offset 8: {e}")))?;
    let data = &bytes[body..];
    let mut metadata = BTreeMap::new();
    let mut tensors = Vec::new();
    for (name, v) in header {
        if name == "__metadata__" {
            for (k, x) in v.as_object().into_iter().flatten() {
                metadata.insert(k.clone(), x.as_str().unwrap_or_default().to_string());
            }
            continue;
        }
        let dtype = v["dtype"].as_str().unwrap_or_default();
        let width = match dtype {
            "F32" => 4,
            "F16" | "BF16" => 2,
            _ => return Err(format_err(path, format!("{name}: dtype {dtype:?}; F32, F16 and BF16 are read"))),
        };
        let shape: Vec<usize> =
            v["shape"].as_array().into_iter().flatten().filter_map(|x| x.as_u64()).map(|x| x as usize).collect();
        let offs: Vec<usize> =
            v["data_offsets"].as_array().into_iter().flatten().filter_map(|x| x.as_u64()).map(|x| x as usize).collect();
        let [a, b] = offs[..] else {
            return Err(format_err(path, format!("{name}: data_offsets missing")));
        };
        let count = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).and_then(|n| n.checked_mul(width));
        if a > b || b > data.len() || Some(b - a) != count {
            return Err(format_err(
                path,
                format!("{name}: bytes {a}..{b} of {} do not hold shape {shape:?}", data.len()),
            ));
        }
        let values = match dtype {
            "F32" => data[a..b].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            "BF16" => data[a..b]
                .chunks_exact(2)
                .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
                .collect(),
            _ => data[a..b].chunks_exact(2).map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect(),
        };
        tensors.push(Tensor { name, shape, data: values });
    }
    Ok((tensors, metadata))
}

/// An IEEE half-precision value as f32 (exact: every f16 is an f32).
fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        // Subnormal: man x 2^-24, renormalized.
        (0, m) => {
            let x = m as f32 * 2f32.powi(-24);
            return if sign != 0 { -x } else { x };
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, m) => sign | 0x7fc0_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// (out, in) row-major -> (in, out) row-major.
fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; x.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = x[r * cols + c];
        }
    }
    out
}

/// The Hugging Face GPT-2 tensors of `params`: name, shape, and whether grist's (out, in)
/// matrix is transposed into Conv1D's (in, out).
fn hf_layout(cfg: &GptConfig) -> Vec<(String, Param, usize, Vec<usize>, bool)> {
    let (c, t, v) = (cfg.channels, cfg.max_seq_len, cfg.vocab_size);
    let mut out = vec![
        ("transformer.wte.weight".to_string(), Param::Wte, 0, vec![v, c], false),
        ("transformer.wpe.weight".to_string(), Param::Wpe, 0, vec![t, c], false),
    ];
    for i in 0..cfg.num_layers {
        let h = |s: &str| format!("transformer.h.{i}.{s}");
        out.extend([
            (h("ln_1.weight"), Param::Ln1W, i, vec![c], false),
            (h("ln_1.bias"), Param::Ln1B, i, vec![c], false),
            (h("attn.c_attn.weight"), Param::QkvW, i, vec![c, 3 * c], true),
            (h("attn.c_attn.bias"), Param::QkvB, i, vec![3 * c], false),
            (h("attn.c_proj.weight"), Param::AttProjW, i, vec![c, c], true),
            (h("attn.c_proj.bias"), Param::AttProjB, i, vec![c], false),
            (h("ln_2.weight"), Param::Ln2W, i, vec![c], false),
            (h("ln_2.bias"), Param::Ln2B, i, vec![c], false),
            (h("mlp.c_fc.weight"), Param::FcW, i, vec![c, 4 * c], true),
            (h("mlp.c_fc.bias"), Param::FcB, i, vec![4 * c], false),
            (h("mlp.c_proj.weight"), Param::FcProjW, i, vec![4 * c, c], true),
            (h("mlp.c_proj.bias"), Param::FcProjB, i, vec![c], false),
        ]);
    }
    out.push(("transformer.ln_f.weight".to_string(), Param::LnfW, 0, vec![c], false));
    out.push(("transformer.ln_f.bias".to_string(), Param::LnfB, 0, vec![c], false));
    out
}

/// `params` as Hugging Face GPT-2 tensors.
pub fn to_hf(params: &Params) -> Vec<Tensor> {
    hf_layout(&params.config)
        .into_iter()
        .map(|(name, p, layer, shape, conv1d)| {
            let n: usize = shape.iter().product();
            let data = &params.get(p)[layer * n..(layer + 1) * n];
            let data = if conv1d { transpose(data, shape[1], shape[0]) } else { data.to_vec() };
            Tensor { name, shape, data }
        })
        .collect()
}

/// Parameters from Hugging Face GPT-2 tensors (the vocabulary padding left at zero).
pub fn from_hf(cfg: GptConfig, tensors: &[Tensor], path: &Path) -> Result<Params, CheckpointError> {
    // `GPT2LMHeadModel` saves `transformer.h.0...`, `GPT2Model` (and the `gpt2` repository on the
    // Hub) `h.0...`; both are read. Other tensors (`lm_head.weight`, tied to `wte`; the attention
    // masks `attn.bias` of older versions) are not parameters and are left.
    let by_name: BTreeMap<&str, &Tensor> =
        tensors.iter().map(|t| (t.name.strip_prefix("transformer.").unwrap_or(&t.name), t)).collect();
    let mut p = Params::zeros(cfg);
    for (name, param, layer, shape, conv1d) in hf_layout(&cfg) {
        let short = name.strip_prefix("transformer.").unwrap_or(&name);
        let t = by_name.get(short).ok_or_else(|| format_err(path, format!("tensor {name} missing")))?;
        if t.shape != shape {
            return Err(format_err(path, format!("{name}: shape {:?}, the config wants {shape:?}", t.shape)));
        }
        let n: usize = shape.iter().product();
        let data = if conv1d { transpose(&t.data, shape[0], shape[1]) } else { t.data.clone() };
        p.get_mut(param)[layer * n..(layer + 1) * n].copy_from_slice(&data);
    }
    Ok(p)
}

/// A `GPT2Config` for `cfg`, with grist's own fields beside it (ignored by `transformers`).
pub fn hf_config(cfg: &GptConfig) -> Value {
    json!({
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.max_seq_len,
        "n_ctx": cfg.max_seq_len,
        "n_embd": cfg.channels,
        "n_layer": cfg.num_layers,
        "n_head": cfg.num_heads,
        "n_inner": null,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-5,
        "initializer_range": 0.02,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "bos_token_id": 50256,
        "eos_token_id": 50256,
        "tie_word_embeddings": true,
        "torch_dtype": "float32",
        "grist_padded_vocab_size": cfg.padded_vocab_size,
        "grist_attention_band": cfg.attention_band,
    })
}

/// The model config of a checkpoint's `config.json`.
pub fn config_from_hf(v: &Value, path: &Path) -> Result<GptConfig, CheckpointError> {
    let get = |k: &str| {
        v[k].as_u64().map(|x| x as usize).ok_or_else(|| format_err(path, format!("config.json: {k} missing")))
    };
    // The model grist computes: GPT-2's tanh GELU and an MLP of 4C.
    if let Some(act) = v["activation_function"].as_str().filter(|a| *a != "gelu_new") {
        return Err(format_err(
            path,
            format!("config.json: activation_function {act:?}; grist's GPT-2 computes \"gelu_new\""),
        ));
    }
    let (vocab, t, c, l, h) =
        (get("vocab_size")?, get("n_positions")?, get("n_embd")?, get("n_layer")?, get("n_head")?);
    let padded = v["grist_padded_vocab_size"].as_u64().map_or(vocab.div_ceil(128) * 128, |x| x as usize);
    let mut cfg = GptConfig::new(t, vocab, l, h, c, 1);
    cfg.padded_vocab_size = padded;
    cfg.attention_band = v["grist_attention_band"].as_u64().map(|x| x as usize);
    if let Some(inner) = v["n_inner"].as_u64().filter(|&n| n as usize != 4 * c) {
        return Err(format_err(path, format!("config.json: n_inner {inner}; grist's GPT-2 has an MLP of 4 x n_embd")));
    }
    cfg.validate().map_err(|e| format_err(path, e))?;
    Ok(cfg)
}

/// What a checkpoint holds besides the weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Saved<S> {
    pub params: Params,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    /// Everything else of the training state (`train::TrainState`: step, tokens, cursor,
    /// config), written as `state.json`.
    pub state: S,
}

fn write_json<T: serde::Serialize>(path: &Path, v: &T) -> Result<(), CheckpointError> {
    let text = serde_json::to_string_pretty(v).map_err(|e| format_err(path, e.to_string()))?;
    let mut f = std::fs::File::create(path).map_err(io(path))?;
    f.write_all(text.as_bytes()).and_then(|_| f.sync_all()).map_err(io(path))
}

pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, CheckpointError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| format_err(path, format!("line {}, column {}: {e}", e.line(), e.column())))
}

/// The files of a checkpoint, each checked on resume against `files.json` (written last).
pub const PARTS: [&str; 4] = ["model.safetensors", "config.json", "optimizer.safetensors", "state.json"];
/// A checkpoint's own manifest: every part's size and xxh3-64.
pub const FILES: &str = "files.json";

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct PartEntry {
    path: String,
    bytes: u64,
    xxh3: String,
}

fn part_entry(dir: &Path, name: &str) -> Result<PartEntry, CheckpointError> {
    let path = dir.join(name);
    let (bytes, xxh3) =
        shards::checksum::file_checksum(&shards::Loc::local(&path)).map_err(|e| format_err(&path, e.to_string()))?;
    Ok(PartEntry { path: name.to_string(), bytes, xxh3 })
}

/// Makes a directory's entries (a rename, a new file) durable. Best effort where a filesystem
/// cannot open a directory.
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// The step of a checkpoint directory name `step-NNNNNNNN`.
pub fn step_of(name: &str) -> Option<u64> {
    name.strip_prefix("step-")?.parse().ok()
}

/// Writes checkpoint `name` (`step-NNNNNNNN`) into `dir` as SQLite or PostgreSQL would: every
/// file written and fsynced in `NAME.tmp`, its `files.json` (sizes, checksums) last, the folder
/// fsynced, renamed into place, the parent fsynced; then `latest` replaced the same way. A
/// checkpoint of the same name already there is moved aside, not deleted, until the new one is
/// in place. Retention keeps the `keep` newest whole checkpoints up to this one and never
/// deletes one newer than it.
pub fn save<S: serde::Serialize>(
    dir: &Path,
    name: &str,
    saved: &Saved<S>,
    keep: usize,
) -> Result<PathBuf, CheckpointError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let this_step = step_of(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let cfg = &saved.params.config;
    let meta = BTreeMap::from([("format".to_string(), "pt".to_string())]);
    write_safetensors(&tmp.join("model.safetensors"), &to_hf(&saved.params), &meta)?;
    write_json(&tmp.join("config.json"), &hf_config(cfg))?;
    let n = [saved.m.len()];
    let moments = [("adam.m", &n[..], &saved.m[..]), ("adam.v", &n[..], &saved.v[..])];
    write_views(&tmp.join("optimizer.safetensors"), &moments, &BTreeMap::new())?;
    write_json(&tmp.join("state.json"), &saved.state)?;
    let parts = PARTS.iter().map(|p| part_entry(&tmp, p)).collect::<Result<Vec<_>, _>>()?;
    write_json(&tmp.join(FILES), &parts)?;
    sync_dir(&tmp);
    let fin = dir.join(name);
    let aside = dir.join(format!("{name}.replaced.tmp"));
    let replaced = fin.exists();
    if replaced {
        let _ = std::fs::remove_dir_all(&aside);
        std::fs::rename(&fin, &aside).map_err(io(&fin))?;
    }
    std::fs::rename(&tmp, &fin).map_err(io(&fin))?;
    sync_dir(dir);
    if replaced {
        std::fs::remove_dir_all(&aside).map_err(io(&aside))?;
    }
    shards::Loc::local(dir.join("latest")).write_atomic(name.as_bytes()).map_err(|e| format_err(dir, e.to_string()))?;
    // Retention: whole or not, only checkpoints older than this one are candidates.
    let mut older: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .filter_map(|p| {
            let step = step_of(p.file_name()?.to_str()?)?;
            this_step.is_some_and(|t| step < t).then_some((step, p))
        })
        .collect();
    older.sort();
    let drop = older.len().saturating_sub(keep.max(1) - 1);
    for (_, p) in &older[..drop] {
        std::fs::remove_dir_all(p).map_err(io(p))?;
    }
    Ok(fin)
}

/// Checks a checkpoint directory is whole: every part present with the size and checksum its
/// `files.json` records (a checkpoint from before `files.json`: every part present and non-empty).
pub fn validate(ckpt: &Path) -> Result<(), String> {
    let files = ckpt.join(FILES);
    if !files.exists() {
        for p in PARTS {
            match std::fs::metadata(ckpt.join(p)) {
                Ok(m) if m.len() > 0 => {}
                _ => return Err(format!("{p} missing or empty (and no {FILES})")),
            }
        }
        return Ok(());
    }
    let parts: Vec<PartEntry> = read_json(&files).map_err(|e| e.to_string())?;
    for want in PARTS {
        if !parts.iter().any(|p| p.path == want) {
            return Err(format!("{FILES} does not list {want}"));
        }
    }
    for p in &parts {
        if p.path.contains('/') || p.path.contains("..") {
            return Err(format!("{FILES} names {:?}, outside the checkpoint", p.path));
        }
        let got = part_entry(ckpt, &p.path).map_err(|_| format!("{} missing or unreadable", p.path))?;
        if got.bytes != p.bytes {
            return Err(format!("{}: {} bytes, {FILES} records {}", p.path, got.bytes, p.bytes));
        }
        if got.xxh3 != p.xxh3 {
            return Err(format!("{}: checksum {} != {} recorded in {FILES}", p.path, got.xxh3, p.xxh3));
        }
    }
    Ok(())
}

/// Where a run resumes: the newest whole checkpoint, and a note when `latest` said otherwise.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resume {
    pub path: Option<PathBuf>,
    /// Why the checkpoint resumed from is not the one `latest` names (or what was wrong).
    pub note: Option<String>,
}

/// Finds the checkpoint to resume from in `dir`: the newest whole one (validated), whatever
/// `latest` says: `latest` empty, naming a missing or partial checkpoint, or naming an older
/// step than the newest whole one is reported in the note. An error when checkpoints exist but
/// none is whole, rather than starting over from step 0.
pub fn resume_point(dir: &Path) -> Result<Resume, CheckpointError> {
    let mut steps: Vec<(u64, PathBuf)> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .filter_map(|p| Some((step_of(p.file_name()?.to_str()?)?, p)))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io(dir)(e)),
    };
    steps.sort();
    let named = std::fs::read_to_string(dir.join("latest")).ok().map(|s| s.trim().to_string());
    let mut broken = Vec::new();
    let mut newest = None;
    for (_, p) in steps.iter().rev() {
        match validate(p) {
            Ok(()) => {
                newest = Some(p.clone());
                break;
            }
            Err(why) => broken.push(format!("{}: {why}", p.display())),
        }
    }
    let Some(path) = newest else {
        if !broken.is_empty() {
            return Err(format_err(
                dir,
                format!(
                    "no whole checkpoint to resume from:\n  {}\nhint: restore a checkpoint, or start over with `grist train --fresh` (which deletes these)",
                    broken.join("\n  ")
                ),
            ));
        }
        let note = named
            .filter(|n| !n.is_empty())
            .map(|n| format!("{}/latest names {n}, which does not exist: starting from step 0", dir.display()));
        return Ok(Resume { path: None, note });
    };
    let here = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    let why = match named.as_deref() {
        None => Some("is missing".to_string()),
        Some("") => Some("is empty".to_string()),
        Some(n) if n == here => None,
        Some(n) => match step_of(n) {
            Some(s) if s < step_of(&here).unwrap_or(0) && validate(&dir.join(n)).is_ok() => {
                Some(format!("names {n}, older than the newest whole checkpoint"))
            }
            _ => Some(format!(
                "names {n}, which is missing or partial ({})",
                validate(&dir.join(n)).err().unwrap_or_else(|| "not a checkpoint".into())
            )),
        },
    };
    let mut note = why.map(|w| format!("{}/latest {w}: resuming from {here}", dir.display()));
    if !broken.is_empty() {
        let skipped = format!("skipped newer checkpoints that are not whole: {}", broken.join("; "));
        note = Some(note.map_or(skipped.clone(), |n| format!("{n}; {skipped}")));
    }
    Ok(Resume { path: Some(path), note })
}

/// The checkpoint a path names: a checkpoint directory as it is, or a training output's (or a
/// checkpoints folder's) newest whole checkpoint.
pub fn resolve(path: &Path) -> PathBuf {
    latest(path).or_else(|| latest(&path.join("checkpoints"))).unwrap_or_else(|| path.to_path_buf())
}

/// The newest whole checkpoint in `dir`, if any (see [`resume_point`]).
pub fn latest(dir: &Path) -> Option<PathBuf> {
    resume_point(dir).ok()?.path
}

/// The model of a checkpoint directory: grist's, or any GPT-2 checkpoint in Hugging Face's
/// layout (`config.json` and `model.safetensors`).
pub fn load_model(ckpt: &Path) -> Result<Params, CheckpointError> {
    load_model_at(ckpt, None)
}

/// [`load_model`] with the context cut to `seq_len` positions (the first rows of the position
/// table; a model trained at T = 1024 fine-tunes at a shorter T). A longer context is refused:
/// its positions were never trained.
pub fn load_model_at(ckpt: &Path, seq_len: Option<usize>) -> Result<Params, CheckpointError> {
    let mut cfg = config_from_hf(&read_json(&ckpt.join("config.json"))?, &ckpt.join("config.json"))?;
    let path = ckpt.join("model.safetensors");
    if !path.exists() && ckpt.join("pytorch_model.bin").exists() {
        return Err(format_err(
            &path,
            "missing; this checkpoint has only pytorch_model.bin (a pickle, not read)\nhint: save it as safetensors: GPT2LMHeadModel.from_pretrained(dir).save_pretrained(dir, safe_serialization=True)",
        ));
    }
    let (mut tensors, _) = read_safetensors(&path)?;
    if let Some(t) = seq_len.filter(|&t| t != cfg.max_seq_len) {
        if t == 0 || t > cfg.max_seq_len {
            return Err(format_err(&path, format!("seq_len {t}: the model has {} positions", cfg.max_seq_len)));
        }
        for x in tensors.iter_mut().filter(|x| x.name.ends_with("wpe.weight") && x.shape.len() == 2) {
            x.data.truncate(t * x.shape[1]);
            x.shape[0] = t;
        }
        cfg.max_seq_len = t;
    }
    from_hf(cfg, &tensors, &path)
}

/// Reads a whole checkpoint directory.
pub fn load<S: serde::de::DeserializeOwned>(ckpt: &Path) -> Result<Saved<S>, CheckpointError> {
    let params = load_model(ckpt)?;
    let path = ckpt.join("optimizer.safetensors");
    let (tensors, _) = read_safetensors(&path)?;
    let get = |k: &str| {
        tensors
            .iter()
            .find(|t| t.name == k)
            .map(|t| t.data.clone())
            .ok_or_else(|| format_err(&path, format!("{k} missing")))
    };
    let (m, v) = (get("adam.m")?, get("adam.v")?);
    if m.len() != params.data.len() || v.len() != params.data.len() {
        return Err(format_err(&path, format!("moments of {} values for {} parameters", m.len(), params.data.len())));
    }
    Ok(Saved { params, m, v, state: read_json(&ckpt.join("state.json"))? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_round_trips_exactly_and_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = GptConfig { attention_band: Some(4), ..GptConfig::new(16, 100, 2, 2, 8, 64) };
        let params = Params::gpt2_init(cfg, 3);
        let n = params.data.len();
        let saved = Saved {
            params: params.clone(),
            m: (0..n).map(|i| i as f32 * 1e-3).collect(),
            v: (0..n).map(|i| i as f32 * 1e-6).collect(),
            state: json!({"step": 7, "cursor": {"epoch": 1, "offset": 3}}),
        };
        for step in [1, 2, 3] {
            save(dir.path(), &format!("step-{step:08}"), &saved, 2).unwrap();
        }
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("step-"))
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        let last = latest(dir.path()).unwrap();
        assert!(last.ends_with("step-00000003"));
        let back = load(&last).unwrap();
        assert_eq!(back, saved, "parameters (through the Hugging Face layout), moments and state are exact");
        // Hugging Face names and Conv1D layout: c_attn.weight is (C, 3C), the transpose of grist's.
        let (tensors, meta) = read_safetensors(&last.join("model.safetensors")).unwrap();
        assert_eq!(meta["format"], "pt");
        let attn = tensors.iter().find(|t| t.name == "transformer.h.1.attn.c_attn.weight").unwrap();
        assert_eq!(attn.shape, [8, 24]);
        let ours = &params.get(Param::QkvW)[3 * 8 * 8..];
        assert_eq!(attn.data[2 * 24 + 5], ours[5 * 8 + 2], "element (in 2, out 5)");
        assert!(tensors.iter().all(|t| !t.name.starts_with("lm_head")));
        assert_eq!(tensors.iter().find(|t| t.name == "transformer.wte.weight").unwrap().shape, [100, 8], "no padding");
    }

    #[test]
    fn hugging_face_layouts_load_prefixless_half_precision_with_extra_tensors() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = GptConfig::new(8, 100, 2, 2, 8, 64);
        let mut params = Params::gpt2_init(cfg, 5);
        // Values a BF16 file holds exactly.
        params.data.iter_mut().for_each(|x| *x = f32::from_bits(x.to_bits() & 0xffff_0000));
        // `GPT2Model` names (no `transformer.`), BF16, plus tensors that are not parameters.
        let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = to_hf(&params)
            .into_iter()
            .map(|t| (t.name.trim_start_matches("transformer.").to_string(), t.shape, t.data))
            .collect();
        tensors.push(("h.0.attn.bias".into(), vec![1, 1, 8, 8], vec![1.0; 64]));
        let wte = tensors[0].2.clone();
        tensors.push(("lm_head.weight".into(), vec![100, 8], wte));
        let (mut header, mut data) = (serde_json::Map::new(), Vec::new());
        for (name, shape, values) in &tensors {
            let a = data.len();
            for v in values {
                data.extend_from_slice(&((v.to_bits() >> 16) as u16).to_le_bytes());
            }
            header.insert(name.clone(), json!({"dtype": "BF16", "shape": shape, "data_offsets": [a, data.len()]}));
        }
        let head = serde_json::to_vec(&Value::Object(header)).unwrap();
        let mut file = (head.len() as u64).to_le_bytes().to_vec();
        file.extend(head);
        file.extend(data);
        std::fs::write(dir.path().join("model.safetensors"), file).unwrap();
        let mut config = hf_config(&cfg);
        config.as_object_mut().unwrap().retain(|k, _| !k.starts_with("grist_"));
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        assert_eq!(load_model(dir.path()).unwrap(), params);
        // A context cut keeps the first rows of the position table.
        let short = load_model_at(dir.path(), Some(4)).unwrap();
        assert_eq!(short.get(Param::Wpe), &params.get(Param::Wpe)[..4 * 8]);
        assert!(load_model_at(dir.path(), Some(9)).unwrap_err().to_string().contains("8 positions"));
        // Another activation is another model: refused.
        config["activation_function"] = json!("relu");
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        assert!(load_model(dir.path()).unwrap_err().to_string().contains("relu"));
    }

    #[test]
    fn half_precision_values_widen_exactly() {
        let cases = [(0x3c00, 1.0), (0xc000, -2.0), (0x7bff, 65504.0), (0x0001, 2f32.powi(-24)), (0x8000, -0.0)];
        for (h, want) in cases {
            assert_eq!(f16_to_f32(h).to_bits(), f32::to_bits(want), "{h:#06x}");
        }
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(f16_to_f32(0x83ff), -1023.0 * 2f32.powi(-24));
    }

    #[test]
    fn damaged_files_are_refused_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.safetensors");
        let t = [Tensor { name: "a".into(), shape: vec![2, 3], data: vec![1.0; 6] }];
        write_safetensors(&p, &t, &BTreeMap::new()).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(read_safetensors(&p).unwrap().0, t);
        std::fs::write(&p, &bytes[..bytes.len() - 4]).unwrap();
        let e = read_safetensors(&p).unwrap_err().to_string();
        assert!(e.contains("x.safetensors") && e.contains("do not hold"), "{e}");
        std::fs::write(&p, &bytes[..5]).unwrap();
        assert!(read_safetensors(&p).unwrap_err().to_string().contains("too short"));
        let mut big = bytes.clone();
        big[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
        std::fs::write(&p, &big).unwrap();
        assert!(read_safetensors(&p).unwrap_err().to_string().contains("runs past the end"));
    }

    fn small() -> Saved<Value> {
        let params = Params::gpt2_init(GptConfig::new(8, 50, 1, 2, 8, 64), 1);
        let n = params.data.len();
        Saved { params, m: vec![0.5; n], v: vec![0.25; n], state: json!({"step": 1}) }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("step-"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_bad_latest_resumes_from_the_newest_whole_checkpoint_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for step in [10, 20, 30] {
            save(d, &format!("step-{step:08}"), &small(), 5).unwrap();
        }
        let at = |r: &Resume| r.path.as_ref().unwrap().file_name().unwrap().to_string_lossy().into_owned();
        let r = resume_point(d).unwrap();
        assert_eq!((at(&r), r.note), ("step-00000030".into(), None));
        // Empty, naming a missing checkpoint, naming an older one: the newest whole, with a note.
        for (latest, says) in [("", "is empty"), ("step-00000099", "which is missing"), ("step-00000010", "older than")]
        {
            std::fs::write(d.join("latest"), latest).unwrap();
            let r = resume_point(d).unwrap();
            assert_eq!(at(&r), "step-00000030");
            let note = r.note.unwrap();
            assert!(note.contains(says) && note.contains("resuming from step-00000030"), "{note}");
        }
        std::fs::remove_file(d.join("latest")).unwrap();
        assert!(resume_point(d).unwrap().note.unwrap().contains("is missing"));
        // The newest corrupted with its size unchanged: the checksum finds it; 20 is used.
        let m = d.join("step-00000030/optimizer.safetensors");
        let mut bytes = std::fs::read(&m).unwrap();
        let k = bytes.len() - 3;
        bytes[k] ^= 0xff;
        std::fs::write(&m, &bytes).unwrap();
        std::fs::write(d.join("latest"), "step-00000030").unwrap();
        let r = resume_point(d).unwrap();
        assert_eq!(at(&r), "step-00000020");
        let note = r.note.unwrap();
        assert!(note.contains("checksum") && note.contains("optimizer.safetensors"), "{note}");
        // A partial one (a part missing) is skipped too.
        std::fs::remove_file(d.join("step-00000020/state.json")).unwrap();
        assert_eq!(at(&resume_point(d).unwrap()), "step-00000010");
        // None whole: an error naming each, never a silent start from step 0.
        std::fs::remove_file(d.join("step-00000010/model.safetensors")).unwrap();
        let e = resume_point(d).unwrap_err().to_string();
        assert!(e.contains("no whole checkpoint") && e.contains("step-00000010") && e.contains("--fresh"), "{e}");
        assert_eq!(latest(d), None);
    }

    #[test]
    fn retention_never_deletes_a_newer_checkpoint_and_a_rewrite_replaces_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for step in [10, 20, 30, 40] {
            save(d, &format!("step-{step:08}"), &small(), 2).unwrap();
        }
        assert_eq!(names(d), ["step-00000030", "step-00000040"]);
        // Resumed from an older state (the user restored 25): writing 25 deletes only older ones.
        save(d, "step-00000025", &small(), 2).unwrap();
        assert_eq!(names(d), ["step-00000025", "step-00000030", "step-00000040"]);
        assert_eq!(std::fs::read_to_string(d.join("latest")).unwrap(), "step-00000025");
        // Writing a name that exists replaces it whole, and leaves no temporary folder.
        let mut other = small();
        other.m[0] = 9.0;
        save(d, "step-00000040", &other, 2).unwrap();
        assert_eq!(load::<Value>(&d.join("step-00000040")).unwrap().m[0], 9.0);
        assert!(validate(&d.join("step-00000040")).is_ok());
        assert!(std::fs::read_dir(d).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".tmp")));
    }
}
