#!/usr/bin/env bash
# Issue 13's two targets, each side measured in the same run (docs/benchmarks.md):
# 1. prefix caching: 32 requests of a shared 1024-token system prompt + a 32-token question, one at a time,
#    against `tessera serve` with scheduler.enable_prefix_caching false and true: TTFT p50 of requests 2…32;
# 2. paging: 64 requests of 128-1500 prompt tokens, all in flight, in the KV memory that 16 sequences of 2048
#    tokens took in slots (max_running 16) against max_running 64 in the same bytes: output tok/s.
# Not part of the test suite. Usage: scripts/bench-kv.sh [build dir]; JSON and logs in $TESSERA_CACHE/bench-kv.
# Env: TESSERA_BENCH_PORT (default 8471), BENCH_KV_PARTS (default "prefix paging").
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
build="${1:-$build_dir}"
bin="$build/tessera"
[[ -x "$bin" ]] || { echo "bench-kv: $bin not found: build tessera first (scripts/build.sh)" >&2; exit 1; }
model="$(bash "$repo_root/scripts/fetch-model.sh" | tail -n 1)"
port="${TESSERA_BENCH_PORT:-8471}"
out="$TESSERA_CACHE/bench-kv"
mkdir -p "$out"
server=""
stop_server() {
  if [[ -n "$server" ]]; then
    kill -TERM "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    server=""
  fi
}
trap stop_server EXIT
serve() {  # serve LOG ARGS...: start tessera serve and wait until it is ready
  local log="$1"
  shift
  "$bin" serve --model "$model" --port "$port" --set logging.level=info "$@" >"$log" 2>&1 &
  server=$!
  for _ in $(seq 240); do
    curl -sf "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && return 0
    kill -0 "$server" 2>/dev/null || { tail -n 20 "$log" >&2; exit 1; }
    sleep 0.5
  done
  echo "bench-kv: the server did not become ready (log: $log)" >&2
  exit 1
}
client() {  # client NAME ARGS...: the load, then the server's KV counters and its peak RSS so far
  local name="$1"
  shift
  "$bin" bench serve --port "$port" --ignore-eos --temperature 0 --seed 3 --output-json "$out/$name.json" "$@" \
    >"$out/$name.txt" 2>&1 || { tail -n 20 "$out/$name.txt" >&2; exit 1; }
  curl -sf "http://127.0.0.1:$port/metrics" | grep -E '^tessera_(num_preemptions|prefix_cache_(hits|queries))_total' \
    >"$out/$name.metrics" || true
  grep VmHWM "/proc/$server/status" | tr -s ' ' >>"$out/$name.metrics" || true
}
cpu="$(lscpu | sed -n 's/^Model name: *//p')"
commit="$(git -C "$repo_root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
git -C "$repo_root" diff --quiet HEAD 2>/dev/null || commit+=" + uncommitted changes"
echo "## KV cache: $cpu, $(nproc) threads, $(date -u '+%Y-%m-%d %H:%M UTC'), tessera $commit, $(basename "$model")"

for part in ${BENCH_KV_PARTS:-prefix paging}; do
  if [[ "$part" == prefix ]]; then
    for caching in false true; do
      serve "$out/serve-prefix-$caching.log" --set scheduler.enable_prefix_caching=$caching
      client "prefix-$caching" --max-concurrency 1 --num-prompts 32 --random-prefix-len 1024 --random-input-len 32 \
        --random-output-len 8 --random-vocab 49152 --no-warmup
      stop_server
    done
    python3 - "$out/prefix-false.json" "$out/prefix-true.json" <<'PY'
import json, statistics, sys
off, on = (json.load(open(p)) for p in sys.argv[1:3])
def p50(r):  # requests 2…32 (the first one computes the shared prefix either way)
    return statistics.median(r["ttfts"][1:]) * 1e3
print()
print("Prefix caching: 32 requests, shared 1024-token prefix + 32-token question, 8 output tokens, one at a time")
print()
print("| prefix caching | TTFT p50, requests 2-32 (ms) | TTFT of request 1 (ms) | output tok/s |")
print("|---|---|---|---|")
for name, r in (("off", off), ("on", on)):
    print(f"| {name} | {p50(r):.1f} | {r['ttfts'][0] * 1e3:.1f} | {r['output_throughput']:.2f} |")
print()
print(f"TTFT p50 ratio off / on: {p50(off) / p50(on):.1f}x (target >= 10x)")
PY
    for c in false true; do echo "caching $c: $(tr '\n' ' ' <"$out/prefix-$c.metrics")"; done
  else
    # 16 sequences of 2048 tokens in slots = 16 · 128 blocks of 16; the same bytes shared by up to 64 sequences.
    # The byte count comes from the first server's log line ("KV cache N blocks of 16 tokens").
    serve "$out/serve-paging-16.log" --set scheduler.max_running=16 --set scheduler.max_ctx=2048
    blocks="$(grep -o 'KV cache [0-9]* blocks' "$out/serve-paging-16.log" | grep -o '[0-9]*' | head -n 1)"
    client "paging-16" --max-concurrency 64 --num-prompts 64 --random-input-len 814 --random-range-ratio 0.843 \
      --random-output-len 64 --random-vocab 49152
    stop_server
    # SmolLM2: 30 layers x 3 KV heads x 64 x (K, V) x 4 bytes = 46080 bytes per token at TP 1, fp32 KV.
    mb="$(python3 -c "print($blocks * 16 * 46080 / 1048576)")"
    serve "$out/serve-paging-64.log" --set scheduler.max_running=64 --set scheduler.max_ctx=2048 \
      --set backend.cpu_kv_memory_mb="$mb"
    client "paging-64" --max-concurrency 64 --num-prompts 64 --random-input-len 814 --random-range-ratio 0.843 \
      --random-output-len 64 --random-vocab 49152
    stop_server
    python3 - "$out/paging-16.json" "$out/paging-64.json" "$blocks" "$mb" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
print()
print(f"Paging: 64 requests of 128-1500 prompt tokens (64 output), all in flight; KV cache {sys.argv[3]} blocks "
      f"of 16 tokens ({float(sys.argv[4]):.0f} MiB) in both runs")
print()
print("| max_running | output tok/s | TTFT p50 (ms) | TPOT mean (ms) |")
print("|---|---|---|---|")
for name, r in (("16", a), ("64", b)):
    print(f"| {name} | {r['output_throughput']:.1f} | {r['median_ttft_ms']:.0f} | {r['mean_tpot_ms']:.1f} |")
print()
print(f"output tok/s ratio 64 / 16: {b['output_throughput'] / a['output_throughput']:.2f}x")
PY
    for n in 16 64; do echo "max_running $n: $(tr '\n' ' ' <"$out/paging-$n.metrics")"; done
  fi
done
echo
echo "JSON and logs: $out"
