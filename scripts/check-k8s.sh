#!/usr/bin/env bash
# Validates the Kubernetes manifests deploy/k8s/run.sh would apply (one Indexed Job per stage of
# the GPT-3 recipe) against the Kubernetes API schemas, offline: `kubernetes-validate` (PyPI,
# schemas bundled, in a venv this script creates) with --strict, which rejects unknown fields.
# kubectl and kubeconform are not in the registries this project can reach; this is the
# equivalent of `kubectl apply --dry-run=client`. `just check-k8s`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/grist-target}"
venv="${GRIST_K8S_VENV:-$CARGO_TARGET_DIR/k8s-venv}"
[ -x "$venv/bin/kubernetes-validate" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install -q kubernetes-validate; }
cargo build --quiet
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
GRIST_BIN="$CARGO_TARGET_DIR/debug/grist" bash deploy/k8s/run.sh --dry-run registry.example/grist:1 /data/recipes/gpt3.toml 512 >"$work/all.yaml"
# One file per manifest, so a failure names its stage.
awk -v dir="$work" '/^---$/ {n++; next} {print > (dir "/job-" sprintf("%02d", n) ".yaml")}' "$work/all.yaml"
jobs=$(ls "$work"/job-*.yaml | wc -l)
for version in 1.29.0 1.33.0; do
  "$venv/bin/kubernetes-validate" --strict --quiet -k "$version" "$work"/job-*.yaml
done
echo "k8s: $jobs Indexed Job manifests (one per stage) valid against the Kubernetes 1.29 and 1.33 schemas (strict)"
