#!/bin/sh
# let_modes.sh NND WORKDIR: a model called through a train-block `let` behaves as if
# the call were written in place: batch norm's running statistics move once per
# step, and eval metrics see eval mode (dropout off, running statistics).  The same
# program written both ways trains to the same bits and prints the same metrics.
set -u
nnd=$1 work=$2
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
fail() { echo "FAIL: $*"; exit 1; }
data='tensors(x = [[1.8, 0.4, 1.0, 2.2], [1.9, -1.0, 0.9, -0.2], [0.1, 0.4, -0.1, 1.5],
                   [0.8, -0.3, -0.6, 0.2], [-1.1, 0.1, 1.3, -0.9], [0.3, 1.5, -0.2, -0.4],
                   [-0.5, -1.2, 0.7, 0.6], [1.1, 0.9, -1.3, 0.3], [-0.2, 0.6, 0.4, -1.7],
                   [0.9, -0.8, 0.2, 1.1], [-1.4, 0.3, -0.9, 0.5], [0.6, 1.2, 1.6, -0.3],
                   [-0.7, -0.4, 0.1, 0.9], [1.3, 0.2, -0.4, -1.1], [0.2, -1.6, 0.8, 0.4],
                   [-0.9, 0.7, -1.2, 1.2]],
                y = [2, 1, 1, 1, 1, 2, 0, 0, 1, 1, 2, 0, 1, 2, 0, 1])'
program() { # program SAVE BODY...: the same model and settings, the loss and metrics as given
    cat <<NND
use nn
use optim
model M {
    fc1 = Dense(4, 16)
    bn = BatchNorm(16)
    drop = Dropout(0.5)
    fc2 = Dense(16, 3)
    fn forward(x) = fc2(drop(relu(bn(fc1(x)))))
}
train {
    data train = $data
    data test = $data
    net = M()
    batch = 8
    epochs = 3
    seed = 4
    opt = Adam(lr = 0.01)
    save "$1"
NND
    shift
    printf '    %s\n' "$@"
    echo "}"
}
program lets.safetensors "let logits = net(x)" "let ce = cross_entropy(logits, i32(y))" "loss = ce" \
    "eval test every epoch: acc = accuracy(logits, i32(y)), ce = ce" > lets.nnd
program inline.safetensors "loss = cross_entropy(net(x), i32(y))" \
    "eval test every epoch: acc = accuracy(net(x), i32(y)), ce = cross_entropy(net(x), i32(y))" > inline.nnd
"$nnd" run lets.nnd > lets.log 2>&1 || { cat lets.log; fail "the let form"; }
"$nnd" run inline.nnd > inline.log 2>&1 || { cat inline.log; fail "the inline form"; }
cmp lets.safetensors inline.safetensors || fail "the let form trained other weights or batch-norm statistics"
grep "eval test" lets.log > lets.eval
grep "eval test" inline.log > inline.eval
[ -s lets.eval ] && cmp lets.eval inline.eval || { cat lets.eval inline.eval; fail "the metrics differ"; }
echo "ok: let and inline forms give the same bits and metrics"
