#!/usr/bin/env bash
# The main job on a fresh machine: Debian packages, the default model (SmolLM2-135M-Instruct), the build, then
# the cluster under mpirun — a coordinator and TESSERA_TP (default 3) tensor-parallel workers — answering a
# question. Arguments replace the default prompt.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$repo_root"

bash scripts/install-deps.sh
model="$(bash scripts/fetch-model.sh | tail -n 1)"
mkdir -p "$build_dir"
bash scripts/build.sh >/dev/null
prompt="${*:-What is the capital of France?}"
tp="${TESSERA_TP:-3}"
echo "tessera: coordinator + $tp workers (mpirun -np $((tp + 1))), asking SmolLM2-135M-Instruct: $prompt" >&2
export OMP_WAIT_POLICY=PASSIVE
mpirun --allow-run-as-root --oversubscribe --bind-to none -np $((tp + 1)) \
  "$build_dir/tessera" generate --model "$model" --tp "$tp" --chat --prompt "$prompt" --max-tokens 48
