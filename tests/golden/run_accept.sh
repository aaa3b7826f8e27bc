#!/bin/sh
# run_accept.sh NND FILE: `nnd check FILE` must exit 0 and print nothing on stderr.
# It runs in an empty temporary directory, as run_golden.sh does: when
# dumps/DIR.NAME.setup.nnd exists (DIR the file's directory, e.g.
# dumps/examples.transfer.setup.nnd), `nnd run` runs it there first, to write the
# files the program reads (a `from` file, say).
set -u
if [ $# -ne 2 ]; then
    echo "usage: $0 NND_BINARY FILE.nnd" >&2
    exit 2
fi
nnd=$1 file=$2
case $nnd in
*/*) nnd=$(CDPATH= cd -- "$(dirname -- "$nnd")" && pwd -P)/$(basename -- "$nnd") || exit 2 ;;
esac
case $file in
/*) ;;
*) file=$(pwd -P)/$file ;;
esac
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd -P) || exit 2
root=$(CDPATH= cd -- "$here/../.." && pwd -P) || exit 2
setup=$here/dumps/$(basename -- "$(dirname -- "$file")").$(basename -- "$file" .nnd).setup.nnd
tmp=$(mktemp -d "${TMPDIR:-/tmp}/nnd-accept.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT INT TERM
cd "$tmp" || exit 2
# An example that reads a data set this machine lacks is skipped, not failed: these
# tests check the language, not the machine's data.
missing=': cannot open: No such file or directory$'
if [ -f "$setup" ] && ! NND_STDLIB="$root/stdlib" "$nnd" run "$setup" --threads 1 >setup.log 2>&1; then
    if grep -q "$missing" setup.log; then
        cat setup.log
        echo "run_accept: $file: skipped, a data file its setup reads is missing"
        exit 77
    fi
    cat setup.log
    echo "run_accept: $setup failed"
    exit 1
fi
err=$(NO_COLOR=1 "$nnd" check "$file" 2>&1 >/dev/null)
status=$?
if [ "$status" -eq 1 ] && printf '%s\n' "$err" | grep -q "$missing" &&
        ! printf '%s\n' "$err" | grep ': error: ' | grep -v "$missing" | grep -q .; then
    printf '%s\n' "$err"
    echo "run_accept: $file: skipped, a data file it reads is missing"
    exit 77
fi
if [ "$status" -ne 0 ] || [ -n "$err" ]; then
    printf '%s\n' "$err"
    echo "run_accept: $file: exit status $status, expected 0 and no diagnostics"
    exit 1
fi
exit 0
