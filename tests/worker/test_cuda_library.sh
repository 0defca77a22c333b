#!/usr/bin/env bash
# tests/worker/test_cuda_library.sh BIN MODEL PYTHON — the CUDA backend is a library opened at run time
# (worker/cuda/cuda_plugin.h), so:
#  1. the `tessera` binary links no CUDA library (ldd: no libcudart, libcublas, libcublasLt, libnccl, libcuda);
#  2. on a machine without the CUDA libraries — simulated by hiding the directories the CUDA backend library
#     finds them in (a private mount namespace, `unshare -m`; skipped where that is not allowed) — a CUDA build
#     still generates and serves on the CPU with --backend auto, and --backend cuda fails with a message naming
#     the library and the loader's reason;
#  3. a file that is not the library (TESSERA_CUDA_LIBRARY) gives the same: auto runs on the CPU, cuda names it.
set -euo pipefail
bin="$1" model="$2" py="$3"
dir="$(cd "$(dirname "$bin")" && pwd)"
plugin="$dir/libtessera_cuda.so"
fail() { echo "FAIL: $*" >&2; exit 1; }

echo "== ldd $bin"
if ldd "$bin" | grep -E "lib(cudart|cublas|cublasLt|nccl|cuda)\.so"; then fail "the binary links a CUDA library"; fi
echo "ok: no CUDA library in ldd"
if [[ ! -f "$plugin" ]]; then
  echo "no $plugin (a build without CUDA): nothing more to check"
  exit 0
fi

export TESSERA_LOG_LEVEL=info OMP_NUM_THREADS=1
prompt=(--model "$model" --prompt "The capital of France is" --max-tokens 4)

# Runs "$@" with the CUDA libraries' directories hidden (empty directories mounted over them).
hidden_dirs="$(ldd "$plugin" | sed -n 's/.*lib\(cudart\|cublas\|cublasLt\|nccl\)\.so[^ ]* => \(\/[^ ]*\).*/\2/p' |
  xargs -r -n1 dirname | sort -u | tr '\n' ' ')"
hide='empty="$(mktemp -d)"; for d in '"$hidden_dirs"'; do mount --bind "$empty" "$d"; done; exec "$@"'
without_cuda() { unshare -m bash -c "$hide" _ "$@"; }

check_cpu_fallback() {  # $1: how the library was made unloadable, $2: the path the error must name; the rest: the
  local what="$1" name="$2"; shift 2  # command prefix that runs tessera so
  local out err
  err="$(mktemp)"
  out="$("$@" "$bin" generate --backend auto "${prompt[@]}" 2>"$err")" || { cat "$err"; fail "$what: auto did not run"; }
  grep -q "cpu backend" "$err" || { cat "$err"; fail "$what: auto did not load onto the CPU"; }
  [[ -n "$out" ]] || fail "$what: no text generated"
  echo "ok ($what): --backend auto generated '$out' on the CPU"
  if "$@" "$bin" generate --backend cuda "${prompt[@]}" 2>"$err" >/dev/null; then fail "$what: --backend cuda ran"; fi
  grep -qF "$name" "$err" || { cat "$err"; fail "$what: the error does not name $name"; }
  echo "ok ($what): --backend cuda: $(grep -o 'backend.kind cuda.*' "$err" | head -c 300)"
  rm -f "$err"
}

if [[ -n "$hidden_dirs" ]] && unshare -m true 2>/dev/null; then
  # Hidden for real: the library itself fails to load (its CUDA dependencies are gone).
  without_cuda test ! -e "$(ldd "$plugin" | sed -n 's/.*libcudart[^ ]* => \(\/[^ ]*\).*/\1/p')" ||
    fail "hiding $hidden_dirs did not hide libcudart"
  check_cpu_fallback "CUDA libraries hidden" "$plugin" without_cuda env
  # ... and serves: one completion over HTTP from `tessera serve` started without them.
  port="$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  log="$(mktemp)"
  # unshare and bash exec: $! is the server itself.
  unshare -m bash -c "$hide" _ "$bin" serve --model "$model" --host 127.0.0.1 --port "$port" --backend auto \
    >/dev/null 2>"$log" &
  pid=$!
  trap 'kill "$pid" 2>/dev/null || true' EXIT
  "$py" - "$port" <<'PY' || { cat "$log"; fail "serve without the CUDA libraries did not answer"; }
import json, sys, time, urllib.request
port = sys.argv[1]
for _ in range(600):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1)
        break
    except Exception:
        time.sleep(0.2)
body = json.dumps({"prompt": "The capital of France is", "max_tokens": 4, "temperature": 0}).encode()
req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/completions", body, {"Content-Type": "application/json"})
answer = json.load(urllib.request.urlopen(req, timeout=60))
text = answer["choices"][0]["text"]
assert answer["usage"]["completion_tokens"] == 4, answer
print(f"ok (CUDA libraries hidden): tessera serve answered {text!r}")
PY
  grep -q "cpu backend" "$log" || { cat "$log"; fail "serve did not load onto the CPU"; }
  kill -TERM "$pid"
  wait "$pid" || true
  trap - EXIT
  rm -f "$log"
else
  echo "skipped: hiding the CUDA libraries needs a private mount namespace (unshare -m), not allowed here"
fi

# Not a library at all: the loader's error.
notlib="$(mktemp)"
echo "not an ELF file" >"$notlib"
check_cpu_fallback "TESSERA_CUDA_LIBRARY is not a library" "$notlib" env TESSERA_CUDA_LIBRARY="$notlib"
rm -f "$notlib"
echo "PASS"
