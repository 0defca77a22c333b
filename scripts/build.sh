#!/usr/bin/env bash
# Configures and builds tessera in ${TESSERA_BUILD_DIR:-build}. Extra arguments go to cmake's configure step;
# BUILD_TARGETS (space-separated) limits what is built.
# Incremental: a second run with nothing changed takes a second.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
mkdir -p "$build_dir"
cmake -S "$repo_root" -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >"$build_dir.configure.log" 2>&1 || {
  cat "$build_dir.configure.log" >&2
  exit 1
}
targets=()
for t in ${BUILD_TARGETS:-}; do targets+=(--target "$t"); done
cmake --build "$build_dir" -j "$(nproc)" "${targets[@]}"
