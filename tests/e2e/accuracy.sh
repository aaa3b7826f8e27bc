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
# The saved model through nnd predict on the test images: the classes it writes
# must give the accuracy the run printed (counted here against the label file).
saved=$(echo "$out" | sed -n 's/^saved [0-9]* parameters to \(.*\)$/\1/p')
[ -n "$saved" ] || exit 0
# (a file of the example's own: the e2e tests run side by side in one directory)
f=/usr/share/datasets/fashion-mnist
csv=pred_$(basename "$example" .nnd).csv
pred=$("$nnd" predict "$example" --weights "$saved" --input $f/t10k-images-idx3-ubyte.gz \
       --labels $f/t10k-labels-idx1-ubyte.gz --top 1 -o "$csv" 2>&1) || { echo "$pred"; exit 1; }
echo "$pred"
implied=$(python3 - "$csv" $f/t10k-labels-idx1-ubyte.gz <<'PY'
import csv, gzip, sys
labels = gzip.open(sys.argv[2]).read()[8:]
rows = list(csv.DictReader(open(sys.argv[1])))
assert len(rows) == len(labels), (len(rows), len(labels))
print("%.4f" % (sum(int(r["class1"]) == l for r, l in zip(rows, labels)) / len(labels)))
PY
) || exit 1
# compared as numbers: the run prints at most 4 digits, without trailing zeros
awk -v a="$implied" -v b="$acc" 'BEGIN { exit !(a - b < 5e-5 && b - a < 5e-5) }' || { echo "FAIL: nnd predict's classes give accuracy $implied, the run printed $acc"; exit 1; }
echo "ok: nnd predict's classes give the run's accuracy, $implied"
