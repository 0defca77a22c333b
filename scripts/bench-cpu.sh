#!/usr/bin/env bash
# CPU numbers for docs/benchmarks.md: tessera's engine on the default model (SmolLM2-135M-Instruct) and the peer,
# Hugging Face transformers on the same weights, in the same run; then the cluster at TP 1, 2 and 3.
#   prefill tokens/s of a 512-token prompt; single-stream decode tokens/s (128 tokens); aggregate decode tokens/s
#   of a pre-padded group of 8 prompts of different lengths (64 tokens each); per-worker peak RSS and the
#   all-reduce share of a step at TP 1 and 3 (SmolLM2) and TP 1, 2, 3 (a GPT-2-small-shaped random checkpoint,
#   which TP 2 can split).
# Usage: scripts/bench-cpu.sh [build dir]   (after scripts/test.sh or scripts/build.sh). Prints a markdown table.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
build="${1:-$build_dir}"
bin="$build/tessera"
model="$(bash "$repo_root/scripts/fetch-model.sh" | tail -n 1)"
py="$(bash "$repo_root/scripts/setup-python.sh" | tail -n 1)"
# tessera picks its own OpenMP wait policy (app/main.cpp: a bounded spin) unless OMP_WAIT_POLICY is set.
export TESSERA_LOG_LEVEL=info
mpirun=(mpirun --allow-run-as-root --oversubscribe --bind-to none)
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

rate() { { grep -o "$1: [^;]*" "$log" || true; } | { grep -o "([0-9.]* tok/s)" || true; } | tail -n 1 | tr -dc '0-9.'; }

# A 512-token prompt: the same sentence repeated, cut to exactly 512 tokens by the tokenizer itself.
sentence="The quick brown fox jumps over the lazy dog while the patient engineer measures every kernel twice. "
text=""
for _ in $(seq 40); do text+="$sentence"; done
ids="$("$bin" tokenize --model "$model" --text "$text" | tr -d '[] ' | cut -d, -f1-512)"

if [[ "${BENCH_SKIP_SINGLE:-0}" != 1 ]]; then
echo "## tessera (fp32, OpenBLAS OpenMP, $(nproc) threads) vs transformers on $(lscpu | sed -n 's/^Model name: *//p')"
"$bin" generate --model "$model" --prompt-ids "$ids" --max-tokens 1 >/dev/null 2>"$log"
prefill=$(rate prefill)
"$bin" generate --model "$model" --prompt "Tell me about the history of Rome." --max-tokens 128 --ignore-eos \
  >/dev/null 2>"$log"
decode=$(rate decode)
prompts=()
for p in "Hi" "The capital of France is" "Write a poem about the sea and the wind and the stars" "1, 2, 3," \
         "Photosynthesis converts sunlight, water and carbon dioxide into" "def fib(n):" \
         "Once upon a time, in a small village by the sea, there lived an old fisherman who" "Q: Why is the sky blue?"; do
  prompts+=(--prompt "$p")
done
"$bin" generate --model "$model" "${prompts[@]}" --max-tokens 64 --ignore-eos >/dev/null 2>"$log"
group=$(rate decode)
hf="$("$py" "$repo_root/bench/bench_hf_cpu.py" "$model" --threads "$(nproc)" --cache-dir "$TESSERA_CACHE/dequant")"
hfv() { echo "$hf" | "$py" -c "import json,sys; print('%.1f' % json.load(sys.stdin)['$1'])"; }
echo
echo "| measure | tessera | transformers |"
echo "|---|---|---|"
echo "| prefill, 512-token prompt (tok/s) | $prefill | $(hfv prefill_tok_s) |"
echo "| decode, single stream, 128 tokens (tok/s) | $decode | $(hfv decode_tok_s) |"
echo "| decode, group of 8 different lengths (aggregate tok/s) | $group | $(hfv batch_decode_tok_s) |"

fi

# Missing lines (no all-reduce at TP 1) print as "-" rather than stopping the table.
set +e +o pipefail
echo
echo "## cluster: coordinator + TP workers (mpirun, one OpenMP thread per worker)"
gpt2="$TESSERA_CACHE/bench-models/gpt2-small-random"
[[ -f "$gpt2/config.json" ]] || "$py" "$repo_root/bench/make_bench_model.py" gpt2-small "$gpt2" >&2
echo
echo "| model | TP | decode tok/s | ms/step | all-reduce ms/step | peak RSS per worker (MB) |"
echo "|---|---|---|---|---|---|"
for spec in "SmolLM2-135M:$model:1" "SmolLM2-135M:$model:3" "gpt2-small-random:$gpt2:1" "gpt2-small-random:$gpt2:2" \
            "gpt2-small-random:$gpt2:3"; do
  IFS=: read -r name path tp <<<"$spec"
  OMP_NUM_THREADS=$(( $(nproc) / tp > 0 ? $(nproc) / tp : 1 )) "${mpirun[@]}" -np $((tp + 1)) "$bin" generate \
    --model "$path" --prompt-ids 1,2,3,4,5,6,7,8 --max-tokens 64 --ignore-eos --tp "$tp" >/dev/null 2>"$log"
  rss=$({ grep "tp rank" "$log" || true; } | grep -o "peak RSS [0-9]*" | awk '{print $3}' | sort -n | tr '\n' '/' |
        sed 's:/$::')
  steps=$({ grep -o "[0-9.]* ms/step, all-reduce + gather [0-9.]* ms/step" "$log" || true; } | head -n 1)
  ms=$(echo "$steps" | awk '{print $1}'); ar=$(echo "$steps" | awk '{print $6}')
  echo "| $name | $tp | $(rate decode) | ${ms:--} | ${ar:--} | $rss |"
done
