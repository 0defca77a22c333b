#!/usr/bin/env bash
# The main job on a fresh machine: Debian packages, the default model (SmolLM2-135M-Instruct), the build, then
# the cluster under mpirun — a coordinator and TESSERA_TP (default 3) tensor-parallel workers serving the
# OpenAI-compatible API on 127.0.0.1:${TESSERA_PORT:-8000} — answering a chat request sent with curl.
#   scripts/run.sh ["question"]          answer, then drain and stop the cluster
#   scripts/run.sh --serve ["question"]  answer, then keep serving until Ctrl-C
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$repo_root"
keep=0
if [[ "${1:-}" == "--serve" ]]; then keep=1; shift; fi
prompt="${*:-What is the capital of France?}"
tp="${TESSERA_TP:-3}"
port="${TESSERA_PORT:-8000}"

bash scripts/install-deps.sh
model="$(bash scripts/fetch-model.sh | tail -n 1)"
bash scripts/build.sh >/dev/null

export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1
echo "tessera: mpirun -np $((tp + 1)): a coordinator + $tp tensor-parallel workers serving SmolLM2-135M-Instruct" \
  "on http://127.0.0.1:$port" >&2
mpirun --allow-run-as-root --oversubscribe --bind-to none -np $((tp + 1)) \
  "$build_dir/tessera" serve --model "$model" --tp "$tp" --host 127.0.0.1 --port "$port" &
launcher=$!

# The coordinator is world rank 0; SIGTERM to it drains the cluster (to mpirun it would hit every rank at once).
coordinator_pid() {
  for p in $(pgrep -f "$build_dir/tessera serve"); do
    if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=0"; then echo "$p"; return; fi
  done
}
stop() {
  local pid
  pid="$(coordinator_pid)"
  [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null
  wait "$launcher" 2>/dev/null || true
}
trap stop EXIT INT TERM

for _ in $(seq 240); do
  curl -sf "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break
  kill -0 "$launcher" 2>/dev/null || { echo "tessera: the cluster exited before it was ready" >&2; exit 1; }
  sleep 0.5
done
body="$(python3 -c 'import json,sys; print(json.dumps({"model": "SmolLM2-135M-Instruct.Q4_1",
  "messages": [{"role": "user", "content": sys.argv[1]}], "max_tokens": 64, "temperature": 0}))' "$prompt")"
echo "tessera: POST /v1/chat/completions  {\"messages\": [{\"role\": \"user\", \"content\": \"$prompt\"}]}" >&2
curl -sS "http://127.0.0.1:$port/v1/chat/completions" -H 'Content-Type: application/json' -d "$body" |
  python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["choices"][0]["message"]["content"] if "choices" in r else r)'
if ((keep)); then
  echo "tessera: serving on http://127.0.0.1:$port (Ctrl-C stops)" >&2
  wait "$launcher"
fi
