#!/bin/sh
# End to end: one epoch of the Fashion-MNIST MLP, compiled, reaches at least 83%
# test accuracy.  usage: fashion_mnist.sh NND EXAMPLE
set -u
nnd=$1 example=$2
if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    echo "skipped: Fashion-MNIST is not installed (Debian: dataset-fashion-mnist)"
    exit 77
fi
out=$("$nnd" run "$example" --set epochs=1 --time 2>&1) || { echo "$out"; exit 1; }
echo "$out"
acc=$(echo "$out" | sed -n 's/.*eval test:.*accuracy \([0-9.]*\).*/\1/p' | tail -n 1)
[ -n "$acc" ] || { echo "FAIL: no accuracy in the output"; exit 1; }
if awk -v a="$acc" 'BEGIN { exit !(a >= 0.83) }'; then
    echo "ok: test accuracy $acc after one epoch (at least 0.83)"
else
    echo "FAIL: test accuracy $acc after one epoch, below 0.83"
    exit 1
fi
