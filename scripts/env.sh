# Sourced by the scripts: the project's paths. TESSERA_CACHE (default ~/.cache/tessera) holds what is fetched
# or made outside git: the Python venv for the reference tests and the default model.
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export TESSERA_CACHE="${TESSERA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tessera}"
build_dir="${TESSERA_BUILD_DIR:-$repo_root/build}"
