#!/bin/sh
# run_accept.sh NND FILE: `nnd check FILE` must exit 0 and print nothing on stderr.
set -u
if [ $# -ne 2 ]; then
    echo "usage: $0 NND_BINARY FILE.nnd" >&2
    exit 2
fi
err=$(NO_COLOR=1 "$1" check "$2" 2>&1 >/dev/null)
status=$?
# An example that reads a data set this machine lacks is skipped, not failed: these
# tests check the language, not the machine's data.
missing=': cannot open: No such file or directory$'
if [ "$status" -eq 1 ] && printf '%s\n' "$err" | grep -q "$missing" &&
        ! printf '%s\n' "$err" | grep ': error: ' | grep -v "$missing" | grep -q .; then
    printf '%s\n' "$err"
    echo "run_accept: $2: skipped, a data file it reads is missing"
    exit 77
fi
if [ "$status" -ne 0 ] || [ -n "$err" ]; then
    printf '%s\n' "$err"
    echo "run_accept: $2: exit status $status, expected 0 and no diagnostics"
    exit 1
fi
exit 0
