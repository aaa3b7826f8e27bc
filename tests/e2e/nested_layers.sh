#!/bin/sh
# nested_layers.sh NND WORKDIR: a Sequential inside a Sequential, and a layer holding
# a Sequential inside one, are other instances, not recursion: both train to the
# losses of the flat Sequential (initializers that do not depend on the names).
set -u
nnd=$1 work=$2
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
fail() { echo "FAIL: $*"; exit 1; }
program() { # program MEMBER: the model's member s, the rest the same
    cat <<NND
use nn
use optim
layer Block(n, m) {
    s = Sequential([Dense(n, m, init = constant(0.3)), relu])
    fn forward(x) = s(x)
}
model M {
    $1
    fn forward(x: [B, 4]) -> [B, 1] = s(x)
}
train {
    data train = tensors(x = [[1, 2, 3, 4], [5, 6, 7, 8], [-1, 0, 2, 1]], y = [[0], [1], [0.5]])
    net = M()
    loss = mse(net(x), y)
    opt = SGD(lr = 0.001)
    batch = 3
    steps = 4
}
NND
}
program "s = Sequential([Dense(4, 8, init = constant(0.3)), relu, Dense(8, 1, init = constant(-0.2))])" > flat.nnd
program "s = Sequential([Sequential([Dense(4, 8, init = constant(0.3)), relu]), Dense(8, 1, init = constant(-0.2))])" > nested.nnd
program "s = Sequential([Block(4, 8), Dense(8, 1, init = constant(-0.2))])" > block.nnd
for f in flat nested block; do
    "$nnd" run $f.nnd > $f.log 2>&1 || { cat $f.log; fail "$f.nnd"; }
    sed -n 's/.*\(step [0-9]*\/[0-9]*  loss [^ ]*\).*/\1/p' $f.log > $f.loss
done
[ "$(wc -l < flat.loss)" -eq 4 ] || { cat flat.log; fail "no losses in flat.log"; }
cmp flat.loss nested.loss || { cat flat.loss nested.loss; fail "the nested Sequential trains otherwise"; }
cmp flat.loss block.loss || { cat flat.loss block.loss; fail "the layer in a Sequential trains otherwise"; }
echo "ok: nested Sequentials train as the flat one"
