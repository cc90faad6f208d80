#!/usr/bin/env bash
# Ingest throughput on a generated corpus: grist on 1 thread and on all cores, beside a
# Python standard-library baseline (gzip + json.loads per line) on the same files
# (the .jsonl.gz half of the generated crawl).
# Usage: scripts/bench-ingest.sh [DOCS]   (default 300000 documents, ~15 crawl files)
set -euo pipefail
cd "$(dirname "$0")/.."
docs="${1:-300000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/grist-target}"
target="$CARGO_TARGET_DIR"
grist="$target/release/grist"
[ -x "$grist" ] || cargo build --release
work="${TMPDIR:-/tmp}/grist-bench-ingest"
rm -rf "$work" && mkdir -p "$work"
"$grist" -q synthetic --out "$work/sample" --docs "$docs" >/dev/null
cat > "$work/recipe.toml" <<TOML
[run]
out = "$work/out"
[ingest]
min_words = 5
unit_bytes = 1
[[ingest.sources]]
name = "crawl"
paths = ["$work/sample/crawl/*.jsonl.gz"]
url_field = "metadata.url"
TOML
compressed=$(du -cb "$work"/sample/crawl/*.gz | tail -1 | cut -f1)
raw=$(cat "$work"/sample/crawl/*.gz | gzip -dc | wc -c)
now() { date +%s%N; }
run_grist() {
  rm -rf "$work/out"
  local s; s=$(now)
  "$grist" -q --threads "$1" ingest "$work/recipe.toml" >/dev/null
  echo $(( ($(now) - s) / 1000000 ))
}
ms1=$(run_grist 1)
msn=$(run_grist "$(nproc)")
pyms=$(python3 - "$work/sample/crawl" <<'PY'
import gzip, json, os, sys, time
d = sys.argv[1]
t = time.perf_counter(); kept = 0
for name in sorted(os.listdir(d)):
    if not name.endswith(".gz"):
        continue
    for line in gzip.open(os.path.join(d, name), "rb"):
        try:
            kept += len(json.loads(line).get("text", "").split()) >= 5
        except Exception:
            pass
print(int((time.perf_counter() - t) * 1000))
PY
)
records=$(python3 -c "import json;print(json.load(open('$work/out/ingest/manifest.json'))['accounting']['docs_in'])")
mb() { python3 -c "print(f'{$1/1e6/($2/1000):.1f}')"; }
echo "ingest benchmark: $docs generated documents, $records records, $(python3 -c "print(f'{$compressed/1e6:.1f}')") MB gzip ($(python3 -c "print(f'{$raw/1e6:.1f}')") MB of JSON lines) in $(ls "$work"/sample/crawl/*.gz | wc -l) files, $(nproc) cores"
echo "grist parses, filters and writes zstd Parquet shards + ledgers; the python loop only parses and counts"
printf '%-30s %8s %10s %10s %11s\n' "reader" "seconds" "gz MB/s" "JSON MB/s" "records/s"
for row in "grist, 1 thread:$ms1" "grist, $(nproc) threads:$msn"; do
  name=${row%%:*}; ms=${row##*:}
  printf '%-30s %8.2f %10s %10s %11s\n' "$name" "$(python3 -c "print($ms/1000)")" "$(mb "$compressed" "$ms")" "$(mb "$raw" "$ms")" "$(python3 -c "print(int($records/($ms/1000)))")"
done
printf '%-30s %8.2f %10s %10s %11s\n' "python gzip + json.loads" "$(python3 -c "print($pyms/1000)")" "$(mb "$compressed" "$pyms")" "$(mb "$raw" "$pyms")" "$(python3 -c "print(int($records/($pyms/1000)))")"
echo "grist on 1 thread is $(python3 -c "print(f'{$pyms/$ms1:.1f}')")x the python loop; on $(nproc) threads $(python3 -c "print(f'{$pyms/$msn:.1f}')")x"
rm -rf "$work"
