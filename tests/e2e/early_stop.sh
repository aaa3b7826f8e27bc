#!/bin/sh
# early_stop.sh NND WORK: a validation split of Fashion-MNIST's training file and
# early stopping: a small MLP overfits 1000 samples, the run stops when the
# validation loss has not improved for 2 evaluations, and the saved weights are the
# best epoch's (nnd predict on the split gives its loss again), not the last.
set -u
nnd=$1 work=$2
fail() { echo "FAIL: $*"; exit 1; }
fm=/usr/share/datasets/fashion-mnist
[ -e $fm/train-images-idx3-ubyte.gz ] || { echo "skipped: no Fashion-MNIST"; exit 77; }
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 2
cat > es.nnd <<'NND'
use nn
use optim
let fmnist = "/usr/share/datasets/fashion-mnist/"
train {
    data train = idx(fmnist + "train-images-idx3-ubyte.gz", fmnist + "train-labels-idx1-ubyte.gz",
                     scale = 1/255, shape = [784], split = [0, 0.9], limit = 1000)
    data val = idx(fmnist + "train-images-idx3-ubyte.gz", fmnist + "train-labels-idx1-ubyte.gz",
                   scale = 1/255, shape = [784], split = [0.9, 1], limit = 2000)
    net = Sequential([Dense(784, 256), relu, Dense(256, 10)])
    loss = cross_entropy(net(x), y)
    opt = Adam(lr = 3e-3)
    batch = 50
    epochs = 100
    seed = 2
    eval val every epoch: accuracy(net(x), y), loss
    early_stop = "val.loss"
    patience = 2
    log every 20 steps to "log": loss
    save "es.safetensors"
}
NND
"$nnd" run es.nnd --name es > run.out 2>&1 || { cat run.out; fail "training"; }
cat run.out
grep -q "^early stop at step [0-9]*: val loss has not improved by more than 0 for 2 evaluations$" run.out ||
    fail "no early stop"
best=$(sed -n 's/^best val loss \([0-9.e-]*\) at step \([0-9]*\) (epoch [0-9]*): its weights are restored$/\1/p' run.out)
[ -n "$best" ] || fail "the best weights were not restored"
grep -q "^epoch 100/100" run.out && fail "ran every epoch"
"$nnd" predict es.nnd --weights es.safetensors --data val --metrics > pred.out 2>&1 || { cat pred.out; fail "predict"; }
got=$(sed -n 's/^val: loss \([0-9.e-]*\)$/\1/p' pred.out)
awk -v a="$best" -v b="$got" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-4 * a) }' ||
    fail "the saved weights' val loss is $got, the best was $best"
grep -q ",early_stop/best_step," log/es/metrics.csv || fail "the stop is not logged"
echo "ok: early stop, best val loss $best restored and saved"
