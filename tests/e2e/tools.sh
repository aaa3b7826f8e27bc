#!/bin/sh
# The experiment commands on the examples: explain prints Adam's formulas and its
# traffic, compare trains one row per rule (and per --sweep value), lrfind prints a
# table and a suggestion, and plots them with -o.  usage: tools.sh NND EXAMPLES
set -u
nnd=$1 examples=$2
fail() { echo "FAIL: $*"; exit 1; }
out=$("$nnd" explain "$examples/fashion_mnist_mlp.nnd" 2>&1) || { echo "$out"; fail "explain"; }
echo "$out"
echo "$out" | grep -q "^opt = Adam, for fc1.W \[784, 128\] (the same for 3 more parameters):" || fail "explain: header"
echo "$out" | grep -q "^    m' = beta1 \* m + (1 - beta1) \* g$" || fail "explain: m"
echo "$out" | grep -q "^    w' = w - lr \* (m' \* (1 / (1 - beta1^t))) / (sqrt(v' \* (1 / (1 - beta2^t))) + eps)$" ||
    fail "explain: w"
echo "$out" | grep -q "reads 4 and writes 3 tensors shaped like w: 28 bytes per element" || fail "explain: bytes"
out=$("$nnd" compare "$examples/xor.nnd" --opt "Adam(lr = 0.05)" --opt "SGD(lr = 0.5)" \
      --opt "Nope()" --set epochs=200 2>&1) && fail "compare: a rule that does not exist was not an error"
echo "$out"
echo "$out" | grep -q "^Adam(lr = 0.05)  *0\.[0-9]*  *0\.[0-9]*  *0\.[0-9]*  *[0-9.]*  *[0-9]*$" || fail "compare: Adam row"
echo "$out" | grep -q "^SGD(lr = 0.5)  " || fail "compare: SGD row"
echo "$out" | grep -q "^--opt 3:1:7: error: unknown name 'Nope'" || fail "compare: the bad rule's diagnostic"
echo "$out" | grep -q "^Nope()  *failed" || fail "compare: the bad rule's row"
# every eval metric gets a column, not only the first
two=$(mktemp --suffix=.nnd)
sed 's/    eval train every 100 epochs: mse(net(x), y)/    eval train every 100 epochs: mse(net(x), y), mae = mean(abs(net(x) - y))/' \
    "$examples/xor.nnd" > "$two"
out=$("$nnd" compare "$two" --opt "Adam(lr = 0.05)" --set epochs=100 2>&1) || { echo "$out"; rm -f "$two"; fail "compare: two metrics"; }
rm -f "$two"
echo "$out"
echo "$out" | grep -q "^rule  *final loss  *train mse  *best  *at epoch  *train mae  *steps/s$" ||
    fail "compare: no column for the second metric"
echo "$out" | grep -q "^Adam(lr = 0.05)\( *[0-9.e-]*\)\{6\}$" || fail "compare: two-metric row"
out=$("$nnd" compare "$examples/xor.nnd" --sweep opt.lr=0.01,0.1 --set epochs=100 2>&1) || { echo "$out"; fail "sweep"; }
echo "$out" | grep -q "^opt.lr=0.01 " && echo "$out" | grep -q "^opt.lr=0.1 " || { echo "$out"; fail "sweep rows"; }
out=$("$nnd" lrfind "$examples/xor.nnd" --steps 60 --min 1e-4 --max 1 2>&1) || { echo "$out"; fail "lrfind"; }
echo "$out"
echo "$out" | grep -q "^learning-rate range test: [0-9]* steps from 0.0001" || fail "lrfind: header"
echo "$out" | grep -q "^suggested lr: " || fail "lrfind: suggestion"
svg=$(mktemp -d)/lr.svg
out=$("$nnd" lrfind "$examples/xor.nnd" --steps 60 --min 1e-4 --max 1 -o "$svg" 2>&1) || { echo "$out"; fail "lrfind -o"; }
echo "$out" | grep -q "^wrote $svg$" || fail "lrfind -o: no 'wrote'"
python3 - "$svg" <<'PY' || fail "lrfind -o: the plot"
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
ns = "{http://www.w3.org/2000/svg}"
lines = [l for l in root.iter(ns + "polyline") if len(l.get("points").split()) >= 30]
assert len(lines) == 2, "%d lines" % len(lines)
texts = [t.text for t in root.iter(ns + "text")]
assert "learning rate" in texts and "smoothed" in texts and "1e-4" in texts, texts
PY
rm -rf "$(dirname "$svg")"
echo "ok"
