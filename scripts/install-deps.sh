#!/usr/bin/env bash
# Installs the Debian packages tessera builds and tests with (DESIGN.md, "Dependencies"). Instant when they are
# all present already; needs root (or sudo) otherwise.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git ca-certificates curl unzip
  libboost-dev libyaml-cpp-dev prometheus-cpp-dev libopenmpi-dev openmpi-bin nlohmann-json3-dev
  libopenblas-openmp-dev libpcre2-dev libicu-dev libspdlog-dev libcli11-dev libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-venv python3-pip python3-torch python3-numpy clang-format prometheus debootstrap
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} Debian packages present" >&2
  exit 0
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "install-deps: need root to install: ${missing[*]}" >&2; exit 1; }
  sudo=sudo
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done" >&2
