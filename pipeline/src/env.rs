//! Every environment variable grist reads, in one place.

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
/// Test hook: abort the process (as a kill would) after this many documents have been
/// written by this process, leaving whatever a crash leaves. Used by the resume tests only.
pub const TEST_ABORT_AFTER_DOCS: &str = "GRIST_TEST_ABORT_AFTER_DOCS";
