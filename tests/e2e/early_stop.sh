#!/bin/sh
# early_stop.sh NND WORK: early stopping across a resume, on XOR: the checkpoint
# carries early stopping's state, so a run resumed after its best step saves the
# same bits as the run never stopped.  Then a validation split of Fashion-MNIST's
# training file: a small MLP overfits 1000 samples, the run stops when the
# validation loss has not improved for 2 evaluations, and the saved weights are the
# best epoch's (nnd predict on the split gives its loss again), not the last.
set -u
nnd=$1 work=$2
fail() { echo "FAIL: $*"; exit 1; }
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 2
# a high rate from step 8 on ruins the model: the best is at step 9, before the
# checkpoint at step 10
cat > xor.nnd <<'NND'
use nn
use optim
model Xor(hidden = 8) {
    fc1 = Dense(2, hidden)
    fc2 = Dense(hidden, 1)
    fn forward(x: [B, 2]) -> [B, 1] = sigmoid(fc2(tanh(fc1(x))))
}
train {
    data train = tensors(x = [[0, 0], [0, 1], [1, 0], [1, 1]], y = [[0], [1], [1], [0]])
    data val = tensors(x = [[0, 0], [0, 1], [1, 0], [1, 1]], y = [[0], [1], [1], [0]])
    net = Xor()
    loss = mse(net(x), y)
    opt = Adam(lr = if step < 8 then 0.05 else 2)
    batch = 4
    steps = 20
    seed = 1
    eval val every 1 steps: loss, score = 1 - loss
    early_stop = "val.loss"
    patience = 100
    checkpoint every 10 steps to "ck"
    save "xor.safetensors"
}
NND
sed 's/early_stop = "val.loss"/early_stop = "max val.score"/' xor.nnd > xor_max.nnd
# resumed_same NAME FILE SETTINGS...: the run, and the run resumed from its
# checkpoint at step 10, save the same bits and report the same best
resumed_same() {
    name=$1 file=$2
    shift 2
    rm -rf ck ck10
    "$nnd" run $file "$@" > $name.full.log 2>&1 || { cat $name.full.log; fail "$name: the run"; }
    mv xor.safetensors $name.full.safetensors
    mkdir ck10 && cp ck/step-00000010.safetensors ck10/ && rm -rf ck
    "$nnd" run $file "$@" --resume ck10 > $name.resumed.log 2>&1 ||
        { cat $name.resumed.log; fail "$name: the resumed run"; }
    grep -q "warning" $name.resumed.log && { cat $name.resumed.log; fail "$name: a warning"; }
    grep "^best\|^early stop" $name.full.log > $name.full.best
    grep "^best\|^early stop" $name.resumed.log > $name.resumed.best
    cmp -s $name.full.best $name.resumed.best ||
        fail "$name: resumed at step 10, '$(cat $name.resumed.best)', not '$(cat $name.full.best)'"
    cmp xor.safetensors $name.full.safetensors || fail "$name: resumed at step 10, the saved weights differ"
}
resumed_same min xor.nnd
grep -q "^best val loss 0.19464 at step 9 (epoch 9): its weights are restored$" min.full.log ||
    { cat min.full.log; fail "the best is not at step 9"; }
resumed_same max xor_max.nnd
grep -q "^best val score 0.80536 at step 9 (epoch 9): its weights are restored$" max.full.log ||
    { cat max.full.log; fail "the best score is not at step 9"; }
# the count of evaluations without improvement goes on too: 1 at the checkpoint
resumed_same patience xor.nnd --set patience=5
grep -q "^early stop at step 14: val loss has not improved by more than 0 for 5 evaluations$" patience.full.log ||
    { cat patience.full.log; fail "no early stop at step 14"; }
# the stop writes no checkpoint, and none is named
grep -q "^checkpoint: " patience.full.log && { cat patience.full.log; fail "a checkpoint named after the early stop"; }
# a checkpoint at the run's end: nothing trained, the best restored as before
rm -rf ck
"$nnd" run xor.nnd > end.full.log 2>&1 || { cat end.full.log; fail "the run"; }
"$nnd" run xor.nnd --resume ck/step-00000020.safetensors > end.log 2>&1 ||
    { cat end.log; fail "resumed at the end"; }
grep -q "^best val loss 0.19464 at step 9 (epoch 9): its weights are restored$" end.log ||
    { cat end.log; fail "resumed at the end: not the best of step 9"; }
cmp xor.safetensors min.full.safetensors || fail "resumed at the end: the saved weights differ"
# without the state (an older nnd's checkpoint): early stopping starts over, with a warning
python3 - <<'PY'
import json, struct
b = open("ck/step-00000010.safetensors", "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
meta = {k: v for k, v in h.pop("__metadata__").items() if not k.startswith("early_stop")}
data, at, out = b"", 0, {"__metadata__": meta}
for k, v in sorted(h.items(), key=lambda kv: kv[1]["data_offsets"][0]):
    if k.startswith("early_stop/"):
        continue
    lo, hi = v["data_offsets"]
    data += b[8 + n + lo:8 + n + hi]
    out[k] = dict(v, data_offsets=[at, at + hi - lo])
    at += hi - lo
hb = json.dumps(out).encode()
hb += b" " * (-len(hb) % 8)
open("old.safetensors", "wb").write(struct.pack("<Q", len(hb)) + hb + data)
PY
"$nnd" run xor.nnd --resume old.safetensors > old.log 2>&1 || { cat old.log; fail "resumed from an old checkpoint"; }
grep -q "^warning: old.safetensors carries no early stopping state (its run did not set early_stop, or an older nnd wrote it): early stopping starts over from step 10$" old.log ||
    { cat old.log; fail "no warning on a checkpoint without early stopping's state"; }
# a state that does not fit the checkpoint is refused, and named
python3 - <<'PY'
import json, struct
b = open("ck/step-00000010.safetensors", "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
h["__metadata__"]["early_stop_best_step"] = "11"
hb = json.dumps(h).encode()
hb += b" " * (-len(hb) % 8)
open("forged.safetensors", "wb").write(struct.pack("<Q", len(hb)) + hb + b[8 + n:])
PY
"$nnd" run xor.nnd --resume forged.safetensors > forged.log 2>&1 && fail "a best step after the checkpoint's was accepted"
grep -q "^nnd: --resume: forged.safetensors: its metadata 'early_stop_best_step' is 11, not a step from 1 to the checkpoint's 10$" forged.log ||
    { cat forged.log; fail "wrong message"; }
echo "ok: early stopping resumed from step 10: the same best and the same bits"
fm=/usr/share/datasets/fashion-mnist
[ -e $fm/train-images-idx3-ubyte.gz ] || { echo "skipped: no Fashion-MNIST"; exit 77; }
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
