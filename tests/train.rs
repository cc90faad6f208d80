//! `grist train` end to end: exact resume after SIGKILL (also on another thread count), the NaN
//! guard, refusing a changed config, gradient accumulation, `grist generate`, and (when Python
//! with `transformers` is available) Hugging Face loading the checkpoint with the same logits.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{grist, ok, stderr};
use shards::Loc;
use shards::tokens::{TokenWidth, write_tokens};

const VOCAB: u32 = 2048;

/// Token shards with structure to learn: runs of an arithmetic progression with a noisy step,
/// over the first 256 ids of the vocabulary.
const USED: u32 = 256;
fn write_data(dir: &Path) {
    let mut state = 12345u64;
    let mut next = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) as u32
    };
    for (split, shards, len) in [("train", 3, 12_000), ("val", 1, 3_000)] {
        std::fs::create_dir_all(dir.join(split)).unwrap();
        for s in 0..shards {
            let mut toks = Vec::with_capacity(len);
            let mut x = next() % USED;
            while toks.len() < len {
                let step = 1 + next() % 3;
                for _ in 0..(8 + next() % 24) {
                    toks.push(x);
                    x = (x + step) % USED;
                }
                x = next() % USED;
            }
            toks.truncate(len);
            write_tokens(&Loc::local(dir.join(split).join(format!("{split}-{s}.bin"))), TokenWidth::U16, &toks)
                .unwrap();
        }
    }
}

/// A config over the data in `dir`; `extra` lines replace the base's keys of the same name.
fn config(dir: &Path, out: &Path, extra: &str) -> PathBuf {
    let base = format!(
        r#"model = "custom"
layers = 2
heads = 4
channels = 128
seq_len = 64
vocab_size = {VOCAB}
train_data = "{train}"
val_data = "{val}"
out = "{out}"
seed = 5
micro_batch = 4
batch_size = 8
ramp_start = 4
ramp_tokens = 4000
lr = 3e-3
warmup_tokens = 2000
total_tokens = 200000
steps = 40
eval_every = 10
eval_tokens = 1024
checkpoint_every = 5
keep_checkpoints = 2
"#,
        train = dir.join("train").display(),
        val = dir.join("val").display(),
        out = out.display()
    );
    let key = |l: &str| l.split('=').next().unwrap_or("").trim().to_string();
    let replaced: Vec<String> = extra.lines().map(key).collect();
    let mut text: String = base.lines().filter(|l| !replaced.contains(&key(l))).map(|l| format!("{l}\n")).collect();
    text.push_str(extra);
    let path = out.with_extension("toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The metrics lines without the timing fields (tokens/s, MFU, elapsed).
fn trajectory(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            for k in ["tokens_per_s", "mfu", "elapsed_s"] {
                v.as_object_mut().unwrap().remove(k);
            }
            v.to_string()
        })
        .collect()
}

fn train(cfg: &Path, args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut all = vec!["-q", "train", "--config", cfg.to_str().unwrap()];
    all.extend_from_slice(args);
    grist(&all, envs)
}

/// `grist train` as `np` ranks under Open MPI's `mpirun`, one thread each.
#[cfg(feature = "mpi")]
fn mpirun(np: usize, cfg: &Path, envs: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = std::process::Command::new("mpirun");
    cmd.args(["--allow-run-as-root", "--oversubscribe", "-np", &np.to_string(), "-x", "RAYON_NUM_THREADS=1"]);
    for (k, v) in envs {
        cmd.args(["-x", &format!("{k}={v}")]);
    }
    cmd.args([env!("CARGO_BIN_EXE_grist"), "-q", "train", "--config", cfg.to_str().unwrap()]);
    cmd.env_remove("RUST_LOG").output().expect("mpirun (apt-get install openmpi-bin)")
}

/// Each metrics line's step, kind and loss (validation loss for evaluations).
#[cfg(feature = "mpi")]
fn losses(out: &Path) -> Vec<(String, f64)> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let x = v.get("val_loss").or(v.get("loss")).and_then(|x| x.as_f64()).unwrap();
            let kind = if v.get("val_loss").is_some() { "val" } else { "train" };
            (format!("{kind} step {} lr {}", v["step"], v.get("lr").map(|l| l.to_string()).unwrap_or_default()), x)
        })
        .collect()
}

#[cfg(feature = "mpi")]
fn close(got: &[(String, f64)], want: &[(String, f64)], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for ((n, a), (m, b)) in got.iter().zip(want) {
        assert_eq!(n, m, "{what}");
        assert!((a - b).abs() <= 2e-4 * b.abs(), "{what}, {n}: {a} vs {b}");
    }
}

#[cfg(feature = "mpi")]
#[test]
fn mpirun_ranks_train_resume_on_other_world_sizes_and_stop_when_one_dies() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_data(d);
    // Accumulation (6 micro-batches a step), GPT-3's batch ramp (from 4 sequences), clipping.
    let setup = "steps = 8\neval_every = 4\ncheckpoint_every = 4\nbatch_size = 12\nmicro_batch = 2\n";
    let one = d.join("one");
    ok(train(&config(d, &one, setup), &[], &[("RAYON_NUM_THREADS", "2")]));
    let want = losses(&one);
    assert_eq!(want.len(), 8 + 2);

    let two = d.join("two");
    let o = mpirun(2, &config(d, &two, setup), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = losses(&two);
    assert_eq!(got[0], want[0], "the first step is one process's, bit for bit");
    close(&got, &want, "2 ranks");
    // Again, with the collectives cut into rounds of 1,000 elements: the same sums, bit for bit.
    let again = d.join("again");
    assert!(mpirun(2, &config(d, &again, setup), &[("GRIST_TEST_MPI_ROUND_ELEMENTS", "1000")]).status.success());
    assert_eq!(losses(&again), got, "2 ranks again: the same bits");

    // 2 ranks to step 4, then 1 process to step 6, then 3 ranks to step 8.
    let hop = d.join("hop");
    assert!(mpirun(2, &config(d, &hop, &setup.replace("steps = 8", "steps = 4")), &[]).status.success());
    ok(train(&config(d, &hop, &setup.replace("steps = 8", "steps = 6")), &[], &[]));
    let o = mpirun(3, &config(d, &hop, setup), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    // (The 1-process leg evaluated at its stop, step 6: a line the straight run does not have.)
    let hopped: Vec<_> = losses(&hop).into_iter().filter(|(n, _)| !n.starts_with("val step 6")).collect();
    assert_eq!(hopped[..5], got[..5], "up to the 2-rank checkpoint");
    close(&hopped, &want, "2 -> 1 -> 3 ranks");
    assert!(hop.join("checkpoints/step-00000008/model.safetensors").exists());

    // A rank that dies at step 3 ends the run with an error, not a hang; rerunning resumes.
    let dies = d.join("dies");
    let started = Instant::now();
    let o = mpirun(2, &config(d, &dies, setup), &[("GRIST_TEST_EXIT_RANK_AT_STEP", "1:6")]);
    assert!(!o.status.success());
    assert!(started.elapsed() < Duration::from_secs(120), "stopped within seconds of the exit");
    let o = mpirun(2, &config(d, &dies, setup), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(losses(&dies), got, "resumed from step 4 as if never stopped");
}

#[cfg(not(feature = "mpi"))]
#[test]
fn copies_started_by_a_launcher_are_refused_before_they_write() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_data(d);
    let out = d.join("out");
    let cfg = config(d, &out, "steps = 2\n");
    for envs in [
        &[("OMPI_COMM_WORLD_RANK", "1"), ("OMPI_COMM_WORLD_SIZE", "2")][..],
        &[("SLURM_PROCID", "0"), ("SLURM_STEP_NUM_TASKS", "4")][..],
    ] {
        let o = train(&cfg, &[], envs);
        assert!(!o.status.success());
        let err = stderr(&o);
        assert!(err.contains("started by") && err.contains("launch one process"), "{err}");
        assert!(!out.join("checkpoints").exists(), "nothing written");
    }
    // One task of a Slurm step, or a launcher's world of one, trains as usual.
    ok(train(&cfg, &[], &[("SLURM_PROCID", "0"), ("SLURM_STEP_NUM_TASKS", "1")]));
    assert!(out.join("checkpoints").exists());
}

#[test]
fn a_killed_run_resumes_bit_for_bit_on_another_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_data(d);
    let clean = d.join("clean");
    let summary = ok(train(&config(d, &clean, ""), &[], &[("RAYON_NUM_THREADS", "2")]));
    assert!(summary.contains("steps    40"), "{summary}");
    let want = trajectory(&clean);
    assert_eq!(want.iter().filter(|l| l.contains("\"loss\"")).count(), 40);
    assert_eq!(want.iter().filter(|l| l.contains("val_loss")).count(), 4);
    let losses: Vec<f64> =
        want.iter().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64()).collect();
    assert!(losses[39] < losses[0] - 2.5, "the loss falls: {} -> {}", losses[0], losses[39]);
    // The batch ramps from 4 to 8 sequences over the first 4000 tokens.
    assert!(want[0].contains("\"batch\":4") && want[39].contains("\"batch\":8"));

    let killed = d.join("killed");
    let cfg = config(d, &killed, "");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_grist"))
        .args(["-q", "train", "--config", cfg.to_str().unwrap()])
        .env("RAYON_NUM_THREADS", "2")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // SIGKILL once step 12 is logged (a checkpoint exists at 10; steps 11-12 are past it).
    let metrics = killed.join("metrics.jsonl");
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let lines = std::fs::read_to_string(&metrics).unwrap_or_default();
        if lines.contains("\"step\":12,") {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(status.code().is_none(), "the run finished before it was killed: make its steps slower");
    let latest = std::fs::read_to_string(killed.join("checkpoints/latest")).unwrap();
    assert!(latest.starts_with("step-") && latest != "step-00000040", "{latest}");
    // `latest` emptied (as a crash mid-write on a careless filesystem could): the run resumes
    // from the newest whole checkpoint and says so, never from step 0.
    std::fs::write(killed.join("checkpoints/latest"), "").unwrap();
    // Resume on one thread: the same trajectory, bit for bit (every loss, norm and rate).
    let o = train(&cfg, &[], &[("RAYON_NUM_THREADS", "1")]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("latest is empty: resuming from {}", latest.trim())), "{}", stderr(&o));
    assert_eq!(trajectory(&killed), want);
}

#[test]
fn nan_stops_the_run_with_the_last_good_checkpoint_and_a_changed_config_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_data(d);
    let out = d.join("run");
    let cfg = config(d, &out, "");
    let o = train(&cfg, &[], &[("GRIST_TEST_NAN_AT_STEP", "13")]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("step 13: the loss is NaN") && err.contains("step-00000010"), "{err}");
    assert_eq!(std::fs::read_to_string(out.join("checkpoints/latest")).unwrap(), "step-00000010");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("checkpoints/step-00000010/state.json")).unwrap()).unwrap();
    assert_eq!(state["step"], 10);
    // The checkpoint is whole: the model loads.
    let params = trainer::checkpoint::load_model(&out.join("checkpoints/step-00000010")).unwrap();
    assert!(params.data.iter().all(|x| x.is_finite()));
    // A run with another learning rate does not resume from it ...
    let o = train(&cfg, &["--set", "lr=1e-3"], &[]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("different config") && err.contains("lr"), "{err}");
    // ... but one that only stops later, or evaluates more often, does.
    ok(train(&cfg, &["--set", "steps=20", "--set", "eval_every=5"], &[]));
    let t = trajectory(&out);
    assert!(t.first().unwrap().contains("\"step\":1,") && t.iter().filter(|l| l.contains("\"loss\"")).count() == 20);
    // --fresh starts over: step 1 again, no stale lines.
    ok(train(&cfg, &["--fresh", "--set", "steps=3", "--set", "lr=1e-3"], &[]));
    assert_eq!(trajectory(&out).iter().filter(|l| l.contains("\"loss\"")).count(), 3);
    // A stage folder without its manifest (a stage still running, or killed) is not read by
    // listing its files: they could be a mix of two runs.
    std::fs::write(d.join("train/part-00000.done.json"), "{}").unwrap();
    let o = train(&cfg, &["--fresh"], &[]);
    assert!(!o.status.success() && stderr(&o).contains("the stage has not completed"), "{}", stderr(&o));
    std::fs::remove_file(d.join("train/part-00000.done.json")).unwrap();
    // Unknown keys are refused with the key named.
    let o = train(&cfg, &["--set", "learning_rate=1"], &[]);
    assert!(stderr(&o).contains("learning_rate"), "{}", stderr(&o));
}

#[test]
fn accumulated_micro_batches_train_like_one_batch_and_generate_is_seeded() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_data(d);
    let (one, two) = (d.join("one"), d.join("two"));
    let extra = "ramp_start = 0\nsteps = 5\ncheckpoint_every = 0";
    ok(train(&config(d, &one, extra), &["--set", "micro_batch=8"], &[]));
    ok(train(&config(d, &two, extra), &[], &[]));
    let losses = |o: &Path| -> Vec<f64> {
        trajectory(o)
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"].as_f64())
            .collect()
    };
    let (a, b) = (losses(&one), losses(&two));
    assert_eq!(a.len(), 5);
    for (x, y) in a.iter().zip(&b) {
        assert!((x - y).abs() < 1e-4 * x.abs(), "micro-batches of 8 vs 2 x 4: {a:?} vs {b:?}");
    }
    // grist generate decodes with GPT-2's BPE: a model with another vocabulary is refused ...
    let o = grist(&["-q", "generate", "--checkpoint", one.to_str().unwrap(), "--prompt", "Hello"], &[]);
    assert!(stderr(&o).contains("vocabulary of 2048"), "{}", stderr(&o));
    // ... and a GPT-2-vocabulary model samples deterministically for a seed.
    let gpt2 = d.join("gpt2");
    ok(train(&config(d, &gpt2, "steps = 2\nvocab_size = 50257\ncheckpoint_every = 0"), &[], &[]));
    let sample = |seed: &str| {
        ok(grist(
            &[
                "-q",
                "generate",
                "--checkpoint",
                gpt2.to_str().unwrap(),
                "--prompt",
                "Hello",
                "--tokens",
                "20",
                "--seed",
                seed,
            ],
            &[],
        ))
    };
    assert_eq!(sample("3"), sample("3"));
    assert_ne!(sample("3"), sample("4"));
    assert!(sample("3").starts_with("Hello"));
}

/// Hugging Face `transformers` loads a grist checkpoint and gives the same logits. Runs when
/// GRIST_TRANSFORMERS_PYTHON names a Python with torch and transformers.
#[test]
fn transformers_loads_the_checkpoint_with_the_same_logits() {
    let Ok(python) = std::env::var("GRIST_TRANSFORMERS_PYTHON") else {
        eprintln!("skipped: set GRIST_TRANSFORMERS_PYTHON to a Python with torch and transformers");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_data(d);
    let out = d.join("hf");
    ok(train(&config(d, &out, "steps = 6\ncheckpoint_every = 0"), &[], &[]));
    let ckpt = out.join("checkpoints/step-00000006");
    let tokens: Vec<u32> = (0..64).map(|i| (i * 37 + 11) % VOCAB).collect();
    let arg = tokens.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(",");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/hf-logits.py");
    let o = std::process::Command::new(python).args([script, ckpt.to_str().unwrap(), &arg]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let theirs: Vec<f32> = serde_json::from_slice(&o.stdout).unwrap();
    let params = trainer::checkpoint::load_model(&ckpt).unwrap();
    let (ours, _) = trainer::forward::forward(&params, &tokens, None, 1, 64);
    let (v, vp) = (params.config.vocab_size, params.config.padded_vocab_size);
    assert_eq!(theirs.len(), 64 * v);
    let mut worst = 0.0f32;
    for row in 0..64 {
        for j in 0..v {
            let (a, b) = (ours[row * vp + j], theirs[row * v + j]);
            worst = worst.max((a - b).abs() / b.abs().max(1.0));
        }
    }
    eprintln!("transformers vs grist logits: worst difference {worst:e}");
    assert!(worst < 1e-4, "logits differ by {worst}");
}
