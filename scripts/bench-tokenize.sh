#!/usr/bin/env bash
# GPT-2 BPE throughput beside Python tiktoken (encode_ordinary_batch, same thread count), in one
# run, on the same real text: recipes/quality-real.toml's ingest output (../shared/data, about
# 51 MB). grist's figure is the wall clock of `grist tokenize` (start-up, reading shards, BPE,
# writing llm.c shards and the sidecar); tiktoken's is the encoding call alone. The text is the
# recipe's sources ingested COPIES times under other names (default 4, about 200 MB), so that
# start-up (reading the vocabulary: 0.1 s) weighs what it does in a real run.
# Usage: scripts/bench-tokenize.sh [COPIES]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/grist-target}"
target="$CARGO_TARGET_DIR"
venv="${GRIST_BENCH_VENV:-$target/bench-venv}"
out="${TMPDIR:-/tmp}/grist-bench-tokenize"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import tiktoken, pyarrow" 2>/dev/null || "$venv/bin/pip" install -q "tiktoken==0.14.0" "pyarrow==21.0.0"
cargo build --release --quiet
grist="$target/release/grist"
copies="${1:-4}"
rm -rf "$out"
mkdir -p "$out"
recipe="$out/recipe.toml"
python3 - recipes/quality-real.toml "$copies" >"$recipe" <<'PY'
import os, re, sys
src, copies = sys.argv[1], int(sys.argv[2])
text = open(src).read()
head, rest = text.split("[[ingest.sources]]", 1)
blocks = ["[[ingest.sources]]" + b for b in ("[[ingest.sources]]" + rest).split("[[ingest.sources]]")[1:]]
blocks[-1] = blocks[-1].split("\n[", 1)[0] + "\n"
base = os.getcwd()  # grist reads recipe paths from the working directory
out = [head]
for k in range(copies):
    for b in blocks:
        b = re.sub(r'name = "([^"]+)"', lambda m: f'name = "{m.group(1)}_{k}"', b)
        b = re.sub(r'"(\.\./[^"]+)"', lambda m: '"' + os.path.normpath(os.path.join(base, m.group(1))) + '"', b)
        out.append(b)
out.append('[tokenize]\ninput = "ingest"\n')
print("".join(out))
PY
ranks=$(ls -d "$HOME"/.cargo/registry/src/*/tiktoken-rs-0.12.1/assets | head -1)/r50k_base.tiktoken
"$grist" -q ingest "$recipe" --set "run.out=$out" >/dev/null
cores=$(getconf _NPROCESSORS_ONLN)
for t in 1 "$cores"; do
  rm -rf "$out/tokenize"
  s=$(date +%s%N)
  RAYON_NUM_THREADS=$t "$grist" -q tokenize "$recipe" --set "run.out=$out" >/dev/null
  echo $(( ($(date +%s%N) - s) / 1000000 )) >"$out/tokenize-$t.ms"
  cp "$out/tokenize/manifest.json" "$out/tokenize-$t.json"
done
"$venv/bin/python" - "$out" "$ranks" "$cores" <<'PY'
import glob, json, sys, time
import pyarrow.parquet as pq
import tiktoken, tiktoken.load
out, ranks, cores = sys.argv[1], sys.argv[2], int(sys.argv[3])
PAT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
enc = tiktoken.Encoding("r50k_base", pat_str=PAT, mergeable_ranks=tiktoken.load.load_tiktoken_bpe(ranks), special_tokens={"<|endoftext|>": 50256})
texts = []
for p in sorted(glob.glob(f"{out}/ingest/part-*.parquet")):
    texts.extend(pq.read_table(p, columns=["text"]).column("text").to_pylist())
mb = sum(len(t.encode()) for t in texts) / 1e6
print(f"{len(texts)} documents, {mb:.1f} MB of text")
print("tokenizer                          threads    tokens   seconds   M tokens/s   grist / tiktoken")
rows = {}
for t in (1, cores):
    m = json.load(open(f"{out}/tokenize-{t}.json"))
    n = m["counters"]["tokens_train"] + m["counters"].get("tokens_val", 0) - m["accounting"]["docs_in"]
    secs = int(open(f"{out}/tokenize-{t}.ms").read()) / 1000  # wall clock of the whole command
    rows[("grist", t)] = (n, secs)
    s = time.perf_counter()
    toks = enc.encode_ordinary_batch(texts, num_threads=t)
    rows[("tiktoken", t)] = (sum(map(len, toks)), time.perf_counter() - s)
for t in (1, cores):
    g, k = rows[("grist", t)], rows[("tiktoken", t)]
    for name, (n, secs) in (("grist tokenize (whole command)", g), ("tiktoken encode_ordinary_batch", k)):
        print(f"  {name:<32} {t:>7} {n:>9} {secs:9.2f} {n / secs / 1e6:12.2f}", end="")
        print(f"   {(g[0] / g[1]) / (k[0] / k[1]):8.2f}x" if name.startswith("grist") else "")
print(f"same token count: {rows[('grist', 1)][0] == rows[('tiktoken', 1)][0]}")
PY
