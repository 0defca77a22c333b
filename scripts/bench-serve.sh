#!/usr/bin/env bash
# Serving numbers for docs/benchmarks.md: `tessera serve` on the default model (TP 1, CPU) loaded by
# `tessera bench serve` (vLLM's serving-benchmark method) at max concurrency 1, 4 and 16, all requests at once,
# random 128-token prompts, 64 output tokens (ignore_eos), greedy; then /health requests per second under a
# concurrency-4 load, measured in a separate run (the probe shares the 2 cores with the engine and would slow it).
# Usage: scripts/bench-serve.sh [build dir]   Prints the summary table; full JSON in $TESSERA_CACHE/bench-serve.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
build="${1:-$build_dir}"
model="$(bash "$repo_root/scripts/fetch-model.sh" | tail -n 1)"
port="${TESSERA_BENCH_PORT:-8471}"
out="$TESSERA_CACHE/bench-serve"
mkdir -p "$out"
# tessera picks its own OpenMP wait policy (app/main.cpp: a bounded spin) unless OMP_WAIT_POLICY is set.
"$build/tessera" serve --model "$model" --port "$port" --set scheduler.max_running=16 --set logging.level=warn &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 120); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break; sleep 0.5; done
echo "| max concurrency | requests | TTFT p50 / p99 (ms) | TPOT mean (ms) | ITL p50 (ms) | output tok/s |"
echo "|---|---|---|---|---|---|"
for c in 1 4 16; do
  n=$((c * 4 > 8 ? c * 2 : 8))
  "$build/tessera" bench serve --port "$port" --max-concurrency "$c" --num-prompts "$n" --random-input-len 128 \
    --random-output-len 64 --ignore-eos --temperature 0 --seed 1 --metric-percentiles 50 99 \
    --output-json "$out/c$c.json" >"$out/c$c.txt" 2>&1
  python3 - "$out/c$c.json" "$c" "$n" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
def g(*keys):
    for k in keys:
        if k in r:
            return r[k]
    return float("nan")
print(f"| {sys.argv[2]} | {sys.argv[3]} | {g('median_ttft_ms'):.0f} / {g('p99_ttft_ms'):.0f} | {g('mean_tpot_ms'):.1f} | "
      f"{g('median_itl_ms'):.1f} | {g('output_throughput'):.1f} |")
PY
done
"$build/tessera" bench serve --port "$port" --max-concurrency 4 --num-prompts 8 --random-input-len 128 \
  --random-output-len 64 --ignore-eos --temperature 0 --seed 2 --health-probe --output-json "$out/health.json" \
  >"$out/health.txt" 2>&1
python3 -c "import json,sys; print('\n/health under load: %.0f req/s' % json.load(open(sys.argv[1]))['health_requests_per_s'])" \
  "$out/health.json"
