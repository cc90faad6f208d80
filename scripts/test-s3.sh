#!/usr/bin/env bash
# grist against a real S3 API: a local moto server (PyPI) on loopback, grist built with the
# `cloud` feature, the demo sample uploaded, ingest read from and written to s3://, then
# verified; then tokenize and blend on s3:// (blend reads the token shards by ranged GETs), and
# a short training run reading the blend's shards from s3:// (streamed through a bounded block
# cache), compared with the same on local disk: the same shards, the same losses.
# Not part of CI (the cloud clients add minutes of build); run with `just test-s3`.
set -euo pipefail
cd "$(dirname "$0")/.."
work="${TMPDIR:-/tmp}/grist-test-s3"
venv="${GRIST_BENCH_VENV:-${TMPDIR:-/tmp}/grist-venv-s3}"
port="${GRIST_S3_PORT:-50123}"
[ -x "$venv/bin/moto_server" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q "moto[server]"; }
cargo build --release --features cloud
grist="${CARGO_TARGET_DIR:-$HOME/.cache/grist-target}/release/grist"
rm -rf "$work" && mkdir -p "$work"
"$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto=$!
trap 'kill $moto 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -s "http://127.0.0.1:$port" >/dev/null && break; sleep 0.2; done
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
export AWS_ENDPOINT="http://127.0.0.1:$port" AWS_ALLOW_HTTP=true
curl -sf -X PUT "http://127.0.0.1:$port/grist-test" >/dev/null
"$grist" -q synthetic --out s3://grist-test/sample --docs 2000 >/dev/null
cat > "$work/recipe.toml" <<TOML
[run]
out = "s3://grist-test/run"
[ingest]
min_words = 5
unit_bytes = 1
[[ingest.sources]]
name = "common_crawl"
paths = ["s3://grist-test/sample/crawl"]
url_field = "metadata.url"
[[ingest.sources]]
name = "books"
paths = ["s3://grist-test/sample/books"]
[tokenize]
input = "ingest"
shard_tokens = 50000
val_fraction = 0.05
[blend]
input = "tokenize"
total_tokens = 200000
shard_tokens = 60000
[[blend.sources]]
name = "common_crawl"
weight = 0.4
[[blend.sources]]
name = "books"
weight = 0.6
[train]
model = "tiny"
micro_batch = 4
total_tokens = 4096
eval_every = 4
eval_tokens = 1024
checkpoint_every = 8
out = "WORK/train"
TOML
sed -i "s|WORK|$work|" "$work/recipe.toml"
"$grist" -q ingest "$work/recipe.toml" --task 0 --tasks 2 >/dev/null
"$grist" -q ingest "$work/recipe.toml" --task 1 --tasks 2 >/dev/null
"$grist" inspect --verify s3://grist-test/run/ingest
# The same recipe on local disk gives byte-identical shards.
"$grist" -q synthetic --out "$work/sample" --docs 2000 >/dev/null
sed -e "s|s3://grist-test/run|$work/run|" -e "s|s3://grist-test/sample|$work/sample|g" "$work/recipe.toml" >"$work/local.toml"
"$grist" -q ingest "$work/local.toml" >/dev/null
"$venv/bin/python" - "$work/run/ingest" "http://127.0.0.1:$port" <<'PY'
import hashlib, os, sys
import boto3
local_dir, endpoint = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=endpoint)
names = sorted(n for n in os.listdir(local_dir) if n.endswith(".parquet"))
for n in names:
    remote = s3.get_object(Bucket="grist-test", Key=f"run/ingest/{n}")["Body"].read()
    if hashlib.sha256(remote).digest() != hashlib.sha256(open(os.path.join(local_dir, n), "rb").read()).digest():
        sys.exit(f"FAILED: {n} differs between s3:// and the local run")
print(f"s3 ok: {len(names)} Parquet files on s3:// byte-identical to the local run")
PY
# Tokenize and blend on s3:// and on local disk; train on each one's blend (the s3 run's
# checkpoints go to local disk: train.out must be a filesystem).
for step in tokenize blend; do
  "$grist" -q "$step" "$work/recipe.toml" >/dev/null
  "$grist" -q "$step" "$work/local.toml" >/dev/null
done
"$grist" inspect --verify s3://grist-test/run/blend
sed -i "s|$work/train|$work/train-local|" "$work/local.toml"
"$grist" -q train --config "$work/recipe.toml" >/dev/null
"$grist" -q train --config "$work/local.toml" >/dev/null
"$venv/bin/python" - "$work" "http://127.0.0.1:$port" <<'PY'
import hashlib, json, os, sys
import boto3
work, endpoint = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=endpoint)
for stage in ["tokenize", "blend"]:
    names = sorted(n for n in os.listdir(f"{work}/run/{stage}") if n.endswith(".bin"))
    for n in names:
        remote = s3.get_object(Bucket="grist-test", Key=f"run/{stage}/{n}")["Body"].read()
        if remote != open(f"{work}/run/{stage}/{n}", "rb").read():
            sys.exit(f"FAILED: {stage}/{n} differs between s3:// and the local run")
    print(f"s3 ok: {stage}: {len(names)} token shards on s3:// byte-identical to the local run")
def losses(d):
    return [json.loads(l).get("loss") for l in open(f"{d}/metrics.jsonl") if '"loss"' in l]
a, b = losses(f"{work}/train"), losses(f"{work}/train-local")
if not a or a != b:
    sys.exit(f"FAILED: training from s3:// gave losses {a[:3]}..., from local disk {b[:3]}...")
print(f"s3 ok: training read its shards from s3://: {len(a)} losses equal to training from local disk")
PY
