//! fp32 GEMM throughput of the trainer's own kernel (`trainer::gemm`) in the three layouts
//! training uses, at each vector instruction set this CPU has, on one thread and on all:
//! GFLOP/s, the best of 5 runs after a warm-up. Run by `just bench-gemm`.
//! usage: gemm_bench [M N K] (default 1024 1024 1024)

use std::time::Instant;

use shards::cpu::Simd;
use trainer::gemm::{Micro, gemm, micro_f32};

fn main() {
    let a: Vec<usize> = std::env::args().skip(1).filter_map(|x| x.parse().ok()).collect();
    let (m, n, k) = match a[..] {
        [m, n, k] => (m, n, k),
        _ => (1024, 1024, 1024),
    };
    println!("cpu: {}", shards::cpu::describe());
    let x: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 7.0).collect();
    let w: Vec<f32> = (0..n * k).map(|i| ((i * 5 % 11) as f32 - 5.0) / 9.0).collect();
    let d: Vec<f32> = (0..m * n).map(|i| ((i * 3 % 7) as f32 - 3.0) / 5.0).collect();
    let flops = 2.0 * (m * n * k) as f64;
    let all = rayon::current_num_threads();
    println!("M={m} N={n} K={k}; GFLOP/s, best of 5");
    println!(
        "{:8} {:>8} {:>16} {:>16} {:>16}",
        "level", "threads", "x.w^T (forward)", "d.w (input grad)", "d^T.x (weight grad)"
    );
    let mut levels = Simd::available();
    levels.retain(|&l| l != Simd::Scalar);
    for level in levels.into_iter().rev() {
        let micro: Micro<f32> = micro_f32(level);
        for threads in [1, all] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool");
            let rate = |f: &mut dyn FnMut()| {
                f();
                let mut best = f64::INFINITY;
                for _ in 0..5 {
                    let s = Instant::now();
                    f();
                    best = best.min(s.elapsed().as_secs_f64());
                }
                flops / best / 1e9
            };
            let (mut out, mut dx, mut dw) = (vec![0f32; m * n], vec![0f32; m * k], vec![0f32; n * k]);
            let par = threads > 1;
            // SAFETY (all three): every operand is sized for its shape and strides; outputs are
            // separate vectors.
            let rates = pool.install(|| unsafe {
                [
                    // out (m, n) = x (m, k) . w (n, k)^T
                    rate(&mut || {
                        gemm(
                            micro,
                            (m, n, k),
                            (out.as_mut_ptr(), n),
                            false,
                            (x.as_ptr(), k, 1),
                            (w.as_ptr(), 1, k),
                            1.0,
                            par,
                        )
                    }),
                    // dx (m, k) = d (m, n) . w (n, k)
                    rate(&mut || {
                        gemm(
                            micro,
                            (m, k, n),
                            (dx.as_mut_ptr(), k),
                            false,
                            (d.as_ptr(), n, 1),
                            (w.as_ptr(), k, 1),
                            1.0,
                            par,
                        )
                    }),
                    // dw (n, k) += d^T (n, m) . x (m, k)
                    rate(&mut || {
                        gemm(
                            micro,
                            (n, k, m),
                            (dw.as_mut_ptr(), k),
                            true,
                            (d.as_ptr(), 1, n),
                            (x.as_ptr(), k, 1),
                            1.0,
                            par,
                        )
                    }),
                ]
            });
            println!("{:8} {:>8} {:>16.1} {:>16.1} {:>16.1}", level.name(), threads, rates[0], rates[1], rates[2]);
        }
    }
}
