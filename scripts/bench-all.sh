#!/usr/bin/env bash
# Every side-by-side benchmark in one run, then one table: work, peer, grist's figure, the
# peer's, the ratio, on this machine's CPU. Each benchmark's full output is kept under
# $TMPDIR/grist-bench-all/ (the README's Performance section shows them). A benchmark that fails
# is reported as failed and the others still run. Takes about 20 minutes on 2 cores, plus the
# first installs of the peers from PyPI (PyTorch is about 5 GB).
# Usage: scripts/bench-all.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/grist-target}"
out="${TMPDIR:-/tmp}/grist-bench-all"
mkdir -p "$out"
run() {
  local name=$1
  shift
  echo "== $name: $*" >&2
  if "$@" >"$out/$name.txt" 2>"$out/$name.err"; then
    tail -n 30 "$out/$name.txt" >&2
  else
    echo "FAILED (see $out/$name.err)" | tee -a "$out/$name.txt" >&2
  fi
}
cargo build --release --quiet
run warc bash scripts/bench-warc.sh
run tokenize bash scripts/bench-tokenize.sh
run dedup bash scripts/bench-dedup.sh
run quality bash scripts/bench-quality.sh
run filters bash scripts/bench-filters.sh
run train-small bash scripts/bench-train.sh
run train-124m bash scripts/bench-train.sh 12 768 12 1024 1 3
python3 - "$out" <<'PY'
import datetime, re, sys
out = sys.argv[1]
def text(name):
    try:
        return open(f"{out}/{name}.txt").read()
    except OSError:
        return ""
def num(pattern, s, group=1):
    m = re.search(pattern, s, re.M)
    return float(m.group(group)) if m else None
cpu = open("/proc/cpuinfo").read()
model = re.search(r"^model name\s*:\s*(.*)$", cpu, re.M)
flags = re.search(r"^flags\s*:\s*(.*)$", cpu, re.M)
isa = "avx512" if flags and "avx512f" in flags.group(1).split() else "avx2" if flags and "avx2" in flags.group(1).split() else "baseline"
rows = []  # (work, peer, grist, peer figure, unit, higher is better)
w = text("warc")
fw = num(r"^fastwarc \(parse_http=False\)\s+\S+\s+(\S+)", w)
rows.append(("WARC.gz parse, 1 thread", "fastwarc", num(r"^grist warc\s+\S+\s+(\S+)", w), fw, "gz MB/s"))
rows.append(("WARC.gz parse, one file, all cores", "fastwarc", num(r"^grist warc, \d+ threads\s+\S+\s+(\S+)", w), fw, "gz MB/s"))
g = num(r"^grist ingest \(Readability\), 1 thread\s+(\S+)", w)
rows.append(("HTML to text, pages/s per core", "resiliparse", g, num(r"^resiliparse \S+ \(main_content=True\)\s+(\S+)", w), "pages/s"))
rows.append(("HTML to text, pages/s per core", "trafilatura", g, num(r"^trafilatura \S+ \(FineWeb settings\)\s+(\S+)", w), "pages/s"))
t = text("tokenize")
for th in ("1", "2"):
    g = num(rf"grist tokenize \(whole command\)\s+{th}\s+\d+\s+\S+\s+(\S+)", t)
    k = num(rf"tiktoken encode_ordinary_batch\s+{th}\s+\d+\s+\S+\s+(\S+)", t)
    rows.append((f"GPT-2 BPE, {th} thread{'s' if th != '1' else ''}", "tiktoken", g, k, "M tokens/s"))
g1, g2 = (num(rf"grist tokenize \(whole command\)\s+{th}\s+\d+\s+\S+\s+(\S+)", t) for th in ("1", "2"))
if g1 and g2:
    rows.append(("GPT-2 BPE scaling, 2 threads / 1", "(goal 1.8x)", g2, g1, "M tokens/s"))
d = text("dedup")
g = num(r"grist dedup \(signature stage\)\s+\S+\s+\S+\s+(\S+)", d)
rows.append(("MinHash signatures, 1 core", "datasketch", g, num(r"^\s*datasketch\s+\S+\s+\S+\s+(\S+)", d), "MB/s"))
rows.append(("MinHash signatures, 1 core", "datatrove", g, num(r"^\s*datatrove\s+\S+\s+\S+\s+(\S+)", d), "MB/s"))
q = text("quality")
g = num(r"grist \(features \+ logit\)\s+\S+\s+(\S+)", q)
rows.append(("quality scoring, per CPU-second", "scikit-learn", g, num(r"scikit-learn \(transform \+ proba\)\s+\S+\s+(\S+)", q), "MB/s"))
rows.append(("quality scoring, per CPU-second", "Spark ML", g, num(r"Spark ML \(transform, noop sink\)\s+\S+\s+(\S+)", q), "MB/s"))
f = text("filters")
rows.append(("FineWeb's 4 heuristic filters, 1 thread", "datatrove", num(r"^grist filters \(whole command\)\s+1\s+\d+\s+\S+\s+\S+\s+(\S+)", f), num(r"^datatrove \S+ \(filter calls only\)\s+1\s+\d+\s+\S+\s+\S+\s+(\S+)", f), "MB/s/core"))
lid = f.split("language ID", 1)[-1] if "language ID" in f else ""
rows.append(("language ID lid.176.ftz, 1 thread", "fasttext", num(r"^grist filters \(whole command\)\s+1\s+\d+\s+\S+\s+\S+\s+(\S+)", lid), num(r"^fasttext \S+ predict\(k=-1\) \(calls only\)\s+1\s+\d+\s+\S+\s+\S+\s+(\S+)", lid), "MB/s/core"))
for name, label in (("train-small", "training step L=4 C=256 T=256 B=8"), ("train-124m", "training step GPT-2 124M T=1024 B=1")):
    s = text(name)
    rows.append((label, "PyTorch CPU", num(r"^grist\s+(\S+)", s), num(r"^pytorch\s+(\S+)", s), "tokens/s"))
    mfu = num(r"^grist\s+\S+\s+\S+\s+\S+\s+(\S+)", s)
    peak = num(r"best fp32 GEMM measured on this machine: (\S+)", s)
    if mfu is not None:
        rows.append((f"  MFU vs best GEMM ({peak} GFLOP/s)", "PyTorch CPU", mfu, num(r"^pytorch\s+\S+\s+\S+\s+\S+\s+(\S+)", s), "fraction"))
print()
import os
print(f"grist bench-all, {datetime.date.today()}, {model.group(1) if model else '?'}, {os.cpu_count()} cores, best instruction set {isa}")
print(f"{'work':<38} {'peer':<14} {'grist':>10} {'peer':>10}  {'unit':<11} {'grist/peer':>10}")
for work, peer, g, p, unit in rows:
    gs = f"{g:10.2f}" if g is not None else f"{'failed':>10}"
    ps = f"{p:10.2f}" if p is not None else f"{'failed':>10}"
    ratio = f"{g / p:9.2f}x" if g and p else f"{'-':>10}"
    print(f"{work:<38} {peer:<14} {gs} {ps}  {unit:<11} {ratio}")
PY
