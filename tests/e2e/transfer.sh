#!/bin/sh
# Transfer learning end to end: pre-train on classes 0-4, fine-tune three ways on
# 500 images of classes 5-9 (7 epochs: the staged body unfreezes after 5); each of the
# three accuracies must reach its floor, and the frozen body's weights are the saved
# base's, bit for bit.  usage: transfer.sh NND EXAMPLES WORKDIR
set -u
nnd=$1 examples=$2 work=$3
if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    echo "skipped: Fashion-MNIST is not installed (Debian: dataset-fashion-mnist)"
    exit 77
fi
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
"$nnd" run "$examples/transfer_base.nnd" --set epochs=1 > base.log 2>&1 || { cat base.log; exit 1; }
grep -q "saved 6 parameters to fmnist_base.safetensors" base.log || { cat base.log; exit 1; }
sed 's|    eval test every 5 epochs|    save "tuned.safetensors"\n    eval test every 5 epochs|' "$examples/transfer.nnd" > transfer.nnd
"$nnd" run transfer.nnd --set epochs=7 > tune.log 2>&1 || { cat tune.log; exit 1; }
cat tune.log
line=$(grep "eval test:" tune.log | tail -n 1)
echo "$line" | grep -q "frozen 0\.[0-9]*  staged 0\.[0-9]*  scratch 0\.[0-9]*" ||
    { echo "FAIL: the comparison line is missing"; exit 1; }
# Each accuracy against a floor.  Measured with these settings (base seed 1, epochs=1;
# seed 2, epochs=7; 1 or 2 threads): frozen 0.4492, staged 0.6720, scratch 0.9066;
# other seeds gave frozen 0.34-0.52, staged 0.61-0.71, scratch 0.89-0.91.  Chance is
# 0.20 (5 classes); a staged body that never unfreezes stays near frozen (0.33 at
# epoch 5, before it does).
fail=0
for pair in frozen:0.30 staged:0.55 scratch:0.80; do
    name=${pair%%:*} floor=${pair#*:}
    acc=$(echo "$line" | sed -n "s/.* $name \([0-9.]*\).*/\1/p")
    if awk -v a="$acc" -v m="$floor" 'BEGIN { exit !(a >= m) }'; then
        echo "ok: $name accuracy $acc (at least $floor)"
    else
        echo "FAIL: $name accuracy $acc, below $floor"
        fail=1
    fi
done
[ "$fail" -eq 0 ] || exit 1
# the frozen body is the base's, bit for bit: compare the tensors' bytes
python3 - <<'PY' || exit 1
import json, struct, sys
def tensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    return {k: b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]] for k, v in h.items() if k != "__metadata__"}
base, tuned = tensors("fmnist_base.safetensors"), tensors("tuned.safetensors")
for k in ("body.0.W", "body.0.b", "body.2.W", "body.2.b"):
    if tuned["frozen." + k] != base[k]:
        sys.exit(f"FAIL: frozen.{k} moved")
    if tuned["staged." + k] == base[k]:
        sys.exit(f"FAIL: staged.{k} did not train after its body was unfrozen")
print("ok: the frozen body is bit-identical to the base; the staged body trained")
PY
