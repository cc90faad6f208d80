#!/usr/bin/env bash
# The demo recipe under a real Slurm: a one-node cluster on this machine
# (deploy/slurm/local-cluster.sh: slurm-wlm and munge from Debian), the recipe submitted with
# deploy/slurm/submit.sh as one job array per stage, 3 tasks per sliced stage, each stage
# `afterok` the one before, then every output file compared byte for byte with one local
# `grist run`. Twice more with a task killed in the middle of its stage:
#   1. `scontrol requeue` of a running task (what preemption and node failure do): Slurm kills
#      and reruns it, and the chain completes by itself;
#   2. `scancel` of a running task: the stage fails, so the later stages never start (afterok);
#      submitting the recipe again finishes the run (completed units are skipped).
# Both must give the same bytes. Needs root (it installs and starts Slurm); `just test-slurm`.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
work="${TMPDIR:-/tmp}/grist-test-slurm"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/grist-target}"
cargo build --quiet
bash deploy/slurm/local-cluster.sh start >/dev/null
rm -rf "$work" && mkdir -p "$work"
chmod 755 "$work"

# The demo recipe with its outputs under $work/NAME and a short training run.
recipe() {
  sed -e "s|\"out/demo|\"$work/$1|" -e 's/total_tokens = 250000/total_tokens = 8192/' \
    -e 's/checkpoint_every = 100/checkpoint_every = 4/' recipes/demo.toml >"$work/$1.toml"
  echo "$work/$1.toml"
}

# grist as the jobs run it: the real binary, except that task 1 of the stage named in
# $work/slow-stage waits 4 s before and after its work (a window in which to kill it).
cat >"$work/grist" <<SH
#!/usr/bin/env bash
slow="\$(cat "$work/slow-stage" 2>/dev/null || true)"
mine=0
[ -n "\$slow" ] && [ "\${SLURM_ARRAY_TASK_ID:-}" = 1 ] && [[ " \$* " == *" --stage \$slow "* ]] && mine=1
[ \$mine = 1 ] && sleep 4
"$CARGO_TARGET_DIR/debug/grist" "\$@"
rc=\$?
[ \$mine = 1 ] && sleep 4
exit \$rc
SH
chmod +x "$work/grist"
export GRIST_BIN="$work/grist"

echo "== local: grist run (one process)"
"$CARGO_TARGET_DIR/debug/grist" -q run "$(recipe local)" >/dev/null

# Waits until the chain is over: no job of it running, and none pending but on a dependency
# (for 15 s, so that a stage that just ended has had its successors scheduled).
wait_chain() {
  local ids="$1" deadline=$((SECONDS + 1200)) quiet=0
  while [ $SECONDS -lt $deadline ]; do
    if squeue -h -j "$ids" -o "%T %r" 2>/dev/null | grep -qvE '^PENDING (Dependency|DependencyNeverSatisfied)$'; then
      quiet=0
    else
      quiet=$((quiet + 1))
      [ $quiet -ge 15 ] && return 0
    fi
    sleep 1
  done
  echo "error: the chain did not finish in 20 minutes" >&2
  squeue >&2
  return 1
}

# Submits recipe $1 with 3 tasks; prints the job ids, comma separated.
submit() {
  (cd "$work" && bash "$root/deploy/slurm/submit.sh" "$1" 3) | tee "$work/submit-$(basename "$1" .toml).log" >&2
  awk '{print $3}' "$work/submit-$(basename "$1" .toml).log" | paste -sd, -
}

# Waits until task 1 of stage $1's array (in chain $2) runs; prints its job id (ARRAY_1).
running_task() {
  local deadline=$((SECONDS + 600))
  while [ $SECONDS -lt $deadline ]; do
    local id
    id=$(squeue -h -j "$2" -n "grist-$1" -t RUNNING -o "%i" | grep '_1$' | head -1 || true)
    [ -n "$id" ] && { echo "$id"; return 0; }
    sleep 0.2
  done
  echo "error: task 1 of $1 never ran" >&2
  return 1
}

# Every output file of a run except manifests, markers, stats and logs (they hold timings).
compare() {
  local bad=0 n=0
  while IFS= read -r f; do
    n=$((n + 1))
    # The report names its run's directory in its title; nothing else differs.
    if [ "$f" = ./report.html ]; then
      same=$(cmp -s <(sed "s|$work/local|RUN|g" "$work/local/$f") <(sed "s|$work/$1|RUN|g" "$work/$1/$f") && echo 1 || echo 0)
    else
      same=$(cmp -s "$work/local/$f" "$work/$1/$f" && echo 1 || echo 0)
    fi
    if [ "$same" = 0 ]; then
      echo "differs: $1/$f" >&2
      bad=1
    fi
  done < <(cd "$work/local" && find . -type f ! -name '*.json' ! -name '*.jsonl' ! -name '*.log' | sort)
  [ "$(cd "$work/$1" && find . -type f ! -name '*.json' ! -name '*.jsonl' ! -name '*.log' | wc -l)" = "$n" ] \
    || { echo "the file lists differ between local and $1" >&2; bad=1; }
  [ $bad = 0 ] && echo "$1: $n files, byte-identical to the local run"
  return $bad
}

# End states of the chain's array elements and jobs, counted.
states() { for j in ${1//,/ }; do scontrol show job "$j" 2>/dev/null | grep -o 'JobState=[A-Z_]*'; done | sort | uniq -c | xargs; }

echo "== slurm: the demo recipe as job arrays, 3 tasks per sliced stage"
ids=$(submit "$(recipe slurm)")
wait_chain "$ids"
echo "jobs: $(states "$ids")"
compare slurm

echo "== slurm, task 1 of dedup_clusters requeued while running (scontrol requeue)"
echo dedup_clusters >"$work/slow-stage"
ids=$(submit "$(recipe requeued)")
task=$(running_task dedup_clusters "$ids")
scontrol requeue "$task"
# Slurm holds a requeued job for two minutes; let it start now (once the requeue is through).
for _ in $(seq 50); do
  scontrol update JobId="$task" EligibleTime=now 2>/dev/null || true
  scontrol show job "$task" | grep -q 'Reason=BeginTime' || break
  sleep 0.2
done
echo "requeued $task"
wait_chain "$ids"
echo "jobs: $(states "$ids")"
compare requeued

echo "== slurm, task 1 of ingest cancelled while running (scancel), then the recipe submitted again"
echo ingest >"$work/slow-stage"
ids=$(submit "$(recipe cancelled)")
task=$(running_task ingest "$ids")
scancel "$task"
echo "cancelled $task"
wait_chain "$ids"
stuck=$(squeue -h -j "$ids" -o "%i" | wc -l)
echo "after the cancel: $stuck later stages wait on a dependency that can no longer be met"
scancel ${ids//,/ } 2>/dev/null || true
rm -f "$work/slow-stage"
ids=$(submit "$work/cancelled.toml")
wait_chain "$ids"
echo "jobs of the second submission: $(states "$ids")"
compare cancelled
echo "slurm: all runs byte-identical to the local run"
