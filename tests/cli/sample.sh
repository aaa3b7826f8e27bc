#!/bin/sh
# sample.sh NND WORK: nnd sample (and a sample statement) writes bytes, so it takes a
# byte-level model (256 logits per position) and refuses another vocabulary before
# sampling (and training); an empty
# --prompt is an error, as an empty prompt of a sample statement is.
set -u
nnd=$1 work=$2
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 2
fail() { echo "FAIL: $*"; exit 1; }
printf 'Hi! hello there, hi again.\n%.0s' 1 2 3 4 > t.txt
cat > lm.nnd <<'NND'
use nn
use optim
model Lm(V = 256) {
    tok = Embedding(V, 8)
    fc = Dense(8, V)
    fn forward(x: [B, 4] i32) -> [B, 4, V] = fc(tok(x))
}
train {
    data train = text("t.txt", context = 4)
    net = Lm()
    loss = cross_entropy(net(x), y)
    opt = Adam(lr = 0.1)
    batch = 2
    steps = 3
    save "lm.safetensors"
}
NND
"$nnd" run lm.nnd > run.out 2>&1 || { cat run.out; fail "training"; }
"$nnd" sample lm.nnd --prompt "Hi" --tokens 5 > out.txt 2> err || { cat err; fail "sample"; }
[ "$(wc -c < out.txt)" -eq 7 ] || fail "sample: $(wc -c < out.txt) bytes, not 2 + 5"
expect() { # expect STATUS PATTERN ARGS...: the status, a line of stderr, nothing sampled
    want=$1 pattern=$2
    shift 2
    "$nnd" sample "$@" > out 2> err
    status=$?
    [ $status -eq "$want" ] && grep -q -- "$pattern" err && [ ! -s out ] ||
        { echo "stdout:"; cat out; echo "stderr:"; cat err; fail "nnd sample $*: exit $status"; }
}
for v in 300 100; do
    sed "s/V = 256/V = $v/" lm.nnd > lm$v.nnd
    expect 1 "^nnd: sampling writes each token as a byte: it needs a byte-level model, of 256 logits per position; this one gives $v$" \
        lm$v.nnd --weights lm.safetensors
    # and so does a sample statement, before training
    sed 's/    steps = 3/    steps = 3\n    sample every 1 steps: prompt = "Hi", tokens = 3/' lm$v.nnd > lms$v.nnd
    grep -q "sample every 1 steps" lms$v.nnd || fail "no sample statement"
    "$nnd" run lms$v.nnd > out 2> err && fail "lms$v.nnd trained"
    grep -q "sampling writes each token as a byte.*this one gives $v$" err && ! grep -q "^epoch\|step 1/" out ||
        { cat out err; fail "lms$v.nnd: not refused before training"; }
done
expect 2 "^nnd: --prompt is empty: give at least one byte" lm.nnd --prompt ""
echo "ok: nnd sample"
