#!/usr/bin/env bash
# Runs the libFuzzer targets for longer than `ctest -L fuzz` does.
#   scripts/fuzz.sh [TARGET...] [-t SECONDS]   (default: every target, 600 s each)
# Builds build-fuzz with clang-19 when needed; keeps each target's corpus in
# fuzz-corpus/TARGET (not in git), crashes in fuzz-findings/, logs in fuzz-logs/;
# prints the executions of each target at the end.  Targets run one at a time,
# niced, on every core (-fork).  To reproduce a finding:
#   build-fuzz/tests/fuzz/fuzz_frontend fuzz-findings/crash-...
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=600
targets=()
while (($#)); do
    case $1 in
    -t) seconds=$2; shift 2 ;;
    *) targets+=("$1"); shift ;;
    esac
done
((${#targets[@]})) || targets=(fuzz_frontend fuzz_safetensors fuzz_idx fuzz_npy fuzz_csv fuzz_text fuzz_metrics)
if [ ! -d build-fuzz ]; then
    CC=clang-19 cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNND_FUZZ=ON
fi
cmake --build build-fuzz -j"$(nproc)" --target "${targets[@]}"
mkdir -p fuzz-corpus fuzz-findings fuzz-logs
for t in "${targets[@]}"; do
    mkdir -p "fuzz-corpus/$t"
    args=(-max_total_time="$seconds" -print_final_stats=1 -timeout=20 -rss_limit_mb=4096
          -artifact_prefix=fuzz-findings/"$t"- "fuzz-corpus/$t")
    if [ "$t" = fuzz_frontend ]; then
        args+=(-dict=tests/fuzz/nnd.dict -max_len=16384 examples tests/golden tests/jit/programs
               bench/models stdlib)
    else
        args+=(-max_len=65536 "tests/fuzz/seeds/${t#fuzz_}")
    fi
    echo "fuzz: $t for $seconds s"
    nice -n 19 "build-fuzz/tests/fuzz/$t" "${args[@]}" > "fuzz-logs/$t.log" 2>&1 || echo "fuzz: $t found something: fuzz-logs/$t.log"
done
for t in "${targets[@]}"; do
    printf '%-18s %s executions\n' "$t" "$(sed -n 's/^stat::number_of_executed_units: *//p' "fuzz-logs/$t.log")"
done
