# The stages of a grist recipe in the order they run, for batch schedulers, from the binary's
# own step registry (`grist run --list-stages`, one NAME:SLICED line each): SLICED=1 stages run
# as one task per slice (`--task I --tasks N`), SLICED=0 as one task. A stage the recipe lacks
# is a no-op, so one list serves every recipe. Sourced by slurm/submit.sh, k8s/run.sh, local.sh.
# usage: source stages.sh; grist_stages GRIST_BINARY   (sets the array GRIST_STAGES)
grist_stages() {
  mapfile -t GRIST_STAGES < <("${1:-grist}" run --list-stages)
  if [ "${#GRIST_STAGES[@]}" -eq 0 ]; then
    echo "error: \`${1:-grist} run --list-stages\` listed no stages" >&2
    return 1
  fi
}
