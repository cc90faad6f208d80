#!/usr/bin/env bash
# The scale curve: the demo recipe's data stages on a corpus of N crawl-like documents made by
# `grist synthetic --docs N` (JSON lines and WARC crawl files, a Pushshift-style Reddit dump,
# books; planted exact and near copies, spam, boilerplate, benchmark leaks), each sliced stage
# as 2 task processes at once (as a 2-task job array would run them), the others as one.
# Per stage: documents in, input MB, wall time, documents/s and MB/s per core (over the CPU
# seconds the stage's processes used), peak RSS of its largest task, disk written; beside
# them `grist plan`'s estimates of peak memory and disk for the same recipe and input: memory
# as planned before the run (once the corpus exists), disk as planned between stages (each
# stage's from what the stages before it wrote).
# GRIST_SCALE_UNIT_BYTES sets `ingest.unit_bytes` (the unit size every sliced stage's memory
# follows), GRIST_SCALE_QUALITY_MB `quality.memory_mb`; unset, the demo's defaults.
# Training is left out (the curve is about the data stages; `just bench-train` measures it).
# Usage: scripts/bench-scale.sh N [N...]   e.g. 100000 1000000 10000000 (`just bench-scale N`)
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/grist-target}"
if [ -z "${GRIST_BIN:-}" ]; then
  cargo build --release --quiet
fi
grist="${GRIST_BIN:-$CARGO_TARGET_DIR/release/grist}"
work="${GRIST_SCALE_DIR:-${TMPDIR:-/tmp}/grist-bench-scale}"
[ $# -gt 0 ] || { echo "usage: scripts/bench-scale.sh N [N...]" >&2; exit 2; }
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; grist $("$grist" --version | cut -d' ' -f2)"

for n in "$@"; do
  rm -rf "$work" && mkdir -p "$work"
  # The demo recipe on this corpus, without [train] and [report].
  sed -e "s|\"out/demo|\"$work/out|" recipes/demo.toml | awk '/^\[train\]/ {exit} {print}' >"$work/recipe.toml"
  # N documents; the mixture's budget and the shard sizes grow with them (the demo's at 600).
  shard=$(( n * 20 > 100000 ? n * 20 : 100000 ))
  sed -i -e "s|^docs = 600$|docs = $n|" -e "s|^total_tokens = 60000$|total_tokens = $(( n * 100 ))|" \
    -e "s|^shard_tokens = 100000$|shard_tokens = $shard|" -e "s|^shard_tokens = 25000$|shard_tokens = $shard|" "$work/recipe.toml"
  grep -q "^docs = $n$" "$work/recipe.toml" || { echo "error: the demo recipe changed; update this script" >&2; exit 1; }
  [ -n "${GRIST_SCALE_UNIT_BYTES:-}" ] && sed -i "s|^\[ingest\]$|[ingest]\nunit_bytes = $GRIST_SCALE_UNIT_BYTES|" "$work/recipe.toml"
  [ -n "${GRIST_SCALE_QUALITY_MB:-}" ] && sed -i "s|^\[quality\]$|[quality]\nmemory_mb = $GRIST_SCALE_QUALITY_MB|" "$work/recipe.toml"
  rm -f "$work/rows.txt"
  mapfile -t stages < <("$grist" run --list-stages)
  planned=0
  for entry in "${stages[@]}"; do
    stage="${entry%%:*}"; sliced="${entry##*:}"
    case "$stage" in train|report) continue ;; esac
    tasks=1; [ "$sliced" = 1 ] && tasks=2
    start=$(date +%s.%N)
    pids=()
    for ((i = 0; i < tasks; i++)); do
      args=(-q run "$work/recipe.toml" --stage "$stage")
      [ "$tasks" -gt 1 ] && args+=(--task "$i" --tasks "$tasks")
      /usr/bin/time -f "%M %U %S" -o "$work/time-$stage-$i" "$grist" "${args[@]}" >/dev/null &
      pids+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    wall=$(echo "$(date +%s.%N) - $start" | bc)
    # The plan before the run, once the corpus exists (it reads the inputs' sizes).
    if [ $planned = 0 ] && [ "$stage" = synthetic ]; then
      "$grist" plan "$work/recipe.toml" >"$work/plan.txt" 2>&1 || true
      planned=1
    fi
    python3 - "$work" "$stage" "$tasks" "$wall" >>"$work/rows.txt" <<'PY'
import json, os, re, sys
work, stage, tasks, wall = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
rss, cpu = 0, 0.0
for i in range(tasks):
    m, u, s = open(f"{work}/time-{stage}-{i}").read().split()[-3:]
    rss, cpu = max(rss, int(m)), cpu + float(u) + float(s)
d = f"{work}/out/{stage}"
disk = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs) if os.path.isdir(d) else 0
docs, mb = "", ""
mpath = f"{d}/manifest.json"
if os.path.exists(mpath):
    m = json.load(open(mpath))
    docs = m.get("accounting", {}).get("docs_in", 0)
    mb = sum(f.get("bytes", 0) for f in m.get("inputs", [])) / 1e6
print(json.dumps({"stage": stage, "docs": docs, "mb": mb, "wall": wall, "cpu": cpu, "rss": rss, "disk": disk}))
PY
  done
  # Disk as planned between stages: every stage has run, and each row depends only on what
  # the stages before it wrote.
  "$grist" plan "$work/recipe.toml" >"$work/plan-after.txt" 2>&1 || true
  printf "\n%s documents (%s)\n" "$n" "$work"
  printf "%-18s %10s %9s %8s %12s %10s %10s %10s %10s %10s\n" stage "docs in" "MB in" "wall s" "docs/s/core" "MB/s/core" "peak RSS" "plan RSS" "disk MB" "plan disk"
  python3 - "$work" <<'PY'
import json, os, re, sys
work = sys.argv[1]
def plan(name):
    rows = {}
    for line in open(f"{work}/{name}", errors="replace") if os.path.exists(f"{work}/{name}") else []:
        f = line.split()
        if len(f) >= 5 and re.fullmatch(r"[a-z_]+", f[0]):
            rows[f[0]] = (f[1] + " " + f[2], f[3] + " " + f[4])
    return rows
before, after = plan("plan.txt"), plan("plan-after.txt")
for line in open(f"{work}/rows.txt"):
    r = json.loads(line)
    stage, docs, mb, cpu = r["stage"], r["docs"], r["mb"], r["cpu"]
    key = "dedup" if stage.startswith("dedup") else "decontaminate" if stage.startswith("decontaminate") else stage
    pm = before.get(key, ("", ""))[1]
    pd = after.get(key, ("", ""))[0]
    rate = lambda x: f"{x / cpu:,.0f}" if cpu > 0 and x != "" else ""
    mbrate = f"{mb / cpu:.1f}" if cpu > 0 and mb != "" else ""
    print(f"{stage:<18} {docs!s:>10} {('%.1f' % mb) if mb != '' else '':>9} {r['wall']:8.1f} {rate(docs):>12} {mbrate:>10} {r['rss'] / 1024:8.0f} MB {pm:>10} {r['disk'] / 1e6:10.1f} {pd:>10}")
PY
done
echo "(docs/s and MB/s per core: over the CPU seconds of the stage's processes; peak RSS: the largest task; plan: \`grist plan\` for the same recipe and input, memory before the run, disk between stages, dedup's and decontamination's steps sharing one row)"
