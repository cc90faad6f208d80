#!/usr/bin/env bash
# Submits a grist recipe to Slurm: one job array per stage (TASKS tasks for sliced stages, one
# for the others), each depending on the previous one (afterok), so stages run in order and the
# slices of a stage run in parallel. Every task runs `grist run RECIPE --stage NAME`; the slice
# comes from SLURM_ARRAY_TASK_ID and --tasks. A failed or preempted task is resubmitted by
# requeueing it (completed slices are skipped: their markers and checksums are verified).
# The recipe's run.out must be on a filesystem every node sees (or an object store URI).
# usage: deploy/slurm/submit.sh RECIPE TASKS [extra sbatch options...]
#   e.g. deploy/slurm/submit.sh recipes/gpt3.toml 512 --partition=cpu --cpus-per-task=16 --mem=64G
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
source "$here/stages.sh"
recipe="$(realpath "$1")"; tasks="$2"; shift 2
grist="${GRIST_BIN:-grist}"
grist_stages "$grist"
prev=""
for entry in "${GRIST_STAGES[@]}"; do
  stage="${entry%%:*}"; sliced="${entry##*:}"
  n=1; [ "$sliced" = 1 ] && n="$tasks"
  dep=(); [ -n "$prev" ] && dep=(--dependency="afterok:$prev")
  prev=$(sbatch --parsable "${dep[@]}" --array="0-$((n - 1))" --job-name="grist-$stage" \
    --output="grist-$stage-%A_%a.log" --requeue "$@" \
    --wrap="$grist -q run '$recipe' --stage $stage --tasks $n")
  echo "$stage: job $prev ($n tasks)"
done
