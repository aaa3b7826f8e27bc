#!/bin/sh
# profile.sh NND DIR: `nnd run --profile` lists every kernel of the step with its time,
# and each matrix product or convolution with its rate: its multiply-adds x 2 (a
# convolution's as summed directly) at the train block's batch, over its time.
set -u
nnd=$1 dir=$2
rm -rf "$dir" && mkdir -p "$dir" || exit 1
fm=/usr/share/datasets/fashion-mnist
cat >"$dir/mlp.nnd" <<NND
use nn
use optim
model Net {
    fc1 = Dense(784, 96)
    fc2 = Dense(96, 10)
    fn forward(x: [B, 784]) = fc2(relu(fc1(x)))
}
train {
    data train = idx("$fm/train-images-idx3-ubyte.gz", "$fm/train-labels-idx1-ubyte.gz",
                     scale = 1/255, shape = [784])
    net = Net()
    loss = cross_entropy(net(x), y)
    opt = Adam(lr = 1e-3)
    batch = 48
    steps = 20
}
NND
out=$("$nnd" run "$dir/mlp.nnd" --threads 1 --profile 2>&1) || {
    echo "FAIL: nnd run --profile: $out"
    exit 1
}
echo "$out" | grep -q "^profile of the step (20 steps): " || {
    echo "FAIL: no profile header in: $out"
    exit 1
}
# The first product is x @ W1: 48 x 784 x 96 multiply-adds; its rate is 2 x that over
# its time per step.  Every call line has a rate, no loop line has one.
echo "$out" | awk '
    / call / { calls++; if ($0 !~ /GFLOP\/s/) { print "FAIL: no rate: " $0; bad = 1 } }
    / loop | reduce / { if ($0 ~ /GFLOP\/s/) { print "FAIL: a rate on a loop: " $0; bad = 1 } }
    / call / && !first { first = 1
        us = $5; rate = $8
        want = 2 * 48 * 784 * 96 / (us * 1e3)
        if (rate < want * 0.99 - 0.1 || rate > want * 1.01 + 0.1) {
            print "FAIL: x @ W1 at " us " us: " rate " GFLOP/s, want " want; bad = 1 } }
    END { if (calls < 4) { print "FAIL: " calls " call kernels"; bad = 1 } exit bad }' || {
    echo "$out"
    exit 1
}
echo "$out" | grep -q "^update rule: 76330 parameter values, " || {
    echo "FAIL: no update rule line (784 x 96 + 96 + 96 x 10 + 10 = 76330 values): $out"
    exit 1
}
# With a log, the logged steps run the step with the log's statistics: it has a table
# of its own, and each table is over the steps that ran its function (14 + 6 = 20:
# the first step is logged too),
# its update kernels timed with the statistics they compute.
sed 's|    steps = 20|    steps = 20\n    log every 4 steps to "'"$dir"'/logs": loss, grad_norm, histograms|' \
    "$dir/mlp.nnd" >"$dir/logged.nnd"
out=$("$nnd" run "$dir/logged.nnd" --threads 1 --profile 2>&1) || {
    echo "FAIL: nnd run --profile with a log: $out"
    exit 1
}
for want in "^profile of the step (14 steps): " \
    "^profile of the step with the log's statistics (6 steps): "; do
    echo "$out" | grep -q "$want" || {
        echo "FAIL: no '$want' in: $out"
        exit 1
    }
done
echo "$out" | awk '/^profile of the step/ { n++; if ($(NF - 5) + 0 <= 0) bad = 1 }
    END { exit n != 2 || bad }' || {
    echo "FAIL: a table without time in its kernels: $out"
    exit 1
}
[ "$(echo "$out" | grep -c '^update rule: 76330 parameter values, ')" = 2 ] || {
    echo "FAIL: not one update rule line per table: $out"
    exit 1
}
# Resumed from a checkpoint, the profile is over the steps this run ran (10 of 20).
sed 's|    steps = 20|    steps = 20\n    checkpoint every 10 steps to "'"$dir"'/ckpt"|' \
    "$dir/mlp.nnd" >"$dir/ckpt.nnd"
"$nnd" run "$dir/ckpt.nnd" --threads 1 --set steps=10 >"$dir/first.log" 2>&1 || {
    echo "FAIL: the first 10 steps:"
    cat "$dir/first.log"
    exit 1
}
out=$("$nnd" run "$dir/ckpt.nnd" --threads 1 --resume "$dir/ckpt" --profile 2>&1) || {
    echo "FAIL: nnd run --resume --profile: $out"
    exit 1
}
echo "$out" | grep -q "^profile of the step (10 steps): " || {
    echo "FAIL: a resumed run's profile is not over its own 10 steps: $out"
    exit 1
}
echo ok
