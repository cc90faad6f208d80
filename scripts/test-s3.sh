#!/usr/bin/env bash
# grist against a real S3 API: a local moto server (PyPI) on loopback, grist built with the
# `cloud` feature, the demo sample uploaded, ingest read from and written to s3://, then
# verified. Not part of CI (the cloud clients add minutes of build); run with `just test-s3`.
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
TOML
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
