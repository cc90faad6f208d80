#!/usr/bin/env bash
# Training-step throughput (forward, backward, AdamW) of grist's CPU trainer beside PyTorch on
# the same GPT shape and thread count, in one run: tokens/s and MFU = 6 x params x tokens/s over
# the best fp32 GEMM rate either program measured on this machine (a 1024^3 product), so both
# are divided by the same peak. Prints the CPU and the instruction sets in use. PyTorch installs from PyPI into its own venv (large:
# about 5 GB with the CUDA libraries PyPI's Linux wheel pulls in); set GRIST_TORCH_VENV to
# reuse one. Usage: scripts/bench-train.sh [LAYERS CHANNELS HEADS SEQ BATCH STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/grist-target}"
target="$CARGO_TARGET_DIR"
venv="${GRIST_TORCH_VENV:-$target/torch-venv}"
shape=("${@:-4 256 4 256 8 5}")
read -r -a shape <<<"${shape[*]}"
threads=$(getconf _NPROCESSORS_ONLN)
if ! [ -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  echo "installing PyTorch into $venv (large) ..." >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch numpy
fi
cargo build --release --quiet -p trainer --example train_bench
g=$("$target/release/examples/train_bench" "${shape[@]}")
p=$("$venv/bin/python" scripts/torch_train_bench.py "${shape[@]}" "$threads")
echo "GPT L=${shape[0]} C=${shape[1]} H=${shape[2]} T=${shape[3]} B=${shape[4]}, GPT-2 vocabulary, $threads threads, ${shape[5]} steps after one warm-up"
python3 - "$g" "$p" <<'PY'
import json, sys
g, p = json.loads(sys.argv[1]), json.loads(sys.argv[2])
peak = max(g["gemm_gflops"], p["gemm_gflops"])
print(f"cpu: {g['cpu']}; pytorch {p['torch']} ({p['isa']})")
print(f"best fp32 GEMM measured on this machine: {peak:.1f} GFLOP/s (grist {g['gemm_gflops']}, pytorch {p['gemm_gflops']})")
print(f"{'':8} {'tokens/s':>9} {'step s':>8} {'GEMM GFLOP/s':>13} {'MFU':>6}")
for name, r in (("grist", g), ("pytorch", p)):
    mfu = 6 * r["params"] * r["tokens_per_s"] / (peak * 1e9)
    print(f"{name:8} {r['tokens_per_s']:9.1f} {r['step_s']:8.3f} {r['gemm_gflops']:13.1f} {mfu:6.3f}")
print(f"grist / pytorch tokens/s: {g['tokens_per_s'] / p['tokens_per_s']:.2f}x")
PY
