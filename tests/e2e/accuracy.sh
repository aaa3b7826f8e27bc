#!/bin/sh
# End to end: a Fashion-MNIST example, compiled, trained for a while (SETTING, as
# for --set), reaches at least MIN test accuracy; with LINE, its output must also
# hold that line (a saved model, say).
# usage: accuracy.sh NND EXAMPLE SETTING MIN [LINE]
set -u
nnd=$1 example=$2 setting=$3 min=$4 line=${5:-}
if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    echo "skipped: Fashion-MNIST is not installed (Debian: dataset-fashion-mnist)"
    exit 77
fi
out=$("$nnd" run "$example" --set "$setting" --time 2>&1) || { echo "$out"; exit 1; }
echo "$out"
acc=$(echo "$out" | sed -n 's/.*eval test:.*accuracy \([0-9.]*\).*/\1/p' | tail -n 1)
[ -n "$acc" ] || { echo "FAIL: no accuracy in the output"; exit 1; }
if awk -v a="$acc" -v m="$min" 'BEGIN { exit !(a >= m) }'; then
    echo "ok: test accuracy $acc with $setting (at least $min)"
else
    echo "FAIL: test accuracy $acc with $setting, below $min"
    exit 1
fi
if [ -n "$line" ]; then
    echo "$out" | grep -qF "$line" || { echo "FAIL: no line '$line' in the output"; exit 1; }
fi
