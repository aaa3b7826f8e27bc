#!/bin/sh
# big_batch.sh NND WORKDIR: a batch larger than the data sets is one batch of all
# the samples, as PyTorch's DataLoader gives: the same losses, metrics and weights
# as a batch of exactly that many, with buffers for the samples there are (not an
# out-of-memory error for a batch of a billion), on one thread or a pool that
# gathers ahead, with accumulate and drop_last; and a batch past 9e15 names the limit.
set -u
nnd=$1 work=$2
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
fail() { echo "FAIL: $*"; exit 1; }
cat > bb.nnd <<'NND'
use nn
use optim
model M {
    fc = Dense(2, 4)
    out = Dense(4, 1)
    fn forward(x) = out(tanh(fc(x)))
}
train {
    data train = tensors(x = [[1, 0], [0, 1], [1, 1], [0, 0], [2, 1]], y = [[1], [2], [3], [0], [4]])
    data val = tensors(x = [[1, 2], [2, 0], [0, 2]], y = [[3], [2], [2]])
    net = M()
    loss = mse(net(x), y)
    eval val every epoch: loss
    opt = SGD(lr = 0.05)
    batch = 5
    epochs = 3
}
NND
# the losses, the metrics and the weights, without the speeds
results() { sed -e 's/  [0-9.]*[kMG]* samples\/s//' -e '/^training on/d'; }
for args in "--threads 1" "--threads 2" "--set accumulate=2 --threads 1" "--set drop_last=true --threads 1"; do
    # shellcheck disable=SC2086
    "$nnd" run bb.nnd --print-params $args 2>&1 | results > want || { cat want; fail "batch 5 $args"; }
    grep -q "eval val:  loss" want || { cat want; fail "no eval"; }
    # shellcheck disable=SC2086
    "$nnd" run bb.nnd --print-params --set batch=1000000000 $args 2>&1 | results > got ||
        { cat got; fail "batch 1000000000 $args"; }
    cmp -s want got || { diff want got; fail "batch 1000000000 $args: not what batch 5 gives"; }
done
"$nnd" check bb.nnd --set batch=1e16 > err 2>&1 && fail "batch 1e16 taken"
grep -q "^nnd: error: --set batch=1e16: batch must be a whole number from 1 to 9e15, got 1e+16" err ||
    { cat err; fail "batch 1e16: no limit named"; }
echo "ok: a batch larger than the data is all of it, with the same results"
