#!/bin/sh
# gather.sh NND DIR: who gathers a batch (`nnd run --verbose`).  The calling thread
# when every product that reads x runs on it (too small to split across the pool);
# the pool when those products are split, and with a convolution reading x.  (Which
# threads gather moves no value: the gathers are copies, tested in runtime_idx.)
set -u
nnd=$1 dir=$2
fail=0
rm -rf "$dir" && mkdir -p "$dir" || exit 1
fm=/usr/share/datasets/fashion-mnist
write() { # write FILE LAYERS FORWARD X-TYPE SAMPLE-SHAPE
    cat >"$1" <<NND
use nn
use optim
model Net {
$2
    fn forward(x: $4) = $3
}
train {
    data train = idx("$fm/train-images-idx3-ubyte.gz", "$fm/train-labels-idx1-ubyte.gz",
                     scale = 1/255, shape = $5)
    net = Net()
    loss = cross_entropy(net(x), y)
    opt = Adam(lr = 1e-3)
    batch = 64
    steps = 3
}
NND
}
write "$dir/mlp.nnd" "    fc1 = Dense(784, 128)
    fc2 = Dense(128, 10)" "fc2(relu(fc1(x)))" "[B, 784]" "[784]"
write "$dir/cnn.nnd" "    conv = Conv2d(1, 4, 3, padding = 1)
    fc = Dense(4 * 28 * 28, 10)" "fc(flatten(relu(conv(x))))" "[B, 1, 28, 28]" "[1, 28, 28]"
check() { # check PATTERN ARGS...
    pattern=$1
    shift
    out=$("$nnd" run "$@" --verbose 2>&1)
    if [ $? -ne 0 ] || ! printf '%s\n' "$out" | grep -q "^batches: $pattern"; then
        echo "FAIL: nnd run $* --verbose: no line 'batches: $pattern' in:"
        printf '%s\n' "$out" | tail -20
        fail=1
    fi
}
# 784-128-10 at batch 2: 200k multiply-adds per product, under every split threshold
check "gathered by the calling thread" "$dir/mlp.nnd" --threads 2 --set batch=2
check "gathered by the calling thread" "$dir/mlp.nnd" --threads 1
# at batch 64: 6.4M, split on two threads
check "gathered by the pool's 2 threads" "$dir/mlp.nnd" --threads 2
check "gathered by the pool's 2 threads" "$dir/cnn.nnd" --threads 2 --set batch=2
exit $fail
