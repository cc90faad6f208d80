#!/usr/bin/env bash
# Clean and incremental build times (debug and release), each in a fresh target directory,
# as recorded in the README's development section. Takes ~20 minutes on 2 cores.
set -uo pipefail
cd "$(dirname "$0")/.."
root="${TMPDIR:-/tmp}/grist-build-times"
rm -rf "$root"
# A real edit (cargo may judge freshness by content, so `touch` is not enough), undone at exit.
saved="$(mktemp -d)"
cp shards/src/lib.rs "$saved/shards.rs" && cp src/lib.rs "$saved/cli.rs"
trap 'cp "$saved/shards.rs" shards/src/lib.rs; cp "$saved/cli.rs" src/lib.rs' EXIT
edit() { printf '\n// build-times probe %s\n' "$(date +%s%N)" >>"$1"; }
t() {
  local s e
  s=$(date +%s%N)
  "$@" >/dev/null 2>&1
  local rc=$?
  e=$(date +%s%N)
  printf '%6.1f s%s' "$(( (e - s) / 1000000 ))e-3" "$([ $rc = 0 ] || echo " (failed: $rc)")"
}
export CARGO_TARGET_DIR="$root/debug"
echo "clean debug build (cargo build --workspace):          $(t cargo build --workspace)"
echo "  + test binaries (cargo test --workspace --no-run):  $(t cargo test --workspace --no-run)"
edit shards/src/lib.rs
echo "incremental debug, shards edited:                     $(t cargo build --workspace)"
edit src/lib.rs
echo "incremental debug, CLI edited:                        $(t cargo build --workspace)"
export CARGO_TARGET_DIR="$root/release"
echo "clean release build (cargo build --release):          $(t cargo build --release)"
edit shards/src/lib.rs
echo "incremental release, shards edited:                   $(t cargo build --release)"
edit src/lib.rs
echo "incremental release, CLI edited:                      $(t cargo build --release)"
rm -rf "$root"
