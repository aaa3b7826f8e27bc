#!/bin/sh
# summary.sh NND WORK: `nnd summary` of a small model with a frozen layer, batch
# norm (layer state) and `ema`: every row and figure, worked out by hand (fc1 is
# frozen: no gradient of its weights or its input; Adam's m and v and the average
# for each trainable parameter); then the same without `ema`.  The examples against PyTorch: tests/optim.
set -u
nnd=$1 work=$2
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 2
cat > f.nnd <<'NND'
use nn
use optim
model Net {
    fc1 = Dense(4, 8)
    bn = BatchNorm(8)
    fc2 = Dense(8, 2)
    fn forward(x: [B, 4]) = fc2(relu(bn(fc1(x))))
}
train {
    data train = tensors(x = [[0, 0, 0, 1], [0, 1, 0, 0]], y = [0, 1])
    net = Net()
    freeze net.fc1
    loss = cross_entropy(net(x), i32(y))
    opt = Adam(lr = 0.01)
    ema = 0.99
    batch = 2
}
NND
cat > want.txt <<'TXT'
parameter                    shape                     count
fc1.W                        [4, 8]                       32  frozen
fc1.b                        [8]                           8  frozen
bn.gamma                     [8]                           8  trainable
bn.beta                      [8]                           8  trainable
fc2.W                        [8, 2]                       16  trainable
fc2.b                        [2]                           2  trainable
total                                                     74  34 trainable, 40 frozen; 296 B
bn.running_mean              [8]                           8  layer state
bn.running_var               [8]                           8  layer state
optimizer state (with `ema` averages): 12 tensors, 102 values, 408 B
layer state: 16 values, 64 B
TXT
"$nnd" summary f.nnd > got.txt 2> err.txt || { cat err.txt; echo "FAIL: nnd summary"; exit 1; }
head -n 12 got.txt | diff want.txt - || { echo "FAIL: the table differs"; exit 1; }
grep -q "^step memory (activations, gradients, temporaries): [0-9.]* [KMG]*i*B per sample; " got.txt ||
    { cat got.txt; echo "FAIL: no step memory"; exit 1; }
grep -qx "FLOPs per sample (products, 2 per multiply-add): forward 96, backward 64" got.txt ||
    { cat got.txt; echo "FAIL: FLOPs"; exit 1; }
# without `ema`, the optimizer's state is Adam's m and v alone, and says so
grep -v "ema = " f.nnd > noema.nnd
"$nnd" summary noema.nnd > got.txt 2> err.txt || { cat err.txt; echo "FAIL: nnd summary noema.nnd"; exit 1; }
grep -qx "optimizer state: 8 tensors, 68 values, 272 B" got.txt ||
    { cat got.txt; echo "FAIL: the optimizer state without ema"; exit 1; }
"$nnd" summary > /dev/null 2>&1 && { echo "FAIL: no file accepted"; exit 1; }
echo "ok: summary"
