#!/usr/bin/env bash
# Sets everything up, builds, and runs the whole test suite: once in the release
# build, once more built with AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

bash scripts/setup.sh
ctest --test-dir build --output-on-failure -j"$jobs"

cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=Debug -DNND_SANITIZE=ON
cmake --build build-sanitize -j"$jobs"
# the CNN's training run is minutes under the sanitizers: its kernels are covered
# there by the runtime, op and differential tests
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-sanitize --output-on-failure -j"$jobs" -E e2e_fashion_mnist_cnn
