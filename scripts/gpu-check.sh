#!/usr/bin/env bash
# The CUDA backend on a GPU (issue #21), in one call of the device tool, from binaries built
# here (no Rust toolchain or CUDA toolkit needed there):
#   cargo build --release --features cuda
#   cargo build --release -p trainer --features cuda --example gpu_check
# then run this on the GPU machine, carrying target/release/grist and
# target/release/examples/gpu_check. Under 8 minutes on one H200:
#   1. the libraries (libcuda, cuBLAS, NVRTC of CUDA 12 or 13) found and put on LD_LIBRARY_PATH;
#   2. gpu_check: PyTorch parity (logits, loss, every gradient, 10 AdamW losses), the CPU
#      backend against the GPU on a banded model (each gradient tensor), bit-for-bit repeats,
#      checkpoints across devices, the kernel cache, two data-parallel ranks against one
#      process, then GPT-2 124M (T=1024) training-step throughput;
#   3. PyTorch on the same GPU and shape, eager and torch.compile, fp32 and bf16;
#   4. `grist run recipes/demo.toml` trained on the GPU beside the same run on the CPU.
# Output goes to stdout and, when $OUT is set, to $OUT/gpu-check.log.
# usage: scripts/gpu-check.sh [--dry-run]   (--dry-run: check the binaries and libraries, run nothing)
set -uo pipefail
cd "$(dirname "$0")/.."
bin="${GRIST_GPU_BIN:-target/release}"
dry=0
[ "${1:-}" = "--dry-run" ] && dry=1
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  exec > >(tee "$OUT/gpu-check.log") 2>&1
fi
failed=0
step() { echo; echo "== $*"; }

step "1. machine and libraries"
date -u
nproc
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
dirs=()
for root in /usr/local/nvidia /usr/local/cuda /usr/local/cuda-13.0 /opt /usr/lib/x86_64-linux-gnu \
  "$(python3 -c 'import site; print(site.getsitepackages()[0])' 2>/dev/null || echo /nonexistent)"; do
  [ -d "$root" ] || continue
  while IFS= read -r f; do dirs+=("$(dirname "$f")"); done < <(find -L "$root" -maxdepth 10 \
    \( -name 'libcuda.so.1' -o -name 'libcublas.so.1[23]' -o -name 'libnvrtc.so.1[23]' \) 2>/dev/null)
done
libpath="$(printf '%s\n' "${dirs[@]}" | awk '!seen[$0]++' | paste -sd: -)"
export LD_LIBRARY_PATH="${libpath}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
# A fresh kernel cache: the first backend compiles and stores, the next ones read it.
export GRIST_KERNEL_CACHE="${GRIST_KERNEL_CACHE:-$(mktemp -d)/kernels}"
echo "GRIST_KERNEL_CACHE=$GRIST_KERNEL_CACHE"
for b in "$bin/grist" "$bin/examples/gpu_check"; do
  if [ -x "$b" ]; then echo "binary: $b ($(stat -c %s "$b") bytes)"; else echo "MISSING: $b (build it here, carry it)"; failed=1; fi
done
if [ "$dry" = 1 ]; then
  echo "dry run: nothing started"
  exit "$failed"
fi
[ "$failed" = 0 ] || exit 1

step "2. gpu_check: parity, determinism, checkpoints across devices, GPT-2 124M throughput (fp32)"
timeout 300 "$bin/examples/gpu_check" --bench 12 768 12 1024 16 10 790 || failed=1

step "3. PyTorch on the same GPU: GPT-2 124M, T=1024, B=16"
for mode in "0 fp32" "1 fp32" "1 bf16"; do
  read -r compile dtype <<<"$mode"
  echo "torch.compile=$compile dtype=$dtype:"
  GRIST_TORCH_DEVICE=cuda GRIST_TORCH_COMPILE=$compile GRIST_TORCH_DTYPE=$dtype \
    timeout 150 python3 scripts/torch_train_bench.py 12 768 12 1024 16 10 "$(nproc)" || echo "(PyTorch $mode did not finish)"
done

step "4. grist run recipes/demo.toml: training on the GPU, then the same on the CPU"
rm -rf out/gpu-demo out/cpu-demo
if timeout 120 "$bin/grist" -q run recipes/demo.toml --set run.out=out/gpu-demo --set train.backend=cuda; then
  cp -r out/gpu-demo out/cpu-demo
  rm -rf out/cpu-demo/train
  timeout 120 "$bin/grist" -q run recipes/demo.toml --set run.out=out/cpu-demo || failed=1
  python3 - <<'PY' || failed=1
import json
def last(p):
    rows = [json.loads(l) for l in open(p)]
    val = [r for r in rows if r.get("val_loss") is not None]
    return rows[-1], (val[-1] if val else {})
(g, gv), (c, cv) = last("out/gpu-demo/train/metrics.jsonl"), last("out/cpu-demo/train/metrics.jsonl")
print("gpu: last", {k: g.get(k) for k in ("step", "loss")}, "val", gv.get("val_loss"))
print("cpu: last", {k: c.get(k) for k in ("step", "loss")}, "val", cv.get("val_loss"))
d = abs(gv.get("val_loss", 0) - cv.get("val_loss", 1))
print(("PASS" if d < 1e-2 else "FAIL") + f" demo validation loss, GPU vs CPU: difference {d:.2e} (tolerance 1e-2)")
raise SystemExit(0 if d < 1e-2 else 1)
PY
else
  echo "FAIL grist run with train.backend=cuda"
  failed=1
fi

step "done: $([ "$failed" = 0 ] && echo 'every check passed' || echo 'some checks FAILED')"
exit "$failed"
