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
"$nnd" run sgd.nnd --resume ck/run1 > bad.log 2>&1 ||
    { cat bad.log; fail "an SGD run could not start from an NAdam checkpoint (SGD needs none of its state)"; }
sed 's/Dense(2, 8)/Dense(2, 9)/; s/Dense(8, 1)/Dense(9, 1)/; s/BatchNorm(8)/BatchNorm(9)/' xor.nnd > wide.nnd
"$nnd" run wide.nnd --resume ck/run1 > bad.log 2>&1 && fail "a checkpoint of another shape was accepted"
grep -q "a different shape or dtype for 'fc1.W'" bad.log || { cat bad.log; fail "wrong message"; }
echo "ok: refusals"
