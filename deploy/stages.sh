# The stages of a grist recipe in the order they run, for batch schedulers: NAME:SLICED.
# SLICED=1 stages run as one task per slice (`--task I --tasks N`); SLICED=0 as one task.
# decontaminate appears twice: the first pass completes its gram counts (every slice must
# finish before any cut is made), the second makes the cuts. A stage the recipe lacks is a
# no-op, so one list serves every recipe. Sourced by slurm/submit.sh, k8s/run.sh, local.sh.
GRIST_STAGES=(
  sample:0 reddit:1 ingest:1 quality_train:0 quality_filter:1
  dedup_signatures:1 dedup_buckets:1 dedup_clusters:0 dedup_filter:1
  decontaminate:1 decontaminate:1 tokenize:1 blend:1 train:0 report:0
)
