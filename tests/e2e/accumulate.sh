#!/bin/sh
# accumulate = k: an update from k micro-batches equals the update from their
# concatenation (for a mean loss), whatever the micro-batch sizes; the
# interpreter agrees; a resumed run is bit-identical; a checkpoint of another
# accumulate is refused.  usage: accumulate.sh NND EXAMPLES WORKDIR
set -u
nnd=$1 ex=$2 work=$3
common=$(cd "$(dirname "$0")/../common" && pwd)  # safetensors_io.py
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
fail() { echo "FAIL: $*"; exit 1; }
cp "$ex/data/linear.csv" linear.csv

# program RULE BATCH ACCUMULATE OUT [more settings]: 256 samples, shuffled
program() {
    cat <<NND
use nn
use optim
model Net {
    fc1 = Dense(3, 8)
    fc2 = Dense(8, 1)
    fn forward(x: [B, 3]) -> [B, 1] = fc2(tanh(fc1(x)))
}
train {
    data train = csv("linear.csv", label = "y")
    net = Net()
    loss = mse(net(x), y)
    opt = $1
    batch = $2
    accumulate = $3
    epochs = 3
    seed = 3
    save "$4"
    ${5:-}
}
NND
}

# maxdiff A B: the largest relative difference between two safetensors files
maxdiff() {
    /usr/bin/python3 - "$1" "$2" "$common" <<'PY'
import sys
sys.path.insert(0, sys.argv[3])
import numpy as np
from safetensors_io import read_safetensors
a, b = read_safetensors(sys.argv[1], True), read_safetensors(sys.argv[2], True)
assert a.keys() == b.keys(), (sorted(a), sorted(b))
print(max(float(np.max(np.abs(a[k] - b[k]) / np.maximum(np.maximum(np.abs(a[k]), np.abs(b[k])), 1e-3)))
          for k in a))
PY
}

# same ARGS...: runs two programs, compares their saved parameters against a bound
same() {
    tag=$1 bound=$2 flags=$3
    "$nnd" run $flags a.nnd > a.out 2>&1 || { cat a.out; fail "$tag: run a"; }
    "$nnd" run $flags b.nnd > b.out 2>&1 || { cat b.out; fail "$tag: run b"; }
    d=$(maxdiff a.safetensors b.safetensors) || fail "$tag: comparing"
    python3 -c "import sys; sys.exit(0 if $d <= $bound else 1)" || fail "$tag: differ by $d (> $bound)"
    echo "ok: $tag: largest relative difference $d"
}

# f64 SGD: one batch of 60 against 3 micro-batches of 20 (256 = 4 x 60 + 16: a
# smaller last group)
program "SGD(lr = 0.1)" 60 1 a.safetensors > a.nnd
program "SGD(lr = 0.1)" 20 3 b.safetensors > b.nnd
same "f64 SGD, 60 vs 20 x 3" 1e-12 "--dtype f64"
# f32, Adam and clip_norm (clipping sees the accumulated gradient): 32 x 2 against 64
program "Adam(lr = 1e-2)" 64 1 a.safetensors "clip_norm = 0.5" > a.nnd
program "Adam(lr = 1e-2)" 32 2 b.safetensors "clip_norm = 0.5" > b.nnd
same "f32 Adam + clip_norm, 64 vs 32 x 2" 1e-5 ""
grep -q "batch 32 x 2 accumulated, 3 epochs (12 steps)" b.out || { cat b.out; fail "the progress line"; }
# the interpreter agrees with the compiled code
program "Adam(lr = 1e-2)" 16 4 a.safetensors > a.nnd
program "Adam(lr = 1e-2)" 16 4 b.safetensors > b.nnd
"$nnd" run --dtype f64 a.nnd > a.out 2>&1 || { cat a.out; fail "compiled"; }
"$nnd" run --dtype f64 --interp b.nnd > b.out 2>&1 || { cat b.out; fail "interpreted"; }
d=$(maxdiff a.safetensors b.safetensors)
python3 -c "import sys; sys.exit(0 if $d <= 1e-9 else 1)" || fail "interpreter and compiled code differ by $d"
echo "ok: interpreter and compiled code agree ($d)"

# resume: a checkpoint after step 5 of 12, continued, gives the same bits
program "Adam(lr = 1e-2)" 16 4 full.safetensors > full.nnd
"$nnd" run full.nnd > full.out 2>&1 || { cat full.out; fail "the whole run"; }
program "Adam(lr = 1e-2)" 16 4 part.safetensors 'checkpoint every 5 steps to "ck"' > part.nnd
"$nnd" run part.nnd --set steps=5 > part1.out 2>&1 || { cat part1.out; fail "the first part"; }
"$nnd" run part.nnd --resume ck/step-00000005.safetensors > part2.out 2>&1 || { cat part2.out; fail "the resumed part"; }
cmp -s full.safetensors part.safetensors || fail "the resumed run differs from the whole run"
echo "ok: resumed at step 5 of 12: the same bits"
"$nnd" run part.nnd --set accumulate=2 --resume ck/step-00000005.safetensors > bad.out 2>&1 &&
    fail "a checkpoint of another accumulate was accepted"
grep -q "written by a run with accumulate = 4, this one has 2" bad.out || { cat bad.out; fail "the message"; }
echo "ok: a checkpoint of accumulate = 4 is refused with accumulate = 2"

# batch norm's running statistics move on every micro-batch, and dropout draws new
# masks for each: with lr = 0, 3 updates of 16 x 4 see what 12 steps of 16 see
cat > bn.nnd <<'NND'
use nn
use optim
model Net {
    fc1 = Dense(3, 8)
    bn = BatchNorm(8)
    drop = Dropout(0.5)
    fc2 = Dense(8, 1)
    fn forward(x: [B, 3]) -> [B, 1] = fc2(drop(relu(bn(fc1(x)))))
}
train {
    data train = csv("linear.csv", label = "y")
    net = Net()
    loss = mse(net(x), y)
    opt = SGD(lr = 0)
    batch = 16
    seed = 5
    save "bn.safetensors"
}
NND
"$nnd" run bn.nnd --set steps=12 > bn1.out 2>&1 || { cat bn1.out; fail "bn: 12 steps"; }
cp bn.safetensors bn12.safetensors
"$nnd" run bn.nnd --set steps=3 --set accumulate=4 > bn4.out 2>&1 || { cat bn4.out; fail "bn: 3 x 4"; }
d=$(maxdiff bn12.safetensors bn.safetensors)
python3 -c "import sys; sys.exit(0 if $d <= 1e-6 else 1)" || fail "running statistics differ by $d"
[ "$(grep '^done:' bn1.out | sed 's/.*loss //')" = "$(grep '^done:' bn4.out | sed 's/.*loss //')" ] ||
    fail "dropout: the losses differ: $(grep '^done:' bn1.out) / $(grep '^done:' bn4.out)"
echo "ok: batch norm and dropout per micro-batch: running statistics within $d, the same loss"
