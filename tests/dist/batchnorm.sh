#!/bin/sh
# batchnorm.sh NND WORK: batch norm normalizes each rank's part of a batch, so a
# part of 1 sample (its unbiased variance 0/0) is refused before training, naming
# the ranks and the split, for a full batch and for the epoch's last one; parts of
# 2 or more train.
set -u
. "$(dirname "$0")/common.sh"
cat > bn.nnd <<'NND'
use nn
use optim
model M {
    fc1 = Dense(2, 4)
    bn = BatchNorm(4)
    fc2 = Dense(4, 1)
    fn forward(x: [B, 2]) -> [B, 1] = fc2(bn(fc1(x)))
}
train {
    data train = tensors(x = [[0, 0], [0, 1], [1, 0], [1, 1], [0.5, 0.5], [0.2, 0.9], [0.9, 0.1]],
                         y = [[0], [1], [1], [0], [0.5], [1], [1]])
    net = M()
    loss = mse(net(x), y)
    opt = SGD(lr = 0.1)
    batch = 4
    steps = 4
    eval train every 1 steps: mse(net(x), y)
    save "bn.safetensors"
}
NND
# refused NP OUT PATTERN ARGS...: a non-zero exit, no weights saved, the message
refused() {
    np=$1 out=$2 pattern=$3
    shift 3
    rm -f bn.safetensors
    mpi "$np" run bn.nnd "$@" > "$out" 2>&1 && { cat "$out"; fail "$out: not refused"; }
    grep -q "$pattern" "$out" || { cat "$out"; fail "$out: no message '$pattern'"; }
    [ -f bn.safetensors ] && fail "$out: saved weights"
    grep -q "nan" "$out" && { cat "$out"; fail "$out: trained"; }
    return 0
}
refused 2 full.out "nnd: batch = 2 on 2 ranks: each batch is split 1 + 1, ranks 0 and 1 get 1 sample, and 'bn.running_mean' is updated from statistics over each rank's part of the batch (batch norm), which need at least 2 samples" --set batch=2 --set drop_last=true
refused 3 three.out "batch = 5 on 3 ranks: each batch is split 1 + 2 + 2, rank 0 gets 1 sample" --set batch=5 --set drop_last=true
refused 2 last.out "nnd: the last batch of each epoch holds 3 samples (7 samples, batch 4), split 1 + 2 on 2 ranks: rank 0 gets 1 sample, and 'bn.running_mean' is updated"
# whole parts of 2 train, and their statistics are numbers
mpi 2 run bn.nnd --set drop_last=true > ok.out 2>&1 || { cat ok.out; fail "parts of 2"; }
grep -q "nan" ok.out && { cat ok.out; fail "NaN with parts of 2"; }
mpi 2 run bn.nnd --set batch=7 > ok7.out 2>&1 || { cat ok7.out; fail "batch 7 on 2 ranks: 3 + 4"; }
echo "ok: dist_batchnorm"
