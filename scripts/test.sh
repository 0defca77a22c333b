#!/usr/bin/env bash
# The whole test suite on a fresh machine: Debian packages, the Python reference environment, the default
# model, the build, the format check, then every ctest test (unit, end-to-end against Hugging Face
# transformers, and GPU tests, which skip without a GPU). Re-running with nothing changed skips every set-up step.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$repo_root"

bash scripts/install-deps.sh
python="$(bash scripts/setup-python.sh | tail -n 1)"
model="$(bash scripts/fetch-model.sh | tail -n 1)"
bash scripts/check-format.sh
mkdir -p "$build_dir"
bash scripts/build.sh -DTESSERA_PYTHON="$python" -DTESSERA_DEFAULT_MODEL="$model"
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

# The unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer (engine-only build, no CUDA: the
# sanitizers watch our host code). TESSERA_SANITIZERS=0 skips this stage.
if [[ "${TESSERA_SANITIZERS:-1}" == 1 && $# -eq 0 ]]; then
  asan_dir="$build_dir-asan"
  TESSERA_BUILD_DIR="$asan_dir" BUILD_TARGETS="test_cpu_ops test_model_files test_sampler test_sharding test_tokenizer" \
    bash scripts/build.sh -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTESSERA_CUDA=OFF -DTESSERA_SANITIZE=address,undefined \
    -DTESSERA_PYTHON="$python"
  (cd "$asan_dir" && UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 ASAN_OPTIONS=detect_leaks=1 \
    ctest --output-on-failure --timeout 600 -j "$(nproc)" -L cpu -R "CpuOps|Gguf|Safetensors|Dequant|TensorInfo|Sampler|Philox|Sharding|Transport|Tokenizer|Utf8|IncrementalDecoder|make_quant_fixtures")
fi

cd "$build_dir"
ctest --output-on-failure --timeout 1500 -j "$(nproc)" "$@"
