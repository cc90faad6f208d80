//! Training-step throughput of the CPU trainer: forward, backward and AdamW on random tokens,
//! tokens per second and MFU (6 x parameters x tokens / time, over the fp32 GEMM peak this
//! program measures first: the best of six 1024^3 products after a warm-up). `scripts/bench-train.sh` runs it beside PyTorch.
//! usage: train_bench LAYERS CHANNELS HEADS SEQ BATCH STEPS

use std::time::Instant;

use trainer::backend::{Backend, CpuBackend};
use trainer::model::{GPT2_VOCAB, GptConfig, Params};
use trainer::optim::AdamW;

fn main() {
    let a: Vec<usize> = std::env::args().skip(1).filter_map(|x| x.parse().ok()).collect();
    let [l, c, h, t, b, steps] = a[..] else {
        eprintln!("usage: train_bench LAYERS CHANNELS HEADS SEQ BATCH STEPS");
        std::process::exit(2);
    };
    // The GEMM peak: C (1024, 1024) = A . B after one warm-up product, the best of 6 timed.
    let n = 1024;
    let (x, y) = (vec![1.0f32; n * n], vec![0.5f32; n * n]);
    let mut z = vec![0.0f32; n * n];
    trainer::forward::matmul_forward(&mut z, &x, &y, None, n, n);
    let mut best = f64::INFINITY;
    for _ in 0..6 {
        let start = Instant::now();
        trainer::forward::matmul_forward(&mut z, &x, &y, None, n, n);
        best = best.min(start.elapsed().as_secs_f64());
    }
    let peak = 2.0 * (n * n * n) as f64 / best;

    let cfg = GptConfig::new(t, GPT2_VOCAB, l, h, c, 128);
    let mut model = CpuBackend::new(Params::gpt2_init(cfg, 1));
    let tokens: Vec<u32> = (0..b * t).map(|i| ((i * 7919 + 13) % GPT2_VOCAB) as u32).collect();
    let targets: Vec<u32> = (0..b * t).map(|i| ((i * 104729 + 7) % GPT2_VOCAB) as u32).collect();
    let mut times = Vec::new();
    let mut loss = 0.0;
    for _ in 0..steps + 1 {
        let s = Instant::now();
        model.zero_grad().expect("cpu");
        let l = model.forward(&tokens, Some(&targets), b, t).expect("shape checked");
        model.backward(&tokens, &targets, 1.0 / (b * t) as f32).expect("after forward");
        model.step(&AdamW::default(), 1e-4, 1.0).expect("cpu");
        times.push(s.elapsed().as_secs_f64());
        loss = l.unwrap_or(f32::NAN);
    }
    times.remove(0); // warm-up
    let step = times.iter().sum::<f64>() / times.len() as f64;
    let tps = (b * t) as f64 / step;
    let mfu = 6.0 * cfg.num_params() as f64 * tps / peak;
    println!(
        "{{\"cpu\": {:?}, \"threads\": {}, \"params\": {}, \"tokens_per_s\": {tps:.1}, \"step_s\": {step:.4}, \"gemm_gflops\": {:.1}, \"mfu\": {mfu:.3}, \"loss\": {loss}}}",
        shards::cpu::describe(),
        rayon::current_num_threads(),
        cfg.num_params(),
        peak / 1e9
    );
}
