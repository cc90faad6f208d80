//! Parity with PyTorch, in llm.c's manner: `golden/gpt_reference.bin` (written by
//! `scripts/torch-reference.py`, PyTorch 2.15, fp32 CPU) holds a small seeded GPT's parameters,
//! a batch, and what PyTorch computed: logits, loss, every gradient, and the losses of 10
//! AdamW steps. grist must match: logits and gradients to 1e-4 (absolute, or relative to the
//! value when larger), the loss and the 10 losses to 1e-5.
#![allow(clippy::unwrap_used)]

use trainer::forward::Workspace;
use trainer::model::{GptConfig, Params};
use trainer::optim::{AdamState, AdamW};

#[path = "common/reference.rs"]
mod reference;
use reference::{close, load};

#[test]
fn logits_loss_gradients_and_adamw_steps_match_pytorch() {
    let r = load();
    let c = &r.header["config"];
    let g = |k: &str| c[k].as_u64().unwrap() as usize;
    let cfg = GptConfig::new(g("seq_len"), g("vocab"), g("layers"), g("heads"), g("channels"), g("padded_vocab"));
    assert_eq!(cfg.padded_vocab_size, g("padded_vocab"));
    let mut p = Params::zeros(cfg);
    p.data.copy_from_slice(&r.f32s["params"]);
    let tokens: Vec<u32> = r.i32s["tokens"].iter().map(|&x| x as u32).collect();
    let targets: Vec<u32> = r.i32s["targets"].iter().map(|&x| x as u32).collect();
    let (b, t) = (g("batch"), g("seq_len"));

    let mut ws = Workspace::new(cfg, b, t);
    let loss = ws.forward(&p.data, &tokens, Some(&targets));
    close(ws.logits(), &r.f32s["logits"], 1e-4, "logits");
    let want_loss = r.header["loss"].as_f64().unwrap() as f32;
    assert!((loss.unwrap() - want_loss).abs() <= 1e-5, "loss {} vs {want_loss}", loss.unwrap());
    let mut grads = vec![0.0; p.data.len()];
    let scale = 1.0 / (b * t) as f32;
    ws.backward(&p.data, &mut grads, &tokens, &targets, scale);
    close(&grads, &r.f32s["grads"], 1e-4, "gradients");

    let a = &r.header["adamw"];
    let opt = AdamW {
        beta1: a["beta1"].as_f64().unwrap() as f32,
        beta2: a["beta2"].as_f64().unwrap() as f32,
        eps: a["eps"].as_f64().unwrap() as f32,
        weight_decay: a["weight_decay"].as_f64().unwrap() as f32,
    };
    let lr = a["lr"].as_f64().unwrap() as f32;
    let mut state = AdamState::new(&cfg);
    for (step, want) in a["losses"].as_array().unwrap().iter().enumerate() {
        let loss = ws.forward(&p.data, &tokens, Some(&targets)).unwrap();
        let want = want.as_f64().unwrap() as f32;
        assert!((loss - want).abs() <= 1e-5, "step {step}: loss {loss} vs PyTorch {want}");
        grads.fill(0.0);
        ws.backward(&p.data, &mut grads, &tokens, &targets, scale);
        state.update(&opt, &mut p.data, &grads, lr);
    }
}
