#!/bin/sh
# run_golden.sh NND CASE: checks tests/golden/CASE.nnd with `nnd check` and compares
# its standard error with CASE.err, byte for byte.
#
# The check runs inside tests/golden with NND_STDLIB=../../stdlib and NO_COLOR=1, so
# paths print as the test names them (CASE.nnd, ../../stdlib/nn.nnd).  Absolute
# paths under this directory (used modules, which the compiler names by their real
# path) are printed relative to it.  The exit status must be 1 when CASE.err holds
# an error, 0 when it holds only warnings or nothing.
#
# NND_GOLDEN_UPDATE=1 rewrites CASE.err with what nnd printed: read the new file
# before committing it.
set -u
if [ $# -ne 2 ]; then
    echo "usage: $0 NND_BINARY CASE_NAME" >&2
    exit 2
fi
nnd=$1
name=$2
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd -P) || exit 2
cd "$here" || exit 2
if [ ! -f "$name.nnd" ]; then
    echo "run_golden: no such case: $here/$name.nnd" >&2
    exit 2
fi
tmp=$(mktemp "${TMPDIR:-/tmp}/nnd-golden.XXXXXX") || exit 2
trap 'rm -f "$tmp" "$tmp.raw"' EXIT INT TERM

NND_STDLIB=../../stdlib NO_COLOR=1 "$nnd" check "$name.nnd" >/dev/null 2>"$tmp.raw"
status=$?
# '|' cannot occur in $here for this to work; paths with it are not supported
sed "s|$here/||g" "$tmp.raw" >"$tmp"

if [ "${NND_GOLDEN_UPDATE:-0}" = 1 ]; then
    cp "$tmp" "$name.err"
    echo "run_golden: wrote $name.err (exit status $status)"
fi

fail=0
if [ ! -f "$name.err" ]; then
    echo "run_golden: missing $name.err (run with NND_GOLDEN_UPDATE=1 to create it)"
    fail=1
elif [ ! -s "$name.err" ]; then
    echo "run_golden: $name.err is empty: a golden case must produce diagnostics"
    fail=1
elif ! diff -u "$name.err" "$tmp"; then
    echo "run_golden: $name: diagnostics differ from $name.err (- expected, + actual)"
    fail=1
fi
want=0
if [ -f "$name.err" ] && grep -q ': error: ' "$name.err"; then
    want=1
fi
if [ "$status" -ne "$want" ]; then
    if [ "$status" -gt 128 ]; then
        echo "run_golden: $name: nnd was killed by signal $((status - 128))"
    else
        echo "run_golden: $name: exit status $status, expected $want"
    fi
    fail=1
fi
exit $fail
