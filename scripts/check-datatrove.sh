#!/usr/bin/env bash
# grist's heuristic filters against datatrove itself, document by document, on the real
# crawl and curated text in ../shared/data (recipes/quality-real.toml's sources, about 8,000
# documents): datatrove 0.10.1 and spaCy 3.8 install from PyPI into a virtual environment this
# script creates; their verdicts, C4 rewrites, words and sentence counts are written to a
# truth file, which `pipeline/tests/datatrove.rs` compares with grist's, filter by filter.
# Then the language ID: lid.176.ftz (from a PyPI wheel, scripts/lid-model.sh) run by the
# fasttext package (datatrove's LanguageFilter's `predict(k=-1)`) and by grist's reader, every
# label and probability compared (`pipeline/tests/fasttext.rs`). Then URLs: every URL of
# ../shared/data's crawl and Reddit dumps split by tldextract and by grist, and judged by
# datatrove's URLFilter and grist's with the same lists (`pipeline/tests/tldextract.rs`).
# Usage: scripts/check-datatrove.sh [--quick]
#   --quick: recipes/fineweb.toml's real crawl only (706 documents; CI runs it), debug build.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/grist-target}"
venv="${GRIST_DATATROVE_VENV:-$CARGO_TARGET_DIR/datatrove-venv}"
out="${TMPDIR:-/tmp}/grist-check-datatrove"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import datatrove, spacy, pyarrow, fasttext, tldextract, ahocorasick, regex" 2>/dev/null ||
  "$venv/bin/pip" install -q "datatrove[processing]==0.10.1" "spacy==3.8.18" "pyarrow==21.0.0" "fasttext-numpy2-wheel==0.9.2" \
    "tldextract==5.4.0" "pyahocorasick==2.3.1"
recipe=recipes/quality-real.toml
profile=(--release)
if [ "${1:-}" = "--quick" ]; then
  recipe=recipes/fineweb.toml
  profile=()
fi
rm -rf "$out"
mkdir -p "$out"
cargo run --quiet "${profile[@]}" -- -q ingest "$recipe" --set "run.out=$out" --set ingest.min_words=0 >/dev/null
"$venv/bin/python" scripts/datatrove_filters.py export "$out/ingest" "$out/texts.jsonl"
echo "datatrove on $(wc -l <"$out/texts.jsonl") documents ..." >&2
"$venv/bin/python" scripts/datatrove_filters.py truth "$out/texts.jsonl" "$out/truth.jsonl"
lid=$(bash scripts/lid-model.sh "$venv" "$out/lid")
"$venv/bin/python" scripts/datatrove_filters.py lid "$lid" "$out/texts.jsonl" "$out/lid-truth.jsonl"
data="$(cd ../shared/data 2>/dev/null && pwd || echo "${GRIST_TEST_DATA:?the real data: ../shared/data or GRIST_TEST_DATA}")"
export TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS=""  # tldextract's bundled list, no fetch
"$venv/bin/python" scripts/datatrove_filters.py urls "$data" "$out/urls.jsonl" "$out/lists"
"$venv/bin/python" scripts/datatrove_filters.py urlfilter "$out/urls.jsonl" "$out/lists" "$out/url-truth.jsonl"
GRIST_DATATROVE_INPUT="$out/texts.jsonl" GRIST_DATATROVE_TRUTH="$out/truth.jsonl" \
  GRIST_FASTTEXT_MODEL="$lid" GRIST_FASTTEXT_TRUTH="$out/lid-truth.jsonl" \
  GRIST_TLDEXTRACT_TRUTH="$out/urls.jsonl.tld" GRIST_URLFILTER_LISTS="$out/lists" GRIST_URLFILTER_TRUTH="$out/url-truth.jsonl" \
  cargo test "${profile[@]}" --workspace --test datatrove --test fasttext --test tldextract -- --nocapture
