//! The seam between the training loop and the device that runs the model. The loop (schedules,
//! data, checkpoints) talks only to [`Backend`]; [`CpuBackend`] is the reference backend (the
//! kernels of `forward`, AdamW of `optim`); `cuda::CudaBackend` (feature `cuda`) runs the same
//! model on a GPU. [`make`] picks one by the training config's `backend`. The trait is shaped for devices
//! with their own memory: every method moves host slices in or out, so parameters, gradients
//! and moments may live on the device, and every method can fail.

use std::ops::Range;

use rayon::prelude::*;

use crate::collective::Collective;
use crate::forward::Workspace;
use crate::model::{GptConfig, Params};
use crate::optim::{AdamState, AdamW};

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("batch shape: {0}")]
    Shape(String),
    #[error("device: {0}")]
    Device(String),
}

/// Parameters and optimizer moments on the host, laid out as `Params` (for checkpoints).
#[derive(Debug, Clone, PartialEq)]
pub struct HostState {
    pub params: Vec<f32>,
    pub m: Vec<f32>,
    pub v: Vec<f32>,
    /// Optimizer steps taken.
    pub step: u64,
}

/// What a training loop needs from a device.
pub trait Backend {
    /// A short name for logs ("cpu", "cuda:0").
    fn name(&self) -> String;
    fn config(&self) -> &GptConfig;
    /// The forward pass on B x T tokens; with targets, the mean loss.
    fn forward(
        &mut self,
        tokens: &[u32],
        targets: Option<&[u32]>,
        b: usize,
        t: usize,
    ) -> Result<Option<f32>, BackendError>;
    /// Copies one row (batch row x T + position) of the last forward pass's logits (Vp values).
    fn logits_row(&self, row: usize, out: &mut [f32]) -> Result<(), BackendError>;
    /// Each position's loss against `targets` (B*T values) after a forward pass.
    fn position_losses(&self, targets: &[u32], out: &mut [f32]) -> Result<(), BackendError>;
    /// The fp32 matmul peak of this device, FLOP/s (measured once), for MFU.
    fn peak_flops(&mut self) -> f64;
    /// The backward pass after `forward` with targets: adds the gradient of `scale` x the summed
    /// loss to the gradient buffer (scale 1 / (B T) for one batch; divided further by the number
    /// of micro-batches when accumulating).
    fn backward(&mut self, tokens: &[u32], targets: &[u32], scale: f32) -> Result<(), BackendError>;
    fn zero_grad(&mut self) -> Result<(), BackendError>;
    /// The gradient's global L2 norm (summed in a fixed order).
    fn grad_norm(&self) -> Result<f32, BackendError>;
    /// One AdamW step at `lr` on the gradient times `grad_scale` (below 1 when clipping).
    fn step(&mut self, opt: &AdamW, lr: f32, grad_scale: f32) -> Result<(), BackendError>;
    /// Parameters and moments, copied to the host.
    fn state(&self) -> Result<HostState, BackendError>;
    /// Replaces parameters and moments (a checkpoint being resumed).
    fn load_state(&mut self, state: &HostState) -> Result<(), BackendError>;
    /// Bytes of optimizer moments this process holds.
    fn moment_bytes(&self) -> usize;
    /// A line for the end of a run about the device (where its kernels came from, its peak
    /// memory); none for the CPU.
    fn report(&self) -> Option<String> {
        None
    }

    // Data parallel over processes (`collective`). A backend that has no collectives of its
    // own trains in one process only: these refuse a world of more than one.

    /// ZeRO-1: keep the moments of this rank's shard only.
    fn shard_optimizer(&mut self, _rank: usize, world: usize) -> Result<(), BackendError> {
        single(&self.name(), world)
    }
    /// Sums the gradient over ranks.
    fn reduce_grads(&mut self, comm: &mut dyn Collective) -> Result<(), BackendError> {
        single(&self.name(), comm.world())
    }
    /// The global gradient norm after [`Backend::reduce_grads`].
    fn grad_norm_across(&mut self, comm: &mut dyn Collective) -> Result<f32, BackendError> {
        single(&self.name(), comm.world())?;
        self.grad_norm()
    }
    /// One AdamW step on every rank.
    fn step_across(
        &mut self,
        comm: &mut dyn Collective,
        opt: &AdamW,
        lr: f32,
        grad_scale: f32,
    ) -> Result<(), BackendError> {
        single(&self.name(), comm.world())?;
        self.step(opt, lr, grad_scale)
    }
    /// Parameters and every moment, the same whatever the world size (every rank calls it).
    fn state_across(&self, comm: &mut dyn Collective) -> Result<HostState, BackendError> {
        single(&self.name(), comm.world())?;
        self.state()
    }
    /// Seconds spent in collectives since the last call.
    fn take_comm_seconds(&mut self) -> f64 {
        0.0
    }
}

fn single(name: &str, world: usize) -> Result<(), BackendError> {
    if world > 1 {
        return Err(BackendError::Device(format!("the {name} backend trains in one process only, not {world} ranks")));
    }
    Ok(())
}

/// The backends `backend = "..."` names: `cpu`, or `cuda` / `cuda:N` (GPU N) in a build with
/// the `cuda` feature. Plain `cuda` is the GPU of this process's local rank (the launcher's
/// [`local_rank`]) modulo the GPUs present: one GPU per rank under `mpirun` or `srun`.
pub fn make(kind: &str, params: Params) -> Result<Box<dyn Backend>, BackendError> {
    match kind {
        "cpu" => Ok(Box::new(CpuBackend::new(params))),
        k if k == "cuda" || k.starts_with("cuda:") => {
            let ordinal = match k.strip_prefix("cuda:") {
                Some(n) => Some(
                    n.parse::<usize>()
                        .map_err(|_| BackendError::Device(format!("backend {k:?}: cuda:N with N a GPU number")))?,
                ),
                None => None,
            };
            cuda_backend(params, ordinal)
        }
        other => Err(BackendError::Device(format!("unknown backend {other:?} (cpu, cuda, cuda:N)"))),
    }
}

/// This process's rank among those on its node, as the launcher says (Open MPI's
/// `OMPI_COMM_WORLD_LOCAL_RANK`, Slurm's `SLURM_LOCALID`, torchrun's `LOCAL_RANK`).
pub fn local_rank(env: impl Fn(&str) -> Option<String>) -> Option<usize> {
    ["OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "LOCAL_RANK"].iter().find_map(|k| env(k)?.trim().parse().ok())
}

#[cfg(feature = "cuda")]
fn cuda_backend(params: Params, ordinal: Option<usize>) -> Result<Box<dyn Backend>, BackendError> {
    let ordinal = match ordinal {
        Some(n) => n,
        None => match local_rank(|k| std::env::var(k).ok()) {
            Some(r) => r % crate::cuda::device_count()?.max(1),
            None => 0,
        },
    };
    Ok(Box::new(crate::cuda::CudaBackend::new(params, ordinal)?))
}

#[cfg(not(feature = "cuda"))]
fn cuda_backend(_params: Params, _ordinal: Option<usize>) -> Result<Box<dyn Backend>, BackendError> {
    Err(BackendError::Device(
        "this grist was built without the CUDA backend\nhint: cargo build --release --features cuda".into(),
    ))
}

/// The CPU backend: parameters, gradients and moments in host memory, a workspace per batch
/// shape (kept until the shape changes).
pub struct CpuBackend {
    params: Params,
    grads: Vec<f32>,
    /// The moments: of every parameter, or (ZeRO-1) of this rank's shard only.
    adam: AdamState,
    ws: Option<Workspace<f32>>,
    peak: Option<f64>,
    /// ZeRO-1: every rank's parameter range and this rank's index.
    zero: Option<(Vec<Range<usize>>, usize)>,
    /// Seconds spent in collectives since last taken.
    comm: f64,
}

/// Elements per block of the gradient norm's partial sums; ZeRO-1 shards are whole blocks, so
/// a sharded norm adds the same partial sums in the same order as one process.
pub const NORM_BLOCK: usize = 1 << 16;

impl CpuBackend {
    pub fn new(params: Params) -> CpuBackend {
        let (grads, adam) = (vec![0.0; params.data.len()], AdamState::new(&params.config));
        CpuBackend { params, grads, adam, ws: None, peak: None, zero: None, comm: 0.0 }
    }

    /// ZeRO-1 (llm.c's `-z 1`): from here on this rank keeps the optimizer moments of its shard
    /// of the parameters only (whole [`NORM_BLOCK`]s, as even as blocks allow), updates that
    /// shard, and gathers the others' after each step.
    pub fn shard_optimizer(&mut self, rank: usize, world: usize) {
        let ranges = crate::collective::shards(self.params.data.len(), world, NORM_BLOCK);
        self.adam = self.full_adam().shard(ranges[rank].clone());
        self.zero = Some((ranges, rank));
    }

    /// The moments of every parameter (before sharding: the state itself).
    fn full_adam(&self) -> AdamState {
        match &self.zero {
            None => self.adam.clone(),
            Some(_) => AdamState::new(&self.params.config),
        }
    }

    /// This rank's parameter range (everything without ZeRO-1).
    pub fn shard_range(&self) -> Range<usize> {
        match &self.zero {
            Some((ranges, rank)) => ranges[*rank].clone(),
            None => 0..self.params.data.len(),
        }
    }

    /// Bytes of optimizer moments this rank holds (two f32 per element of its shard).
    pub fn moment_bytes(&self) -> usize {
        8 * self.adam.m.len()
    }

    /// Data parallel: sums the gradient over ranks (in rank order). With ZeRO-1 only this
    /// rank's shard is summed (a reduce-scatter); without, all of it (an all-reduce).
    pub fn reduce_grads(&mut self, comm: &mut dyn Collective) -> Result<(), BackendError> {
        if comm.world() == 1 {
            return Ok(());
        }
        let dev = |e: crate::collective::CollectiveError| BackendError::Device(e.to_string());
        let started = std::time::Instant::now();
        match &self.zero {
            Some((ranges, rank)) => {
                let mine = ranges[*rank].clone();
                let mut part = vec![0.0f32; mine.len()];
                comm.reduce_scatter(&self.grads, ranges, &mut part).map_err(dev)?;
                self.grads[mine].copy_from_slice(&part);
            }
            None => comm.all_reduce(&mut self.grads).map_err(dev)?,
        }
        self.comm += started.elapsed().as_secs_f64();
        Ok(())
    }

    /// Seconds spent in collectives since the last call.
    pub fn take_comm_seconds(&mut self) -> f64 {
        std::mem::take(&mut self.comm)
    }

    /// The global gradient norm after [`CpuBackend::reduce_grads`]: the same partial sums over
    /// [`NORM_BLOCK`]s, added in the same order, as [`global_norm`] of the whole gradient.
    pub fn grad_norm_across(&mut self, comm: &mut dyn Collective) -> Result<f32, BackendError> {
        let Some((ranges, rank)) = &self.zero else {
            return Ok(global_norm(&self.grads));
        };
        let mine = &self.grads[ranges[*rank].clone()];
        let parts: Vec<f64> =
            mine.par_chunks(NORM_BLOCK).map(|c| c.iter().map(|&x| (x as f64) * (x as f64)).sum()).collect();
        let started = std::time::Instant::now();
        let all = comm.all_gather_f64(&parts).map_err(|e| BackendError::Device(e.to_string()))?;
        self.comm += started.elapsed().as_secs_f64();
        Ok(all.iter().sum::<f64>().sqrt() as f32)
    }

    /// One AdamW step: of everything, or (ZeRO-1) of this rank's shard, whose new values every
    /// rank then gathers.
    pub fn step_across(
        &mut self,
        comm: &mut dyn Collective,
        opt: &AdamW,
        lr: f32,
        grad_scale: f32,
    ) -> Result<(), BackendError> {
        let Some((ranges, rank)) = &self.zero else {
            return self.step(opt, lr, grad_scale);
        };
        let mine = ranges[*rank].clone();
        self.adam.update_scaled(opt, &mut self.params.data[mine.clone()], &self.grads[mine], lr, grad_scale);
        let started = std::time::Instant::now();
        comm.all_gather(&mut self.params.data, ranges).map_err(|e| BackendError::Device(e.to_string()))?;
        self.comm += started.elapsed().as_secs_f64();
        Ok(())
    }

    /// Parameters and every moment (gathered from all ranks under ZeRO-1): what a checkpoint
    /// holds, the same whatever the world size. Every rank must call it.
    pub fn state_across(&self, comm: &mut dyn Collective) -> Result<HostState, BackendError> {
        let Some((ranges, rank)) = &self.zero else {
            return self.state();
        };
        let n = self.params.data.len();
        let mine = ranges[*rank].clone();
        let dev = |e: crate::collective::CollectiveError| BackendError::Device(e.to_string());
        let (mut m, mut v) = (vec![0.0f32; n], vec![0.0f32; n]);
        m[mine.clone()].copy_from_slice(&self.adam.m);
        v[mine].copy_from_slice(&self.adam.v);
        comm.all_gather(&mut m, ranges).map_err(dev)?;
        comm.all_gather(&mut v, ranges).map_err(dev)?;
        Ok(HostState { params: self.params.data.clone(), m, v, step: self.adam.step })
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    pub fn grads(&self) -> &[f32] {
        &self.grads
    }

    fn workspace(&mut self, b: usize, t: usize) -> Result<&mut Workspace<f32>, BackendError> {
        let cfg = self.params.config;
        if b == 0 || t == 0 || t > cfg.max_seq_len {
            return Err(BackendError::Shape(format!("B={b} T={t} (T must be 1..={})", cfg.max_seq_len)));
        }
        if self.ws.as_ref().is_none_or(|w| w.shape() != (b, t)) {
            self.ws = None; // free the old shape's buffers first
            self.ws = Some(Workspace::new(cfg, b, t));
        }
        self.ws.as_mut().ok_or_else(|| BackendError::Device("no workspace".into()))
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }

    fn config(&self) -> &GptConfig {
        &self.params.config
    }

    fn forward(
        &mut self,
        tokens: &[u32],
        targets: Option<&[u32]>,
        b: usize,
        t: usize,
    ) -> Result<Option<f32>, BackendError> {
        let v = self.params.config.vocab_size;
        if tokens.len() != b * t || targets.is_some_and(|y| y.len() != b * t) {
            return Err(BackendError::Shape(format!("{} tokens for B={b} x T={t}", tokens.len())));
        }
        if let Some(&bad) = tokens.iter().chain(targets.unwrap_or(&[])).find(|&&x| x as usize >= v) {
            return Err(BackendError::Shape(format!("token id {bad} outside the vocabulary of {v}")));
        }
        self.workspace(b, t)?;
        let ws = self.ws.as_mut().ok_or_else(|| BackendError::Device("no workspace".into()))?;
        Ok(ws.forward(&self.params.data, tokens, targets))
    }

    fn logits_row(&self, row: usize, out: &mut [f32]) -> Result<(), BackendError> {
        let vp = self.params.config.padded_vocab_size;
        let ws = self.ws.as_ref().filter(|w| w.has_logits());
        let ws = ws.ok_or_else(|| BackendError::Shape("no logits: no forward pass since the last backward".into()))?;
        let logits = ws.logits();
        let src = logits.get(row * vp..(row + 1) * vp).ok_or_else(|| BackendError::Shape(format!("row {row}")))?;
        out.get_mut(..vp).ok_or_else(|| BackendError::Shape("output shorter than Vp".into()))?.copy_from_slice(src);
        Ok(())
    }

    fn position_losses(&self, targets: &[u32], out: &mut [f32]) -> Result<(), BackendError> {
        let ws = self.ws.as_ref().filter(|w| w.has_logits());
        let ws = ws.ok_or_else(|| BackendError::Shape("no logits: no forward pass since the last backward".into()))?;
        let (b, t) = ws.shape();
        if targets.len() != b * t || out.len() != b * t {
            return Err(BackendError::Shape(format!("{} targets for B={b} x T={t}", targets.len())));
        }
        out.copy_from_slice(&ws.position_losses(targets));
        Ok(())
    }

    fn peak_flops(&mut self) -> f64 {
        *self.peak.get_or_insert_with(|| {
            let n = 512;
            let (x, y) = (vec![1.0f32; n * n], vec![0.5f32; n * n]);
            let mut z = vec![0.0f32; n * n];
            crate::forward::matmul_forward(&mut z, &x, &y, None, n, n); // warm-up
            let reps = 8;
            let start = std::time::Instant::now();
            for _ in 0..reps {
                crate::forward::matmul_forward(&mut z, &x, &y, None, n, n);
            }
            2.0 * (n * n * n * reps) as f64 / start.elapsed().as_secs_f64().max(1e-9)
        })
    }

    fn backward(&mut self, tokens: &[u32], targets: &[u32], scale: f32) -> Result<(), BackendError> {
        let ws = self.ws.as_mut().filter(|w| w.has_logits());
        let ws = ws.ok_or_else(|| BackendError::Shape("backward without a forward pass".into()))?;
        let (b, t) = ws.shape();
        if tokens.len() != b * t || targets.len() != b * t {
            return Err(BackendError::Shape(format!("{} tokens for B={b} x T={t}", tokens.len())));
        }
        ws.backward(&self.params.data, &mut self.grads, tokens, targets, scale);
        Ok(())
    }

    fn zero_grad(&mut self) -> Result<(), BackendError> {
        self.grads.par_iter_mut().for_each(|g| *g = 0.0);
        Ok(())
    }

    fn grad_norm(&self) -> Result<f32, BackendError> {
        Ok(global_norm(&self.grads))
    }

    fn step(&mut self, opt: &AdamW, lr: f32, grad_scale: f32) -> Result<(), BackendError> {
        if self.zero.is_some() {
            return Err(BackendError::Device("the moments are sharded: step with step_across".into()));
        }
        self.adam.update_scaled(opt, &mut self.params.data, &self.grads, lr, grad_scale);
        Ok(())
    }

    fn state(&self) -> Result<HostState, BackendError> {
        if self.zero.is_some() {
            return Err(BackendError::Device("the moments are sharded: gather them with state_across".into()));
        }
        Ok(HostState {
            params: self.params.data.clone(),
            m: self.adam.m.clone(),
            v: self.adam.v.clone(),
            step: self.adam.step,
        })
    }

    /// Replaces parameters and moments; under ZeRO-1 keeps this rank's shard of the moments (a
    /// checkpoint of any world size resumes on any other).
    fn load_state(&mut self, s: &HostState) -> Result<(), BackendError> {
        let n = self.params.data.len();
        if s.params.len() != n || s.m.len() != n || s.v.len() != n {
            return Err(BackendError::Shape(format!("state of {} parameters for a model of {n}", s.params.len())));
        }
        let mine = self.shard_range();
        self.params.data.copy_from_slice(&s.params);
        self.adam.m.copy_from_slice(&s.m[mine.clone()]);
        self.adam.v.copy_from_slice(&s.v[mine]);
        self.adam.step = s.step;
        Ok(())
    }

    fn moment_bytes(&self) -> usize {
        CpuBackend::moment_bytes(self)
    }

    fn shard_optimizer(&mut self, rank: usize, world: usize) -> Result<(), BackendError> {
        CpuBackend::shard_optimizer(self, rank, world);
        Ok(())
    }

    fn reduce_grads(&mut self, comm: &mut dyn Collective) -> Result<(), BackendError> {
        CpuBackend::reduce_grads(self, comm)
    }

    fn grad_norm_across(&mut self, comm: &mut dyn Collective) -> Result<f32, BackendError> {
        CpuBackend::grad_norm_across(self, comm)
    }

    fn step_across(
        &mut self,
        comm: &mut dyn Collective,
        opt: &AdamW,
        lr: f32,
        grad_scale: f32,
    ) -> Result<(), BackendError> {
        CpuBackend::step_across(self, comm, opt, lr, grad_scale)
    }

    fn state_across(&self, comm: &mut dyn Collective) -> Result<HostState, BackendError> {
        CpuBackend::state_across(self, comm)
    }

    fn take_comm_seconds(&mut self) -> f64 {
        CpuBackend::take_comm_seconds(self)
    }
}

/// The L2 norm of `xs`, summed in f64 over fixed blocks in order (the same on any thread count).
pub fn global_norm(xs: &[f32]) -> f32 {
    let parts: Vec<f64> = xs.par_chunks(1 << 16).map(|c| c.iter().map(|&x| (x as f64) * (x as f64)).sum()).collect();
    parts.iter().sum::<f64>().sqrt() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_are_made_by_name_and_a_missing_one_says_why() {
        let p = Params::gpt2_init(GptConfig::new(8, 64, 1, 1, 8, 64), 1);
        let cpu = make("cpu", p.clone()).map(|b| b.name()).unwrap_or_default();
        assert!(cpu.starts_with("cpu"), "{cpu}");
        let err = |kind: &str| make(kind, p.clone()).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err("tpu").contains("unknown backend \"tpu\""));
        assert!(err("cuda:x").contains("cuda:N"));
        if cfg!(not(feature = "cuda")) {
            assert!(err("cuda").contains("--features cuda"), "{}", err("cuda"));
        }
        // One process only where a backend has no collectives of its own.
        let mut one = make("cpu", p.clone()).unwrap_or_else(|e| panic!("{e}"));
        assert!(one.shard_optimizer(0, 1).is_ok());
        assert!(single("x", 2).is_err() && single("x", 1).is_ok());
    }

    #[test]
    fn plain_cuda_follows_the_launchers_local_rank() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|p| p.0 == k).map(|p| p.1.to_string())
        };
        assert_eq!(local_rank(env(&[])), None);
        assert_eq!(local_rank(env(&[("OMPI_COMM_WORLD_LOCAL_RANK", "3"), ("SLURM_LOCALID", "1")])), Some(3));
        assert_eq!(local_rank(env(&[("SLURM_LOCALID", "1"), ("LOCAL_RANK", "2")])), Some(1));
        assert_eq!(local_rank(env(&[("OMPI_COMM_WORLD_LOCAL_RANK", "x"), ("LOCAL_RANK", " 2 ")])), Some(2));
    }

    #[test]
    fn the_cpu_backend_trains_accumulates_and_round_trips_its_state() {
        let cfg = GptConfig::new(16, 64, 2, 2, 32, 64);
        let (b, t) = (2, 16);
        let tokens: Vec<u32> = (0..b * t).map(|i| ((i * 17 + 3) % 64) as u32).collect();
        let targets: Vec<u32> = (0..b * t).map(|i| ((i * 31 + 7) % 64) as u32).collect();
        let mut one = CpuBackend::new(Params::gpt2_init(cfg, 5));
        one.zero_grad().unwrap();
        one.forward(&tokens, Some(&targets), b, t).unwrap();
        one.backward(&tokens, &targets, 1.0 / (b * t) as f32).unwrap();
        // The same batch as two micro-batches of one row each, scaled by 1 / (2 T).
        let mut two = CpuBackend::new(Params::gpt2_init(cfg, 5));
        two.zero_grad().unwrap();
        for row in 0..2 {
            let (x, y) = (&tokens[row * t..(row + 1) * t], &targets[row * t..(row + 1) * t]);
            two.forward(x, Some(y), 1, t).unwrap();
            two.backward(x, y, 1.0 / (b * t) as f32).unwrap();
        }
        let (g1, g2) = (one.grads(), two.grads());
        let worst = g1.iter().zip(g2).map(|(a, b)| (a - b).abs() / a.abs().max(1e-3)).fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "accumulated micro-batches differ from one batch by {worst}");
        let norm = one.grad_norm().unwrap();
        let want = g1.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt() as f32;
        assert!((norm - want).abs() <= 1e-6 * want && norm > 0.0);
        one.step(&AdamW::default(), 1e-3, 0.5).unwrap();
        let s = one.state().unwrap();
        assert_eq!(s.step, 1);
        let mut other = CpuBackend::new(Params::gpt2_init(cfg, 6));
        other.load_state(&s).unwrap();
        assert_eq!(other.state().unwrap(), s);
        assert!(other.load_state(&HostState { params: vec![0.0; 3], ..s }).is_err());
        // Shapes and ids are checked, not trusted.
        assert!(one.forward(&tokens, None, 3, t).is_err());
        assert!(one.forward(&[64; 16], None, 1, 16).is_err(), "id 64 is outside a vocabulary of 64");
        assert!(one.forward(&[1; 17 * 2], None, 2, 17).is_err(), "T beyond the context");
        let mut row = vec![0.0; cfg.padded_vocab_size];
        one.forward(&tokens, None, b, t).unwrap();
        one.logits_row(b * t - 1, &mut row).unwrap();
        assert!(row[..64].iter().any(|&x| x != 0.0));
        assert!(one.logits_row(b * t, &mut row).is_err());
    }
}
