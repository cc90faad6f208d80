//! Task slices: which part of a stage's work this process does. Slices of a stage are
//! disjoint and together cover every unit, for any task count.

use crate::core::error::StageError;
use shards::env;

/// Slice `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskSlice {
    pub index: usize,
    pub count: usize,
}

impl TaskSlice {
    /// The whole stage in one process.
    pub const ALL: TaskSlice = TaskSlice { index: 0, count: 1 };

    pub fn new(index: usize, count: usize) -> Result<TaskSlice, StageError> {
        if count == 0 || index >= count {
            return Err(StageError::Usage(format!(
                "task {index} of {count} does not exist: tasks are numbered 0..{count}\nhint: pass --task I --tasks N with 0 <= I < N"
            )));
        }
        Ok(TaskSlice { index, count })
    }

    /// Resolves the slice from the command line, else from the environment of a batch
    /// scheduler (Slurm job arrays, Kubernetes Indexed Jobs), else the whole stage.
    pub fn resolve(
        task: Option<usize>,
        tasks: Option<usize>,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<TaskSlice, StageError> {
        let num = |name: &str| -> Result<Option<usize>, StageError> {
            match var(name) {
                None => Ok(None),
                Some(v) => v.trim().parse().map(Some).map_err(|_| {
                    StageError::Usage(format!("environment variable {name}={v:?} is not a non-negative integer"))
                }),
            }
        };
        match (task, tasks) {
            (Some(i), Some(n)) => return TaskSlice::new(i, n),
            (Some(_), None) => {
                return Err(StageError::Usage("--task needs --tasks\nhint: pass both, e.g. --task 0 --tasks 4".into()));
            }
            (None, Some(_)) if var(env::SLURM_ARRAY_TASK_ID).is_none() && var(env::JOB_COMPLETION_INDEX).is_none() => {
                return Err(StageError::Usage(
                    "--tasks needs --task, or a scheduler's index (SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX)".into(),
                ));
            }
            _ => {}
        }
        if let Some(id) = num(env::SLURM_ARRAY_TASK_ID)? {
            let min = num(env::SLURM_ARRAY_TASK_MIN)?.unwrap_or(0);
            let count = match tasks {
                Some(n) => Some(n),
                None => num(env::SLURM_ARRAY_TASK_COUNT)?,
            };
            let count = count.ok_or_else(|| {
                StageError::Usage(format!(
                    "{} is set but {} is not; pass --tasks N",
                    env::SLURM_ARRAY_TASK_ID,
                    env::SLURM_ARRAY_TASK_COUNT
                ))
            })?;
            return TaskSlice::new(id.checked_sub(min).unwrap_or(usize::MAX), count);
        }
        if let Some(id) = num(env::JOB_COMPLETION_INDEX)? {
            let count = match tasks {
                Some(n) => Some(n),
                None => num(env::GRIST_TASKS)?,
            };
            let count = count.ok_or_else(|| {
                StageError::Usage(format!(
                    "{} is set but the task count is unknown\nhint: pass --tasks N or set {} to the Job's completions",
                    env::JOB_COMPLETION_INDEX,
                    env::GRIST_TASKS
                ))
            })?;
            return TaskSlice::new(id, count);
        }
        Ok(TaskSlice::ALL)
    }

    /// Whether unit `u` belongs to this slice (units are dealt round-robin).
    pub fn owns(&self, u: usize) -> bool {
        u % self.count == self.index
    }

    /// The units of a plan of `n` that this slice owns.
    pub fn units(&self, n: usize) -> impl Iterator<Item = usize> + '_ {
        (self.index..n).step_by(self.count)
    }
}

impl std::fmt::Display for TaskSlice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "task {} of {}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn slices_are_disjoint_and_cover() {
        for n in 1..7 {
            for units in [0, 1, 5, 13] {
                let mut seen = vec![0; units];
                for i in 0..n {
                    let s = TaskSlice::new(i, n).unwrap();
                    for u in s.units(units) {
                        assert!(s.owns(u));
                        seen[u] += 1;
                    }
                }
                assert!(seen.iter().all(|&c| c == 1), "n={n} units={units}: {seen:?}");
            }
        }
    }

    #[test]
    fn resolves_cli_then_slurm_then_kubernetes() {
        assert_eq!(TaskSlice::resolve(None, None, vars(&[])).unwrap(), TaskSlice::ALL);
        assert_eq!(
            TaskSlice::resolve(Some(2), Some(3), vars(&[("SLURM_ARRAY_TASK_ID", "0")])).unwrap(),
            TaskSlice { index: 2, count: 3 }
        );
        let slurm =
            vars(&[("SLURM_ARRAY_TASK_ID", "4"), ("SLURM_ARRAY_TASK_COUNT", "4"), ("SLURM_ARRAY_TASK_MIN", "1")]);
        assert_eq!(TaskSlice::resolve(None, None, slurm).unwrap(), TaskSlice { index: 3, count: 4 });
        let k8s = vars(&[("JOB_COMPLETION_INDEX", "1"), ("GRIST_TASKS", "2")]);
        assert_eq!(TaskSlice::resolve(None, None, k8s).unwrap(), TaskSlice { index: 1, count: 2 });
        let k8s = vars(&[("JOB_COMPLETION_INDEX", "1")]);
        assert_eq!(TaskSlice::resolve(None, Some(5), k8s).unwrap(), TaskSlice { index: 1, count: 5 });
    }

    #[test]
    fn rejects_impossible_slices() {
        assert!(TaskSlice::new(3, 3).is_err());
        assert!(TaskSlice::new(0, 0).is_err());
        assert!(TaskSlice::resolve(Some(1), None, vars(&[])).is_err());
        // --task without --tasks is an error even when a scheduler sets an index.
        assert!(
            TaskSlice::resolve(Some(1), None, vars(&[("SLURM_ARRAY_TASK_ID", "0"), ("SLURM_ARRAY_TASK_COUNT", "2")]))
                .is_err()
        );
        // --tasks wins over a malformed count in the environment.
        let bad_count = vars(&[("SLURM_ARRAY_TASK_ID", "1"), ("SLURM_ARRAY_TASK_COUNT", "x")]);
        assert_eq!(TaskSlice::resolve(None, Some(2), bad_count).unwrap(), TaskSlice { index: 1, count: 2 });
        assert!(TaskSlice::resolve(None, None, vars(&[("JOB_COMPLETION_INDEX", "0")])).is_err());
        assert!(
            TaskSlice::resolve(None, None, vars(&[("SLURM_ARRAY_TASK_ID", "x"), ("SLURM_ARRAY_TASK_COUNT", "2")]))
                .is_err()
        );
        let below_min =
            vars(&[("SLURM_ARRAY_TASK_ID", "0"), ("SLURM_ARRAY_TASK_COUNT", "2"), ("SLURM_ARRAY_TASK_MIN", "1")]);
        assert!(TaskSlice::resolve(None, None, below_min).is_err());
    }
}
