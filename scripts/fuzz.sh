#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ (clang, ASan + UBSan, coverage on every library they link) in build-fuzz
# and runs them, each from its checked-in seeds (fuzz/corpus/<target>/).
#
#   bash scripts/fuzz.sh --smoke              each target for 20 s (what scripts/test.sh runs), new inputs thrown away
#   bash scripts/fuzz.sh [--time S] [TARGET]  long runs: S seconds per target (default 600); the corpus grows in
#                                             build-fuzz/corpus/<target> and is reused by the next run
#   options: --jobs N (targets run at once; default: the cores, at most 2), --no-build, --list
#
# Exit status 1 when any target crashed (an exception other than the documented ones, a sanitizer report, a
# failed invariant, a hang past -timeout, memory past -rss_limit_mb): its input is build-fuzz/artifacts/<target>/
# crash-* (or timeout-*, oom-*, leak-*) and the report is in build-fuzz/logs/<target>.log; replay one with
# `build-fuzz/fuzz/<target> <file>`. One summary line per target: executions, exec/s, coverage, corpus.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$repo_root"

all_targets=(fuzz_gguf fuzz_safetensors fuzz_tokenizer_json fuzz_openai_request fuzz_http_request fuzz_wire)
seconds=600
smoke=0
build=1
jobs=$(($(nproc) < 2 ? $(nproc) : 2))
targets=()
while (($#)); do
  case "$1" in
    --smoke) smoke=1; seconds=20 ;;
    --time) seconds="$2"; shift ;;
    --jobs) jobs="$2"; shift ;;
    --no-build) build=0 ;;
    --list) printf '%s\n' "${all_targets[@]}"; exit 0 ;;
    fuzz_*) targets+=("$1") ;;
    *) echo "fuzz.sh: unknown argument '$1' (see the comment at the top of scripts/fuzz.sh)" >&2; exit 2 ;;
  esac
  shift
done
((${#targets[@]})) || targets=("${all_targets[@]}")

fuzz_build="${TESSERA_FUZZ_BUILD_DIR:-$repo_root/build-fuzz}"

# The largest input each target gets: the server's limits where they bound the input (max_body_bytes 1 MiB; the
# HTTP reader also takes a 64 KiB header and the split byte), else 64 KiB (files, wire messages).
max_len() {
  case "$1" in
    fuzz_openai_request) echo $((1 << 20)) ;;
    fuzz_http_request) echo $((1 + (64 << 10) + (1 << 20))) ;;
    *) echo $((64 << 10)) ;;
  esac
}

# --- toolchain: clang with libFuzzer and the sanitizer runtimes (installed only when missing) ----------------------
if [[ $build == 1 ]]; then
  bash scripts/install-deps.sh
  missing=()
  command -v clang++ >/dev/null || missing+=(clang)
  compgen -G "/usr/lib/llvm-14/lib/clang/14*/lib/linux/libclang_rt.fuzzer-x86_64.a" >/dev/null ||
    missing+=(libclang-rt-14-dev)
  compgen -G "/usr/lib/llvm-14/lib/libomp.so*" >/dev/null || missing+=(libomp-14-dev)  # OpenMP for clang
  if ((${#missing[@]})); then
    sudo=""
    if [[ $(id -u) -ne 0 ]]; then
      command -v sudo >/dev/null || { echo "fuzz.sh: need root to install: ${missing[*]}" >&2; exit 1; }
      sudo=sudo
    fi
    echo "fuzz.sh: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi

  mkdir -p "$fuzz_build"
  CC=clang CXX=clang++ cmake -S "$repo_root" -B "$fuzz_build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DTESSERA_CUDA=OFF -DTESSERA_TESTS=OFF -DTESSERA_FUZZ=ON -DTESSERA_SANITIZE=address,undefined,fuzzer-no-link \
    >"$fuzz_build/configure.log" 2>&1 || {
    cat "$fuzz_build/configure.log" >&2
    exit 1
  }
  build_args=()
  for t in "${targets[@]}"; do build_args+=(--target "$t"); done
  cmake --build "$fuzz_build" -j "${TESSERA_FUZZ_BUILD_JOBS:-2}" "${build_args[@]}"
fi

# --- runs ----------------------------------------------------------------------------------------------------------
scratch="$(mktemp -d "$( [[ -d /dev/shm ]] && echo /dev/shm || echo /tmp)/tessera-fuzz.XXXXXX")"
trap 'rm -rf "$scratch"' EXIT
export TESSERA_FUZZ_SCRATCH="$scratch"                                 # the files the targets open
export TESSERA_FUZZ_TOKENIZER="${TESSERA_FUZZ_TOKENIZER:-$repo_root/fuzz/data/tokenizer}"  # fuzz_openai_request's
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
mkdir -p "$fuzz_build/logs"

run_target() {
  local t="$1" corpus
  if [[ $smoke == 1 ]]; then
    corpus="$fuzz_build/smoke-corpus/$t"  # new inputs land here and are dropped by the next smoke run
    rm -rf "$corpus"
  else
    corpus="$fuzz_build/corpus/$t"
  fi
  mkdir -p "$corpus" "$fuzz_build/artifacts/$t"
  # The first directory receives what the run finds; the seeds are read from the second and never written.
  "$fuzz_build/fuzz/$t" "$corpus" "fuzz/corpus/$t" -max_total_time="$seconds" -max_len="$(max_len "$t")" \
    -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 -artifact_prefix="$fuzz_build/artifacts/$t/" \
    >"$fuzz_build/logs/$t.log" 2>&1
}

summary() {
  local t="$1" rc="$2" log="$fuzz_build/logs/$1.log" execs eps cov
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  cov=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -n 1 | sed -E 's/.*(cov: [0-9]+ ft: [0-9]+ corp: [^ ]+).*/\1/' || true)
  if [[ $rc == 0 ]]; then
    printf 'fuzz.sh: %-20s ok    %s execs, %s exec/s, %s\n' "$t" "${execs:-?}" "${eps:-?}" "${cov:-?}"
    return
  fi
  printf 'fuzz.sh: %-20s FAIL  exit %s after %s execs; report: %s\n' "$t" "$rc" "${execs:-?}" "$log"
  # The finding in a few lines: what the sanitizer, the invariant or std::terminate said, and the input.
  grep -E 'ERROR: (Address|Undefined|Leak)Sanitizer|runtime error|invariant violated|terminate called|what\(\)|ERROR: libFuzzer: (timeout|out-of-memory)|Test unit written' "$log" |
    head -n 6 | sed 's/^/    /' || true
}

echo "fuzz.sh: ${#targets[@]} targets, ${seconds} s each, ${jobs} at a time" >&2
start=$SECONDS
running=0
for t in "${targets[@]}"; do
  if ((running >= jobs)); then
    wait -n || true
    running=$((running - 1))
  fi
  rm -f "$fuzz_build/logs/$t.rc"
  (
    set +e
    run_target "$t"
    echo $? >"$fuzz_build/logs/$t.rc"
  ) &
  running=$((running + 1))
done
wait
failed=0
for t in "${targets[@]}"; do
  rc=$(cat "$fuzz_build/logs/$t.rc" 2>/dev/null || echo 1)
  summary "$t" "$rc"
  [[ $rc == 0 ]] || failed=1
done
echo "fuzz.sh: done in $((SECONDS - start)) s$([[ $failed == 1 ]] && echo ': a target crashed')" >&2
exit "$failed"
