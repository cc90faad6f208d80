#!/usr/bin/env bash
# The quality classifier beside scikit-learn and Spark ML, in one run, on the same documents:
# recipes/quality-real.toml's real data (../shared/data: curated prose and cc_net head pages
# against raw Common Crawl and spam, about 51 MB of text). Measures training time and held-out
# ROC AUC, and scoring throughput (features + probability) in MB of text per second on one core.
# scikit-learn, pyarrow and pyspark (with the installed Java 17) install from PyPI into a
# virtual environment this script creates. Usage: scripts/bench-quality.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/grist-target}"
target="$CARGO_TARGET_DIR"
venv="${GRIST_BENCH_VENV:-$target/bench-venv}"
out="${TMPDIR:-/tmp}/grist-bench-quality"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import sklearn, pyarrow, pyspark" 2>/dev/null ||
  "$venv/bin/pip" install -q "scikit-learn==1.7.2" "pyarrow==21.0.0" "pyspark==4.0.1"
cargo build --release --quiet
grist="$target/release/grist"
recipe=recipes/quality-real.toml
set_out=(--set "run.out=$out")
pos=sotu,books,wikitext,cc_head
neg=cc,cc_warc,spam
rm -rf "$out"
"$grist" -q ingest "$recipe" "${set_out[@]}" >/dev/null
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
echo "scikit-learn and Spark ML (local[1]) ..." >&2
ref=$("$venv/bin/python" scripts/bench_quality.py "$out/ingest" "$pos" "$neg")
"$grist" -q quality train "$recipe" "${set_out[@]}" >/dev/null
cp "$out/quality/train_report.json" "$out/train-all-cores.json"
RAYON_NUM_THREADS=1 "$grist" -q quality train "$recipe" "${set_out[@]}" >/dev/null
score=$(RAYON_NUM_THREADS=1 "$grist" quality score --stats --model "$out/quality/model.gqm" "$out"/ingest/part-*.parquet)
"$venv/bin/python" - "$ref" "$out/quality/train_report.json" "$out/train-all-cores.json" "$score" "$(getconf _NPROCESSORS_ONLN)" <<'PY'
import json, re, sys
ref = json.loads(sys.argv[1])
one, allc = json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
m = re.search(r"([\d.]+) MB of text: scoring ([\d.]+) s", sys.argv[4])
mb, grist_score = float(m.group(1)), float(m.group(2))
cores = sys.argv[5]
def reach(rep, auc):
    for h in rep["history"]:
        if h["holdout_auc"] >= auc - 0.005:
            return h["seconds"]
    return float("nan")
print(f"{ref['docs']} documents, {ref['text_mb']:.1f} MB of text; held-out 10% (grist draws its own 10%)")
print()
print("training (features + fit; one core unless noted)          seconds  CPU seconds  held-out AUC")
print(f"  {'grist, 1 thread (reading included)':<54}{one['seconds']:8.2f}  {'':>11}  {one['holdout_auc']:.4f}")
print(f"  {'grist, all ' + cores + ' cores':<54}{allc['seconds']:8.2f}  {'':>11}  {allc['holdout_auc']:.4f}")
for k, name in [("sklearn", "scikit-learn HashingVectorizer + LogisticRegression"), ("spark", "Spark ML Tokenizer + HashingTF + LogisticRegression")]:
    r = ref[k]
    print(f"  {name:<54}{r['train_seconds']:8.2f}  {r['train_cpu_seconds']:11.2f}  {r['holdout_auc']:.4f}")
print()
for k, name in [("sklearn", "scikit-learn"), ("spark", "Spark ML")]:
    t = reach(one, ref[k]["holdout_auc"])
    print(f"grist reaches {name}'s AUC (within 0.005) after {t:.2f} s: {ref[k]['train_seconds'] / t:.1f}x faster")
print()
print("scoring all documents, one core       MB/s  MB per CPU-s  grist is (per CPU-s)")
g = mb / grist_score
print(f"  {'grist (features + logit)':<36}{g:6.1f}  {g:12.1f}")
for k, name in [("sklearn", "scikit-learn (transform + proba)"), ("spark", "Spark ML (transform, noop sink)")]:
    r = mb / ref[k]["score_seconds"]
    c = mb / ref[k]["score_cpu_seconds"]
    print(f"  {name:<36}{r:6.1f}  {c:12.1f}  {g / c:6.1f}x")
print("(reading the shards is excluded for all three; Spark's CPU counts every JVM thread)")
PY
