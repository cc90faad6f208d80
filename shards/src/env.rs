//! Every environment variable grist reads, in one place (it sits in `shards`, the crate every
//! other depends on, so the pipeline and the trainer name them from here). Object-store paths
//! also read the store's own credentials from the environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`,
//! as `object_store` documents them).

/// Seconds after which a unit another task claimed and has not finished is taken over by a
/// task that runs a shared stage (the distributed dedup clusters step); default 900.
pub const CLAIM_STALE_SECS: &str = "GRIST_CLAIM_STALE_SECS";

/// Folder of real test data (`../shared/data`); tests that need it skip when unset.
pub const TEST_DATA: &str = "GRIST_TEST_DATA";
/// Slurm job arrays: this task's index.
pub const SLURM_ARRAY_TASK_ID: &str = "SLURM_ARRAY_TASK_ID";
/// Slurm job arrays: number of tasks.
pub const SLURM_ARRAY_TASK_COUNT: &str = "SLURM_ARRAY_TASK_COUNT";
/// Slurm job arrays: the lowest index (`--array=1-8` starts at 1); subtracted from the id.
pub const SLURM_ARRAY_TASK_MIN: &str = "SLURM_ARRAY_TASK_MIN";
/// Kubernetes Indexed Jobs: this pod's index (the task count comes from `--tasks` or `GRIST_TASKS`).
pub const JOB_COMPLETION_INDEX: &str = "JOB_COMPLETION_INDEX";
/// Task count to go with `JOB_COMPLETION_INDEX` (a Job's `completions`).
pub const GRIST_TASKS: &str = "GRIST_TASKS";
/// Seconds a task waits, when every task of a stage has reported done but some unit markers
/// are not yet visible (a shared filesystem's lag), before it fails instead of exiting without
/// the stage manifest (default 60).
pub const FINALIZE_WAIT_SECS: &str = "GRIST_FINALIZE_WAIT_SECS";
/// Caps the instruction set of grist's own kernels: `avx512`, `avx2` or `scalar` (default: the
/// best the CPU has). For testing and benchmarking each path; see `shards::cpu`.
pub const SIMD: &str = "GRIST_SIMD";
/// Test hook: abort the process (as a kill would) after this many documents have been
/// written by this process, leaving whatever a crash leaves. Used by the resume tests only.
pub const TEST_ABORT_AFTER_DOCS: &str = "GRIST_TEST_ABORT_AFTER_DOCS";
/// Test hook: make the loss of this training step NaN, to exercise the trainer's NaN guard.
/// Used by the training tests only.
pub const TEST_NAN_AT_STEP: &str = "GRIST_TEST_NAN_AT_STEP";
/// Test hook: `RANK:STEP` makes that rank of a data-parallel run exit at once (no clean-up, as
/// a crashed process would) when it reaches that step. Used by the training tests only.
pub const TEST_EXIT_RANK_AT_STEP: &str = "GRIST_TEST_EXIT_RANK_AT_STEP";
/// Test hook: elements per round of the MPI reduce-scatter and all-gather (default 2^24), set
/// small to make a tiny model's collectives take many rounds. Used by the training tests only.
pub const TEST_MPI_ROUND_ELEMENTS: &str = "GRIST_TEST_MPI_ROUND_ELEMENTS";
/// Set (CI): the CUDA kernel compile test fails, rather than skips, when libnvrtc is missing.
pub const TEST_REQUIRE_NVRTC: &str = "GRIST_REQUIRE_NVRTC";
/// Where the CUDA backend keeps its compiled kernels between runs (default
/// `$XDG_CACHE_HOME/grist/kernels`, else `$HOME/.cache/grist/kernels`); `off` compiles every time.
pub const KERNEL_CACHE: &str = "GRIST_KERNEL_CACHE";
