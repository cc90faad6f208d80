//! The CUDA backend (cargo feature `cuda`): the model's parameters, gradients, AdamW moments and
//! activations in device memory, each one allocation carved by the CPU backend's size tables;
//! the kernels of `kernels/gpt_fp32.cu` (compiled at run time by NVRTC for the device's compute
//! capability, cached on disk) and cuBLAS's SGEMM for the matmuls. fp32 throughout, the
//! precision of the CPU backend and of the PyTorch parity file.
//!
//! Nothing here needs a CUDA toolkit to build: `cudarc` loads `libcuda`, `libcublas` and
//! `libnvrtc` when a backend is made ([`CudaBackend::new`] refuses cleanly when one is missing).
//! [`compile_kernels`] needs only NVRTC, so CI compiles every kernel for sm_90 without a GPU.
//!
//! Determinism: no atomics (the attention's key and value gradients are summed per key, the
//! token embedding's per token over the rows that hold it, in row order), one stream, and
//! cuBLAS on one stream is deterministic, so a run repeats bit for bit on the same GPU and
//! library versions. The CPU backend is the reference: see `self_test`.

use std::sync::Arc;

use cudarc::cublas::{result as blas, sys as blas_sys};
use cudarc::driver::{CudaContext, CudaFunction, CudaStream, LaunchConfig, PushKernelArg, result as drv};

use crate::backend::{Backend, BackendError, HostState, NORM_BLOCK};
use crate::collective::Collective;
use crate::forward::{act_sizes, tensor};
use crate::model::{GptConfig, Param, Params};
use crate::optim::AdamW;

/// The kernels' CUDA C source.
pub const KERNELS: &str = include_str!("../kernels/gpt_fp32.cu");

/// The largest head size the attention kernels take (`HS_MAX` in the source).
pub const MAX_HEAD_SIZE: usize = 256;

/// Rows per chunk of the column sums (bias and LayerNorm gradients).
const ROWS_PER: usize = 256;

/// Every kernel the backend launches, by its name in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum K {
    EncoderForward,
    EncoderBackwardWpe,
    EncoderBackwardWte,
    LayernormForward,
    LayernormBackwardDinp,
    LayernormBackwardPartial,
    ColumnSumPartial,
    ColumnSumFinish,
    RowsOfBias,
    GeluForward,
    GeluBackward,
    AttentionForward,
    AttentionDsum,
    AttentionBackwardDq,
    AttentionBackwardDkv,
    CrossentropyForward,
    CrossentropyBackward,
    Adamw,
    SumSquares,
}

const ALL: [(K, &str); 19] = [
    (K::EncoderForward, "encoder_forward"),
    (K::EncoderBackwardWpe, "encoder_backward_wpe"),
    (K::EncoderBackwardWte, "encoder_backward_wte"),
    (K::LayernormForward, "layernorm_forward"),
    (K::LayernormBackwardDinp, "layernorm_backward_dinp"),
    (K::LayernormBackwardPartial, "layernorm_backward_partial"),
    (K::ColumnSumPartial, "column_sum_partial"),
    (K::ColumnSumFinish, "column_sum_finish"),
    (K::RowsOfBias, "rows_of_bias"),
    (K::GeluForward, "gelu_forward"),
    (K::GeluBackward, "gelu_backward"),
    (K::AttentionForward, "attention_forward"),
    (K::AttentionDsum, "attention_dsum"),
    (K::AttentionBackwardDq, "attention_backward_dq"),
    (K::AttentionBackwardDkv, "attention_backward_dkv"),
    (K::CrossentropyForward, "crossentropy_forward"),
    (K::CrossentropyBackward, "crossentropy_backward"),
    (K::Adamw, "adamw"),
    (K::SumSquares, "sum_squares"),
];

/// The names of every kernel in [`KERNELS`].
pub fn kernel_names() -> impl Iterator<Item = &'static str> {
    ALL.iter().map(|k| k.1)
}

fn dev<E: std::fmt::Debug>(what: &str) -> impl Fn(E) -> BackendError + '_ {
    move |e| BackendError::Device(format!("{what}: {e:?}"))
}

/// Whether the libraries the backend loads are present: (driver, cuBLAS, NVRTC).
pub fn libraries_present() -> (bool, bool, bool) {
    // SAFETY: each only tries to load its library by name.
    unsafe {
        (
            cudarc::driver::sys::is_culib_present(),
            cudarc::cublas::sys::is_culib_present(),
            cudarc::nvrtc::sys::is_culib_present(),
        )
    }
}

/// The number of GPUs the driver sees.
pub fn device_count() -> Result<usize, BackendError> {
    if !libraries_present().0 {
        return Err(BackendError::Device("the CUDA backend needs libcuda (missing); set LD_LIBRARY_PATH".into()));
    }
    Ok(CudaContext::device_count().map_err(dev("counting GPUs"))?.max(0) as usize)
}

/// The kernels compiled for one GPU: PTX (for reading) and machine code. The backend loads the
/// machine code, which the driver takes from a newer NVRTC of the same major version, where the
/// PTX would need a driver as new as the compiler.
pub struct Compiled {
    pub ptx: String,
    pub cubin: Vec<u8>,
}

/// Compiles [`KERNELS`] with NVRTC for compute capability `major.minor` (`sm_90` on Hopper).
pub fn compile_kernels(major: i32, minor: i32) -> Result<Compiled, BackendError> {
    use cudarc::nvrtc::{result as rtc, sys as rtc_sys};
    if !libraries_present().2 {
        return Err(BackendError::Device(
            "libnvrtc not found (set LD_LIBRARY_PATH to a CUDA 12 or 13 lib directory)".into(),
        ));
    }
    let arch = format!("sm_{major}{minor}");
    let failed = |what: &str, e: &dyn std::fmt::Debug| {
        BackendError::Device(format!("NVRTC {what} kernels/gpt_fp32.cu for {arch}: {e:?}"))
    };
    let src = std::ffi::CString::new(KERNELS).map_err(|e| failed("reading", &e))?;
    let name = c"gpt_fp32.cu";
    let prog = rtc::create_program(&src, Some(name)).map_err(|e| failed("creating a program for", &e))?;
    /// Destroys the program on every path out.
    struct Program(rtc_sys::nvrtcProgram);
    impl Drop for Program {
        fn drop(&mut self) {
            // SAFETY: created above, destroyed once.
            let _ = unsafe { rtc::destroy_program(self.0) };
        }
    }
    let prog = Program(prog);
    let opts = [format!("--gpu-architecture={arch}"), "--std=c++17".to_string()];
    let text = |raw: Vec<std::ffi::c_char>| -> String {
        let bytes: Vec<u8> = raw.into_iter().map(|c| c as u8).take_while(|&b| b != 0).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    // SAFETY: prog is a live program; the options are plain strings.
    if let Err(e) = unsafe { rtc::compile_program(prog.0, &opts) } {
        // SAFETY: as above.
        let log = unsafe { rtc::get_program_log(prog.0) }.map(text).unwrap_or_default();
        return Err(BackendError::Device(format!("NVRTC compiling kernels/gpt_fp32.cu for {arch}: {e:?}\n{log}")));
    }
    // SAFETY: the program compiled.
    let ptx = unsafe { rtc::get_ptx(prog.0) }.map(text).map_err(|e| failed("reading the PTX of", &e))?;
    let mut size = 0usize;
    // SAFETY: the program compiled for a real architecture, so it holds machine code.
    unsafe { rtc_sys::nvrtcGetCUBINSize(prog.0, &mut size) }.result().map_err(|e| failed("sizing the code of", &e))?;
    let mut cubin = vec![0u8; size];
    // SAFETY: cubin has the size NVRTC reported.
    unsafe { rtc_sys::nvrtcGetCUBIN(prog.0, cubin.as_mut_ptr().cast()) }
        .result()
        .map_err(|e| failed("reading the code of", &e))?;
    Ok(Compiled { ptx, cubin })
}

/// The NVRTC library's version (major, minor).
fn nvrtc_version() -> Result<(i32, i32), BackendError> {
    let (mut major, mut minor) = (0, 0);
    // SAFETY: two plain out-parameters.
    unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) }.result().map_err(dev("NVRTC version"))?;
    Ok((major, minor))
}

/// The directory of the on-disk kernel cache: `GRIST_KERNEL_CACHE` (`off`: none), else
/// `$XDG_CACHE_HOME/grist/kernels`, else `$HOME/.cache/grist/kernels`.
pub fn cache_dir() -> Option<std::path::PathBuf> {
    cache_dir_from(|k| std::env::var_os(k))
}

fn cache_dir_from(env: impl Fn(&str) -> Option<std::ffi::OsString>) -> Option<std::path::PathBuf> {
    use std::path::PathBuf;
    let var = |k: &str| env(k).filter(|v| !v.is_empty());
    match var(shards::env::KERNEL_CACHE) {
        Some(v) if v == "off" => None,
        Some(v) => Some(PathBuf::from(v)),
        None => var("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|c| c.join("grist").join("kernels")),
    }
}

/// Where a backend's kernels came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Read from this cache file.
    Cache(std::path::PathBuf),
    /// Compiled by NVRTC; `stored` is the cache file written, `note` why none was used or written.
    Compiled { stored: Option<std::path::PathBuf>, note: Option<String> },
}

/// A cache file: this magic, the code's length and XXH3-64 (little-endian u64s), the code.
const CACHE_MAGIC: &[u8; 16] = b"grist-cubin v1\n\0";

/// The cache file's name for this source, architecture and NVRTC version: any change to one of
/// them is another file, so an entry is never stale, only unused.
fn cache_name(major: i32, minor: i32, nvrtc: (i32, i32)) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(KERNELS.as_bytes());
    h.update(format!("\0sm_{major}{minor}\0nvrtc {}.{}\0--std=c++17", nvrtc.0, nvrtc.1).as_bytes());
    format!("gpt_fp32-sm_{major}{minor}-nvrtc{}.{}-{:016x}.cubin", nvrtc.0, nvrtc.1, h.digest())
}

/// The code of a cache file, or why it can't be used (truncated, corrupt, not machine code).
fn read_cache_file(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let head = CACHE_MAGIC.len() + 16;
    if bytes.len() < head || &bytes[..CACHE_MAGIC.len()] != CACHE_MAGIC {
        return Err("no grist cubin header".into());
    }
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let (len, sum) = (word(CACHE_MAGIC.len()), word(CACHE_MAGIC.len() + 8));
    let code = &bytes[head..];
    if code.len() as u64 != len {
        return Err(format!("header says {len} bytes of code, the file holds {}", code.len()));
    }
    if xxhash_rust::xxh3::xxh3_64(code) != sum {
        return Err("checksum mismatch".into());
    }
    if !code.starts_with(b"\x7fELF") {
        return Err("not an ELF image".into());
    }
    Ok(code.to_vec())
}

/// Writes a cache file atomically (storage's temporary file renamed over the name, synced), so
/// a crash or a second process never leaves a partial entry under the name.
fn write_cache_file(path: &std::path::Path, code: &[u8]) -> shards::error::Result<()> {
    let mut framed = Vec::with_capacity(CACHE_MAGIC.len() + 16 + code.len());
    framed.extend_from_slice(CACHE_MAGIC);
    framed.extend_from_slice(&(code.len() as u64).to_le_bytes());
    framed.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(code).to_le_bytes());
    framed.extend_from_slice(code);
    shards::storage::Loc::local(path).write_atomic(&framed)
}

/// The kernels' machine code for compute capability `major.minor`: from the cache in `dir` when
/// an intact entry for this source, architecture and NVRTC version is there, else compiled by
/// NVRTC and stored there. `fresh` skips the lookup (an entry the driver refused). A cache that
/// can't be read or written never fails the call: the kernels are compiled, and the origin says
/// why the cache was not used.
pub fn cached_kernels(
    dir: Option<&std::path::Path>,
    major: i32,
    minor: i32,
    fresh: bool,
) -> Result<(Vec<u8>, Origin), BackendError> {
    if !libraries_present().2 {
        return Err(BackendError::Device(
            "libnvrtc not found (set LD_LIBRARY_PATH to a CUDA 12 or 13 lib directory)".into(),
        ));
    }
    let Some(dir) = dir else {
        let code = compile_kernels(major, minor)?.cubin;
        return Ok((code, Origin::Compiled { stored: None, note: Some("kernel cache off".into()) }));
    };
    let path = dir.join(cache_name(major, minor, nvrtc_version()?));
    let mut note = None;
    if !fresh {
        match std::fs::read(&path) {
            Ok(bytes) => match read_cache_file(&bytes) {
                Ok(code) => return Ok((code, Origin::Cache(path))),
                Err(why) => note = Some(format!("{} unusable ({why}); replaced", path.display())),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => note = Some(format!("reading {}: {e}", path.display())),
        }
    }
    let code = compile_kernels(major, minor)?.cubin;
    match write_cache_file(&path, &code) {
        Ok(()) => Ok((code, Origin::Compiled { stored: Some(path), note })),
        Err(e) => Ok((code, Origin::Compiled { stored: None, note: Some(format!("writing {}: {e}", path.display())) })),
    }
}

/// One device allocation, freed on drop (the backend's context is current on its thread).
struct DevBuf {
    ptr: u64,
    bytes: usize,
}

impl DevBuf {
    fn new(bytes: usize) -> Result<DevBuf, BackendError> {
        // SAFETY: a plain allocation of at least one byte in the current context.
        let ptr = unsafe { drv::malloc_sync(bytes.max(1)) }
            .map_err(|e| BackendError::Device(format!("allocating {bytes} bytes: {e:?}")))?;
        Ok(DevBuf { ptr, bytes })
    }

    /// The address of f32 element `i`.
    fn f(&self, i: usize) -> u64 {
        self.ptr + 4 * i as u64
    }
}

impl Drop for DevBuf {
    fn drop(&mut self) {
        // SAFETY: ptr came from malloc_sync and is freed once; errors at teardown are ignored.
        let _ = unsafe { drv::free_sync(self.ptr) };
    }
}

/// The buffers of one batch shape.
struct Workspace {
    b: usize,
    t: usize,
    /// Activations, carved as the CPU backend's (`forward::act_sizes`).
    acts: DevBuf,
    /// dresidual (N, C), dbig (N, 4C), dsmall (N, C).
    grad_bufs: DevBuf,
    tokens: DevBuf,
    targets: DevBuf,
    losses: DevBuf,
    dsum: DevBuf,
    /// Partial column sums: chunks x 4C.
    partial: DevBuf,
    /// The token embedding's gradient groups: rows by token, group starts, group tokens.
    wte_rows: DevBuf,
    wte_starts: DevBuf,
    wte_ids: DevBuf,
    /// Whether `acts` holds the last forward pass's logits.
    fresh: bool,
}

/// Where one layer's activations lie in `acts`.
struct LayerAt {
    ln1: usize,
    ln1_mean: usize,
    ln1_rstd: usize,
    qkv: usize,
    atty: usize,
    att_lse: usize,
    x_mid: usize,
    ln2: usize,
    ln2_mean: usize,
    ln2_rstd: usize,
    fc: usize,
    fcg: usize,
    x_out: usize,
}

/// Offsets (in f32 elements) of every activation, in carving order.
struct ActsAt {
    encoded: usize,
    layers: Vec<LayerAt>,
    lnf: usize,
    lnf_mean: usize,
    lnf_rstd: usize,
    logits: usize,
    lse: usize,
    len: usize,
}

fn acts_at(cfg: &GptConfig, b: usize, t: usize) -> ActsAt {
    let (layer, global) = act_sizes(cfg, b, t);
    let mut at = 0;
    let mut take = |k: usize| {
        let here = at;
        at += k;
        here
    };
    let encoded = take(global[0]);
    let layers = (0..cfg.num_layers)
        .map(|_| LayerAt {
            ln1: take(layer[0]),
            ln1_mean: take(layer[1]),
            ln1_rstd: take(layer[2]),
            qkv: take(layer[3]),
            atty: take(layer[4]),
            att_lse: take(layer[5]),
            x_mid: take(layer[6]),
            ln2: take(layer[7]),
            ln2_mean: take(layer[8]),
            ln2_rstd: take(layer[9]),
            fc: take(layer[10]),
            fcg: take(layer[11]),
            x_out: take(layer[12]),
        })
        .collect();
    let (lnf, lnf_mean, lnf_rstd) = (take(global[1]), take(global[2]), take(global[3]));
    let (logits, lse) = (take(global[4]), take(global[5]));
    ActsAt { encoded, layers, lnf, lnf_mean, lnf_rstd, logits, lse, len: at }
}

/// The CUDA backend: one GPU, fp32. (Fields drop in order: the buffers before the context.)
pub struct CudaBackend {
    params: DevBuf,
    grads: DevBuf,
    m: DevBuf,
    v: DevBuf,
    /// Per parameter: 1 where weight decay applies.
    decay: DevBuf,
    norm_parts: DevBuf,
    ws: Option<Workspace>,
    cfg: GptConfig,
    step: u64,
    peak: Option<f64>,
    device_name: String,
    kernels: Vec<CudaFunction>,
    origin: Origin,
    /// ZeRO-1: every rank's parameter range and this rank's index; `m` and `v` then hold this
    /// rank's range only.
    zero: Option<(Vec<std::ops::Range<usize>>, usize)>,
    /// Seconds spent in collectives since last taken.
    comm: f64,
    /// The most device memory [`CudaBackend::device_bytes`] has counted.
    peak_bytes: usize,
    blas: blas_sys::cublasHandle_t,
    stream: Arc<CudaStream>,
    ctx: Arc<CudaContext>,
}

// The handle and raw pointers are used from one thread at a time (the training loop's).
unsafe impl Send for CudaBackend {}

impl Drop for CudaBackend {
    fn drop(&mut self) {
        let _ = self.ctx.bind_to_thread();
        let _ = self.stream.synchronize();
        // SAFETY: the handle was created in new() and is destroyed once.
        let _ = unsafe { blas::destroy_handle(self.blas) };
    }
}

/// Launch geometry: 256 threads per block.
fn elems(n: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (n.div_ceil(256).max(1) as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 }
}

/// One warp per row (8 rows per block of 256 threads).
fn warps(rows: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (rows.div_ceil(8).max(1) as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 }
}

/// Column sums: 256 columns per block, one row chunk per grid row.
fn columns(c: usize, chunks: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (c.div_ceil(256) as u32, chunks as u32, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 }
}

macro_rules! launch {
    ($self:expr, $k:expr, $cfg:expr, $($arg:expr),* $(,)?) => {{
        let f = &$self.kernels[$k as usize];
        let mut builder = $self.stream.launch_builder(f);
        $(
            let a = $arg;
            builder.arg(&a);
        )*
        // SAFETY: every argument matches the kernel's parameter list in kernels/gpt_fp32.cu
        // (pointers as u64, int as i32, long long as i64, float as f32), and every pointer
        // addresses a live buffer of this backend large enough for the shapes passed.
        unsafe { builder.launch($cfg) }.map_err(dev(ALL[$k as usize].1))?;
    }};
}

impl CudaBackend {
    /// Makes the backend on GPU `ordinal` with `params` uploaded and zero moments.
    pub fn new(params: Params, ordinal: usize) -> Result<CudaBackend, BackendError> {
        let cfg = params.config;
        if cfg.head_size() > MAX_HEAD_SIZE {
            return Err(BackendError::Device(format!(
                "head size {} is larger than the attention kernels take ({MAX_HEAD_SIZE})",
                cfg.head_size()
            )));
        }
        let (driver, cublas, nvrtc) = libraries_present();
        if !(driver && cublas && nvrtc) {
            return Err(BackendError::Device(format!(
                "the CUDA backend needs libcuda ({}), libcublas ({}) and libnvrtc ({}); set LD_LIBRARY_PATH to their directories",
                if driver { "found" } else { "missing" },
                if cublas { "found" } else { "missing" },
                if nvrtc { "found" } else { "missing" },
            )));
        }
        let ctx = CudaContext::new(ordinal).map_err(dev("opening the GPU"))?;
        // One stream orders everything; the safe layer's per-buffer events are not needed.
        // SAFETY: this backend never shares buffers across streams.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let (major, minor) = ctx.compute_capability().map_err(dev("compute capability"))?;
        let cache = cache_dir();
        let (code, mut origin) = cached_kernels(cache.as_deref(), major, minor, false)?;
        let module = match ctx.load_module(cudarc::nvrtc::Ptx::from_binary(code)) {
            Ok(m) => m,
            // A cached image the driver refuses is compiled again and replaced.
            Err(e) if matches!(origin, Origin::Cache(_)) => {
                let (code, again) = cached_kernels(cache.as_deref(), major, minor, true)?;
                origin = match again {
                    Origin::Compiled { stored, .. } => {
                        Origin::Compiled { stored, note: Some(format!("the driver refused the cached kernels: {e:?}")) }
                    }
                    cached => cached,
                };
                ctx.load_module(cudarc::nvrtc::Ptx::from_binary(code)).map_err(dev("loading the kernels"))?
            }
            Err(e) => return Err(dev("loading the kernels")(e)),
        };
        let kernels =
            ALL.iter().map(|(_, name)| module.load_function(name).map_err(dev(name))).collect::<Result<Vec<_>, _>>()?;
        let blas = blas::create_handle().map_err(dev("cuBLAS"))?;
        // SAFETY: the handle is fresh; the stream is this context's.
        unsafe { blas::set_stream(blas, stream.cu_stream() as blas_sys::cudaStream_t) }
            .map_err(dev("cuBLAS stream"))?;
        let n = params.data.len();
        let mut decay = Vec::with_capacity(n);
        for (p, len) in cfg.param_sizes() {
            let matrix =
                matches!(p, Param::Wte | Param::Wpe | Param::QkvW | Param::AttProjW | Param::FcW | Param::FcProjW);
            decay.extend(std::iter::repeat_n(matrix as u8, len));
        }
        let device_name = ctx.name().unwrap_or_else(|_| "GPU".into());
        let mut me = CudaBackend {
            cfg,
            params: DevBuf::new(4 * n)?,
            grads: DevBuf::new(4 * n)?,
            m: DevBuf::new(4 * n)?,
            v: DevBuf::new(4 * n)?,
            decay: DevBuf::new(n)?,
            norm_parts: DevBuf::new(8 * n.div_ceil(NORM_BLOCK))?,
            ctx,
            stream,
            blas,
            kernels,
            step: 0,
            ws: None,
            peak: None,
            device_name,
            origin,
            zero: None,
            comm: 0.0,
            peak_bytes: 0,
        };
        me.peak_bytes = me.device_bytes();
        me.upload(&me.params, &params.data)?;
        me.upload(&me.decay, &decay)?;
        me.zero(&me.grads)?;
        me.zero(&me.m)?;
        me.zero(&me.v)?;
        me.sync()?;
        Ok(me)
    }

    fn upload<T>(&self, dst: &DevBuf, src: &[T]) -> Result<(), BackendError> {
        self.upload_at(dst, 0, src)
    }

    /// Copies `src` into `dst` from byte `offset` on.
    fn upload_at<T>(&self, dst: &DevBuf, offset: usize, src: &[T]) -> Result<(), BackendError> {
        self.bind()?;
        let bytes = std::mem::size_of_val(src);
        if offset + bytes > dst.bytes {
            return Err(BackendError::Shape(format!("{bytes} bytes at {offset} into a buffer of {}", dst.bytes)));
        }
        // SAFETY: dst holds `offset + bytes`; src lives until the stream is synchronized below.
        unsafe { drv::memcpy_htod_async(dst.ptr + offset as u64, src, self.stream.cu_stream()) }
            .map_err(dev("copy to the GPU"))?;
        self.sync()
    }

    fn download<T>(&self, dst: &mut [T], src: u64) -> Result<(), BackendError> {
        self.bind()?;
        // SAFETY: callers pass an address with at least dst's size behind it; synchronized below.
        unsafe { drv::memcpy_dtoh_async(dst, src, self.stream.cu_stream()) }.map_err(dev("copy from the GPU"))?;
        self.sync()
    }

    fn zero(&self, buf: &DevBuf) -> Result<(), BackendError> {
        self.zero_at(buf.ptr, buf.bytes)
    }

    fn zero_at(&self, ptr: u64, bytes: usize) -> Result<(), BackendError> {
        self.bind()?;
        // SAFETY: the range lies in a live buffer of this backend.
        unsafe { drv::memset_d8_async(ptr, 0, bytes, self.stream.cu_stream()) }.map_err(dev("memset"))
    }

    /// Makes the context current on this thread (raw driver calls need it; launches do it).
    fn bind(&self) -> Result<(), BackendError> {
        self.ctx.bind_to_thread().map_err(dev("binding the context"))
    }

    fn sync(&self) -> Result<(), BackendError> {
        self.stream.synchronize().map_err(dev("synchronizing"))
    }

    /// The address of parameter tensor `p` (layer `i` of `per` elements each) in `buf`.
    fn at(&self, buf: &DevBuf, p: Param, i: usize, per: usize) -> u64 {
        buf.f(tensor(&self.cfg, p).start + i * per)
    }

    /// Row-major out (n, oc) = inp (n, c) . w (oc, c)^T + beta * out, by cuBLAS (column-major,
    /// the same bytes read as out^T (oc, n) = w (c, oc)^T . inp^T (c, n)).
    #[allow(clippy::too_many_arguments)]
    fn gemm_forward(
        &self,
        out: u64,
        inp: u64,
        w: u64,
        n: usize,
        c: usize,
        oc: usize,
        beta: f32,
    ) -> Result<(), BackendError> {
        self.sgemm(
            blas_sys::cublasOperation_t::CUBLAS_OP_T,
            blas_sys::cublasOperation_t::CUBLAS_OP_N,
            (oc, n, c),
            (w, c),
            (inp, c),
            (out, oc),
            beta,
        )
    }

    /// dinp (n, c) = dout (n, oc) . w (oc, c); dw (oc, c) += dout^T . inp.
    #[allow(clippy::too_many_arguments)]
    fn gemm_backward(
        &self,
        dinp: u64,
        dw: u64,
        dout: u64,
        inp: u64,
        w: u64,
        n: usize,
        c: usize,
        oc: usize,
    ) -> Result<(), BackendError> {
        use blas_sys::cublasOperation_t::{CUBLAS_OP_N, CUBLAS_OP_T};
        self.sgemm(CUBLAS_OP_N, CUBLAS_OP_N, (c, n, oc), (w, c), (dout, oc), (dinp, c), 0.0)?;
        self.sgemm(CUBLAS_OP_N, CUBLAS_OP_T, (c, oc, n), (inp, c), (dout, oc), (dw, c), 1.0)
    }

    #[allow(clippy::too_many_arguments)]
    fn sgemm(
        &self,
        ta: blas_sys::cublasOperation_t,
        tb: blas_sys::cublasOperation_t,
        (m, n, k): (usize, usize, usize),
        (a, lda): (u64, usize),
        (b, ldb): (u64, usize),
        (c, ldc): (u64, usize),
        beta: f32,
    ) -> Result<(), BackendError> {
        let alpha = 1.0f32;
        let int = |x: usize| i32::try_from(x).map_err(|_| BackendError::Shape(format!("GEMM dimension {x} over 2^31")));
        // SAFETY: the operands are live device buffers with the extents the shapes imply.
        unsafe {
            blas::sgemm(
                self.blas,
                ta,
                tb,
                int(m)?,
                int(n)?,
                int(k)?,
                &alpha,
                a as *const f32,
                int(lda)?,
                b as *const f32,
                int(ldb)?,
                &beta,
                c as *mut f32,
                int(ldc)?,
            )
        }
        .map_err(dev("cuBLAS SGEMM"))
    }

    /// dst (c) += column sums of x (n, c), in row-chunk order.
    fn column_sums(&self, ws: &Workspace, dst: u64, x: u64, n: usize, c: usize) -> Result<(), BackendError> {
        let chunks = n.div_ceil(ROWS_PER);
        launch!(self, K::ColumnSumPartial, columns(c, chunks), ws.partial.ptr, x, n as i32, c as i32, ROWS_PER as i32);
        launch!(self, K::ColumnSumFinish, elems(c), dst, ws.partial.ptr, chunks as i32, c as i32);
        Ok(())
    }

    /// A LayerNorm's backward: dinp += ..., dw and db += their column sums.
    #[allow(clippy::too_many_arguments)]
    fn layernorm_backward(
        &self,
        ws: &Workspace,
        (dinp, dw, db): (u64, u64, u64),
        dout: u64,
        inp: u64,
        w: u64,
        (mean, rstd): (u64, u64),
        n: usize,
    ) -> Result<(), BackendError> {
        let c = self.cfg.channels;
        let (ni, ci) = (n as i32, c as i32);
        launch!(self, K::LayernormBackwardDinp, warps(n), dinp, dout, inp, w, mean, rstd, ni, ci);
        let chunks = n.div_ceil(ROWS_PER);
        let (pdw, pdb) = (ws.partial.ptr, ws.partial.f(chunks * c));
        launch!(
            self,
            K::LayernormBackwardPartial,
            columns(c, chunks),
            pdw,
            pdb,
            dout,
            inp,
            mean,
            rstd,
            ni,
            ci,
            ROWS_PER as i32
        );
        launch!(self, K::ColumnSumFinish, elems(c), dw, pdw, chunks as i32, ci);
        launch!(self, K::ColumnSumFinish, elems(c), db, pdb, chunks as i32, ci);
        Ok(())
    }

    fn workspace(&mut self, b: usize, t: usize) -> Result<(), BackendError> {
        let cfg = self.cfg;
        if b == 0 || t == 0 || t > cfg.max_seq_len {
            return Err(BackendError::Shape(format!("B={b} T={t} (T must be 1..={})", cfg.max_seq_len)));
        }
        if self.ws.as_ref().is_some_and(|w| (w.b, w.t) == (b, t)) {
            return Ok(());
        }
        self.ws = None; // free the old shape's buffers first
        let n = b * t;
        let c = cfg.channels;
        let at = acts_at(&cfg, b, t);
        self.ws = Some(Workspace {
            b,
            t,
            acts: DevBuf::new(4 * at.len)?,
            grad_bufs: DevBuf::new(4 * n * 6 * c)?,
            tokens: DevBuf::new(4 * n)?,
            targets: DevBuf::new(4 * n)?,
            losses: DevBuf::new(4 * n)?,
            dsum: DevBuf::new(4 * b * cfg.num_heads * t)?,
            partial: DevBuf::new(4 * n.div_ceil(ROWS_PER) * 4 * c)?,
            wte_rows: DevBuf::new(4 * n)?,
            wte_starts: DevBuf::new(4 * (n + 1))?,
            wte_ids: DevBuf::new(4 * n)?,
            fresh: false,
        });
        self.peak_bytes = self.peak_bytes.max(self.device_bytes());
        Ok(())
    }

    fn check_ids(&self, ids: &[u32]) -> Result<Vec<i32>, BackendError> {
        let v = self.cfg.vocab_size;
        if let Some(&bad) = ids.iter().find(|&&x| x as usize >= v) {
            return Err(BackendError::Shape(format!("token id {bad} outside the vocabulary of {v}")));
        }
        Ok(ids.iter().map(|&x| x as i32).collect())
    }

    /// The gradient buffer, copied to the host (laid out as the parameters).
    pub fn grads(&self) -> Result<Vec<f32>, BackendError> {
        let mut out = vec![0.0f32; self.cfg.num_params()];
        self.download(&mut out, self.grads.ptr)?;
        Ok(out)
    }

    /// This rank's parameter range (everything without ZeRO-1).
    pub fn shard_range(&self) -> std::ops::Range<usize> {
        match &self.zero {
            Some((ranges, rank)) => ranges[*rank].clone(),
            None => 0..self.cfg.num_params(),
        }
    }

    /// AdamW on the parameters of `range`, whose moments are `m` and `v` from their start.
    fn adamw(
        &mut self,
        opt: &AdamW,
        lr: f32,
        grad_scale: f32,
        range: std::ops::Range<usize>,
    ) -> Result<(), BackendError> {
        let t = (self.step + 1) as i32;
        let (c1, c2) = (1.0 - opt.beta1.powi(t), 1.0 - opt.beta2.powi(t));
        let n = range.len();
        if self.m.bytes < 4 * n {
            return Err(BackendError::Shape(format!("{n} parameters stepped with moments of {}", self.m.bytes / 4)));
        }
        launch!(
            self,
            K::Adamw,
            elems(n),
            self.params.f(range.start),
            self.grads.f(range.start),
            self.m.ptr,
            self.v.ptr,
            self.decay.ptr + range.start as u64,
            n as i64,
            opt.beta1,
            opt.beta2,
            opt.eps,
            opt.weight_decay,
            c1,
            c2,
            lr,
            grad_scale,
        );
        self.sync()?;
        self.step += 1;
        Ok(())
    }

    /// The f64 sums of squares of the gradient over each [`NORM_BLOCK`] of `range` (which starts
    /// on a block boundary), in block order.
    fn norm_parts(&self, range: std::ops::Range<usize>) -> Result<Vec<f64>, BackendError> {
        let blocks = range.len().div_ceil(NORM_BLOCK);
        if blocks == 0 {
            return Ok(Vec::new());
        }
        let grid = LaunchConfig { grid_dim: (blocks as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        let (ptr, n) = (self.grads.f(range.start), range.len());
        launch!(self, K::SumSquares, grid, self.norm_parts.ptr, ptr, n as i64, NORM_BLOCK as i64);
        let mut parts = vec![0.0f64; blocks];
        self.download(&mut parts, self.norm_parts.ptr)?;
        Ok(parts)
    }

    /// Where the kernels came from: the on-disk cache, or NVRTC (and whether they were stored).
    pub fn kernel_origin(&self) -> &Origin {
        &self.origin
    }

    /// The most device memory this backend has held at once, bytes (cuBLAS's own workspace
    /// aside).
    pub fn peak_device_bytes(&self) -> usize {
        self.peak_bytes.max(self.device_bytes())
    }

    /// Device memory this backend holds now, bytes: parameters, gradients, moments, the
    /// workspace of the current batch shape.
    pub fn device_bytes(&self) -> usize {
        let fixed = self.params.bytes + self.grads.bytes + self.m.bytes + self.v.bytes + self.decay.bytes;
        let ws = self.ws.as_ref().map_or(0, |w| {
            [
                &w.acts,
                &w.grad_bufs,
                &w.tokens,
                &w.targets,
                &w.losses,
                &w.dsum,
                &w.partial,
                &w.wte_rows,
                &w.wte_starts,
                &w.wte_ids,
            ]
            .iter()
            .map(|b| b.bytes)
            .sum()
        });
        fixed + ws + self.norm_parts.bytes
    }
}

impl Backend for CudaBackend {
    fn name(&self) -> String {
        format!("cuda:{} ({}, fp32)", self.ctx.ordinal(), self.device_name)
    }

    fn config(&self) -> &GptConfig {
        &self.cfg
    }

    fn forward(
        &mut self,
        tokens: &[u32],
        targets: Option<&[u32]>,
        b: usize,
        t: usize,
    ) -> Result<Option<f32>, BackendError> {
        if tokens.len() != b * t || targets.is_some_and(|y| y.len() != b * t) {
            return Err(BackendError::Shape(format!("{} tokens for B={b} x T={t}", tokens.len())));
        }
        let ids = self.check_ids(tokens)?;
        let ys = targets.map(|y| self.check_ids(y)).transpose()?;
        self.bind()?;
        self.workspace(b, t)?;
        let Some(ws) = self.ws.as_mut() else { return Err(BackendError::Device("no workspace".into())) };
        ws.fresh = false; // until this pass completes
        let Some(ws) = self.ws.as_ref() else { return Err(BackendError::Device("no workspace".into())) };
        self.upload(&ws.tokens, &ids)?;
        if let Some(ys) = &ys {
            self.upload(&ws.targets, ys)?;
        }
        let cfg = self.cfg;
        let (c, l, nh, vp, v) = (cfg.channels, cfg.num_layers, cfg.num_heads, cfg.padded_vocab_size, cfg.vocab_size);
        let n = b * t;
        let (ni, ti, ci) = (n as i32, t as i32, c as i32);
        let at = acts_at(&cfg, b, t);
        let a = |k: usize| ws.acts.f(k);
        let p = &self.params;
        launch!(
            self,
            K::EncoderForward,
            elems(n * c),
            a(at.encoded),
            ws.tokens.ptr,
            p.f(tensor(&cfg, Param::Wte).start),
            p.f(tensor(&cfg, Param::Wpe).start),
            ni,
            ti,
            ci
        );
        for (i, la) in at.layers.iter().enumerate() {
            let x = if i == 0 { a(at.encoded) } else { a(at.layers[i - 1].x_out) };
            let band = cfg.band_of(i).map_or(0, |w| w as i32);
            launch!(
                self,
                K::LayernormForward,
                warps(n),
                a(la.ln1),
                a(la.ln1_mean),
                a(la.ln1_rstd),
                x,
                self.at(p, Param::Ln1W, i, c),
                self.at(p, Param::Ln1B, i, c),
                ni,
                ci
            );
            launch!(
                self,
                K::RowsOfBias,
                elems(n * 3 * c),
                a(la.qkv),
                0u64,
                self.at(p, Param::QkvB, i, 3 * c),
                ni,
                3 * ci
            );
            self.gemm_forward(a(la.qkv), a(la.ln1), self.at(p, Param::QkvW, i, 3 * c * c), n, c, 3 * c, 1.0)?;
            launch!(
                self,
                K::AttentionForward,
                warps(n * nh),
                a(la.atty),
                a(la.att_lse),
                a(la.qkv),
                b as i32,
                ti,
                ci,
                nh as i32,
                band
            );
            launch!(self, K::RowsOfBias, elems(n * c), a(la.x_mid), x, self.at(p, Param::AttProjB, i, c), ni, ci);
            self.gemm_forward(a(la.x_mid), a(la.atty), self.at(p, Param::AttProjW, i, c * c), n, c, c, 1.0)?;
            launch!(
                self,
                K::LayernormForward,
                warps(n),
                a(la.ln2),
                a(la.ln2_mean),
                a(la.ln2_rstd),
                a(la.x_mid),
                self.at(p, Param::Ln2W, i, c),
                self.at(p, Param::Ln2B, i, c),
                ni,
                ci
            );
            launch!(
                self,
                K::RowsOfBias,
                elems(n * 4 * c),
                a(la.fc),
                0u64,
                self.at(p, Param::FcB, i, 4 * c),
                ni,
                4 * ci
            );
            self.gemm_forward(a(la.fc), a(la.ln2), self.at(p, Param::FcW, i, 4 * c * c), n, c, 4 * c, 1.0)?;
            launch!(self, K::GeluForward, elems(n * 4 * c), a(la.fcg), a(la.fc), (n * 4 * c) as i64);
            launch!(
                self,
                K::RowsOfBias,
                elems(n * c),
                a(la.x_out),
                a(la.x_mid),
                self.at(p, Param::FcProjB, i, c),
                ni,
                ci
            );
            self.gemm_forward(a(la.x_out), a(la.fcg), self.at(p, Param::FcProjW, i, 4 * c * c), n, 4 * c, c, 1.0)?;
        }
        let x = if l == 0 { a(at.encoded) } else { a(at.layers[l - 1].x_out) };
        launch!(
            self,
            K::LayernormForward,
            warps(n),
            a(at.lnf),
            a(at.lnf_mean),
            a(at.lnf_rstd),
            x,
            p.f(tensor(&cfg, Param::LnfW).start),
            p.f(tensor(&cfg, Param::LnfB).start),
            ni,
            ci
        );
        self.gemm_forward(a(at.logits), a(at.lnf), p.f(tensor(&cfg, Param::Wte).start), n, c, vp, 0.0)?;
        let block = LaunchConfig { grid_dim: (n as u32, 1, 1), block_dim: (1024, 1, 1), shared_mem_bytes: 0 };
        let y = if ys.is_some() { ws.targets.ptr } else { 0u64 };
        launch!(
            self,
            K::CrossentropyForward,
            block,
            a(at.lse),
            ws.losses.ptr,
            a(at.logits),
            y,
            ni,
            v as i32,
            vp as i32
        );
        let loss = match ys {
            Some(_) => {
                let mut losses = vec![0.0f32; n];
                self.download(&mut losses, ws.losses.ptr)?;
                Some(losses.iter().sum::<f32>() / n as f32)
            }
            None => {
                self.sync()?;
                None
            }
        };
        if let Some(ws) = self.ws.as_mut() {
            ws.fresh = true;
        }
        Ok(loss)
    }

    fn logits_row(&self, row: usize, out: &mut [f32]) -> Result<(), BackendError> {
        let vp = self.cfg.padded_vocab_size;
        let ws = self.ws.as_ref().filter(|w| w.fresh);
        let ws = ws.ok_or_else(|| BackendError::Shape("no logits: no forward pass since the last backward".into()))?;
        if row >= ws.b * ws.t {
            return Err(BackendError::Shape(format!("row {row}")));
        }
        let out = out.get_mut(..vp).ok_or_else(|| BackendError::Shape("output shorter than Vp".into()))?;
        let at = acts_at(&self.cfg, ws.b, ws.t);
        self.download(out, ws.acts.f(at.logits + row * vp))
    }

    fn position_losses(&self, targets: &[u32], out: &mut [f32]) -> Result<(), BackendError> {
        let ws = self.ws.as_ref().filter(|w| w.fresh);
        let ws = ws.ok_or_else(|| BackendError::Shape("no logits: no forward pass since the last backward".into()))?;
        let n = ws.b * ws.t;
        if targets.len() != n || out.len() != n {
            return Err(BackendError::Shape(format!("{} targets for B={} x T={}", targets.len(), ws.b, ws.t)));
        }
        let ys = self.check_ids(targets)?;
        self.upload(&ws.targets, &ys)?;
        let cfg = self.cfg;
        let at = acts_at(&cfg, ws.b, ws.t);
        let block = LaunchConfig { grid_dim: (n as u32, 1, 1), block_dim: (1024, 1, 1), shared_mem_bytes: 0 };
        let (v, vp) = (cfg.vocab_size as i32, cfg.padded_vocab_size as i32);
        launch!(
            self,
            K::CrossentropyForward,
            block,
            ws.acts.f(at.lse),
            ws.losses.ptr,
            ws.acts.f(at.logits),
            ws.targets.ptr,
            n as i32,
            v,
            vp
        );
        self.download(out, ws.losses.ptr)
    }

    fn peak_flops(&mut self) -> f64 {
        if let Some(p) = self.peak {
            return p;
        }
        let measure = || -> Result<f64, BackendError> {
            self.bind()?;
            let n = 4096;
            let bufs = [DevBuf::new(4 * n * n)?, DevBuf::new(4 * n * n)?, DevBuf::new(4 * n * n)?];
            for b in &bufs {
                self.zero(b)?;
            }
            let run = || self.gemm_forward(bufs[2].ptr, bufs[0].ptr, bufs[1].ptr, n, n, n, 0.0);
            run()?;
            self.sync()?;
            let reps = 10;
            let start = std::time::Instant::now();
            for _ in 0..reps {
                run()?;
            }
            self.sync()?;
            Ok(2.0 * (n * n * n * reps) as f64 / start.elapsed().as_secs_f64().max(1e-9))
        };
        let p = measure().unwrap_or(f64::NAN);
        self.peak = Some(p);
        p
    }

    fn backward(&mut self, tokens: &[u32], targets: &[u32], scale: f32) -> Result<(), BackendError> {
        let ws = self.ws.as_ref().filter(|w| w.fresh);
        let ws = ws.ok_or_else(|| BackendError::Shape("backward without a forward pass".into()))?;
        let (b, t) = (ws.b, ws.t);
        let n = b * t;
        if tokens.len() != n || targets.len() != n {
            return Err(BackendError::Shape(format!("{} tokens for B={b} x T={t}", tokens.len())));
        }
        let ys = self.check_ids(targets)?;
        self.check_ids(tokens)?;
        // The logits turn into their gradient below: no longer logits, whatever happens next.
        if let Some(ws) = self.ws.as_mut() {
            ws.fresh = false;
        }
        let Some(ws) = self.ws.as_ref() else { return Err(BackendError::Device("no workspace".into())) };
        self.upload(&ws.targets, &ys)?;
        let cfg = self.cfg;
        let (c, l, nh, vp, v) = (cfg.channels, cfg.num_layers, cfg.num_heads, cfg.padded_vocab_size, cfg.vocab_size);
        let (ni, ti, ci) = (n as i32, t as i32, c as i32);
        let at = acts_at(&cfg, b, t);
        let a = |k: usize| ws.acts.f(k);
        let (p, g) = (&self.params, &self.grads);
        let dres = ws.grad_bufs.f(0);
        let dbig = ws.grad_bufs.f(n * c);
        let dsmall = ws.grad_bufs.f(n * 5 * c);
        let block = LaunchConfig { grid_dim: (n as u32, 1, 1), block_dim: (1024, 1, 1), shared_mem_bytes: 0 };
        launch!(
            self,
            K::CrossentropyBackward,
            block,
            a(at.logits),
            a(at.lse),
            ws.targets.ptr,
            ni,
            v as i32,
            vp as i32,
            scale
        );
        let wte = tensor(&cfg, Param::Wte).start;
        self.gemm_backward(dsmall, g.f(wte), a(at.logits), a(at.lnf), p.f(wte), n, c, vp)?;
        self.zero_at(dres, 4 * n * c)?;
        let x_last = if l == 0 { a(at.encoded) } else { a(at.layers[l - 1].x_out) };
        let (lnfw, lnfb) = (tensor(&cfg, Param::LnfW).start, tensor(&cfg, Param::LnfB).start);
        self.layernorm_backward(
            ws,
            (dres, g.f(lnfw), g.f(lnfb)),
            dsmall,
            x_last,
            p.f(lnfw),
            (a(at.lnf_mean), a(at.lnf_rstd)),
            n,
        )?;
        for i in (0..l).rev() {
            let la = &at.layers[i];
            let x_in = if i == 0 { a(at.encoded) } else { a(at.layers[i - 1].x_out) };
            let band = cfg.band_of(i).map_or(0, |w| w as i32);
            // x_out = x_mid + fcproj(gelu(fc(ln2(x_mid)))); dres holds d x_out.
            self.gemm_backward(
                dbig,
                self.at(g, Param::FcProjW, i, 4 * c * c),
                dres,
                a(la.fcg),
                self.at(p, Param::FcProjW, i, 4 * c * c),
                n,
                4 * c,
                c,
            )?;
            self.column_sums(ws, self.at(g, Param::FcProjB, i, c), dres, n, c)?;
            launch!(self, K::GeluBackward, elems(n * 4 * c), dbig, a(la.fc), (n * 4 * c) as i64);
            self.gemm_backward(
                dsmall,
                self.at(g, Param::FcW, i, 4 * c * c),
                dbig,
                a(la.ln2),
                self.at(p, Param::FcW, i, 4 * c * c),
                n,
                c,
                4 * c,
            )?;
            self.column_sums(ws, self.at(g, Param::FcB, i, 4 * c), dbig, n, 4 * c)?;
            let ln2 = (dres, self.at(g, Param::Ln2W, i, c), self.at(g, Param::Ln2B, i, c));
            self.layernorm_backward(
                ws,
                ln2,
                dsmall,
                a(la.x_mid),
                self.at(p, Param::Ln2W, i, c),
                (a(la.ln2_mean), a(la.ln2_rstd)),
                n,
            )?;
            // x_mid = x_in + attproj(attention(qkv(ln1(x_in)))); dres holds d x_mid.
            self.gemm_backward(
                dsmall,
                self.at(g, Param::AttProjW, i, c * c),
                dres,
                a(la.atty),
                self.at(p, Param::AttProjW, i, c * c),
                n,
                c,
                c,
            )?;
            self.column_sums(ws, self.at(g, Param::AttProjB, i, c), dres, n, c)?;
            let dqkv = dbig;
            self.zero_at(dqkv, 4 * n * 3 * c)?;
            let (bi, nhi) = (b as i32, nh as i32);
            launch!(self, K::AttentionDsum, warps(n * nh), ws.dsum.ptr, dsmall, a(la.atty), bi, ti, ci, nhi);
            launch!(
                self,
                K::AttentionBackwardDq,
                warps(n * nh),
                dqkv,
                dsmall,
                a(la.qkv),
                a(la.att_lse),
                ws.dsum.ptr,
                bi,
                ti,
                ci,
                nhi,
                band
            );
            launch!(
                self,
                K::AttentionBackwardDkv,
                warps(n * nh),
                dqkv,
                dsmall,
                a(la.qkv),
                a(la.att_lse),
                ws.dsum.ptr,
                bi,
                ti,
                ci,
                nhi,
                band
            );
            self.gemm_backward(
                dsmall,
                self.at(g, Param::QkvW, i, 3 * c * c),
                dqkv,
                a(la.ln1),
                self.at(p, Param::QkvW, i, 3 * c * c),
                n,
                c,
                3 * c,
            )?;
            self.column_sums(ws, self.at(g, Param::QkvB, i, 3 * c), dqkv, n, 3 * c)?;
            let ln1 = (dres, self.at(g, Param::Ln1W, i, c), self.at(g, Param::Ln1B, i, c));
            self.layernorm_backward(
                ws,
                ln1,
                dsmall,
                x_in,
                self.at(p, Param::Ln1W, i, c),
                (a(la.ln1_mean), a(la.ln1_rstd)),
                n,
            )?;
        }
        // The embeddings: positions summed over batches, tokens over the rows holding them.
        let wpe = tensor(&cfg, Param::Wpe).start;
        launch!(self, K::EncoderBackwardWpe, elems(t * c), g.f(wpe), dres, b as i32, ti, ci);
        let mut by_token: Vec<(u32, u32)> = tokens.iter().enumerate().map(|(i, &x)| (x, i as u32)).collect();
        by_token.sort_unstable();
        let rows: Vec<i32> = by_token.iter().map(|x| x.1 as i32).collect();
        let (mut starts, mut ids) = (Vec::new(), Vec::new());
        for (k, &(tok, _)) in by_token.iter().enumerate() {
            if k == 0 || by_token[k - 1].0 != tok {
                starts.push(k as i32);
                ids.push(tok as i32);
            }
        }
        starts.push(n as i32);
        self.upload(&ws.wte_rows, &rows)?;
        self.upload(&ws.wte_starts, &starts)?;
        self.upload(&ws.wte_ids, &ids)?;
        let groups = LaunchConfig { grid_dim: (ids.len() as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        launch!(
            self,
            K::EncoderBackwardWte,
            groups,
            g.f(wte),
            dres,
            ws.wte_rows.ptr,
            ws.wte_starts.ptr,
            ws.wte_ids.ptr,
            ci
        );
        self.sync()?;
        if let Some(ws) = self.ws.as_mut() {
            ws.fresh = false;
        }
        Ok(())
    }

    fn zero_grad(&mut self) -> Result<(), BackendError> {
        self.zero(&self.grads)?;
        self.sync()
    }

    fn grad_norm(&self) -> Result<f32, BackendError> {
        Ok(self.norm_parts(0..self.cfg.num_params())?.iter().sum::<f64>().sqrt() as f32)
    }

    fn step(&mut self, opt: &AdamW, lr: f32, grad_scale: f32) -> Result<(), BackendError> {
        if self.zero.is_some() {
            return Err(BackendError::Device("the moments are sharded: step with step_across".into()));
        }
        self.adamw(opt, lr, grad_scale, 0..self.cfg.num_params())
    }

    fn state(&self) -> Result<HostState, BackendError> {
        if self.zero.is_some() {
            return Err(BackendError::Device("the moments are sharded: gather them with state_across".into()));
        }
        let n = self.cfg.num_params();
        let (mut params, mut m, mut v) = (vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; n]);
        self.download(&mut params, self.params.ptr)?;
        self.download(&mut m, self.m.ptr)?;
        self.download(&mut v, self.v.ptr)?;
        Ok(HostState { params, m, v, step: self.step })
    }

    /// Replaces parameters and moments; under ZeRO-1 keeps this rank's shard of the moments (a
    /// checkpoint of any world size resumes on any other).
    fn load_state(&mut self, s: &HostState) -> Result<(), BackendError> {
        let n = self.cfg.num_params();
        if s.params.len() != n || s.m.len() != n || s.v.len() != n {
            return Err(BackendError::Shape(format!("state of {} parameters for a model of {n}", s.params.len())));
        }
        let mine = self.shard_range();
        self.upload(&self.params, &s.params)?;
        self.upload(&self.m, &s.m[mine.clone()])?;
        self.upload(&self.v, &s.v[mine])?;
        self.step = s.step;
        if let Some(ws) = self.ws.as_mut() {
            ws.fresh = false;
        }
        Ok(())
    }

    fn moment_bytes(&self) -> usize {
        self.m.bytes + self.v.bytes
    }

    fn report(&self) -> Option<String> {
        let kernels = match &self.origin {
            Origin::Cache(p) => format!("kernels read from {}", p.display()),
            Origin::Compiled { stored: Some(p), .. } => format!("kernels compiled by NVRTC, kept in {}", p.display()),
            Origin::Compiled { stored: None, note } => {
                format!("kernels compiled by NVRTC ({})", note.as_deref().unwrap_or("not cached"))
            }
        };
        Some(format!(
            "{}: {kernels}; peak device memory {:.1} MiB",
            self.name(),
            self.peak_device_bytes() as f64 / (1u64 << 20) as f64
        ))
    }

    // Data parallel, staged through host memory: the gradient, parameters and moments travel
    // through the same `Collective` as the CPU backend's (MPI across processes, threads in
    // tests), summed in rank order, so a GPU run over N ranks takes the CPU run's steps.

    /// ZeRO-1 (llm.c's `-z 1`): this rank keeps the moments of its shard only (whole
    /// [`NORM_BLOCK`]s), updates that shard, and gathers the others' after each step.
    fn shard_optimizer(&mut self, rank: usize, world: usize) -> Result<(), BackendError> {
        let n = self.cfg.num_params();
        let ranges = crate::collective::shards(n, world, NORM_BLOCK);
        let mine = ranges
            .get(rank)
            .cloned()
            .ok_or_else(|| BackendError::Device(format!("rank {rank} of a world of {world}")))?;
        let full = self.shard_range();
        let (mut m, mut v) = (vec![0.0f32; full.len()], vec![0.0f32; full.len()]);
        self.download(&mut m, self.m.ptr)?;
        self.download(&mut v, self.v.ptr)?;
        let keep = mine.start - full.start..mine.end - full.start;
        let (sm, sv) = (DevBuf::new(4 * mine.len())?, DevBuf::new(4 * mine.len())?);
        self.upload(&sm, &m[keep.clone()])?;
        self.upload(&sv, &v[keep])?;
        (self.m, self.v) = (sm, sv);
        self.zero = Some((ranges, rank));
        Ok(())
    }

    /// Sums the gradient over ranks: this rank's shard under ZeRO-1 (a reduce-scatter), all
    /// of it otherwise (an all-reduce).
    fn reduce_grads(&mut self, comm: &mut dyn Collective) -> Result<(), BackendError> {
        if comm.world() == 1 {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let mut host = vec![0.0f32; self.cfg.num_params()];
        self.download(&mut host, self.grads.ptr)?;
        match &self.zero {
            Some((ranges, rank)) => {
                let mine = ranges[*rank].clone();
                let mut part = vec![0.0f32; mine.len()];
                comm.reduce_scatter(&host, ranges, &mut part).map_err(collective)?;
                self.upload_at(&self.grads, 4 * mine.start, &part)?;
            }
            None => {
                comm.all_reduce(&mut host).map_err(collective)?;
                self.upload(&self.grads, &host)?;
            }
        }
        self.comm += started.elapsed().as_secs_f64();
        Ok(())
    }

    /// The global gradient norm after `reduce_grads`: the same per-block partial sums, added in
    /// the same order, as one process's.
    fn grad_norm_across(&mut self, comm: &mut dyn Collective) -> Result<f32, BackendError> {
        if self.zero.is_none() {
            return self.grad_norm();
        }
        let parts = self.norm_parts(self.shard_range())?;
        let started = std::time::Instant::now();
        let all = comm.all_gather_f64(&parts).map_err(collective)?;
        self.comm += started.elapsed().as_secs_f64();
        Ok(all.iter().sum::<f64>().sqrt() as f32)
    }

    fn step_across(
        &mut self,
        comm: &mut dyn Collective,
        opt: &AdamW,
        lr: f32,
        grad_scale: f32,
    ) -> Result<(), BackendError> {
        let Some((ranges, _)) = self.zero.clone() else {
            return self.step(opt, lr, grad_scale);
        };
        self.adamw(opt, lr, grad_scale, self.shard_range())?;
        let started = std::time::Instant::now();
        let mut host = vec![0.0f32; self.cfg.num_params()];
        self.download(&mut host, self.params.ptr)?;
        comm.all_gather(&mut host, &ranges).map_err(collective)?;
        self.upload(&self.params, &host)?;
        self.comm += started.elapsed().as_secs_f64();
        Ok(())
    }

    fn state_across(&self, comm: &mut dyn Collective) -> Result<HostState, BackendError> {
        let Some((ranges, _)) = &self.zero else {
            return self.state();
        };
        let n = self.cfg.num_params();
        let mine = self.shard_range();
        let (mut params, mut m, mut v) = (vec![0.0f32; n], vec![0.0f32; n], vec![0.0f32; n]);
        self.download(&mut params, self.params.ptr)?;
        self.download(&mut m[mine.clone()], self.m.ptr)?;
        self.download(&mut v[mine], self.v.ptr)?;
        comm.all_gather(&mut m, ranges).map_err(collective)?;
        comm.all_gather(&mut v, ranges).map_err(collective)?;
        Ok(HostState { params, m, v, step: self.step })
    }

    fn take_comm_seconds(&mut self) -> f64 {
        std::mem::take(&mut self.comm)
    }
}

fn collective(e: crate::collective::CollectiveError) -> BackendError {
    BackendError::Device(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_compiles_for_hopper_with_nvrtc() {
        // The source's kernels are exactly the backend's: the word before the parameter list of
        // each `extern "C" __global__` declaration (after any launch bounds).
        let declared: std::collections::BTreeSet<String> = KERNELS
            .split("extern \"C\" __global__")
            .skip(1)
            .filter_map(|d| {
                let d = d.replacen("__launch_bounds__(1024)", "", 1);
                d.split('(').next().and_then(|head| head.split_whitespace().last()).map(String::from)
            })
            .collect();
        let wanted: std::collections::BTreeSet<String> = kernel_names().map(String::from).collect();
        assert_eq!(declared, wanted);
        // CI sets GRIST_REQUIRE_NVRTC: there a missing library is a failure, not a skip.
        if !nvrtc_here() {
            return;
        }
        for (major, minor) in [(9, 0), (8, 0)] {
            let compiled = compile_kernels(major, minor).unwrap();
            assert_eq!(&compiled.cubin[..4], b"\x7fELF", "sm_{major}{minor}: machine code is an ELF image");
            let ptx = compiled.ptx;
            assert!(ptx.contains(&format!(".target sm_{major}{minor}")), "{}", &ptx[..ptx.len().min(400)]);
            for name in kernel_names() {
                assert!(ptx.contains(&format!(".entry {name}(")), "sm_{major}{minor}: no entry {name}");
            }
        }
    }

    /// Whether NVRTC is here to test with (CI requires it).
    fn nvrtc_here() -> bool {
        if libraries_present().2 {
            return true;
        }
        assert!(std::env::var_os(shards::env::TEST_REQUIRE_NVRTC).is_none(), "libnvrtc not found on LD_LIBRARY_PATH");
        eprintln!("skipped: libnvrtc not found (scripts/nvrtc.sh fetches it from PyPI; see .ci/run)");
        false
    }

    #[test]
    fn the_kernel_cache_lives_where_the_environment_says() {
        use std::ffi::OsString;
        use std::path::PathBuf;
        fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
            move |k: &str| pairs.iter().find(|p| p.0 == k).map(|p| OsString::from(p.1))
        }
        let home = [("HOME", "/home/u")];
        assert_eq!(cache_dir_from(env(&home)), Some(PathBuf::from("/home/u/.cache/grist/kernels")));
        let xdg = [("HOME", "/home/u"), ("XDG_CACHE_HOME", "/c")];
        assert_eq!(cache_dir_from(env(&xdg)), Some(PathBuf::from("/c/grist/kernels")));
        let set = [("HOME", "/home/u"), ("GRIST_KERNEL_CACHE", "/k")];
        assert_eq!(cache_dir_from(env(&set)), Some(PathBuf::from("/k")));
        let off = [("HOME", "/home/u"), ("GRIST_KERNEL_CACHE", "off")];
        assert_eq!(cache_dir_from(env(&off)), None);
        let empty = [("HOME", ""), ("XDG_CACHE_HOME", "")];
        assert_eq!(cache_dir_from(env(&empty)), None);
    }

    #[test]
    fn a_cache_file_is_used_only_when_whole() {
        let code = b"\x7fELF and the rest of an image".to_vec();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("k.cubin");
        write_cache_file(&path, &code).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(read_cache_file(&bytes).unwrap(), code);
        let names: Vec<_> =
            std::fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["k.cubin"], "no temporary file is left");
        for cut in [0, 10, CACHE_MAGIC.len() + 15, bytes.len() - 1] {
            assert!(read_cache_file(&bytes[..cut]).is_err(), "truncated at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(read_cache_file(&longer).unwrap_err().contains("header says"));
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(read_cache_file(&flipped).unwrap_err(), "checksum mismatch");
        let mut wrong = bytes.clone();
        wrong[0] ^= 0x20;
        assert!(read_cache_file(&wrong).unwrap_err().contains("header"));
        // A valid frame around something that is not machine code.
        write_cache_file(&path, b"PTX text").unwrap();
        assert!(read_cache_file(&std::fs::read(&path).unwrap()).unwrap_err().contains("ELF"));
    }

    #[test]
    fn compiled_kernels_are_cached_and_a_damaged_entry_is_replaced() {
        if !nvrtc_here() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (code, origin) = cached_kernels(Some(dir.path()), 9, 0, false).unwrap();
        let Origin::Compiled { stored: Some(path), note: None } = origin else { panic!("{origin:?}") };
        assert!(path.file_name().unwrap().to_str().unwrap().starts_with("gpt_fp32-sm_90-nvrtc"), "{path:?}");
        assert_eq!(code, compile_kernels(9, 0).unwrap().cubin, "the stored code is NVRTC's");
        let (again, origin) = cached_kernels(Some(dir.path()), 9, 0, false).unwrap();
        assert_eq!((again == code, origin), (true, Origin::Cache(path.clone())));
        // Another architecture is another entry.
        let (_, origin) = cached_kernels(Some(dir.path()), 8, 0, false).unwrap();
        let Origin::Compiled { stored: Some(other), .. } = origin else { panic!("{origin:?}") };
        assert_ne!(other, path);
        // A truncated entry is compiled again and replaced.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let (fixed, origin) = cached_kernels(Some(dir.path()), 9, 0, false).unwrap();
        let Origin::Compiled { stored: Some(p), note: Some(note) } = origin else { panic!("{origin:?}") };
        assert!(p == path && note.contains("unusable") && note.contains("header says"), "{note}");
        assert_eq!((fixed == code, std::fs::read(&path).unwrap() == bytes), (true, true));
        // `fresh` compiles whatever the cache holds.
        let (_, origin) = cached_kernels(Some(dir.path()), 9, 0, true).unwrap();
        assert!(matches!(origin, Origin::Compiled { stored: Some(_), note: None }), "{origin:?}");
        // A cache that can't be written (a file where its directory would be) costs nothing but
        // the cache; no cache at all, the same.
        let blocked = dir.path().join("file");
        std::fs::write(&blocked, b"x").unwrap();
        let (c, origin) = cached_kernels(Some(&blocked.join("kernels")), 9, 0, false).unwrap();
        let Origin::Compiled { stored: None, note: Some(note) } = origin else { panic!("{origin:?}") };
        assert!(c == code && note.starts_with("writing "), "{note}");
        let (c, origin) = cached_kernels(None, 9, 0, false).unwrap();
        assert!(c == code && matches!(origin, Origin::Compiled { stored: None, .. }));
    }

    #[test]
    fn activation_offsets_follow_the_cpu_workspace_carving() {
        let cfg = GptConfig { attention_band: Some(8), ..GptConfig::new(32, 300, 3, 4, 64, 64) };
        let (b, t) = (3, 20);
        let at = acts_at(&cfg, b, t);
        let n = b * t;
        let cpu = crate::forward::Workspace::<f32>::new(cfg, b, t);
        assert_eq!(at.len + n * 6 * cfg.channels, cpu.len(), "activations plus the three gradient buffers");
        // Consecutive and in the CPU's order: each starts where the previous ends.
        let (layer, global) = act_sizes(&cfg, b, t);
        assert_eq!(at.layers[0].ln1, global[0]);
        assert_eq!(at.layers[1].ln1, at.layers[0].ln1 + layer.iter().sum::<usize>());
        let l0 = &at.layers[0];
        let order = [
            l0.ln1,
            l0.ln1_mean,
            l0.ln1_rstd,
            l0.qkv,
            l0.atty,
            l0.att_lse,
            l0.x_mid,
            l0.ln2,
            l0.ln2_mean,
            l0.ln2_rstd,
            l0.fc,
            l0.fcg,
            l0.x_out,
        ];
        for (k, w) in order.windows(2).enumerate() {
            assert_eq!(w[1] - w[0], layer[k], "layer activation {k}");
        }
        let last = &at.layers[2];
        assert_eq!(at.lnf, last.x_out + layer[12]);
        assert_eq!(at.logits, at.lnf + global[1] + global[2] + global[3]);
        assert_eq!(at.lse + n, at.len);
    }

    #[test]
    fn without_a_gpu_the_backend_is_refused_with_a_reason() {
        let cfg = GptConfig::new(16, 64, 1, 2, 32, 64);
        let wide = GptConfig::new(16, 64, 1, 1, 512, 64);
        let e = CudaBackend::new(Params::zeros(wide), 0).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("head size 512"), "{e}");
        if libraries_present().0 {
            eprintln!("skipped the no-driver half: libcuda is present");
            return;
        }
        let e = CudaBackend::new(Params::zeros(cfg), 0).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("libcuda (missing)") && e.contains("LD_LIBRARY_PATH"), "{e}");
        let e = crate::backend::make("cuda:0", Params::zeros(cfg)).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("libcuda"), "{e}");
    }
}
