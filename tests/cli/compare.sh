#!/bin/sh
# compare.sh NND WORK: nnd compare trains a row per --opt rule or per combination of
# the values of its --sweep options (the last one varying fastest), each row labeled
# with its values; a value that is not a number fails its row, not the others.
set -u
nnd=$1 work=$2
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 2
fail() { echo "FAIL: $*"; exit 1; }
cat > net.nnd <<'NND'
use nn
use optim
model Net() {
    fc = Dense(2, 1)
    fn forward(x: [B, 2]) = fc(x)
}
train {
    data train = tensors(x = [[0, 0], [0, 1], [1, 0], [1, 1]], y = [[0], [1], [1], [0]])
    net = Net()
    loss = mse(net(x), y)
    opt = SGD(lr = 0.1)
    batch = 2
    steps = 4
    seed = 1
}
NND
"$nnd" compare net.nnd --sweep accumulate=1,2 --sweep opt.lr=0.1,0.2,0.3 > out 2>&1 ||
    { cat out; fail "two sweeps"; }
[ "$(grep -c '^\[[0-9]/6\] ' out)" -eq 6 ] || { cat out; fail "not 6 rows"; }
grep -q "^\[1/6\] accumulate=1 opt.lr=0.1$" out && grep -q "^\[6/6\] accumulate=2 opt.lr=0.3$" out ||
    { cat out; fail "row labels"; }
for a in 1 2; do
    for lr in 0.1 0.2 0.3; do
        grep -q "^accumulate=$a opt.lr=$lr  *[0-9.e-]*  *[0-9]*$" out ||
            { cat out; fail "no table row accumulate=$a opt.lr=$lr"; }
    done
done
# rows with the same opt.lr and accumulate 1 and 2 differ (both sweeps reach the program)
l1=$(awk '$1 == "accumulate=1" && $2 == "opt.lr=0.3" {print $3}' out)
l2=$(awk '$1 == "accumulate=2" && $2 == "opt.lr=0.3" {print $3}' out)
[ -n "$l1" ] && [ "$l1" != "$l2" ] || { cat out; fail "accumulate did not reach the rows: $l1 $l2"; }
"$nnd" compare net.nnd --sweep opt.lr=0.1,x --sweep seed=1 > out 2>&1 && { cat out; fail "a bad value passed"; }
grep -q "^opt.lr=x seed=1  *failed: 'x' is not a number$" out || { cat out; fail "bad value row"; }
grep -q "^opt.lr=0.1 seed=1  *[0-9]" out || { cat out; fail "the good row did not run"; }
echo "ok: nnd compare"
