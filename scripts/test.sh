#!/usr/bin/env bash
# The whole test suite on a fresh machine: Debian packages, the Python reference environment, the default
# model, the build, the format check, then every ctest test (unit, end-to-end against Hugging Face
# transformers, and GPU tests, which skip without a GPU). Re-running with nothing changed skips every set-up step.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$repo_root"

bash scripts/install-deps.sh
python="$(bash scripts/setup-python.sh | tail -n 1)"
model="$(bash scripts/fetch-model.sh | tail -n 1)"
bash scripts/check-format.sh
mkdir -p "$build_dir"
bash scripts/build.sh -DTESSERA_PYTHON="$python" -DTESSERA_DEFAULT_MODEL="$model"
cd "$build_dir"
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
ctest --output-on-failure --timeout 1500 -j "$(nproc)" "$@"
