#!/usr/bin/env bash
# Prints a directory holding libnvrtc.so.13 (NVIDIA's NVRTC from PyPI's nvidia-cuda-nvrtc, no GPU
# or CUDA toolkit needed), downloading the wheel once into ~/.cache/grist-nvrtc. With it on
# LD_LIBRARY_PATH, `cargo test --features cuda` compiles every kernel of trainer/kernels/.
set -euo pipefail
cache="${GRIST_NVRTC_CACHE:-$HOME/.cache/grist-nvrtc}"
lib="$cache/nvidia/cu13/lib"
if [ ! -f "$lib/libnvrtc.so.13" ]; then
  mkdir -p "$cache"
  venv="$cache/venv"
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv" >&2
  "$venv/bin/pip" download -q --no-deps --dest "$cache/wheel" "nvidia-cuda-nvrtc==13.*" >&2
  python3 - "$cache" <<'PY'
import glob, sys, zipfile
cache = sys.argv[1]
wheel = sorted(glob.glob(cache + "/wheel/nvidia_cuda_nvrtc-*.whl"))[-1]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if "/lib/" in name:
            z.extract(name, cache)
PY
fi
test -f "$lib/libnvrtc.so.13"
echo "$lib"
