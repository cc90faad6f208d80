//! `grist eval` end to end: a known checkpoint's loss and bits per byte on held-out documents
//! against the same sums computed here, multiple-choice and free-form tasks with few-shot
//! prompts as documented, and GSM8K from the shared data.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::{grist, ok, test_data};
use grist::eval_cmd::{ChoiceItem, choice_prompt, shots_for};
use pipeline::steps::tokenize::{EOT, gpt2_tokens};
use trainer::backend::{Backend, CpuBackend};
use trainer::checkpoint::{hf_config, to_hf, write_safetensors};
use trainer::model::{GptConfig, Params};

const T: usize = 32;

/// A small GPT-2-vocabulary model written as a Hugging Face checkpoint.
fn checkpoint(dir: &Path) -> Params {
    let mut cfg = GptConfig::preset("tiny").unwrap();
    cfg.max_seq_len = T;
    let params = Params::gpt2_init(cfg, 21);
    std::fs::create_dir_all(dir).unwrap();
    write_safetensors(&dir.join("model.safetensors"), &to_hf(&params), &Default::default()).unwrap();
    std::fs::write(dir.join("config.json"), hf_config(&cfg).to_string()).unwrap();
    params
}

/// Per-position losses of `seq` predicting its tokens after the first, window by window at T.
fn losses_by_hand(b: &mut CpuBackend, seq: &[u32]) -> Vec<f64> {
    let mut out = Vec::new();
    for at in (0..seq.len() - 1).step_by(T) {
        let len = (seq.len() - 1 - at).min(T);
        let (mut x, mut y) = (vec![0u32; T], vec![0u32; T]);
        x[..len].copy_from_slice(&seq[at..at + len]);
        y[..len].copy_from_slice(&seq[at + 1..at + len + 1]);
        b.forward(&x, Some(&y), 1, T).unwrap();
        let mut l = vec![0.0; T];
        b.position_losses(&y, &mut l).unwrap();
        out.extend(l[..len].iter().map(|&v| v as f64));
    }
    out
}

#[test]
fn held_out_loss_and_bits_per_byte_are_the_sums_computed_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let params = checkpoint(&dir.path().join("ckpt"));
    let texts = [
        "The quick brown fox jumps over the lazy dog.",
        "A longer note: it runs past one window of thirty-two tokens, so the model sees it in two \
         pieces, each scored on its own, and the sums are added in order. Café, naïve, 東京.",
        "Short.",
    ];
    let file = dir.path().join("notes.jsonl");
    let lines: Vec<String> = texts.iter().map(|t| serde_json::json!({ "text": t }).to_string()).collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let spec = format!("notes={}", file.display());
    let ckpt = dir.path().join("ckpt");
    let work = dir.path().join("work");
    let args = ["eval", "--checkpoint", ckpt.to_str().unwrap(), "--eval", &spec, "--work", work.to_str().unwrap()];
    let out = ok(grist(&[&args[..], &["--json", "--reps", "200"]].concat(), &[]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let set = &v["sets"][0];
    let mut b = CpuBackend::new(params);
    let (mut nats, mut tokens, mut bytes) = (0.0, 0usize, 0usize);
    for t in texts {
        let mut seq = vec![EOT];
        seq.extend(gpt2_tokens(t));
        let l = losses_by_hand(&mut b, &seq);
        nats += l.iter().sum::<f64>();
        tokens += l.len();
        bytes += t.len();
    }
    assert_eq!(set["docs"], 3);
    assert_eq!(set["tokens"].as_u64().unwrap() as usize, tokens);
    assert_eq!(set["bytes"].as_u64().unwrap() as usize, bytes);
    let loss = set["loss"]["value"].as_f64().unwrap();
    assert!((loss - nats / tokens as f64).abs() < 1e-6, "{loss} vs {}", nats / tokens as f64);
    let bpb = set["bits_per_byte"]["value"].as_f64().unwrap();
    assert!((bpb - nats / (bytes as f64 * std::f64::consts::LN_2)).abs() < 1e-6);
    let (lo, hi) = (set["loss"]["lo"].as_f64().unwrap(), set["loss"]["hi"].as_f64().unwrap());
    assert!(lo <= loss && loss <= hi && lo < hi, "{lo} {loss} {hi}");
    // The table: one row per set, with the interval.
    let table = ok(grist(&args, &[]));
    assert!(table.contains("bits/byte [95% CI]") && table.lines().any(|l| l.starts_with("notes ")), "{table}");
}

#[test]
fn multiple_choice_few_shot_prompts_and_scores_are_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let params = checkpoint(&dir.path().join("ckpt"));
    let items = [
        ("A man opens the door and", ["walks in.", "eats the moon.", "is a door."], 0),
        ("She pours the tea into", ["a cup.", "the sky.", "seven."], 0),
        ("The dog wags its", ["tail.", "car.", "tax return."], 0),
        ("He ties his", ["shoes.", "ocean.", "Tuesday."], 0),
    ];
    let task = dir.path().join("mini-swag.jsonl");
    let lines: Vec<String> = items
        .iter()
        .map(|(c, e, l)| serde_json::json!({ "ctx": c, "endings": e, "label": l.to_string() }).to_string())
        .collect();
    std::fs::write(&task, lines.join("\n")).unwrap();
    let ckpt = dir.path().join("ckpt");
    let base = ["eval", "--checkpoint", ckpt.to_str().unwrap(), "--task", task.to_str().unwrap(), "--shots", "2"];
    let shown = ok(grist(&[&base[..], &["--show-prompts"]].concat(), &[]));
    let choice: Vec<ChoiceItem> = items
        .iter()
        .map(|(c, e, l)| ChoiceItem {
            ctx: c.to_string(),
            endings: e.iter().map(|s| s.to_string()).collect(),
            label: *l,
        })
        .collect();
    let mut b = CpuBackend::new(params);
    let mut right = 0;
    for i in 0..items.len() {
        let shots = shots_for(i, 2, items.len(), true, 1234).unwrap();
        assert!(!shots.contains(&i));
        let refs: Vec<&ChoiceItem> = shots.iter().map(|&j| &choice[j]).collect();
        let prompt = choice_prompt(&choice[i], &refs);
        let want = format!(
            "{} {}\n\n{} {}\n\n{}",
            refs[0].ctx, refs[0].endings[0], refs[1].ctx, refs[1].endings[0], items[i].0
        );
        assert_eq!(prompt, want);
        assert!(shown.contains(&format!("=== mini-swag item {i} (2 shots)\n{want}\n")), "{shown}");
        // The ending of lowest mean loss, by hand.
        let mut ctx = vec![EOT];
        ctx.extend(gpt2_tokens(&prompt));
        let means: Vec<f64> = choice[i]
            .endings
            .iter()
            .map(|e| {
                let end = gpt2_tokens(&format!(" {e}"));
                let mut seq = ctx.clone();
                seq.extend(&end);
                let seq = &seq[seq.len().saturating_sub(T + 1)..];
                let l = losses_by_hand(&mut b, seq);
                l[l.len() - end.len()..].iter().sum::<f64>() / end.len() as f64
            })
            .collect();
        let best = (0..means.len()).min_by(|&a, &c| means[a].total_cmp(&means[c])).unwrap();
        right += usize::from(best == 0);
    }
    let v: serde_json::Value = serde_json::from_str(&ok(grist(&[&base[..], &["--json"]].concat(), &[]))).unwrap();
    let t = &v["tasks"][0];
    assert_eq!(
        (t["kind"].as_str(), t["items"].as_u64(), t["shots"].as_u64()),
        (Some("multiple choice"), Some(4), Some(2))
    );
    assert_eq!(t["accuracy"]["value"].as_f64().unwrap(), right as f64 / 4.0);
    // A task file with a label past its endings: refused with the line.
    std::fs::write(&task, r#"{"ctx": "x", "endings": ["a", "b"], "label": 2}"#).unwrap();
    let e = common::stderr(&grist(&base, &[]));
    assert!(e.contains("mini-swag.jsonl:1") && e.contains("label"), "{e}");
}

#[test]
fn gsm8k_few_shot_prompts_draw_from_the_other_problems() {
    let Some(data) = test_data("gsm8k_few_shot_prompts_draw_from_the_other_problems") else { return };
    let dir = tempfile::tempdir().unwrap();
    checkpoint(&dir.path().join("ckpt"));
    let gsm = data.join("benchmarks/gsm8k-test.jsonl");
    let ckpt = dir.path().join("ckpt");
    let args = ["eval", "--checkpoint", ckpt.to_str().unwrap(), "--task", gsm.to_str().unwrap()];
    let out =
        ok(grist(&[&args[..], &["--shots", "1", "--limit", "2", "--max-tokens", "8", "--show-prompts"]].concat(), &[]));
    let problems: Vec<serde_json::Value> =
        std::fs::read_to_string(&gsm).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for i in 0..2 {
        let shot = &problems[shots_for(i, 1, problems.len(), true, 1234).unwrap()[0]];
        let want = format!(
            "=== gsm8k-test item {i} (1 shots)\nQuestion: {}\nAnswer: {}\n\nQuestion: {}\nAnswer:\n",
            shot["question"].as_str().unwrap(),
            shot["answer"].as_str().unwrap().trim(),
            problems[i]["question"].as_str().unwrap()
        );
        assert!(out.contains(&want), "{out}");
    }
    // Each item's target is the number after ####.
    assert!(
        out.contains(&format!("(want {:?})", problems[0]["answer"].as_str().unwrap().rsplit("#### ").next().unwrap()))
    );
    assert!(out.contains("free-form") && out.contains("    1      2 "), "{out}");
}
