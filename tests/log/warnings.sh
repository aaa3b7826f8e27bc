#!/bin/sh
# The warnings of a `log` statement, each naming the parameter and the step:
# vanishing gradients (a dead ReLU layer), exploding gradients (a learning rate that
# diverges), updates far too small (lr 1e-13); and none on a healthy run.
# usage: warnings.sh NND EXAMPLES WORKDIR
set -u
nnd=$1 ex=$2 work=$3
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
fail() { echo "FAIL: $*"; exit 1; }
cp "$ex/data/linear.csv" linear.csv

# program SHIFT LR STEPS
program() {
    cat <<NND
use nn
use optim
model Net {
    fc1 = Dense(3, 8)
    fc2 = Dense(8, 1)
    fn forward(x: [B, 3]) -> [B, 1] = fc2(relu(fc1(x) - $1))
}
train {
    data train = csv("linear.csv", label = "y")
    net = Net()
    loss = mse(net(x), y)
    opt = SGD(lr = $2)
    batch = 32
    steps = $3
    seed = 1
    log every step to "logs": loss
}
NND
}

# expect NAME SHIFT LR STEPS PATTERN
expect() {
    program "$2" "$3" "$4" > "$1.nnd"
    "$nnd" run "$1.nnd" > "$1.out" 2>&1
    grep -q "$5" "$1.out" || { cat "$1.out"; fail "$1: no '$5'"; }
    echo "ok: $1: $(grep -m1 "$5" "$1.out")"
}
expect vanishing 100 0.01 40 "^warning: step 10: fc1.W: vanishing gradient: its norm has stayed below 1e-7 for 10 logged steps"
expect exploding 0 0.3 40 "^warning: step [0-9]*: fc[12].[Wb]: exploding gradient: its norm jumped to"
expect tiny 0 1e-13 40 "^warning: step 20: fc1.W: updates of under 1e-7 of the weights' norm for 20 logged steps"
program 0 0.01 400 > healthy.nnd
"$nnd" run healthy.nnd > healthy.out 2>&1 || { cat healthy.out; fail "the healthy run"; }
! grep -q "^warning" healthy.out || { cat healthy.out; fail "a warning on a healthy run"; }
echo "ok: no warning in 400 healthy steps"
