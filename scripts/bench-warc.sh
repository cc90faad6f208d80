#!/usr/bin/env bash
# WARC.gz parsing and WET-to-shards throughput, side by side with fastwarc and warcio in one
# run. Input: a real Common Crawl WARC.gz (../shared/data/web/cc2020-34.warc.gz) repeated to
# about 200 MB, a real WET (whirlwind) repeated to about 40 MB, and real HTML pages (the dolma
# WARC samples): grist's whole WARC ingest beside resiliparse (DCLM's extractor) and trafilatura
# (FineWeb's) extracting the same pages. The reference tools install from PyPI into a virtual
# environment this script creates.
# Usage: scripts/bench-warc.sh [MB]   (default 200)
set -euo pipefail
cd "$(dirname "$0")/.."
mb="${1:-200}"
data="${GRIST_TEST_DATA:-../shared/data}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/grist-target}"
target="$CARGO_TARGET_DIR"
venv="${GRIST_BENCH_VENV:-$target/bench-venv}"
work="${TMPDIR:-/tmp}/grist-bench-warc"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import fastwarc, warcio, resiliparse, trafilatura, lxml_html_clean" 2>/dev/null ||
  "$venv/bin/pip" install -q "fastwarc==2.0.1" "warcio==1.8.1" "resiliparse==2.0.1" "trafilatura==2.3.1" lxml_html_clean
cargo build --release --quiet
grist="$target/release/grist"
rm -rf "$work" && mkdir -p "$work/wet"
src="$data/web/cc2020-34.warc.gz"
copies=$(( mb * 1000000 / $(stat -c %s "$src") + 1 ))
for _ in $(seq "$copies"); do cat "$src"; done >"$work/big.warc.gz"
for i in $(seq 0 3); do
  for _ in $(seq 3400); do cat "$data/web/whirlwind.warc.wet.gz"; done >"$work/wet/part-$i.warc.wet.gz"
done
mkdir -p "$work/html"
for i in $(seq 0 3); do
  for _ in $(seq 60); do cat "$data/web/dolma-sample-0000.warc.gz" "$data/web/dolma-sample-0001.warc.gz"; done >"$work/html/part-$i.warc.gz"
done
size=$(stat -c %s "$work/big.warc.gz")
raw=$(gzip -dc "$work/big.warc.gz" | wc -c)
wet=$(du -cb "$work"/wet/* | tail -1 | cut -f1)
now() { date +%s%N; }

# Best of three for each reader (the host is shared and noisy).
best_ms() { local b=""; for _ in 1 2 3; do local s; s=$(now); "$@" >/dev/null; local t=$(( ($(now) - s) / 1000000 )); [ -z "$b" ] || [ "$t" -lt "$b" ] && b=$t; done; echo "$b"; }
grist_ms=$(best_ms "$grist" --threads 1 warc "$work/big.warc.gz")
gristn_ms=$(best_ms "$grist" --threads "$(nproc)" warc "$work/big.warc.gz")
read -r fast_ms warcio_ms < <("$venv/bin/python" - "$work/big.warc.gz" <<'PY'
import sys, time
from fastwarc.warc import ArchiveIterator
path = sys.argv[1]
fast = 1e9
for _ in range(3):
    t = time.perf_counter(); n = 0
    for rec in ArchiveIterator(path, parse_http=False):
        rec.reader.read(); n += 1
    fast = min(fast, time.perf_counter() - t)
from warcio.archiveiterator import ArchiveIterator as WI
t = time.perf_counter()
with open(path, "rb") as f:
    for rec in WI(f):
        rec.content_stream().read()
slow = time.perf_counter() - t
print(int(fast * 1000), int(slow * 1000))
PY
)
# ingest_run NAME THREADS: times `grist ingest` of the files in $work/NAME into $work/out-NAME.
ingest_run() {
  cat >"$work/$1.toml" <<TOML
[run]
out = "$work/out-$1"
[ingest]
unit_bytes = 1
[[ingest.sources]]
name = "common_crawl"
paths = ["$work/$1"]
TOML
  rm -rf "$work/out-$1"
  local s; s=$(now)
  "$grist" -q --threads "$2" ingest "$work/$1.toml" >/dev/null
  echo $(( ($(now) - s) / 1000000 ))
}
wet1=$(ingest_run wet 1)
wetn=$(ingest_run wet "$(nproc)")
wet_fast_ms=$("$venv/bin/python" - "$work/wet" <<'PY'
import os, sys, time
from fastwarc.warc import ArchiveIterator
t = time.perf_counter()
for name in sorted(os.listdir(sys.argv[1])):
    for rec in ArchiveIterator(os.path.join(sys.argv[1], name), parse_http=False):
        rec.reader.read()
print(int((time.perf_counter() - t) * 1000))
PY
)
html1=$(ingest_run html 1)
htmln=$(ingest_run html "$(nproc)")
pages=$(python3 -c "import json;print(json.load(open('$work/out-html/ingest/manifest.json'))['accounting']['docs_in'])")
html_bytes=$(for f in "$work"/html/*; do gzip -dc "$f"; done | wc -c)
rate() { python3 -c "print(f'{$1/1e6/($2/1000):.1f}')"; }
echo "WARC.gz parsing: $(python3 -c "print(f'{$size/1e6:.0f}')") MB gzip ($(python3 -c "print(f'{$raw/1e6:.0f}')") MB WARC), $copies copies of cc2020-34.warc.gz; 1 thread each unless said; best of 3"
printf '%-28s %8s %12s %12s\n' "reader" "seconds" "gz MB/s" "WARC MB/s"
for row in "grist warc:$grist_ms" "grist warc, $(nproc) threads:$gristn_ms" "fastwarc (parse_http=False):$fast_ms" "warcio:$warcio_ms"; do
  printf '%-28s %8.2f %12s %12s\n' "${row%%:*}" "$(python3 -c "print(${row##*:}/1000)")" "$(rate "$size" "${row##*:}")" "$(rate "$raw" "${row##*:}")"
done
echo "grist / fastwarc: $(python3 -c "print(f'{$fast_ms/$grist_ms:.2f}')")x per core; one file on $(nproc) threads (members inflated in parallel): $(python3 -c "print(f'{$fast_ms/$gristn_ms:.2f}')")x"
echo
echo "WET to document shards: 4 files, $(python3 -c "print(f'{$wet/1e6:.1f}')") MB gzip"
printf '%-28s %8s %12s\n' "run" "seconds" "gz MB/s"
printf '%-28s %8.2f %12s\n' "grist ingest, 1 thread" "$(python3 -c "print($wet1/1000)")" "$(rate "$wet" "$wet1")"
printf '%-28s %8.2f %12s\n' "grist ingest, $(nproc) threads" "$(python3 -c "print($wetn/1000)")" "$(rate "$wet" "$wetn")"
printf '%-28s %8.2f %12s\n' "fastwarc, read only" "$(python3 -c "print($wet_fast_ms/1000)")" "$(rate "$wet" "$wet_fast_ms")"
echo
echo "WARC HTML to text (HTTP, charset, Readability extraction) to shards: $pages pages (the dolma samples repeated), $(python3 -c "print(f'{$html_bytes/1e6:.0f}')") MB WARC"
printf '%-28s %8s %12s %12s\n' "run" "seconds" "WARC MB/s" "pages/s"
printf '%-28s %8.2f %12s %12s\n' "grist ingest, 1 thread" "$(python3 -c "print($html1/1000)")" "$(rate "$html_bytes" "$html1")" "$(python3 -c "print(int($pages/($html1/1000)))")"
printf '%-28s %8.2f %12s %12s\n' "grist ingest, $(nproc) threads" "$(python3 -c "print($htmln/1000)")" "$(rate "$html_bytes" "$htmln")" "$(python3 -c "print(int($pages/($htmln/1000)))")"
echo
echo "HTML to text per core, the same pages (grist: the whole ingest above, on $(nproc) thread(s) too; peers: WARC"
echo "reading with fastwarc, charset detection and extraction, one thread, on the two dolma samples repeated)"
"$venv/bin/python" - "$data/web/dolma-sample-0000.warc.gz" "$data/web/dolma-sample-0001.warc.gz" "$pages" "$html1" <<'PY'
import sys, time
from importlib.metadata import version
from fastwarc.warc import ArchiveIterator, WarcRecordType
from resiliparse.parse.encoding import detect_encoding, bytes_to_str
from resiliparse.extract.html2text import extract_plain_text
import trafilatura
paths, pages, ms = sys.argv[1:3], int(sys.argv[3]), int(sys.argv[4])
docs = []
for p in paths:
    for rec in ArchiveIterator(open(p, "rb"), record_types=WarcRecordType.response, parse_http=True):
        body = rec.reader.read()
        docs.append(body)
def run(extract, min_seconds):
    n, chars, t = 0, 0, time.perf_counter()
    while time.perf_counter() - t < min_seconds:
        for body in docs:
            text = extract(bytes_to_str(body, detect_encoding(body)))
            chars += len(text or ""); n += 1
    return n / (time.perf_counter() - t), chars
res = run(lambda h: extract_plain_text(h, main_content=True), 5)
tra = run(lambda h: trafilatura.extract(h, favor_precision=True, include_comments=False, deduplicate=True), 10)
grist = pages / (ms / 1000)
print(f"{'extractor':<44} {'pages/s':>8} {'grist is':>9}")
print(f"{'grist ingest (Readability), 1 thread':<44} {grist:8.0f}")
print(f"{'resiliparse ' + version('resiliparse') + ' (main_content=True)':<44} {res[0]:8.0f} {grist / res[0]:8.2f}x")
print(f"{'trafilatura ' + version('trafilatura') + ' (FineWeb settings)':<44} {tra[0]:8.0f} {grist / tra[0]:8.2f}x")
PY
rm -rf "$work"
