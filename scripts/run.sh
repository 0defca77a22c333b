#!/usr/bin/env bash
# The main job on a fresh machine: Debian packages, the default model (SmolLM2-135M-Instruct), the build, then
# a question answered by the model. Arguments replace the default prompt.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$repo_root"

bash scripts/install-deps.sh
model="$(bash scripts/fetch-model.sh | tail -n 1)"
mkdir -p "$build_dir"
bash scripts/build.sh >/dev/null
prompt="${*:-What is the capital of France?}"
echo "tessera: asking SmolLM2-135M-Instruct: $prompt" >&2
"$build_dir/tessera" generate --model "$model" --chat --prompt "$prompt" --max-tokens 48
