#!/usr/bin/env bash
# The build stage's packages (deploy/docker/Dockerfile.{cpu,cuda}): what `cmake --build --target tessera` needs on
# Debian 12 — scripts/install-deps.sh's list without the test, benchmark, Python-reference and tooling packages.
#   build-install.sh cpu [--simulate]
#   build-install.sh cuda [13.0] [--simulate]   + nvcc, the CUDA runtime, cuBLAS and NCCL (NVIDIA's Debian 12 repo)
# --simulate resolves the packages without installing them (apt-get -s); tests/deploy/test_image_steps.sh uses it.
set -euo pipefail

flavor="${1:-cpu}"
shift || true
cuda_version=13.0
simulate=()
for a in "$@"; do
  case "$a" in
    --simulate) simulate=(-s) ;;
    [0-9]*) cuda_version="$a" ;;
    *)
      echo "build-install: usage: build-install.sh cpu|cuda [cuda version] [--simulate]" >&2
      exit 2
      ;;
  esac
done
[[ "$flavor" == cpu || "$flavor" == cuda ]] || {
  echo "build-install: usage: build-install.sh cpu|cuda [cuda version] [--simulate]" >&2
  exit 2
}
export DEBIAN_FRONTEND=noninteractive

packages=(
  build-essential cmake ninja-build pkg-config ca-certificates
  libboost-dev libyaml-cpp-dev prometheus-cpp-dev libopenmpi-dev openmpi-bin nlohmann-json3-dev
  libopenblas-openmp-dev libpcre2-dev libicu-dev libspdlog-dev libcli11-dev
)
[[ "$flavor" == cuda ]] && packages+=(curl)

apt-get update -qq
apt-get install -y -qq --no-install-recommends "${simulate[@]}" "${packages[@]}" >/dev/null

if [[ "$flavor" == cuda && ${#simulate[@]} -eq 0 ]]; then
  # cuda-minimal-build: nvcc, the CUDA runtime's headers and libraries; cuBLAS(Lt) and NCCL for the CUDA backend.
  suffix="${cuda_version//./-}"
  curl -fsSL -o /tmp/cuda-keyring.deb \
    https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/cuda-keyring_1.1-1_all.deb
  dpkg -i /tmp/cuda-keyring.deb >/dev/null
  rm /tmp/cuda-keyring.deb
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "cuda-minimal-build-$suffix" "libcublas-dev-$suffix" \
    libnccl-dev libnccl2 >/dev/null
fi

if ((${#simulate[@]})); then
  echo "build-install: $flavor build packages resolve (simulated, nothing installed)" >&2
else
  apt-get clean
  rm -rf /var/lib/apt/lists/*
  echo "build-install: $flavor build packages installed" >&2
fi
