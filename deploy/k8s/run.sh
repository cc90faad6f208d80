#!/usr/bin/env bash
# Runs a grist recipe on Kubernetes: one Indexed Job per stage (grist-stage.yaml), in order,
# waiting for each to complete. RECIPE is its path inside the container (e.g. on the shared
# volume: /data/recipes/gpt3.toml).
# With --dry-run, prints every stage's manifest (YAML documents separated by ---) instead of
# applying it: scripts/check-k8s.sh validates them against the Kubernetes API schemas.
# usage: deploy/k8s/run.sh [--dry-run] IMAGE RECIPE TASKS
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../stages.sh"
dry=0; [ "${1:-}" = --dry-run ] && { dry=1; shift; }
image="$1"; recipe="$2"; tasks="$3"
# The stage list comes from a grist binary of the same version as the image (GRIST_BIN).
grist_stages "${GRIST_BIN:-grist}"
pass=0
for entry in "${GRIST_STAGES[@]}"; do
  stage="${entry%%:*}"; sliced="${entry##*:}"
  n=1; [ "$sliced" = 1 ] && n="$tasks"
  pass=$((pass + 1))
  name="$(echo "$stage" | tr '_' '-')-$pass"
  manifest=$(sed -e "s|STAGE_DNS|$name|g" -e "s|COMPLETIONS|$n|g" -e "s|NTASKS|$n|g" -e "s|IMAGE|$image|g" \
      -e "s|RECIPE|$recipe|g" -e "s|\"STAGE\"|\"$stage\"|g" "$here/grist-stage.yaml")
  if [ $dry = 1 ]; then
    printf -- '---\n%s\n' "$manifest"
    continue
  fi
  printf '%s\n' "$manifest" | kubectl apply -f -
  kubectl wait --for=condition=complete --timeout=-1s "job/grist-$name"
  echo "$stage: complete ($n tasks)"
done
