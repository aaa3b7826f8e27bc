#!/usr/bin/env bash
# Installs what nnd needs from Debian 12's packages (only those missing), then
# configures and builds it in build/.  Run as root or with sudo available.
# --test: also what the test suite needs (clang-format for the format check,
# PyTorch for the reference tests of the update rules, clang 19 and its runtime
# libraries for the libFuzzer targets).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake pkg-config git llvm-19-dev flex bison libcmocka-dev
          libopenblas-dev zlib1g-dev libdeflate-dev libjansson-dev dataset-fashion-mnist fortunes python3-numpy
          protobuf-compiler libopenmpi-dev openmpi-bin)
if [ "${1:-}" = --test ]; then
    packages+=(clang-format python3-torch clang-19 libclang-rt-19-dev)
fi
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
        sudo=sudo
    fi
    echo "setup: installing ${missing[*]}"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
