#!/usr/bin/env bash
# Training-step throughput (forward, backward, AdamW) of grist's CPU trainer beside PyTorch on
# the same GPT shape and thread count, in one run: tokens/s and MFU (6 x params x tokens/s over
# each one's measured fp32 GEMM peak). PyTorch installs from PyPI into its own venv (large:
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
echo "GPT L=${shape[0]} C=${shape[1]} H=${shape[2]} T=${shape[3]} B=${shape[4]}, GPT-2 vocabulary, $threads threads, ${shape[5]} steps after one warm-up"
echo "grist:   $("$target/release/examples/train_bench" "${shape[@]}")"
echo "pytorch: $("$venv/bin/python" scripts/torch_train_bench.py "${shape[@]}" "$threads")"
