#!/bin/sh
# threads.sh NND DIR: what runs on the calling thread and what on the pool
# (`nnd run --verbose`).  The default thread count is the CPUs the process may use:
# one under `taskset -c 0`.  Who gathers a batch: the calling thread when every product
# that reads x runs on it (too small to split across the pool); the pool when those
# products are split, and with a convolution reading x.  (Which threads gather moves
# no value: the gathers are copies, tested in runtime_idx.)  A weight's update loop is
# split across the pool ("par") unless every product reading the weight runs on the
# calling thread.  And how each convolution is computed (Winograd or im2col).
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
check "gathered by the pool's 2 threads, each next one during the step (from k2 on" "$dir/mlp.nnd" --threads 2
check "gathered by the pool's 2 threads" "$dir/cnn.nnd" --threads 2 --set batch=2
# 784-2048-16-10 at batch 2: x @ W1 has 3.2M multiply-adds (split on every CPU), h @ W2
# 65k (on none); both weights have enough elements for a parallel loop
write "$dir/wide.nnd" "    fc1 = Dense(784, 2048)
    fc2 = Dense(2048, 16)
    fc3 = Dense(16, 10)" "fc3(relu(fc2(relu(fc1(x)))))" "[B, 784]" "[784]"
out=$("$nnd" run "$dir/wide.nnd" --threads 2 --set batch=2 --set steps=1 --verbose 2>&1)
w1=$(printf '%s\n' "$out" | grep -E '^ +k[0-9]+ +loop +\[784, 2048\] +par .*param\[0\]' | head -1)
w2=$(printf '%s\n' "$out" | grep -E '^ +k[0-9]+ +loop +\[2048, 16\] .*param\[2\]' | head -1)
if [ -z "$w1" ] || [ -z "$w2" ] || printf '%s\n' "$w2" | grep -q ' par '; then
    echo "FAIL: W1's update should be split (par), W2's not; --verbose printed:"
    printf '%s\n' "$out" | grep -E 'loop .*param'
    fail=1
fi
# one CPU in the affinity mask: one thread by default, as many as asked with --threads
if command -v taskset >/dev/null 2>&1; then
    for want in "1 thread" "2 threads"; do
        set -- "$dir/mlp.nnd"
        [ "$want" = "2 threads" ] && set -- "$dir/mlp.nnd" --threads 2
        out=$(taskset -c 0 "$nnd" run "$@" --verbose 2>&1)
        if [ $? -ne 0 ] || ! printf '%s\n' "$out" | grep -q "compiled, $want\$" ||
            ! printf '%s\n' "$out" | grep -q "^threads: ${want%% *} (the process may use 1 of the"; then
            echo "FAIL: taskset -c 0 nnd run $* --verbose: no 'compiled, $want' or threads line in:"
            printf '%s\n' "$out" | grep -E "^threads|compiled"
            fail=1
        fi
    done
fi
# how each convolution runs: a 3x3 of 16 channels in and out by Winograd's F(4x4, 3x3)
# on a CPU with AVX-512 (F and VL), im2col elsewhere and with NND_WINOGRAD=0; the 1x4
# first layer by im2col always
write "$dir/conv.nnd" "    conv1 = Conv2d(1, 16, 3, padding = 1)
    conv2 = Conv2d(16, 16, 3, padding = 1)
    fc = Dense(16 * 28 * 28, 10)" "fc(flatten(relu(conv2(relu(conv1(x))))))" "[B, 1, 28, 28]" \
    "[1, 28, 28]"
if grep -qw avx512f /proc/cpuinfo && grep -qw avx512vl /proc/cpuinfo; then
    want="Winograd F(4x4, 3x3)"
else
    want="im2col products"
fi
conv_line() { # conv_line PATTERN [ENV] ARGS...: a --verbose line for conv2
    pattern=$1
    shift
    out=$(env "$@" --set steps=1 --verbose 2>&1)
    if ! printf '%s\n' "$out" | grep -qxF "$pattern"; then
        echo "FAIL: $*: no line '$pattern' in:"
        printf '%s\n' "$out" | grep conv2d
        fail=1
    fi
}
conv_line "conv2d [4, 16, 28, 28] by [16, 16, 3, 3]: $want" "$nnd" run "$dir/conv.nnd" --set batch=4
conv_line "conv2d [4, 1, 28, 28] by [16, 1, 3, 3]: im2col products" "$nnd" run "$dir/conv.nnd" \
    --set batch=4
conv_line "conv2d [4, 16, 28, 28] by [16, 16, 3, 3]: im2col products" NND_WINOGRAD=0 "$nnd" run \
    "$dir/conv.nnd" --set batch=4
exit $fail
