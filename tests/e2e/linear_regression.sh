#!/bin/sh
# End to end: linear regression on examples/data/linear.csv recovers
# y = 3 x1 - 2 x2 + 0.5 x3 + 1 to within 0.02.  usage: linear_regression.sh NND EXAMPLE
set -u
nnd=$1 example=$2
out=$("$nnd" run "$example" --print-params 2>&1) || { echo "$out"; exit 1; }
echo "$out"
# a small loss prints in significant digits, not as 0.0000
echo "$out" | grep -q "eval train:  loss [1-9][0-9.]*e-0[5-9]$" ||
    { echo "FAIL: the eval line does not show the small loss in significant digits"; exit 1; }
echo "$out" | awk '
    $1 == "fc.W" { w1 = $4; w2 = $5; w3 = $6; seen++ }
    $1 == "fc.b" { b = $3; seen++ }
    function off(x, want) { return x - want > 0.02 || want - x > 0.02 }
    END {
        if (seen != 2) { print "FAIL: parameters not printed"; exit 1 }
        if (off(w1, 3) || off(w2, -2) || off(w3, 0.5) || off(b, 1)) {
            printf "FAIL: learned %s %s %s %s, want 3 -2 0.5 1\n", w1, w2, w3, b; exit 1
        }
        printf "ok: learned %s %s %s %s (3 -2 0.5 1)\n", w1, w2, w3, b
    }'
