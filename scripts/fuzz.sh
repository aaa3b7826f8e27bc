#!/usr/bin/env bash
# fuzz.sh [TARGET|all] [SECONDS]: runs the fuzz targets of tests/fuzz for longer than
# `ctest -L fuzz` does: TARGET (frontend, safetensors, idx, npy, csv, text, metrics_csv;
# default all, one after another) for SECONDS each (default 600), at the lowest CPU
# priority.  Each keeps its corpus in fuzz-corpus/TARGET/corpus (ignored by git, kept
# from run to run), writes what crashed, leaked or timed out to
# fuzz-corpus/TARGET/crash-* (leak-*, timeout-*) and its log to fuzz-corpus/TARGET.log.
# Configures and builds build-fuzz (clang-19, -DNND_FUZZ=ON) when needed.  At the end
# prints each target's executions, time and findings; exits 1 if there were any.
set -euo pipefail
cd "$(dirname "$0")/.."
all=(frontend safetensors idx npy csv text metrics_csv)
targets=("${all[@]}")
if [ $# -ge 1 ] && [ "$1" != all ]; then
    [[ " ${all[*]} " == *" $1 "* ]] || { echo "fuzz.sh: no target $1 (${all[*]})" >&2; exit 2; }
    targets=("$1")
fi
seconds=${2:-600}

if [ ! -f build-fuzz/CMakeCache.txt ]; then
    CC=${CC:-clang-19} cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DNND_FUZZ=ON -DNND_BUILD_TESTS=ON
fi
cmake --build build-fuzz -j"$(nproc)" --target fuzzers
mkdir -p fuzz-corpus

status=0
for t in "${targets[@]}"; do
    echo "fuzz.sh: $t for ${seconds} s (log: fuzz-corpus/$t.log)"
    NND_FUZZ_STATS=1 nice -n 19 sh tests/fuzz/run_fuzz.sh "build-fuzz/tests/fuzz/fuzz_$t" "$t" \
        "$seconds" "fuzz-corpus/$t" >"fuzz-corpus/$t.log" 2>&1 || status=1
done

echo
printf '%-12s %12s %10s %8s  %s\n' target executions seconds exec/s findings
for t in "${targets[@]}"; do
    log=fuzz-corpus/$t.log
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    found=$(find "fuzz-corpus/$t" -maxdepth 1 -name 'crash-*' -o -maxdepth 1 -name 'leak-*' \
        -o -maxdepth 1 -name 'timeout-*' -o -maxdepth 1 -name 'oom-*' | wc -l)
    printf '%-12s %12s %10s %8s  %s\n' "$t" "${runs:-?}" "${secs:-?}" "${rate:-?}" "$found"
done
grep -h "^fuzz_frontend:" fuzz-corpus/frontend.log 2>/dev/null | tail -n 1 || true
find fuzz-corpus -maxdepth 2 \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) \
    -exec echo "finding (reproduce: build-fuzz/tests/fuzz/fuzz_TARGET FILE): {}" \;
exit $status
