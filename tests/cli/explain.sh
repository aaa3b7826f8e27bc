#!/bin/sh
# explain.sh NND WORK: `nnd explain` of small models, the whole output.  A LayerNorm
# first: its gain's gradient (a sum over the batch, reshaped) is still `g`, read
# once per element.  AdamW without decay_vectors: the LayerNorm's gain and bias and
# the Dense bias are not decayed, the Dense weights are, so they are two rules.
set -u
nnd=$1 work=$2
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 2
fail=0
check() { # NAME: explain NAME.nnd and compare with NAME.want
    if ! "$nnd" explain "$1.nnd" > "$1.out" 2>&1; then
        cat "$1.out"
        echo "FAIL: nnd explain $1.nnd"
        fail=1
    elif ! diff -u "$1.want" "$1.out"; then
        echo "FAIL: nnd explain $1.nnd"
        fail=1
    fi
}
cat > sgd.nnd <<'NND'
use nn
use optim
model M {
    ln = LayerNorm(2)
    fc = Dense(2, 1)
    fn forward(x: [B, 2]) -> [B, 1] = fc(ln(x))
}
train {
    data train = tensors(x = [[0, 1], [1, 0]], y = [[0], [1]])
    net = M()
    loss = mse(net(x), y)
    opt = SGD()
    batch = 2
}
NND
cat > sgd.want <<'TXT'
opt = SGD, for ln.gamma [2] (the same for 3 more parameters):
    w' = w - lr * g
    memory: reads 2 and writes 1 tensors shaped like w: 12 bytes per element, 0.0 MB per step for the 7 values of this group

TXT
check sgd
sed 's/SGD()/AdamW(lr = 1, wd = 0.5, decay_vectors = false)/' sgd.nnd > adamw.nnd
cat > adamw.want <<'TXT'
opt = AdamW, for ln.gamma [2] (the same for 2 more parameters):
    m' = beta1 * m + (1 - beta1) * g
    v' = beta2 * v + (1 - beta2) * (g * g)
    w' = w - lr * (m' * (1 / (1 - beta1^t)) / (sqrt(v' * (1 / (1 - beta2^t))) + eps) + 0 * w)
    memory: reads 4 and writes 3 tensors shaped like w: 28 bytes per element, 0.0 MB per step for the 5 values of this group

opt = AdamW, for fc.W [2, 1]:
    m' = beta1 * m + (1 - beta1) * g
    v' = beta2 * v + (1 - beta2) * (g * g)
    w' = w - lr * (m' * (1 / (1 - beta1^t)) / (sqrt(v' * (1 / (1 - beta2^t))) + eps) + wd * w)
    memory: reads 4 and writes 3 tensors shaped like w: 28 bytes per element, 0.0 MB per step for the 2 values of this group

TXT
check adamw
exit $fail
