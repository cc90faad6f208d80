//! The CUDA backend checked on a GPU: `scripts/gpu-check.sh` runs this on an H200 (built here
//! with `--features cuda`, carried there). Each check prints one line with its measured error and
//! PASS or FAIL; the exit status is the number of failures (capped at 100).
//!
//! 1. PyTorch parity (`tests/golden/gpt_reference.bin`, as `tests/torch_parity.rs` on the CPU):
//!    logits, loss, every gradient, and the losses of 10 AdamW steps, fp32.
//! 2. Against the CPU backend on a model with odd shapes and GPT-3's banded layers (T = 70,
//!    3 heads of 64, vocabulary 1500 padded to 1536, 4 sequences): loss, logits, each gradient
//!    tensor, and the loss after 3 AdamW steps.
//!    The kernels come from the on-disk cache on a second backend.
//! 3. Determinism: a second backend gives the same gradient bits.
//! 4. Checkpoints across devices: the GPU's state loads into the CPU backend (and back) and
//!    gives the same loss.
//! 5. Data parallel: two ranks (threads on the one GPU, ZeRO-1, the gradient summed through
//!    host memory) against one process: gradient norms, moments, the loss after 3 steps.
//! 6. With `--bench L C H T B STEPS`: training-step throughput (tokens/s), MFU over the fp32
//!    SGEMM rate the backend measures and over a given bf16 ceiling, device memory.
//!
//! usage: gpu_check [--bench LAYERS CHANNELS HEADS SEQ BATCH STEPS [BF16_TFLOPS]]

use std::time::Instant;

use trainer::backend::{Backend, CpuBackend};
use trainer::cuda::{CudaBackend, Origin};
use trainer::model::{GPT2_VOCAB, GptConfig, Params};
use trainer::optim::AdamW;

#[path = "../tests/common/reference.rs"]
mod reference;

/// Tolerances in fp32 (errors relative to the value, or absolute below 1): the CPU parity
/// test's, with room for the GPU's other summation orders and fused multiply-adds.
const LOGITS_TOL: f32 = 1e-4;
const GRAD_TOL: f32 = 2e-4;
const LOSS_TOL: f32 = 2e-5;

/// The larger error, NaN counting as infinite (f32::max would drop it).
fn worse(m: f32, e: f32) -> f32 {
    if e.is_nan() { f32::INFINITY } else { m.max(e) }
}

struct Checks {
    failed: u32,
}

impl Checks {
    fn check(&mut self, what: &str, err: f32, tol: f32) {
        let ok = err <= tol;
        println!("{} {what}: error {err:.3e} (tolerance {tol:.0e})", if ok { "PASS" } else { "FAIL" });
        if !ok {
            self.failed += 1;
        }
    }

    fn fail(&mut self, what: &str, why: impl std::fmt::Display) {
        println!("FAIL {what}: {why}");
        self.failed += 1;
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut c = Checks { failed: 0 };
    println!("libraries (driver, cuBLAS, NVRTC) present: {:?}", trainer::cuda::libraries_present());
    if let Err(e) = pytorch_parity(&mut c) {
        c.fail("PyTorch parity", e);
    }
    if let Err(e) = against_cpu(&mut c) {
        c.fail("against the CPU backend", e);
    }
    if let Err(e) = data_parallel_check(&mut c) {
        c.fail("data parallel", e);
    }
    if args.first().map(String::as_str) == Some("--bench") {
        let n: Vec<f64> = args[1..].iter().filter_map(|x| x.parse().ok()).collect();
        if n.len() < 6 {
            eprintln!("usage: gpu_check [--bench LAYERS CHANNELS HEADS SEQ BATCH STEPS [BF16_TFLOPS]]");
            std::process::exit(2);
        }
        let u = |i: usize| n[i] as usize;
        if let Err(e) = bench((u(0), u(1), u(2), u(3), u(4), u(5)), n.get(6).copied().unwrap_or(790.0)) {
            c.fail("bench", e);
        }
    }
    println!("{} failed", c.failed);
    std::process::exit(c.failed.min(100) as i32);
}

type Res = Result<(), Box<dyn std::error::Error>>;

fn pytorch_parity(c: &mut Checks) -> Res {
    let r = reference::load();
    let h = &r.header["config"];
    let g = |k: &str| h[k].as_u64().unwrap_or(0) as usize;
    let cfg = GptConfig::new(g("seq_len"), g("vocab"), g("layers"), g("heads"), g("channels"), g("padded_vocab"));
    let mut p = Params::zeros(cfg);
    p.data.copy_from_slice(&r.f32s["params"]);
    let tokens: Vec<u32> = r.i32s["tokens"].iter().map(|&x| x as u32).collect();
    let targets: Vec<u32> = r.i32s["targets"].iter().map(|&x| x as u32).collect();
    let (b, t) = (g("batch"), g("seq_len"));
    let mut gpu = CudaBackend::new(p, 0)?;
    println!("device: {}", gpu.name());
    println!("kernels: {:?}", gpu.kernel_origin());
    if trainer::cuda::cache_dir().is_some() {
        // The first backend compiled (or read) the kernels; a second one reads them from disk.
        let again = CudaBackend::new(Params::zeros(cfg), 0)?;
        match again.kernel_origin() {
            Origin::Cache(_) => c.check("a second backend loads its kernels from the disk cache", 0.0, 0.0),
            other => c.fail("a second backend loads its kernels from the disk cache", format!("{other:?}")),
        }
    }
    let loss = gpu.forward(&tokens, Some(&targets), b, t)?.unwrap_or(f32::NAN);
    let vp = cfg.padded_vocab_size;
    let mut logits = vec![0.0f32; b * t * vp];
    for (row, out) in logits.chunks_mut(vp).enumerate() {
        gpu.logits_row(row, out)?;
    }
    c.check("PyTorch logits", reference::worst_error(&logits, &r.f32s["logits"]).0, LOGITS_TOL);
    let want = r.header["loss"].as_f64().unwrap_or(f64::NAN) as f32;
    c.check("PyTorch loss", worse(0.0, (loss - want).abs()), LOSS_TOL);
    gpu.zero_grad()?;
    gpu.backward(&tokens, &targets, 1.0 / (b * t) as f32)?;
    let grads = gpu.grads()?;
    c.check("PyTorch gradients", reference::worst_error(&grads, &r.f32s["grads"]).0, GRAD_TOL);
    let a = &r.header["adamw"];
    let f = |k: &str| a[k].as_f64().unwrap_or(f64::NAN) as f32;
    let opt = AdamW { beta1: f("beta1"), beta2: f("beta2"), eps: f("eps"), weight_decay: f("weight_decay") };
    // A fresh backend: the 10 steps start from the reference's parameters and zero moments.
    let mut p = Params::zeros(cfg);
    p.data.copy_from_slice(&r.f32s["params"]);
    let mut gpu = CudaBackend::new(p, 0)?;
    let mut worst = 0.0f32;
    for want in a["losses"].as_array().into_iter().flatten() {
        let loss = gpu.forward(&tokens, Some(&targets), b, t)?.unwrap_or(f32::NAN);
        worst = worse(worst, (loss - want.as_f64().unwrap_or(f64::NAN) as f32).abs());
        gpu.zero_grad()?;
        gpu.backward(&tokens, &targets, 1.0 / (b * t) as f32)?;
        gpu.step(&opt, f("lr"), 1.0)?;
    }
    c.check("PyTorch losses of 10 AdamW steps", worst, LOSS_TOL * 5.0);
    Ok(())
}

/// A model with odd shapes and banded layers, and a batch for it: 280 rows (two chunks of the
/// column sums), head size 64 (two values per lane in the attention), a vocabulary of 1500
/// (over the cross-entropy's 1024 threads). Parameters from `seed`.
fn banded_case(seed: u64) -> (GptConfig, Params, Vec<u32>, Vec<u32>, usize, usize) {
    let v = 1500;
    let cfg = GptConfig { attention_band: Some(24), ..GptConfig::new(70, v, 2, 3, 192, 64) };
    let (b, t) = (4, 70);
    let tokens: Vec<u32> = (0..b * t).map(|i| ((i * 7919 + 13) % v) as u32).collect();
    let targets: Vec<u32> = (0..b * t).map(|i| ((i * 104_729 + 7) % v) as u32).collect();
    (cfg, Params::gpt2_init(cfg, seed), tokens, targets, b, t)
}

fn against_cpu(c: &mut Checks) -> Res {
    let (cfg, params, tokens, targets, b, t) = banded_case(11);
    let mut cpu = CpuBackend::new(params.clone());
    let mut gpu = CudaBackend::new(params.clone(), 0)?;
    let scale = 1.0 / (b * t) as f32;
    let mut losses = [0.0f32; 2];
    for (k, dev) in [&mut cpu as &mut dyn Backend, &mut gpu].into_iter().enumerate() {
        dev.zero_grad()?;
        losses[k] = dev.forward(&tokens, Some(&targets), b, t)?.unwrap_or(f32::NAN);
    }
    c.check("CPU vs GPU loss (banded model)", worse(0.0, (losses[0] - losses[1]).abs()), LOSS_TOL);
    let vp = cfg.padded_vocab_size;
    let (mut lc, mut lg) = (vec![0.0f32; vp], vec![0.0f32; vp]);
    let mut worst = 0.0f32;
    for row in [0, t - 1, b * t - 1] {
        cpu.logits_row(row, &mut lc)?;
        gpu.logits_row(row, &mut lg)?;
        worst = worse(worst, reference::worst_error(&lg, &lc).0);
    }
    c.check("CPU vs GPU logits", worst, LOGITS_TOL);
    cpu.backward(&tokens, &targets, scale)?;
    gpu.backward(&tokens, &targets, scale)?;
    let gc = cpu.grads().to_vec();
    let gg = gpu.grads()?;
    let mut at = 0;
    for (p, n) in cfg.param_sizes() {
        let (x, y) = (&gg[at..at + n], &gc[at..at + n]);
        // Relative to the tensor's scale: its largest CPU value.
        let top = y.iter().fold(1e-12f32, |m, v| m.max(v.abs()));
        let err = x.iter().zip(y).fold(0.0f32, |m, (a, b)| worse(m, (a - b).abs() / top));
        c.check(&format!("CPU vs GPU gradient {p:?}"), err, GRAD_TOL);
        at += n;
    }
    // Determinism: another backend, the same bits.
    let mut again = CudaBackend::new(params.clone(), 0)?;
    again.zero_grad()?;
    again.forward(&tokens, Some(&targets), b, t)?;
    again.backward(&tokens, &targets, scale)?;
    let same = again.grads()? == gg;
    c.check("GPU gradients repeat bit for bit", if same { 0.0 } else { 1.0 }, 0.0);
    // Three AdamW steps on each, then the loss.
    let opt = AdamW::default();
    for dev in [&mut cpu as &mut dyn Backend, &mut gpu] {
        dev.step(&opt, 1e-3, 1.0)?;
        for _ in 0..2 {
            dev.zero_grad()?;
            dev.forward(&tokens, Some(&targets), b, t)?;
            dev.backward(&tokens, &targets, scale)?;
            dev.step(&opt, 1e-3, 1.0)?;
        }
        losses[0] = losses[1];
        losses[1] = dev.forward(&tokens, Some(&targets), b, t)?.unwrap_or(f32::NAN);
    }
    c.check("CPU vs GPU loss after 3 AdamW steps", worse(0.0, (losses[0] - losses[1]).abs()), LOSS_TOL * 5.0);
    // Checkpoints across devices: the GPU's state on the CPU, and back.
    let state = gpu.state()?;
    let mut cpu2 = CpuBackend::new(Params::zeros(cfg));
    cpu2.load_state(&state)?;
    let on_cpu = cpu2.forward(&tokens, Some(&targets), b, t)?.unwrap_or(f32::NAN);
    c.check("GPU state resumed on the CPU: loss", worse(0.0, (on_cpu - losses[1]).abs()), LOSS_TOL);
    // And one more step on each from there: the moments and the step count carried over.
    let mut after = [0.0f32; 2];
    for (k, dev) in [&mut cpu2 as &mut dyn Backend, &mut gpu].into_iter().enumerate() {
        dev.zero_grad()?;
        dev.forward(&tokens, Some(&targets), b, t)?;
        dev.backward(&tokens, &targets, scale)?;
        dev.step(&opt, 1e-3, 1.0)?;
        after[k] = dev.forward(&tokens, Some(&targets), b, t)?.unwrap_or(f32::NAN);
    }
    c.check("a step after resuming, CPU vs GPU: loss", worse(0.0, (after[0] - after[1]).abs()), LOSS_TOL * 5.0);
    let mut gpu2 = CudaBackend::new(Params::zeros(cfg), 0)?;
    let stepped = cpu2.state()?;
    gpu2.load_state(&stepped)?;
    let back = gpu2.state()?;
    c.check("CPU state loaded on the GPU: bits", if back == stepped { 0.0 } else { 1.0 }, 0.0);
    Ok(())
}

/// What one data-parallel rank saw: each step's gradient norm, the loss on the whole batch
/// after the steps, the gathered state, and the moments it held.
struct RankRun {
    norms: Vec<f32>,
    loss: f32,
    state: trainer::backend::HostState,
    moment_bytes: usize,
}

/// `steps` AdamW steps with every rank's backward on its rows of the batch and the gradient
/// summed across ranks; `world` 1 is one process on the whole batch.
fn data_parallel(
    params: &Params,
    (tokens, targets, b, t): (&[u32], &[u32], usize, usize),
    world: usize,
    steps: usize,
) -> Result<Vec<RankRun>, String> {
    let rows = b / world;
    let handles: Vec<_> = trainer::collective::LocalGroup::group(world)
        .into_iter()
        .map(|mut comm| {
            let (params, tokens, targets) = (params.clone(), tokens.to_vec(), targets.to_vec());
            std::thread::spawn(move || -> Result<RankRun, String> {
                use trainer::collective::Collective;
                let e = |e: trainer::backend::BackendError| e.to_string();
                let rank = comm.rank();
                let mut gpu = CudaBackend::new(params, 0).map_err(e)?;
                gpu.shard_optimizer(rank, world).map_err(e)?;
                let mine = rank * rows * t..(rank + 1) * rows * t;
                let (x, y) = (&tokens[mine.clone()], &targets[mine]);
                let opt = AdamW::default();
                let mut norms = Vec::new();
                for _ in 0..steps {
                    gpu.zero_grad().map_err(e)?;
                    gpu.forward(x, Some(y), rows, t).map_err(e)?;
                    gpu.backward(x, y, 1.0 / (b * t) as f32).map_err(e)?;
                    gpu.reduce_grads(&mut comm).map_err(e)?;
                    norms.push(gpu.grad_norm_across(&mut comm).map_err(e)?);
                    gpu.step_across(&mut comm, &opt, 1e-3, 1.0).map_err(e)?;
                }
                let loss = gpu.forward(&tokens, Some(&targets), b, t).map_err(e)?.unwrap_or(f32::NAN);
                let state = gpu.state_across(&mut comm).map_err(e)?;
                Ok(RankRun { norms, loss, state, moment_bytes: gpu.moment_bytes() })
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().map_err(|_| "a rank panicked".to_string())?).collect()
}

/// Data parallel on one GPU: two ranks (threads, ZeRO-1, the gradient summed through host
/// memory) against one process on the whole batch.
fn data_parallel_check(c: &mut Checks) -> Res {
    let (_, params, tokens, targets, b, t) = banded_case(12);
    let batch = (&tokens[..], &targets[..], b, t);
    let one = data_parallel(&params, batch, 1, 3)?.remove(0);
    let two = data_parallel(&params, batch, 2, 3)?;
    let norm_err = one.norms.iter().zip(&two[0].norms).fold(0.0f32, |m, (a, b)| worse(m, (a - b).abs() / a.abs()));
    c.check("2 ranks vs 1: gradient norms", norm_err, GRAD_TOL);
    c.check("2 ranks vs 1: loss after 3 steps", worse(0.0, (one.loss - two[0].loss).abs()), LOSS_TOL * 5.0);
    let same = two[0].state == two[1].state && two[0].loss.to_bits() == two[1].loss.to_bits();
    c.check("2 ranks hold the same state, bit for bit", if same { 0.0 } else { 1.0 }, 0.0);
    // Relative to the largest moment (most are tiny).
    let (got, want) = (&two[0].state.m, &one.state.m);
    let top = want.iter().fold(1e-12f32, |m, v| m.max(v.abs()));
    let m_err = got.iter().zip(want).fold(0.0f32, |m, (a, b)| worse(m, (a - b).abs() / top));
    c.check("2 ranks vs 1: gathered first moments", m_err, GRAD_TOL);
    let halves = two[0].moment_bytes + two[1].moment_bytes == one.moment_bytes && two[1].moment_bytes > 0;
    c.check("ZeRO-1: the two ranks' moments add up to one process's", if halves { 0.0 } else { 1.0 }, 0.0);
    Ok(())
}

fn bench((l, ch, h, t, b, steps): (usize, usize, usize, usize, usize, usize), bf16_tflops: f64) -> Res {
    let cfg = GptConfig::new(t, GPT2_VOCAB, l, h, ch, 128);
    let mut gpu = CudaBackend::new(Params::gpt2_init(cfg, 1), 0)?;
    let peak = gpu.peak_flops();
    let tokens: Vec<u32> = (0..b * t).map(|i| ((i * 7919 + 13) % GPT2_VOCAB) as u32).collect();
    let targets: Vec<u32> = (0..b * t).map(|i| ((i * 104_729 + 7) % GPT2_VOCAB) as u32).collect();
    let mut times = Vec::new();
    let mut loss = f32::NAN;
    for _ in 0..steps + 1 {
        let s = Instant::now();
        gpu.zero_grad()?;
        loss = gpu.forward(&tokens, Some(&targets), b, t)?.unwrap_or(f32::NAN);
        gpu.backward(&tokens, &targets, 1.0 / (b * t) as f32)?;
        gpu.grad_norm()?;
        gpu.step(&AdamW::default(), 1e-4, 1.0)?;
        times.push(s.elapsed().as_secs_f64());
    }
    times.remove(0);
    let step = times.iter().sum::<f64>() / times.len().max(1) as f64;
    let tps = (b * t) as f64 / step;
    let flops = 6.0 * cfg.num_params() as f64 * tps;
    println!(
        "{{\"device\": {:?}, \"params\": {}, \"batch\": {b}, \"seq\": {t}, \"tokens_per_s\": {tps:.0}, \"step_s\": {step:.4}, \"fp32_sgemm_tflops\": {:.1}, \"mfu_fp32\": {:.3}, \"mfu_bf16_ceiling\": {:.3}, \"peak_device_mib\": {:.0}, \"loss\": {loss}}}",
        gpu.name(),
        cfg.num_params(),
        peak / 1e12,
        flops / peak,
        flops / (bf16_tflops * 1e12),
        gpu.peak_device_bytes() as f64 / (1u64 << 20) as f64,
    );
    Ok(())
}
