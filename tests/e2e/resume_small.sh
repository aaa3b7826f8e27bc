#!/bin/sh
# Checkpoints on a small program (fast enough for the sanitizer build): resuming
# from an older checkpoint gives the same bits, `keep` prunes, and a checkpoint
# that does not fit the run is refused with a message.  usage: resume_small.sh NND WORKDIR
set -u
nnd=$1 work=$2
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
cat > xor.nnd <<'NND'
use nn
use optim
model Xor {
    fc1 = Dense(2, 8)
    bn = BatchNorm(8)
    fc2 = Dense(8, 1)
    fn forward(x: [B, 2]) = sigmoid(fc2(tanh(bn(fc1(x)))))
}
train {
    data train = tensors(x = [[0, 0], [0, 1], [1, 0], [1, 1], [0.5, 0.5], [0.2, 0.9]],
                         y = [[0], [1], [1], [0], [0], [1]])
    net = Xor()
    loss = mse(net(x), y)
    opt = NAdam(lr = 0.02)
    batch = 4
    steps = 200
    seed = 5
    checkpoint every 30 steps to "ck/run1" keep 2
    save "final.safetensors"
}
NND
fail() { echo "FAIL: $*"; exit 1; }
"$nnd" run xor.nnd > full.log 2>&1 || { cat full.log; fail "the first run"; }
mv final.safetensors full.safetensors
n=$(ls ck/run1 | wc -l)
[ "$n" -eq 2 ] || fail "keep 2 left $n checkpoints: $(ls ck/run1)"
[ -e ck/run1/step-00000200.safetensors ] && [ -e ck/run1/step-00000180.safetensors ] ||
    fail "expected steps 180 and 200, found $(ls ck/run1)"
"$nnd" run xor.nnd --resume ck/run1/step-00000180.safetensors > r.log 2>&1 || { cat r.log; fail "resume"; }
grep -q "resuming from ck/run1/step-00000180.safetensors: step 180 of 200" r.log || { cat r.log; fail "no resume line"; }
! grep -q "warning" r.log || { cat r.log; fail "a warning on the run's own checkpoint"; }
cmp final.safetensors full.safetensors || fail "resumed from step 180: the weights differ"
echo "ok: resumed from step 180 of 200: bit-identical"
# refusals
"$nnd" run xor.nnd --resume full.safetensors > bad.log 2>&1 && fail "a saved model was taken for a checkpoint"
grep -q "not an nnd checkpoint" bad.log || { cat bad.log; fail "wrong message"; }
"$nnd" run xor.nnd --set batch=2 --resume ck/run1 > bad.log 2>&1 && fail "a different batch size was accepted"
grep -q "with batch 4, this one has 2" bad.log || { cat bad.log; fail "wrong message"; }
"$nnd" run xor.nnd --resume ck/none > bad.log 2>&1 && fail "a missing checkpoint was accepted"
grep -q "ck/none" bad.log || { cat bad.log; fail "wrong message"; }
sed 's/NAdam(lr = 0.02)/SGD(lr = 0.02)/' xor.nnd > sgd.nnd
"$nnd" run sgd.nnd --set steps=220 --resume ck/run1 > bad.log 2>&1 ||
    { cat bad.log; fail "an SGD run could not start from an NAdam checkpoint (SGD needs none of its state)"; }
grep -q "holds no checkpoint of this program: trying the newest" bad.log || { cat bad.log; fail "no note on the choice"; }
# NAdam's state is no tensor of the SGD program: left out, and named
grep -q "^warning: ck/run1/step-00000200.safetensors: 18 tensors the model does not have, not loaded: 'fc1.W.m', 'fc1.W.v', 'fc1.W.mu_product' and 15 more$" bad.log ||
    { cat bad.log; fail "no warning on the tensors left out"; }
sed 's/Dense(2, 8)/Dense(2, 9)/; s/Dense(8, 1)/Dense(9, 1)/; s/BatchNorm(8)/BatchNorm(9)/' xor.nnd > wide.nnd
"$nnd" run wide.nnd --resume ck/run1 > bad.log 2>&1 && fail "a checkpoint of another shape was accepted"
grep -q "a different shape or dtype for 'fc1.W'" bad.log || { cat bad.log; fail "wrong message"; }
# every field of the training point is checked: a run at its end, and files whose
# metadata was damaged or forged
# a checkpoint at the run's end (a run killed before its save) finishes the run: no
# step trained, the save written with the same bits
rm -f final.safetensors
"$nnd" run xor.nnd --resume ck/run1 > end.log 2>&1 || { cat end.log; fail "a run at its end did not finish"; }
grep -q "step 200/200: the run is at its end; nothing is left to train" end.log || { cat end.log; fail "no note at the end"; }
cmp final.safetensors full.safetensors || fail "resumed at its end: the saved weights differ"
forge() { # forge KEY VALUE OUT: ck/run1/step-00000180.safetensors with one metadata value replaced
    python3 - "$1" "$2" "$3" <<'PY'
import json, struct, sys
key, value, out = sys.argv[1:]
b = open("ck/run1/step-00000180.safetensors", "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
h["__metadata__"][key] = value
hb = json.dumps(h).encode()
hb += b" " * (-len(hb) % 8)
open(out, "wb").write(struct.pack("<Q", len(hb)) + hb + b[8 + n:])
PY
}
refuse() { # refuse KEY VALUE MESSAGE
    forge "$1" "$2" forged.safetensors
    "$nnd" run xor.nnd --resume forged.safetensors > bad.log 2>&1 && fail "$1 = $2 was accepted"
    grep -q -- "$3" bad.log || { cat bad.log; fail "$1 = $2: wrong message"; }
}
refuse step -5 "its metadata 'step' is -5, which is not a count of steps"
refuse step -9223372036854775808 "its metadata 'step' is -9223372036854775808"
refuse step 9223372036854775808 "its metadata 'step' is not a whole number"
refuse step 250 "its metadata 'step' is 250, past the end of this run"
refuse step abc "its metadata 'step' is not a whole number"
refuse epoch 3 "its metadata 'epoch' is 3, but step 180 is in epoch 89"
refuse loss_sum nan "its metadata 'loss_sum' is not a finite number"
refuse loss_sum x "its metadata 'loss_sum' is not a finite number"
refuse loss_n -1 "its metadata 'loss_n' is -1"
echo "ok: refusals"
# several runs in one checkpoint directory: each rotates only its own checkpoints,
# none overwrites another's, and --resume DIR takes this run's
rm -rf ck
"$nnd" run xor.nnd > a.log 2>&1 || { cat a.log; fail "run A"; }                     # 180, 200
"$nnd" run xor.nnd --set steps=100 > b.log 2>&1 || { cat b.log; fail "run B"; }     # 90, 100
grep -q "warning: ck/run1 holds 2 checkpoints of other runs" b.log || { cat b.log; fail "no warning"; }
grep -q "checkpoint: ck/run1/step-00000100.safetensors" b.log || { cat b.log; fail "no path"; }
[ "$(ls ck/run1 | tr '\n' ' ')" = "step-00000090.safetensors step-00000100.safetensors step-00000180.safetensors step-00000200.safetensors " ] ||
    fail "each run keeps its own 2: found $(ls ck/run1)"
"$nnd" run xor.nnd --set opt.lr=0.05 > c.log 2>&1 && fail "run C overwrote run B's checkpoint at step 90"
grep -q "ck/run1 holds checkpoints of another run (ck/run1/step-00000090.safetensors among them) that this run would overwrite" c.log ||
    { cat c.log; fail "wrong message"; }
rm ck/run1/step-00000100.safetensors
"$nnd" run xor.nnd --set steps=100 --resume ck/run1 > r.log 2>&1 || { cat r.log; fail "resume B"; }
grep -q "resuming from ck/run1/step-00000090.safetensors: step 90 of 100" r.log || { cat r.log; fail "B resumed from another run"; }
echo "ok: two runs in one directory, each with its own checkpoints"
