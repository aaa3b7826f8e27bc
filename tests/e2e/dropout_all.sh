#!/bin/sh
# dropout_all.sh NND WORKDIR: dropout with p = 1 zeroes everything, as in PyTorch:
# the loss stays finite and the layer after it gets no gradient for its weights
# (they end as with lr = 0), whether p is known at compile time or a run-time
# hyper-parameter (where 1 / (1 - p) must not turn the other branch into NaN).
set -u
nnd=$1 work=$2
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
fail() { echo "FAIL: $*"; exit 1; }
cat > p1.nnd <<'NND'
use nn
use optim
model M(rate = 1) {
    fc = Dense(4, 1)
    drop = Dropout(rate)
    fn forward(x: [B, 4]) = fc(drop(x))
}
train {
    data train = tensors(x = [[1, 2, 3, 4], [5, 6, 7, 8]], y = [[0], [1]])
    let r = 1
    net = M(r)
    loss = mse(net(x), y)
    opt = SGD(lr = 0.1)
    batch = 2
    steps = 3
}
NND
sed 's/M(r)/M()/' p1.nnd > p1_const.nnd
for f in p1 p1_const; do
    "$nnd" run $f.nnd --print-params > $f.log 2>&1 || { cat $f.log; fail "$f.nnd"; }
    grep -q "final training loss 0.3524$" $f.log || { cat $f.log; fail "$f.nnd: a wrong or non-finite loss"; }
    "$nnd" run $f.nnd --print-params --set opt.lr=0 > $f.lr0.log 2>&1 || { cat $f.lr0.log; fail "$f.nnd lr=0"; }
    [ "$(grep '^fc.W' $f.log)" = "$(grep '^fc.W' $f.lr0.log)" ] || fail "$f.nnd: fc.W got a gradient"
done
echo "ok: dropout with p = 1 gives zeros and no gradient"
