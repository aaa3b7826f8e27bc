#!/bin/sh
# nnd run --check-numerics: NaN and Inf injected at known lines of the forward pass,
# the backward pass (a derivative, a custom vjp) and update rules are each reported
# at their line, column and phase, by the compiled code and by the interpreter, with
# exit status 3; a checkpoint written before the failure stays intact and resumes.
# Without the flag a non-finite loss still stops the run (status 3).
# usage: numerics.sh NND WORKDIR
set -u
nnd=$1 work=$2
ex=$(CDPATH= cd -- "$(dirname -- "$0")/../../examples" && pwd -P)
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
fail() { echo "FAIL: $*"; exit 1; }

# program LOSS OPT: the template with the loss and the rule filled in
program() {
    cat <<NND
use nn
use optim

fn ident(x) = x
vjp(q, dq) {
    dq / (x - x)
}

optimizer RootBad(lr = 0.1) {
    w -= lr * sqrt(-1 - g * g)
}

optimizer DivBad(lr = 0.1) {
    state s = 0
    s = 0.5 * s
    w -= lr * g * s / (s * w)
}

optimizer ExpBad(lr = 0.1) {
    w -= lr * exp(1000 + g)
}

train {
    data train = tensors(x = [[0, 0], [0, 1], [1, 0], [1, 1]], y = [[0], [1], [1], [0]])
    net = Dense(2, 1)
    let h = net(x)
    loss = $1
    opt = $2
    steps = 5
    batch = 4
}
NND
}

# expect NAME LOSS OPT WHERE WHAT: the report starts "case.nnd:WHERE: error: step 1:
# WHAT" with both engines
expect() {
    name=$1 where=$4 what=$5
    program "$2" "$3" > "$name.nnd"
    for engine in compiled interp; do
        flag=; [ "$engine" = interp ] && flag=--interp
        "$nnd" run "$name.nnd" --check-numerics $flag > "$name.$engine.out" 2> "$name.$engine.err"
        rc=$?
        [ "$rc" -eq 3 ] || { cat "$name.$engine.err"; fail "$name ($engine): exit status $rc, not 3"; }
        grep -q "^$name.nnd:$where: error: step 1: $what" "$name.$engine.err" ||
            { cat "$name.$engine.err"; fail "$name ($engine): not reported as '$name.nnd:$where: $what'"; }
    done
    echo "ok: $name: $(grep -m1 ' error: ' "$name.compiled.err")"
}

expect fwd_log0 "mse(h, y) + mean(log(min(x, 0)))" "SGD()" \
    "27:29" "'log' made -inf in the forward pass"
expect fwd_exp1000 "mse(h, y) + mean(exp(1000 * (x + 1)))" "SGD()" \
    "27:29" "'exp' made +inf in the forward pass"
expect fwd_log_neg "mse(log(h - 100), y)" "SGD()" \
    "27:16" "'log' made NaN in the forward pass"
grep -q "note: it is computed from the parameters b, W" fwd_log_neg.compiled.err || fail "the parameters are not named"
expect bwd_sqrt0 "mse(sqrt(relu(h - 10)), y)" "SGD()" \
    "27:16" "'div' made +inf in the backward pass"
expect bwd_vjp00 "mse(ident(h), y)" "SGD()" \
    "6:5" "'div' made [-+]inf in the backward pass"
expect upd_sqrt_neg "mse(h, y)" "RootBad()" \
    "10:15" "'sqrt' made NaN in the update rule"
expect upd_0over0 "mse(h, y)" "DivBad()" \
    "16:10" "'div' made NaN in the update rule"
expect upd_exp1000 "mse(h, y)" "ExpBad()" \
    "20:15" "'exp' made +inf in the update rule"
grep -q "note: in the update of W" upd_0over0.compiled.err || fail "the parameter is not named"

# without the flag: the non-finite loss stops training, with a hint
program "mse(h, y) + mean(log(min(x, 0)))" "SGD()" > plain.nnd
"$nnd" run plain.nnd > plain.out 2> plain.err
rc=$?
[ "$rc" -eq 3 ] || { cat plain.err; fail "plain run: exit status $rc, not 3"; }
grep -q "the loss is infinite at step 1" plain.err || { cat plain.err; fail "plain run: no message"; }
grep -q "check-numerics" plain.err || fail "plain run: no hint"
echo "ok: without the flag: $(head -n 1 plain.err)"

# the failure comes at step 4: checkpoints of steps 1-3 stay, and resume
program "mse(h, y) + mean(log(min(x, 0) + 1.5 - 0.5 * step))" "SGD()" |
    sed 's|    batch = 4|    batch = 4\n    checkpoint every 1 steps to "ck"|' > ckpt.nnd
"$nnd" run ckpt.nnd --check-numerics > ckpt.out 2> ckpt.err
rc=$?
[ "$rc" -eq 3 ] || { cat ckpt.err; fail "checkpoint run: exit status $rc, not 3"; }
grep -q "error: step 4: 'log' made -inf in the forward pass" ckpt.err || { cat ckpt.err; fail "checkpoint run: report"; }
[ "$(ls ck)" = "step-00000001.safetensors
step-00000002.safetensors
step-00000003.safetensors" ] || { ls ck; fail "checkpoints: expected steps 1-3 only"; }
"$nnd" run ckpt.nnd --check-numerics --resume ck > resume.out 2> resume.err
rc=$?
grep -q "resuming from ck/step-00000003.safetensors: step 3" resume.out || { cat resume.out resume.err; fail "resume"; }
[ "$rc" -eq 3 ] && grep -q "error: step 4: 'log'" resume.err || { cat resume.err; fail "resume: the same report"; }
echo "ok: checkpoints of steps 1-3 kept and resumed; step 4 reported again"

# no false alarms on a real model: 30 checked steps of the Fashion-MNIST MLP
if [ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    "$nnd" run "$ex/fashion_mnist_mlp.nnd" --check-numerics --set steps=30 > mlp.out 2>&1 ||
        { cat mlp.out; fail "the checked MLP run"; }
    echo "ok: the Fashion-MNIST MLP runs 30 checked steps without a report"
fi
