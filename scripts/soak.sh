#!/usr/bin/env bash
# The long soak of `tessera serve` (issue 9): tests/serve/test_soak.py with 10000 requests by default, good and
# hostile ones mixed (greedy answers checked exactly, malformed JSON, bad values, nested JSON, over-long prompts,
# oversize bodies, mid-stream hang-ups with FIN and RST) from concurrent clients on 127.0.0.1, against the ASan +
# UBSan build or the release build. Fails on a crash, a hang, a wrong answer, a sanitizer report, gauges not back
# at 0, or RSS growth >= 5 % after the warm-up; prints a markdown summary for docs/benchmarks.md (requests by kind,
# outcomes, p50/p99 latency, RSS, duration).
#
# Usage: scripts/soak.sh [--asan | --release | --bin PATH] [--requests N] [--seconds S] [--concurrency C]
#                        [--seed K] [--model PATH] [--kinds k1,k2] [--summary FILE]
#   default: --asan --requests 10000 --seconds 3600 --concurrency 12; the model is the tiny oracle checkpoint
#   (build/tests/e2e/oracles/llama_gqa_untied, made by `ctest -R make_oracles` in the build dir or scripts/test.sh).
# Needs the binaries built (scripts/test.sh builds both; or scripts/build.sh and the ASan configure in test.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$repo_root"

kind=asan bin="" requests=10000 seconds=3600 concurrency=12 seed=1 model="" kinds="" summary=""
while (($#)); do
  case "$1" in
    --asan) kind=asan ;;
    --release) kind=release ;;
    --bin) bin="$2"; kind=custom; shift ;;
    --requests) requests="$2"; shift ;;
    --seconds) seconds="$2"; shift ;;
    --concurrency) concurrency="$2"; shift ;;
    --seed) seed="$2"; shift ;;
    --model) model="$2"; shift ;;
    --kinds) kinds="$2"; shift ;;
    --summary) summary="$2"; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "soak.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

case "$kind" in
  asan) bin="$build_dir-asan/tessera" label="ASan + UBSan build ($bin)" ;;
  release) bin="$build_dir/tessera" label="release build ($bin)" ;;
  *) label="$bin" ;;
esac
[[ -x "$bin" ]] || { echo "soak.sh: $bin is not built (run scripts/test.sh, or build it)" >&2; exit 2; }
oracles="$build_dir/tests/e2e/oracles"
if [[ -z "$model" && ! -d "$oracles/llama_gqa_untied" ]]; then
  echo "soak.sh: $oracles/llama_gqa_untied is missing: run 'ctest -R make_oracles' in $build_dir (or scripts/test.sh)" >&2
  exit 2
fi

python="$(bash scripts/setup-python.sh | tail -n 1)"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
[[ -n "$summary" ]] || summary="$out/summary.md"

echo "soak.sh: $requests requests (bound $seconds s), concurrency $concurrency, $label" >&2
set +e
TESSERA_BIN="$bin" TESSERA_SOAK_BIN="$bin" TESSERA_ORACLES="$oracles" TESSERA_SOAK_MODEL="$model" \
  TESSERA_SOAK_REQUESTS="$requests" TESSERA_SOAK_SECONDS="$seconds" TESSERA_SOAK_CONCURRENCY="$concurrency" \
  TESSERA_SOAK_SEED="$seed" TESSERA_SOAK_KINDS="$kinds" TESSERA_SOAK_LABEL="$label" TESSERA_SOAK_SUMMARY="$summary" \
  OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}" \
  UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}" ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}" \
  "$python" -m pytest -q -p no:cacheprovider "$repo_root/tests/serve/test_soak.py" >"$out/pytest.log" 2>&1
rc=$?
set -e
if [[ $rc != 0 ]]; then
  tail -n 80 "$out/pytest.log" >&2
  echo "soak.sh: FAILED (pytest exit $rc)" >&2
fi
if [[ -s "$summary" ]]; then
  cat "$summary"
else
  echo "soak.sh: no summary (the soak stopped before its measured part)" >&2
fi
exit $rc
