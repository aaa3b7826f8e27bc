#!/bin/sh
# drop_last.sh NND WORKDIR: `drop_last = true` trains on whole batches only (the
# steps per epoch say so), and makes a batch-norm model with a one-sample last
# batch trainable; batch norm over images (many values per channel) trains on
# batches of one as it is.
set -u
nnd=$1 work=$2
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
fail() { echo "FAIL: $*"; exit 1; }
cat > bn.nnd <<'NND'
use nn
use optim
model M {
    fc = Dense(2, 4)
    bn = BatchNorm(4)
    out = Dense(4, 1)
    fn forward(x) = out(relu(bn(fc(x))))
}
train {
    data train = tensors(x = [[1, 0], [0, 1], [1, 1], [0, 0], [2, 1]], y = [[1], [2], [3], [0], [4]])
    net = M()
    loss = mse(net(x), y)
    opt = SGD()
    batch = 2
    epochs = 3
}
NND
"$nnd" run bn.nnd > refused.log 2>&1 && fail "a one-sample last batch was trained with batch norm"
grep -q "set drop_last = true" refused.log || { cat refused.log; fail "no hint"; }
"$nnd" run bn.nnd --set drop_last=true > ok.log 2>&1 || { cat ok.log; fail "drop_last = true"; }
grep -q "5 samples, batch 2, 3 epochs (6 steps)" ok.log || { cat ok.log; fail "expected 2 steps per epoch"; }
grep -q "final training loss [0-9]" ok.log || { cat ok.log; fail "no loss"; }
cat > bn2d.nnd <<'NND'
use nn
use optim
model M {
    conv = Conv2d(1, 2, 3, padding = 1)
    bn = BatchNorm2d(2)
    fn forward(x: [B, 1, 4, 4]) = mean(bn(conv(x)), axis = [1, 2, 3])
}
train {
    data train = tensors(x = [[[[1, 2, 3, 4], [0, 1, 0, 1], [2, 2, 2, 2], [1, 0, 1, 0]]],
                              [[[0, 1, 0, 1], [1, 0, 1, 0], [3, 2, 1, 0], [0, 0, 1, 1]]],
                              [[[2, 2, 1, 1], [0, 1, 2, 3], [1, 1, 1, 1], [3, 0, 3, 0]]]],
                         y = [1, 0, 1])
    net = M()
    loss = mean((net(x) - y)^2)
    opt = SGD()
    batch = 2
}
NND
"$nnd" run bn2d.nnd > bn2d.log 2>&1 || { cat bn2d.log; fail "batch norm over 4x4 images refused a one-sample batch"; }
echo "ok: drop_last trains whole batches; batch norm's one-sample batches refused only where undefined"
