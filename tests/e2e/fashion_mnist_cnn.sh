#!/bin/sh
# End to end: 150 steps (a sixth of an epoch) of the Fashion-MNIST CNN, compiled,
# reach at least 75% test accuracy; its saved model holds every parameter.
# The full run (3 epochs, at least 90%) is in bench/README.md.
# usage: fashion_mnist_cnn.sh NND EXAMPLE
set -u
nnd=$1 example=$2
if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    echo "skipped: Fashion-MNIST is not installed (Debian: dataset-fashion-mnist)"
    exit 77
fi
out=$("$nnd" run "$example" --set steps=150 --time 2>&1) || { echo "$out"; exit 1; }
echo "$out"
acc=$(echo "$out" | sed -n 's/.*eval test:.*accuracy \([0-9.]*\).*/\1/p' | tail -n 1)
[ -n "$acc" ] || { echo "FAIL: no accuracy in the output"; exit 1; }
if awk -v a="$acc" 'BEGIN { exit !(a >= 0.75) }'; then
    echo "ok: test accuracy $acc after 150 steps (at least 0.75)"
else
    echo "FAIL: test accuracy $acc after 150 steps, below 0.75"
    exit 1
fi
echo "$out" | grep -q "saved 8 parameters to fashion_mnist_cnn.safetensors" ||
    { echo "FAIL: the model was not saved"; exit 1; }
