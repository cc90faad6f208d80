#!/usr/bin/env bash
# Runs a recipe the way a cluster does, on this machine: every stage in order, each slice of a
# sliced stage as its own process. Output equals `grist run RECIPE` (tests/deploy.rs checks).
# usage: deploy/local.sh RECIPE TASKS [grist binary]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/stages.sh"
recipe="$1"; tasks="$2"; grist="${3:-grist}"
grist_stages "$grist"
for entry in "${GRIST_STAGES[@]}"; do
  stage="${entry%%:*}"; sliced="${entry##*:}"
  if [ "$sliced" = 1 ]; then
    for ((i = 0; i < tasks; i++)); do
      "$grist" -q run "$recipe" --stage "$stage" --task "$i" --tasks "$tasks"
    done
  else
    "$grist" -q run "$recipe" --stage "$stage"
  fi
done
