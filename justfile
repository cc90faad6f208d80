# grist's named recipes. The README's two commands need none of this; `just` is
# `cargo install just` or `pip install rust-just`.

export CARGO_TARGET_DIR := env_var_or_default("CARGO_TARGET_DIR", env_var("HOME") + "/.cache/grist-target")

# List recipes.
default:
    @just --list

# Debug build of everything.
build:
    cargo build --workspace

# Optimized build of the grist binary.
release:
    cargo build --release

# The README's test command.
test:
    cargo test --workspace

# Tests, with the real data in ../shared/data (skipped tests run).
test-data:
    GRIST_TEST_DATA="$(cd ../shared/data && pwd)" cargo test --workspace

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Format the code.
fmt:
    cargo fmt --all

# What CI runs.
ci:
    bash .ci/run

# The main job: the demo recipe on the built-in synthetic corpus (release build).
demo:
    cargo run --release -- run recipes/demo.toml

# Does the recipe make better models? The demo's stages, then the same tiny GPT on four arms
# (raw, quality, dedup, the recipe's mixture), compared on held-out prose (docs/eval.md).
ablate-demo:
    cargo run --release -- ablate recipes/ablate-demo.toml

# The same on ../shared/data: raw crawl and curated text against the recipe's output, evaluated on
# WikiText-2 validation and the 2000-2021 State of the Union addresses (about 10 min on 2 cores).
ablate-real:
    cargo run --release -- ablate recipes/ablate-real.toml

# Check a stage output against its manifests, e.g. `just verify out/demo/ingest`.
verify dir:
    cargo run --release -- inspect --verify {{dir}}

# Benchmarks (release build): ingest throughput on a generated corpus.
bench: release
    bash scripts/bench-ingest.sh

# Clean and incremental build times, as recorded in the README (takes ~20 minutes).
build-times:
    bash scripts/build-times.sh

# Remove run outputs.
clean-out:
    rm -rf out

# grist with `inspect sql` (polars; a clean release build took 23 minutes instead of 4 here).
release-sql:
    cargo build --release --features sql

# SQL over a stage output or run directory, e.g. `just sql out/demo "SELECT reason, COUNT(*) FROM ledger GROUP BY reason"`.
sql dir query="":
    cargo run --release --features sql -- inspect sql {{dir}} "{{query}}"

# The `inspect sql` tests (builds grist with polars).
test-sql:
    cargo test --features sql --test sql

# grist against a local S3 server (moto, from PyPI), built with the `cloud` feature.
test-s3:
    bash scripts/test-s3.sh

# The demo recipe under a real one-node Slurm (installed from Debian, started here; root):
# job arrays of 3 tasks per stage with afterok, a requeued and a cancelled task, every output
# compared byte for byte with a local run.
test-slurm:
    bash scripts/test-slurm.sh

# The Kubernetes Indexed Job manifests of every stage, validated offline against the API
# schemas (kubernetes-validate from PyPI, strict).
check-k8s:
    bash scripts/check-k8s.sh

# WARC/WET throughput beside fastwarc and warcio (PyPI, in a venv the script creates).
bench-ingest: release
    bash scripts/bench-warc.sh

# Quality classifier training and scoring beside scikit-learn and Spark ML (PyPI, in a venv).
bench-quality: release
    bash scripts/bench-quality.sh

# MinHash signature throughput beside datasketch and datatrove (PyPI, in a venv).
bench-dedup: release
    bash scripts/bench-dedup.sh

# Peak memory of each dedup step at 10^5, 3x10^5 and 10^6 synthetic documents (~2 minutes).
bench-dedup-memory: release
    bash scripts/dedup-memory.sh

# The scale curve: the demo recipe's data stages on N synthetic documents, 2 tasks per sliced
# stage; per stage throughput per core, peak RSS per task, disk, beside `grist plan`.
bench-scale +N: release
    bash scripts/bench-scale.sh {{N}}

# The heuristic filters (Gopher, C4, FineWeb) beside datatrove on the same documents (PyPI, in a venv).
bench-filters: release
    bash scripts/bench-filters.sh

# Every heuristic filter's verdict, words and sentences against datatrove's, document by
# document, and lid.176.ftz against the fasttext package, on ../shared/data (PyPI, in a venv; about 25 minutes).
check-datatrove:
    bash scripts/check-datatrove.sh

# GPT-2 tokenization throughput beside Python tiktoken (PyPI, in a venv).
bench-tokenize: release
    bash scripts/bench-tokenize.sh

# Every side-by-side benchmark above in one run, ending in one table (about 20 minutes).
bench-all:
    bash scripts/bench-all.sh

# Data-parallel training: 1 process x N threads vs N ranks x 1 thread under mpirun (Open MPI).
bench-train-dp *ARGS:
    bash scripts/bench-train-dp.sh {{ARGS}}

# The MPI path's tests (needs openmpi-bin, libopenmpi-dev, libclang-dev).
test-mpi:
    cargo test --features mpi --test train -- mpirun

# Training-step tokens/s and MFU beside PyTorch CPU (PyTorch from PyPI in its own venv).
# The CUDA backend's binaries for a GPU machine (no CUDA needed here), then the check to run there:
#   scripts/gpu-check.sh --dry-run here; scripts/gpu-check.sh on the GPU machine.
gpu-build:
    cargo build --release --features cuda
    cargo build --release -p trainer --features cuda --example gpu_check
    bash scripts/gpu-check.sh --dry-run

# Every CUDA kernel compiled by NVRTC (from PyPI) for sm_90 and sm_80, no GPU needed.
check-kernels:
    GRIST_REQUIRE_NVRTC=1 LD_LIBRARY_PATH="$(bash scripts/nvrtc.sh)" cargo test --workspace --features cuda --lib -- cuda::

bench-train *ARGS:
    bash scripts/bench-train.sh {{ARGS}}

# The trainer's GEMM in training's three layouts, per instruction set, 1 thread and all (GFLOP/s).
bench-gemm *ARGS:
    cargo build --release -q -p trainer --example gemm_bench
    "$CARGO_TARGET_DIR/release/examples/gemm_bench" {{ARGS}}
