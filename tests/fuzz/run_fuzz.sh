#!/bin/sh
# run_fuzz.sh FUZZER TARGET SECONDS WORKDIR [libFuzzer option...]
#
# Runs one fuzz target for SECONDS over its seed corpus, written afresh to
# WORKDIR/seeds by seeds.py (with the reproducers of past findings, regress/TARGET/);
# what it finds goes to WORKDIR/corpus, kept from run to run, and an input that
# crashed, leaked or timed out to WORKDIR/crash-*, leak-*, timeout-* (reproduce:
# FUZZER FILE).  The exit status is libFuzzer's: 0 when nothing was found.
set -eu
[ $# -ge 4 ] || { echo "usage: $0 FUZZER TARGET SECONDS WORKDIR [option...]" >&2; exit 2; }
fuzzer=$1 target=$2 seconds=$3 work=$4
shift 4
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd -P)
rm -rf "$work/seeds"
mkdir -p "$work/seeds" "$work/corpus"
python3 "$here/seeds.py" "$target" "$work/seeds"
dict=
[ "$target" != frontend ] || dict=-dict=$here/nnd.dict
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# An input that runs 25 s is a finding too (a limit that is missing): a program at
# the front end's MAX_GRAPH_NODES takes 8 s of CPU time here, under the sanitizers,
# and a loaded machine stretches that (the timeout is in wall time).
exec "$fuzzer" $dict -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2560 \
    -print_final_stats=1 -artifact_prefix="$work/" "$@" "$work/corpus" "$work/seeds"
