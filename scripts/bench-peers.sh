#!/usr/bin/env bash
# tessera against llama.cpp on the same GGUF, the same threads and the same prompts, in one run: prefill of a 512-
# and a 2000-token prompt and single-stream decode (tessera generate vs llama-bench pp512, pp2000, tg128), then
# serving (tessera serve vs llama-server, both loaded by the same `tessera bench serve` client) at 1 stream and at
# 16 concurrent. llama.cpp is the one vendored in the llama-cpp-python sdist, built once into the cache.
# Not part of the test suite.
# Usage: scripts/bench-peers.sh [build dir]   (after scripts/build.sh). Prints a markdown table; JSON and logs in
#   $TESSERA_CACHE/bench-peers. Env: BENCH_THREADS (default: nproc), TESSERA_BENCH_PORT (default 8471; llama-server
#   takes the next one), LLAMA_CPP_PYTHON_VERSION (default 0.3.36).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
build="${1:-$build_dir}"
bin="$build/tessera"
die() { echo "bench-peers: error: $*" >&2; exit 1; }
log() { echo "bench-peers: $*" >&2; }
# Building tessera here would race whoever is building it; the benchmark only measures what is there.
[[ -x "$bin" ]] || die "$bin not found: build tessera first (scripts/build.sh)"

model="$(bash "$repo_root/scripts/fetch-model.sh" | tail -n 1)"
threads="${BENCH_THREADS:-$(nproc)}"
port="${TESSERA_BENCH_PORT:-8471}"
llama_port=$((port + 1))
version="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
llama_root="$TESSERA_CACHE/llama.cpp/$version"
llama_build="$llama_root/build"
out="$TESSERA_CACHE/bench-peers"
mkdir -p "$out"

# ---------------------------------------------------------------------------------------------------------------
# llama.cpp: fetch and build once. The CPU flags are part of the cache key (a cache copied to another machine must
# not run instructions that machine lacks), so a build is reused only when it was made with the same flags.
cpu_flags=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
has() { local f; for f in "$@"; do [[ "$cpu_flags" == *" $f "* ]] || return 1; done; }
onoff() { if has "$@"; then echo ON; else echo OFF; fi; }
# GGML_NATIVE=OFF with the ISA spelled out, so the build says what it uses. AMX stays off whatever the CPU
# advertises: some VMs list amx_* and fault on the first tile instruction.
cmake_flags=(
  -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=OFF
  -DGGML_SSE42="$(onoff sse4_2)" -DGGML_AVX="$(onoff avx)" -DGGML_AVX2="$(onoff avx2)" -DGGML_FMA="$(onoff fma)"
  -DGGML_F16C="$(onoff f16c)" -DGGML_BMI2="$(onoff bmi2)" -DGGML_AVX_VNNI="$(onoff avx_vnni)"
  # ggml's AVX512 switch compiles with -mavx512f -mavx512cd -mavx512vl -mavx512dq -mavx512bw: all five or none.
  -DGGML_AVX512="$(onoff avx512f avx512cd avx512vl avx512dq avx512bw)"
  -DGGML_AVX512_VBMI="$(onoff avx512f avx512vbmi)" -DGGML_AVX512_VNNI="$(onoff avx512f avx512_vnni)"
  -DGGML_AVX512_BF16="$(onoff avx512f avx512_bf16)"
  -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
  # No network at build or run time: no curl/OpenSSL downloads, no prebuilt web UI fetched from a bucket.
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF
  # Static binaries, so the cached build does not depend on an rpath into a source tree.
  -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
)
llama_bench="$llama_build/bin/llama-bench"
llama_server="$llama_build/bin/llama-server"
stamp="$llama_build/tessera-bench-flags"
if [[ -x "$llama_bench" && -x "$llama_server" && -f "$stamp" && "$(cat "$stamp")" == "${cmake_flags[*]}" ]]; then
  log "llama.cpp (llama-cpp-python $version) already built in $llama_build"
else
  src="$llama_root/src"
  if [[ ! -f "$src/CMakeLists.txt" ]]; then
    # Any python with pip will do; the project venv only if the system one has none.
    py="${TESSERA_PYTHON:-python3}"
    "$py" -m pip --version >/dev/null 2>&1 || py="$(bash "$repo_root/scripts/setup-python.sh" | tail -n 1)"
    dl="$(mktemp -d)"
    log "downloading the llama-cpp-python==$version sdist (for its vendored llama.cpp)"
    "$py" -m pip download --quiet --no-binary :all: --no-deps "llama-cpp-python==$version" -d "$dl" >&2 ||
      die "pip download llama-cpp-python==$version failed"
    sdists=("$dl"/llama_cpp_python-*.tar.gz)
    sdist="${sdists[0]}"
    [[ -f "$sdist" ]] || die "no llama_cpp_python-*.tar.gz in what pip downloaded ($dl)"
    top="$(basename "$sdist" .tar.gz)"
    tar -xzf "$sdist" -C "$dl" "$top/vendor/llama.cpp" || die "$sdist has no $top/vendor/llama.cpp"
    [[ -f "$dl/$top/vendor/llama.cpp/CMakeLists.txt" ]] || die "$sdist: vendor/llama.cpp is empty"
    # Moved into place whole, so an interrupted download never leaves a half tree that looks complete.
    mkdir -p "$llama_root"
    rm -rf "$src"
    mv "$dl/$top/vendor/llama.cpp" "$src"
    rm -rf "$dl"
  fi
  log "building llama-bench and llama-server with: ${cmake_flags[*]}"
  rm -rf "$llama_build"
  generator=()
  command -v ninja >/dev/null && generator=(-G Ninja)
  t0=$SECONDS
  cmake -S "$src" -B "$llama_build" "${generator[@]}" "${cmake_flags[@]}" >"$out/llama-build.log" 2>&1 ||
    { tail -n 30 "$out/llama-build.log" >&2; die "llama.cpp cmake configure failed (full log: $out/llama-build.log)"; }
  cmake --build "$llama_build" --target llama-bench llama-server -j"$(nproc)" >>"$out/llama-build.log" 2>&1 ||
    { tail -n 30 "$out/llama-build.log" >&2; die "llama.cpp build failed (full log: $out/llama-build.log)"; }
  [[ -x "$llama_bench" && -x "$llama_server" ]] || die "the build did not produce $llama_bench and $llama_server"
  echo "${cmake_flags[*]}" >"$stamp"
  log "llama.cpp built in $((SECONDS - t0)) s"
fi
# The flags that decide the kernels, for the table.
isa="$(printf '%s\n' "${cmake_flags[@]}" | sed -n 's/^-DGGML_\(.*\)=ON$/\1/p' | grep -v '^NATIVE$' | tr '\n' ' ')"

# ---------------------------------------------------------------------------------------------------------------
# Servers: whichever is running is stopped on any exit, so a failed step never leaves a port taken.
server=""
stop_server() {
  if [[ -n "$server" ]]; then
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=""
  fi
}
trap stop_server EXIT
# wait_ready URL LOG: until URL answers 200, or the server dies, or 120 s pass.
wait_ready() {
  for _ in $(seq 240); do
    curl -sf "$1" >/dev/null 2>&1 && return 0
    kill -0 "$server" 2>/dev/null || { tail -n 20 "$2" >&2; die "the server exited before $1 answered (log: $2)"; }
    sleep 0.5
  done
  tail -n 20 "$2" >&2
  die "$1 did not answer within 120 s (log: $2)"
}
# The one client for both servers: random 128-token id prompts (the same ones on both sides: same seed), 64
# output tokens each (ignore_eos), greedy.
client() {  # client PORT CONCURRENCY PROMPTS NAME
  "$bin" bench serve --port "$1" --max-concurrency "$2" --num-prompts "$3" --random-input-len 128 \
    --random-output-len 64 --ignore-eos --temperature 0 --seed 1 --output-json "$out/$4.json" >"$out/$4.txt" 2>&1 ||
    { tail -n 20 "$out/$4.txt" >&2; die "tessera bench serve against port $1 failed (log: $out/$4.txt)"; }
}
# serve_metric NAME KEY PROMPTS: KEY from the client's JSON, after checking every request got its 64 tokens (a
# server that ignored ignore_eos would otherwise look faster).
serve_metric() {
  python3 - "$out/$1.json" "$2" "$3" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
n = int(sys.argv[3])
if r.get("completed") != n or r.get("total_output_tokens") != n * 64:
    sys.exit(f"{sys.argv[1]}: {r.get('completed')} of {n} requests completed, "
             f"{r.get('total_output_tokens')} output tokens instead of {n * 64}")
print("%.1f" % r[sys.argv[2]])
PY
}

# ---------------------------------------------------------------------------------------------------------------
# llama.cpp's own benchmark. Its OpenMP threads run under the caller's OMP_WAIT_POLICY (normally unset: libgomp's
# default spin-then-sleep), which is its best setting; PASSIVE makes it several times slower.
llama_omp="OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset (libgomp default)}"
log "llama-bench -t $threads -p 512,2000 -n 128"
"$llama_bench" -m "$model" -t "$threads" -p 512,2000 -n 128 -o json >"$out/llama-bench.json" 2>"$out/llama-bench.log" ||
  { tail -n 20 "$out/llama-bench.log" >&2; die "llama-bench failed (log: $out/llama-bench.log)"; }
lb() {  # lb N_PROMPT N_GEN: avg_ts of that test
  python3 - "$out/llama-bench.json" "$1" "$2" <<'PY'
import json, sys
for t in json.load(open(sys.argv[1])):
    if t["n_prompt"] == int(sys.argv[2]) and t["n_gen"] == int(sys.argv[3]):
        print("%.1f" % t["avg_ts"]); break
else:
    sys.exit(f"{sys.argv[1]}: no test with n_prompt={sys.argv[2]} n_gen={sys.argv[3]}")
PY
}
l_pp512=$(lb 512 0); l_pp2000=$(lb 2000 0); l_tg=$(lb 0 128)

# ---------------------------------------------------------------------------------------------------------------
# tessera's engine, measured as scripts/bench-cpu.sh does: the rates from its own log lines. OMP_WAIT_POLICY is
# left to tessera (it picks a bounded spin itself unless the caller set one).
tessera_omp="OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset (tessera sets ACTIVE, GOMP_SPINCOUNT=100000)}"
export OMP_NUM_THREADS="$threads"
glog="$out/tessera-generate.log"
rate() {  # rate prefill|decode: N from "<what>: ... (N tok/s)" in the last run's log
  local r
  r="$({ grep -o "$1: [^;]*" "$glog" || true; } | { grep -o "([0-9.]* tok/s)" || true; } | tail -n 1 | tr -dc '0-9.')"
  [[ -n "$r" ]] || die "no '$1: ... tok/s' line in $glog"
  echo "$r"
}
# Prompts of exactly 512 and 2000 tokens: one sentence repeated, cut by the tokenizer itself.
sentence="The quick brown fox jumps over the lazy dog while the patient engineer measures every kernel twice. "
text=""
for _ in $(seq 160); do text+="$sentence"; done
all_ids="$("$bin" tokenize --model "$model" --text "$text" | tr -d '[] ')"
(( $(tr ',' '\n' <<<"$all_ids" | wc -l) >= 2000 )) || die "the repeated sentence gave fewer than 2000 tokens"
# Every tessera row in both activation modes (backend.cpu_activations: fp32, the default, and int8).
declare -A t_pp512 t_pp2000 t_tg t_tpot t_tput16
prefill() {  # prefill MODE N: tok/s of an N-token prompt
  log "tessera generate ($1 activations): $2-token prompt"
  TESSERA_LOG_LEVEL=info "$bin" generate --model "$model" --cpu-activations "$1" \
    --prompt-ids "$(cut -d, -f1-"$2" <<<"$all_ids")" --max-tokens 1 >/dev/null 2>"$glog" ||
    { tail -n 20 "$glog" >&2; die "tessera generate failed (log: $glog)"; }
  rate prefill
}
for mode in fp32 int8; do
  t_pp512[$mode]=$(prefill $mode 512); t_pp2000[$mode]=$(prefill $mode 2000)
  log "tessera generate ($mode activations): decode 128 tokens"
  TESSERA_LOG_LEVEL=info "$bin" generate --model "$model" --cpu-activations $mode \
    --prompt "Tell me about the history of Rome." --max-tokens 128 --ignore-eos >/dev/null 2>"$glog" ||
    { tail -n 20 "$glog" >&2; die "tessera generate failed"; }
  t_tg[$mode]=$(rate decode)

  # Serving. tessera: one server, up to 16 sequences in a step, for both loads (as scripts/bench-serve.sh).
  log "tessera serve ($mode activations) on port $port"
  "$bin" serve --model "$model" --port "$port" --set scheduler.max_running=16 --set logging.level=warn \
    --set backend.cpu_activations=$mode >"$out/tessera-serve-$mode.log" 2>&1 &
  server=$!
  wait_ready "http://127.0.0.1:$port/ready" "$out/tessera-serve-$mode.log"
  client "$port" 1 8 tessera-$mode-c1
  client "$port" 16 32 tessera-$mode-c16
  stop_server
  t_tpot[$mode]=$(serve_metric tessera-$mode-c1 mean_tpot_ms 8)
  t_tput16[$mode]=$(serve_metric tessera-$mode-c16 output_throughput 32)
done
unset OMP_NUM_THREADS

# llama-server: one server per load with as many slots as streams; -c is split between the slots (no unified KV
# when -np is given), 256 each holds a 128-token prompt and 64 outputs.
llama_serve() {  # llama_serve SLOTS
  log "llama-server -np $1 on port $llama_port"
  "$llama_server" -m "$model" -t "$threads" -np "$1" -c $(($1 * 256)) -cb --host 127.0.0.1 --port "$llama_port" \
    >"$out/llama-server-np$1.log" 2>&1 &
  server=$!
  wait_ready "http://127.0.0.1:$llama_port/health" "$out/llama-server-np$1.log"
}
llama_serve 1
client "$llama_port" 1 8 llama-c1
stop_server
llama_serve 16
client "$llama_port" 16 32 llama-c16
stop_server
l_tpot=$(serve_metric llama-c1 mean_tpot_ms 8); l_tput16=$(serve_metric llama-c16 output_throughput 32)

# ---------------------------------------------------------------------------------------------------------------
ratio() { python3 -c "import sys; print('%.2f' % (float(sys.argv[1]) / float(sys.argv[2])))" "$1" "$2"; }
commit="$(git -C "$repo_root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
git -C "$repo_root" diff --quiet HEAD 2>/dev/null || commit+=" + uncommitted changes"
echo
cpu="$(lscpu | sed -n 's/^Model name: *//p')"
echo "## tessera vs llama.cpp on $cpu, $threads threads, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "model: $(basename "$model"); tessera $commit ($build); llama.cpp vendored in llama-cpp-python $version"
echo
echo "| measure | tessera | llama.cpp | ratio | tessera, int8 activations | ratio |"
echo "|---|---|---|---|---|---|"
row() {  # row LABEL ARRAY PEER
  local -n t=$2
  echo "| $1 | ${t[fp32]} | $3 | $(ratio "${t[fp32]}" "$3") | ${t[int8]} | $(ratio "${t[int8]}" "$3") |"
}
row "prefill, 512-token prompt (tok/s)" t_pp512 "$l_pp512"
row "prefill, 2000-token prompt (tok/s)" t_pp2000 "$l_pp2000"
row "decode, single stream (tok/s)" t_tg "$l_tg"
row "serving, 1 stream, TPOT mean (ms)" t_tpot "$l_tpot"
row "serving, 16 concurrent, output tok/s" t_tput16 "$l_tput16"
echo
echo "ratio = tessera / llama.cpp (above 1 is tessera faster, except TPOT, where lower is better)."
echo
# llama-bench's own record of what it ran with (its defaults, which this script does not change).
lb_settings="$(python3 - "$out/llama-bench.json" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))[0]
fa = {-1: "auto", 0: "off", 1: "on"}.get(t.get("flash_attn"), t.get("flash_attn"))
print(f"n_batch {t['n_batch']}, n_ubatch {t['n_ubatch']}, flash_attn {fa}, KV {t['type_k']}/{t['type_v']}, "
      f"repack {t.get('repack')}, poll {t.get('poll')}")
PY
)"
echo "Settings:"
echo "- tessera ($build/tessera), OMP_NUM_THREADS=$threads, $tessera_omp:"
echo "  - every row twice: \`--cpu-activations fp32\` (the default) and \`int8\` (\`--set backend.cpu_activations=int8\` for serve)"
echo "  - prefill: \`tessera generate --prompt-ids <512 | 2000 ids> --max-tokens 1\`, one run each, its logged rate"
echo "  - decode: \`tessera generate --prompt 'Tell me about the history of Rome.' --max-tokens 128 --ignore-eos\`"
echo "  - serving: \`tessera serve --set scheduler.max_running=16 --set logging.level=warn\`, one server for both loads"
echo "- llama.cpp (llama-cpp-python $version's vendor/llama.cpp), $llama_omp:"
echo "  - \`llama-bench -t $threads -p 512,2000 -n 128 -o json\`: avg_ts of 5 repetitions, tg128 from an empty context;"
echo "    $lb_settings"
echo "  - serving: \`llama-server -t $threads -np 1 -c 256 -cb\` and \`llama-server -t $threads -np 16 -c 4096 -cb\`"
echo "    (256 context tokens per slot), its other defaults"
echo "  - build: GGML_NATIVE=OFF; ON: ${isa% }; AMX off; OpenMP; static"
echo "- serving client, both sides: \`tessera bench serve --max-concurrency <1 | 16> --num-prompts <8 | 32>"
echo "  --random-input-len 128 --random-output-len 64 --ignore-eos --temperature 0 --seed 1\`"
echo "  (/v1/completions, token-id prompts, the same ones for both servers); every request checked to return 64 tokens"
echo
echo "JSON and logs: $out"
