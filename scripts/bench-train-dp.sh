#!/usr/bin/env bash
# Data-parallel training throughput: the small shape (L=4 C=256 H=4 T=256, batch 8 sequences
# in micro-batches of 4, GPT-2 vocabulary) as 1 process x N threads against N ranks x 1 thread
# under mpirun, on the same random token shards: tokens/s over the steps after the first, and
# the fraction of rank 0's step time spent in collectives (waiting for the other rank
# included). Then, on paper, the bytes a step moves per rank and what they would cost at 8 and
# 64 nodes for a stated network bandwidth. Needs Open MPI (apt-get install openmpi-bin
# libopenmpi-dev libclang-dev). Usage: scripts/bench-train-dp.sh [STEPS] [GBIT_PER_S]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/grist-target}"
steps="${1:-6}"
gbit="${2:-100}"
n=$(getconf _NPROCESSORS_ONLN)
work="${TMPDIR:-/tmp}/grist-bench-train-dp"
cargo build --release --quiet --features mpi
grist="$CARGO_TARGET_DIR/release/grist"
rm -rf "$work" && mkdir -p "$work/data"
python3 - "$work/data" <<'PY'
import random, struct, sys
random.seed(7)
for s in range(2):
    toks = [random.randrange(50257) for _ in range(400_000)]
    with open(f"{sys.argv[1]}/train-{s}.bin", "wb") as f:
        header = [20240520, 1, len(toks)] + [0] * 253
        f.write(struct.pack("<256i", *header))
        f.write(struct.pack(f"<{len(toks)}H", *toks))
PY
config() {
  cat >"$work/$1.toml" <<TOML
model = "custom"
layers = 4
heads = 4
channels = 256
seq_len = 256
train_data = "$work/data"
out = "$work/$1"
micro_batch = 4
batch_size = 8
steps = $steps
checkpoint_every = 0
TOML
}
config one
config ranks
RAYON_NUM_THREADS=$n "$grist" -q train --config "$work/one.toml" >/dev/null
mpirun --allow-run-as-root --oversubscribe -np "$n" -x RAYON_NUM_THREADS=1 \
  "$grist" -q train --config "$work/ranks.toml" >/dev/null
python3 - "$work" "$n" "$gbit" <<'PY'
import json, sys
work, n, gbit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
def steps(name):
    lines = [json.loads(l) for l in open(f"{work}/{name}/metrics.jsonl")]
    return [l for l in lines if "loss" in l][1:]  # the first step warms up
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"GPT L=4 C=256 H=4 T=256, batch 8 x 256 tokens (micro-batches of 4), GPT-2 vocabulary; {cpu}, {n} cores")
print(f"{'run':28} {'tokens/s':>9} {'step s':>8} {'in collectives':>15}")
rows = {}
for name, label in (("one", f"1 process x {n} threads"), ("ranks", f"{n} ranks x 1 thread (mpirun)")):
    s = steps(name)
    tps = sum(l["tokens_per_s"] for l in s) / len(s)
    step_s = sum(2048 / l["tokens_per_s"] for l in s) / len(s)
    comm = sum(l.get("comm_s", 0.0) for l in s) / len(s)
    rows[name] = (tps, step_s, comm)
    frac = f"{comm / step_s:.1%}" if "comm_s" in s[0] else "-"
    print(f"{label:28} {tps:9.1f} {step_s:8.3f} {frac:>15}")
print(f"{n} ranks / 1 process: {rows['ranks'][0] / rows['one'][0]:.2f}x")
# Bytes per step per rank with ZeRO-1: the reduce-scatter sends (N-1)/N of the gradient and
# the all-gather receives (N-1)/N of the parameters, 4 bytes each.
params = 50304 * 256 + 256 * 256 + 4 * (12 * 256 * 256 + 13 * 256) + 2 * 256
for nodes in (8, 64):
    moved = 2 * 4 * params * (nodes - 1) / nodes
    t = moved * 8 / (gbit * 1e9)
    print(f"{nodes} nodes: {moved / 1e6:.0f} MB a step per rank, {t * 1e3:.1f} ms at {gbit:.0f} Gbit/s "
          f"(a step of this shape computes for about {rows['one'][1] * 1e3:.0f} ms on this machine)")
PY
