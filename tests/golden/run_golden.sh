#!/bin/sh
# run_golden.sh NND CASE
# run_golden.sh NND graph|schedule FILE
#
# One runner for every golden file: it runs nnd, compares what it printed with an
# expected file byte for byte, and shows a diff (- expected, + actual) when they differ.
# NND_GOLDEN_UPDATE=1 rewrites the expected file with what nnd printed: read the new
# file (git diff) before committing it.
#
# check (NND CASE): tests/golden/CASE.nnd, checked with `nnd check`; the expected file
# is CASE.err, its standard error.  The check runs inside tests/golden with
# NND_STDLIB=../../stdlib and NO_COLOR=1, so paths print as the test names them
# (CASE.nnd, ../../stdlib/nn.nnd).  Absolute paths under this directory (used modules,
# which the compiler names by their real path) are printed relative to it.  The exit
# status must be 1 when CASE.err holds an error, 0 when it holds only warnings or
# nothing.
#
# graph, schedule (NND MODE FILE): FILE is a program named from the top of the source
# tree (examples/xor.nnd); the expected file is dumps/examples.xor.graph, the standard
# output of `nnd graph --no-spans FILE`, or dumps/examples.xor.sched, that of
# `nnd graph --schedule --no-spans FILE`.  nnd runs in an empty temporary directory,
# since programs read files relative to the working directory; when
# dumps/examples.xor.setup.nnd exists, `nnd run` runs it there first, to write the
# files the program reads (a `from` file, say).  FILE's path prints relative to the
# source tree.  A program whose data set this machine lacks is skipped (exit 77).
set -u
if [ $# -eq 2 ]; then
    mode=check
    nnd=$1
    name=$2
elif [ $# -eq 3 ] && { [ "$2" = graph ] || [ "$2" = schedule ]; }; then
    nnd=$1
    mode=$2
    file=$3
else
    echo "usage: $0 NND_BINARY CASE_NAME" >&2
    echo "       $0 NND_BINARY graph|schedule FILE.nnd" >&2
    exit 2
fi
case $nnd in
*/*) nnd=$(CDPATH= cd -- "$(dirname -- "$nnd")" && pwd -P)/$(basename -- "$nnd") || exit 2 ;;
esac
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd -P) || exit 2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/nnd-golden.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT INT TERM

# compare EXPECTED ACTUAL LABEL: diff, or rewrite EXPECTED under NND_GOLDEN_UPDATE=1
compare() {
    if [ "${NND_GOLDEN_UPDATE:-0}" = 1 ]; then
        cp "$2" "$1"
        echo "run_golden: wrote $1 (exit status $status)"
    fi
    if [ ! -f "$1" ]; then
        echo "run_golden: missing $1 (run with NND_GOLDEN_UPDATE=1 to create it)"
        return 1
    elif [ ! -s "$1" ]; then
        echo "run_golden: $1 is empty: a golden file must hold something"
        return 1
    elif ! diff -u "$1" "$2"; then
        echo "run_golden: $3 printed other than $1 (- expected, + actual)"
        return 1
    fi
    return 0
}

if [ "$mode" != check ]; then
    root=$(CDPATH= cd -- "$here/../.." && pwd -P) || exit 2
    if [ ! -f "$root/$file" ]; then
        echo "run_golden: no such program: $root/$file" >&2
        exit 2
    fi
    base=dumps/$(printf '%s\n' "${file%.nnd}" | tr / .)
    if [ "$mode" = graph ]; then
        want=$here/$base.graph
        set -- graph --no-spans
    else
        want=$here/$base.sched
        set -- graph --schedule --no-spans
    fi
    cd "$tmp" || exit 2
    if [ -f "$here/$base.setup.nnd" ] &&
            ! NND_STDLIB="$root/stdlib" "$nnd" run "$here/$base.setup.nnd" --threads 1 >setup.log 2>&1; then
        cat setup.log
        echo "run_golden: $base.setup.nnd failed"
        exit 1
    fi
    NND_STDLIB="$root/stdlib" NO_COLOR=1 "$nnd" "$@" "$root/$file" >out.raw 2>err.raw
    status=$?
    # as run_accept.sh: a program that reads a data set this machine lacks is skipped;
    # data paths print absolute here, and a missing file in the working directory
    # (one the setup should have written) fails
    missing=': error: /[^:]*: cannot open: No such file or directory$'
    if [ "$status" -eq 1 ] && grep -q "$missing" err.raw &&
            ! grep ': error: ' err.raw | grep -v "$missing" | grep -q .; then
        cat err.raw
        echo "run_golden: $file: skipped, a data file it reads is missing"
        exit 77
    fi
    if [ "$status" -ne 0 ] || [ -s err.raw ]; then
        cat err.raw
        echo "run_golden: $file: nnd $* exit status $status, expected 0 and nothing on stderr"
        exit 1
    fi
    # '|' cannot occur in $root for this to work; paths with it are not supported
    sed "s|$root/||g" out.raw >out
    fail=0
    # the memory plan starts each arena buffer of a page or more on a page
    # (PAGE_ALIGN in compiler/schedule.c), whatever the golden file holds
    if [ "$mode" = schedule ] && ! awk '
            $NF == "B" && match($0, /-> arena\+[0-9]+ /) {
                off = substr($0, RSTART + 9, RLENGTH - 10) + 0
                if ($(NF - 1) + 0 >= 4096 && off % 4096 != 0) { print "run_golden: not on a page: " $0; bad = 1 }
            }
            END { exit bad }' out; then
        fail=1
    fi
    compare "$want" out "nnd $* $file" || fail=1
    exit $fail
fi

cd "$here" || exit 2
if [ ! -f "$name.nnd" ]; then
    echo "run_golden: no such case: $here/$name.nnd" >&2
    exit 2
fi
NND_STDLIB=../../stdlib NO_COLOR=1 "$nnd" check "$name.nnd" >/dev/null 2>"$tmp/raw"
status=$?
sed "s|$here/||g" "$tmp/raw" >"$tmp/err"

fail=0
compare "$name.err" "$tmp/err" "nnd check $name.nnd" || fail=1
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
