#!/usr/bin/env bash
# Sets everything up, builds, and runs the whole test suite: once in the release
# build, once more built with AddressSanitizer + UndefinedBehaviorSanitizer, the
# concurrent parts with ThreadSanitizer, and the fuzz targets for a short time
# (clang-19, libFuzzer).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

bash scripts/setup.sh --test
ctest --test-dir build --output-on-failure -j"$jobs"

cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=Debug -DNND_SANITIZE=ON
cmake --build build-sanitize -j"$jobs"
# the CNN and GPT training and the resume test (5 runs of 4000 steps, killed on a timer)
# take minutes under the sanitizers; their code is covered there by the runtime,
# op, differential and golden tests
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-sanitize --output-on-failure -j"$jobs" -E "e2e_fashion_mnist_cnn|e2e_resume|e2e_gpt"

# the thread pool, the products split across it, the training loop (the next batch
# gathered during the step) and the logger (histograms counted in parts) under
# ThreadSanitizer; the end-to-end training runs take minutes there
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DNND_TSAN=ON
cmake --build build-tsan -j"$jobs" --target nnd runtime_pool runtime_gemm runtime_train \
    runtime_histogram
TSAN_OPTIONS=halt_on_error=1 ctest --test-dir build-tsan --output-on-failure -j"$jobs" \
    -R "^(runtime_(pool|gemm|train|histogram)|log_events|cli_threads)$"

# the libFuzzer targets, each for a short time over its seeds (scripts/fuzz.sh runs
# them for longer)
CC=clang-19 cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNND_FUZZ=ON
cmake --build build-fuzz -j"$jobs" --target fuzzers
ctest --test-dir build-fuzz --output-on-failure -j"$jobs" -L fuzz
