#!/usr/bin/env bash
# Create/refresh the Python environment used by tessera's tests and tools (the Hugging Face reference side).
#
#   ${TESSERA_CACHE:-<repo>/.cache}/venv
#
# made from Debian's /usr/bin/python3 (3.11) with --system-site-packages, so that Debian's python3-torch (1.13,
# installed only for that interpreter, NOT for the pyenv python3 first on PATH) and python3-numpy (1.24, which
# torch 1.13 was built against) are used. tests/python/requirements.txt is pip-installed on top, with numpy and
# torch constrained to the Debian versions so pip can never replace them.
#
# Idempotent and instant when nothing changed: a stamp in the venv holds a hash of the requirements, the
# constraints, the interpreter and this script's layout version. An existing venv (e.g. one made by hand with
# the same recipe) is accepted and topped up; one made from another interpreter or without system site
# packages is rebuilt.
#
# Needs (as root, by the caller):  apt-get install -y python3-torch python3-venv python3-pip
# The last line printed is the venv's python, e.g.  PY=$(scripts/setup-python.sh | tail -1)
set -euo pipefail

readonly LAYOUT_VERSION=1   # bump to force every venv to be re-checked
readonly SYS_PY=/usr/bin/python3

die() { echo "setup-python: error: $*" >&2; exit 1; }
log() { echo "setup-python: $*" >&2; }

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${TESSERA_CACHE:-$repo_root/.cache}"
venv="$cache/venv"
req="$repo_root/tests/python/requirements.txt"
stamp="$venv/.tessera-requirements.sha256"

[[ -f "$req" ]] || die "missing $req"
[[ -x "$SYS_PY" ]] || die "$SYS_PY not found: apt-get install -y python3 python3-venv python3-pip python3-torch"

# Versions of the Debian-provided packages, read from their metadata (no heavy imports: ~30 ms).
sys_info="$("$SYS_PY" - <<'EOF' 2>/dev/null || true
import sys, importlib.metadata as md
def v(name):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "-"
print("%d.%d" % sys.version_info[:2], v("torch"), v("numpy"))
EOF
)"
read -r py_ver torch_ver numpy_ver <<<"$sys_info" || true
[[ -n "${py_ver:-}" ]] || die "$SYS_PY does not run"
[[ "$py_ver" == "3.11" ]] || log "warning: $SYS_PY is Python $py_ver, expected 3.11 (Debian 12); python3-torch may not match"

missing=()
[[ "$torch_ver" != "-" ]] || missing+=(python3-torch)
[[ "$numpy_ver" != "-" ]] || missing+=(python3-numpy)
"$SYS_PY" -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
"$SYS_PY" -c 'import pip' 2>/dev/null || missing+=(python3-pip)
if ((${#missing[@]})); then
  die "missing Debian packages for $SYS_PY: ${missing[*]}
    run as root:  apt-get update && apt-get install -y python3-torch python3-venv python3-pip"
fi

constraints="numpy==$numpy_ver
torch==$torch_ver"
want="$( { echo "layout=$LAYOUT_VERSION"; echo "python=$(readlink -f "$SYS_PY") $py_ver"; echo "$constraints"; cat "$req"; } \
         | sha256sum | cut -d' ' -f1)"

# Fast path.
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "$venv/bin/python"
  exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/.setup-python.lock"
flock 9   # serialize concurrent runs (several engineers / CI steps)
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  echo "$venv/bin/python"   # another run finished it while we waited
  exit 0
fi

# Is an existing venv usable (made from Debian's python, with system site packages, torch importable)?
venv_ok() {
  local cfg="$venv/pyvenv.cfg"
  [[ -f "$cfg" && -x "$venv/bin/python" ]] || return 1
  grep -Eq '^include-system-site-packages *= *true' "$cfg" || { log "existing venv lacks --system-site-packages"; return 1; }
  grep -Eq "^home *= */usr/bin/?$" "$cfg" || { log "existing venv was not made from /usr/bin/python3"; return 1; }
  "$venv/bin/python" -c "import sys; assert sys.version_info[:2] == tuple(map(int, '$py_ver'.split('.')))" 2>/dev/null \
    || { log "existing venv's python is not $py_ver"; return 1; }
  "$venv/bin/python" -c 'import torch' 2>/dev/null || { log "torch does not import in the existing venv"; return 1; }
}

if [[ -e "$venv" ]] && ! venv_ok; then
  [[ -f "$venv/pyvenv.cfg" || -z "$(ls -A "$venv" 2>/dev/null)" ]] \
    || die "$venv exists but is not a venv; refusing to delete it (remove it yourself)"
  log "rebuilding $venv"
  rm -rf "$venv"
fi
if [[ ! -e "$venv" ]]; then
  log "creating $venv from $SYS_PY (--system-site-packages)"
  "$SYS_PY" -m venv --system-site-packages "$venv" || die "python3 -m venv failed (python3-venv installed?)"
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
printf '%s\n' "$constraints" > "$tmp/constraints.txt"

log "installing $(basename "$req") (numpy==$numpy_ver and torch==$torch_ver kept from Debian) ..."
if ! "$venv/bin/python" -m pip install --disable-pip-version-check --no-input --progress-bar off \
      -r "$req" -c "$tmp/constraints.txt" >"$tmp/pip.log" 2>&1; then
  cat "$tmp/pip.log" >&2
  die "pip install -r $req failed (see above)"
fi
grep -E '^(Successfully installed|ERROR|WARNING)' "$tmp/pip.log" >&2 || true

# Check the result: numpy and torch must still be Debian's, and the key packages must import.
"$venv/bin/python" - <<EOF >&2 || die "the venv failed its import check (see above)"
import numpy, torch, transformers, tokenizers, safetensors, gguf
assert numpy.__version__ == "$numpy_ver", ("numpy was replaced", numpy.__version__, numpy.__file__)
assert numpy.__file__.startswith("/usr/lib/python3/dist-packages/"), ("numpy not Debian's", numpy.__file__)
assert torch.__file__.startswith("/usr/lib/python3/dist-packages/"), ("torch not Debian's", torch.__file__)
print("setup-python: ok: torch", torch.__version__, "numpy", numpy.__version__, "transformers", transformers.__version__,
      "tokenizers", tokenizers.__version__, "safetensors", safetensors.__version__)
EOF

echo "$want" > "$stamp"
echo "$venv/bin/python"
