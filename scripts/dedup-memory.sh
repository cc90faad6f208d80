#!/usr/bin/env bash
# Peak memory of each dedup step as the corpus grows: synthetic corpora of 10^5, 3x10^5 and
# 10^6 documents made from real text (scripts/dedup_corpus.py; 5% near copies), in files of
# 50,000 documents (so ingest writes several shards), ingested, then `grist dedup --step ...`
# one step at a time under /usr/bin/time. Word 5-grams, 14 x 8, dedup.memory_mb =
# GRIST_DEDUP_MEMORY_MB (default 256: the clusters step's groups are about 64 MB of input).
# GRIST_BIN: a grist binary to use instead of building one.
# Usage: scripts/dedup-memory.sh [N...]   (default 100000 300000 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
data="${GRIST_TEST_DATA:-../shared/data}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/grist-target}"
target="$CARGO_TARGET_DIR"
work="${TMPDIR:-/tmp}/grist-dedup-memory"
if [ -z "${GRIST_BIN:-}" ]; then
  cargo build --release --quiet
fi
grist="${GRIST_BIN:-$target/release/grist}"
memory_mb="${GRIST_DEDUP_MEMORY_MB:-256}"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100000 300000 1000000)
printf "%10s %9s %12s %12s %12s %12s %10s %8s\n" docs "text MB" "signatures" buckets clusters filter "pairs" removed
for n in "${sizes[@]}"; do
  rm -rf "$work" && mkdir -p "$work/in"
  python3 scripts/dedup_corpus.py "$data" "$n" "$work/corpus.jsonl"
  split -l 50000 -d -a 3 --additional-suffix=.jsonl "$work/corpus.jsonl" "$work/in/part-"
  cat >"$work/recipe.toml" <<TOML
[run]
out = "$work/out"
seed = 1
[ingest]
min_words = 5
unit_bytes = 67108864
[[ingest.sources]]
name = "synthetic"
paths = ["$work/in"]
[dedup]
input = "ingest"
mode = "shingles"
memory_mb = $memory_mb
TOML
  "$grist" -q ingest "$work/recipe.toml" >/dev/null
  peaks=()
  for step in signatures buckets clusters filter; do
    /usr/bin/time -f "%M" -o "$work/rss" "$grist" -q dedup "$work/recipe.toml" --step "$step" >/dev/null
    peaks+=("$(( $(cat "$work/rss") / 1024 )) MiB")
  done
  mb=$(( $(stat -c %s "$work/corpus.jsonl") / 1000000 ))
  read -r pairs removed < <(python3 -c "import json; r=json.load(open('$work/out/dedup_clusters/report.json')); print(r['candidate_docs'], r['removed'])")
  printf "%10s %9s %12s %12s %12s %12s %10s %8s\n" "$n" "$mb" "${peaks[@]}" "$pairs" "$removed"
done
echo "(pairs = documents in candidate pairs, D; dedup.memory_mb = $memory_mb; the clusters step had $(ls -d "$work/out/dedup_clusters"/cc-*-large | wc -l) rounds of large-star at the last size)"
