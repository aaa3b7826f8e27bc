#!/bin/sh
# predict.sh NND WORK: nnd predict on a small program: outputs as CSV and NPY, the
# same from the interpreter, --top, --metrics, and every kind of bad input named.
set -u
nnd=$1 work=$2
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 2
fail() { echo "FAIL: $*"; exit 1; }
cat > net.nnd <<'NND'
use nn
use optim
model Net() {
    fc = Dense(3, 4)
    fn forward(x: [B, 3]) = fc(x)
}
train {
    data train = tensors(x = [[0, 0, 1], [0, 1, 0], [1, 0, 0], [1, 1, 1], [0, 1, 1]],
                         y = [0, 1, 2, 3, 1])
    net = Net()
    loss = cross_entropy(net(x), i32(y))
    opt = Adam(lr = 0.1)
    batch = 2
    epochs = 30
    eval train every epoch: accuracy(net(x), i32(y))
    save "net.safetensors"
}
NND
"$nnd" run net.nnd > run.out 2>&1 || { cat run.out; fail "training"; }
# NPY files written with the standard library alone
python3 - <<'PY' || fail "writing the NPY inputs"
import struct
def npy(path, descr, shape, values, fmt):
    d = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (descr, "".join("%d, " % s for s in shape))
    pad = (64 - (10 + len(d) + 1) % 64) % 64
    h = d + " " * pad + "\n"
    open(path, "wb").write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h.encode() +
                           struct.pack("<%d%s" % (len(values), fmt), *values))
npy("x.npy", "<f4", (6, 3), [0, 0, 1, 0, 1, 0, 1, 0, 0, 1, 1, 1, 0, 1, 1, 0.5, 0.5, 0.5], "f")
npy("y.npy", "<i4", (6,), [0, 1, 2, 3, 1, 2], "i")
npy("wide.npy", "<f4", (2, 4), [0] * 8, "f")
npy("none.npy", "<f4", (0, 3), [], "f")
npy("yf.npy", "<f4", (6,), [0, 1, 2, 3, 1, 2], "f")
npy("yhalf.npy", "<f4", (6,), [0, 1, 2.5, 3, 1, 2], "f")
npy("y64.npy", "<i8", (6,), [0, 1, 2, 3, 7, 2], "q")
npy("y2.npy", "<i4", (6, 2), [0] * 12, "i")
PY
# outputs: CSV to stdout, NPY to a file, the same numbers from the interpreter
"$nnd" predict net.nnd --input x.npy > out.csv 2> err || { cat err; fail "predict to stdout"; }
[ "$(head -n 1 out.csv)" = "output0,output1,output2,output3" ] || fail "CSV header: $(head -n 1 out.csv)"
[ "$(wc -l < out.csv)" -eq 7 ] || fail "CSV rows"
"$nnd" predict net.nnd --input x.npy --interp > interp.csv 2> err || { cat err; fail "--interp"; }
python3 - out.csv interp.csv <<'PY' || fail "compiled and interpreted outputs differ"
import sys
a = [[float(v) for v in l.split(",")] for l in open(sys.argv[1]).read().split("\n")[1:] if l]
b = [[float(v) for v in l.split(",")] for l in open(sys.argv[2]).read().split("\n")[1:] if l]
assert len(a) == len(b) == 6
assert all(abs(x - y) <= 1e-5 * max(1, abs(y)) for r, s in zip(a, b) for x, y in zip(r, s)), (a, b)
PY
"$nnd" predict net.nnd --input x.npy -o out.npy --batch 4 2> err || { cat err; fail "NPY output"; }
grep -q "^wrote out.npy: 6 samples$" err || fail "no 'wrote' line: $(cat err)"
python3 - out.npy out.csv <<'PY' || fail "NPY and CSV outputs differ"
import struct, sys
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<H", raw[8:10])[0]
assert b"'shape': (6, 4)" in raw[10:10 + n] and b"<f4" in raw[10:10 + n], raw[10:10 + n]
vals = struct.unpack("<24f", raw[10 + n:])
rows = [[float(v) for v in l.split(",")] for l in open(sys.argv[2]).read().split("\n")[1:] if l]
assert all(abs(a - b) <= 1e-6 * max(1, abs(b)) for a, b in zip(vals, sum(rows, []))), (vals, rows)
PY
# --top 2 with labels: classes, probabilities, the top-1 accuracy
"$nnd" predict net.nnd --input x.npy --labels y.npy --top 2 -o top.csv 2> err || { cat err; fail "--top"; }
[ "$(head -n 1 top.csv)" = "class1,prob1,class2,prob2" ] || fail "--top header: $(head -n 1 top.csv)"
grep -q "^top-1 accuracy on x.npy: " err || fail "no accuracy line: $(cat err)"
# labels of another dtype, as the model takes them: a model of integer labels reads
# floats that hold whole numbers as classes, a model of float labels integers
sed 's/y = \[0, 1, 2, 3, 1\])/y = i32([0, 1, 2, 3, 1]))/; s/i32(y)/y/g
     s/accuracy(net(x), y)/accuracy(net(x), y), loss = cross_entropy(net(x), y)/' net.nnd > classes.nnd
for prog in net classes; do
    for labels in y yf; do
        "$nnd" predict $prog.nnd --input x.npy --labels $labels.npy --weights net.safetensors \
            --metrics > $prog-$labels.out 2> $prog-$labels.err ||
            { cat $prog-$labels.err; fail "$prog.nnd with labels $labels.npy"; }
        cmp -s $prog-$labels.out $prog-y.out && cmp -s $prog-$labels.err $prog-y.err ||
            fail "$prog.nnd with labels $labels.npy: $(cat $prog-$labels.out $prog-$labels.err)"
    done
done
grep -q "^x.npy: loss " classes-yf.out || fail "no loss metric: $(cat classes-yf.out)"
# --metrics on a data set of the program: the run's last eval
"$nnd" predict net.nnd --data train --metrics > metrics.out 2>&1 || { cat metrics.out; fail "--metrics"; }
want=$(sed -n 's/.*eval train:  *accuracy \([0-9.]*\).*/\1/p' run.out | tail -n 1)
got=$(sed -n 's/^train: accuracy \([0-9.]*\)$/\1/p' metrics.out)
[ -n "$want" ] && [ -n "$got" ] && awk -v a="$got" -v b="$want" 'BEGIN { d = a - b; exit !(d < 1e-4 && d > -1e-4) }' ||
    fail "--metrics gave '$got', the run '$want'"
# bad input, each named
expect() { # expect PATTERN ARGS...: exit status 1 or 2 and a matching line on stderr
    pattern=$1
    shift
    "$nnd" predict "$@" > /dev/null 2> err
    status=$?
    { [ $status -eq 1 ] || [ $status -eq 2 ]; } && grep -q -- "$pattern" err ||
        { echo "stderr:"; cat err; fail "nnd predict $*: exit $status, no '$pattern'"; }
}
expect "wide.npy: samples are \[4\], but the model takes \[3\]" net.nnd --input wide.npy
expect "none.npy: no samples" net.nnd --input none.npy
expect "no data set 'test' (it has 'train')" net.nnd --data test
expect "needs one of --data NAME" net.nnd
expect "missing.safetensors" net.nnd --data train --weights missing.safetensors
expect "--top writes classes and probabilities as CSV" net.nnd --data train --top 1 -o t.npy
expect "--top 5 needs outputs of one row of at least 5 classes" net.nnd --data train --top 5
sed 's/Dense(3, 4)/Dense(3, 5)/' net.nnd > other.nnd
expect "tensor 'fc.W' is \[3, 4\], but the model's 'fc.W' is \[3, 5\]" other.nnd --data train --weights net.safetensors
sed 's/    fc = Dense(3, 4)/    fc = Dense(3, 4)\n    extra = Dense(4, 4)/; s/= fc(x)/= extra(fc(x))/' net.nnd > more.nnd
expect "net.safetensors: no tensor 'extra.W' (the model's is \[4, 4\] f32)" more.nnd --data train --weights net.safetensors
# weights with tensors the model does not have: loaded, with a warning naming them
python3 - <<'PY' || fail "writing more.safetensors"
import json, struct
b = open("net.safetensors", "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
end = len(b) - 8 - n
for i in range(5):
    h["old%d.b" % i] = {"dtype": "F32", "shape": [1], "data_offsets": [end + 4 * i, end + 4 * i + 4]}
hb = json.dumps(h).encode()
hb += b" " * (-len(hb) % 8)
open("more.safetensors", "wb").write(struct.pack("<Q", len(hb)) + hb + b[8 + n:] + b"\0" * 20)
PY
"$nnd" predict net.nnd --input x.npy --weights more.safetensors > more.csv 2> err || { cat err; fail "more.safetensors"; }
cmp -s more.csv out.csv || fail "more.safetensors: other outputs"
grep -q "^warning: more.safetensors: 5 tensors the model does not have, not loaded: 'old0.b', 'old1.b', 'old2.b' and 2 more$" err ||
    fail "no warning on more.safetensors: $(cat err)"
"$nnd" predict net.nnd --input x.npy > /dev/null 2> err && ! grep -q warning err || fail "a warning on net.safetensors: $(cat err)"
"$nnd" build net.nnd -o more.o --weights more.safetensors > /dev/null 2> err &&
    grep -q "^warning: more.safetensors: 5 tensors the model does not have" err ||
    fail "nnd build --weights more.safetensors: no warning: $(cat err)"
# labels: a fraction, a class the model does not have (in the labels file, with its
# sample), a shape that differs
expect "yhalf.npy: label 2.5 at sample 2 is not a class index (a whole number)" classes.nnd --input x.npy --labels yhalf.npy --weights net.safetensors
expect "y64.npy: label 7 is out of range for the model's 4 classes, 0 to 3 (sample 4 has it)" classes.nnd --input x.npy --labels y64.npy --weights net.safetensors --metrics
expect "y2.npy: labels are \[2\], but the model takes \[\]" net.nnd --input x.npy --labels y2.npy
# --metrics without an eval statement, or without labels: refused before any output
grep -v "^    eval " net.nnd > noeval.nnd
for args in "noeval.nnd --data train" "noeval.nnd --data train -o noeval.csv" "net.nnd --input x.npy"; do
    "$nnd" predict $args --metrics > metrics.out 2> err
    status=$?
    [ $status -eq 1 ] && [ ! -s metrics.out ] && [ ! -e noeval.csv ] &&
        grep -q "^nnd: --metrics: the train block has no eval statement$\|^nnd: --metrics needs labels" err ||
        fail "nnd predict $args --metrics: exit $status, stdout '$(cat metrics.out)', stderr '$(cat err)'"
done
# an output file of neither kind, refused before anything runs
expect "\-o takes a file named .csv or .npy, not 'out.txt'" net.nnd --input x.npy -o out.txt
[ ! -e out.txt ] || fail "-o out.txt was written"
echo "ok: nnd predict"
