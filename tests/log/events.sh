#!/bin/sh
# Training logs: the event files decode as tensorflow.Event records with valid
# checksums (check_events.py, protoc against tensorboard.proto), metrics.csv holds
# the same scalars, and a run killed while logging leaves every flushed record
# readable.  usage: events.sh NND WORKDIR
set -u
nnd=$1 work=$2
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd -P)
command -v protoc > /dev/null || { echo "skipped: protoc is missing (Debian: protobuf-compiler)"; exit 77; }
[ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] ||
    { echo "skipped: Fashion-MNIST is not installed (Debian: dataset-fashion-mnist)"; exit 77; }
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
fail() { echo "FAIL: $*"; exit 1; }
cat > run.nnd <<'NND'
use nn
use optim
use schedules
let fmnist = "/usr/share/datasets/fashion-mnist/"
model Mlp {
    fc1 = Dense(784, 32)
    fc2 = Dense(32, 10)
    fn forward(x: [B, 784]) = fc2(relu(fc1(x)))
}
train {
    data train = idx(fmnist + "train-images-idx3-ubyte.gz", fmnist + "train-labels-idx1-ubyte.gz",
                     scale = 1/255, shape = [784])
    data test = idx(fmnist + "t10k-images-idx3-ubyte.gz", fmnist + "t10k-labels-idx1-ubyte.gz",
                    scale = 1/255, shape = [784], limit = 1000)
    net = Mlp()
    loss = cross_entropy(net(x), y)
    opt = Adam(lr = cosine(1e-3, step, steps))
    batch = 64
    steps = 200
    log every 50 steps to "logs": loss, lr, grad_norm, weight_norm, update_ratio, max_grad, nonfinite,
                                  histograms, accuracy = mean(argmax(net(x), axis = -1) == y)
    eval test every 100 steps: accuracy(net(x), y)
}
NND
"$nnd" run run.nnd --name r1 > run.log 2>&1 || { cat run.log; fail "the run"; }
ev=$(ls logs/r1/events.out.tfevents.*) || fail "no event file in the run's subdirectory"
python3 "$here/check_events.py" "$ev" > records.txt || { cat records.txt; fail "the event file"; }
tail -n 1 records.txt
# steps 1, 50, 100, 150, 200: loss, lr, accuracy, 4 x 5 statistics and the total
# gradient norm (24), the eval metric at 100 and 200, and 4 histograms
for s in 1 50 100 150 200; do
    n=$(grep -c "^record [0-9]*: step $s scalar" records.txt)
    want=24
    [ "$s" -eq 100 ] || [ "$s" -eq 200 ] && want=25
    [ "$n" -eq "$want" ] || fail "step $s has $n scalar records, not $want"
    [ "$(grep -c "^record [0-9]*: step $s histo weights/" records.txt)" -eq 4 ] || fail "step $s histograms"
done
grep -q "step 100 scalar eval/test/accuracy" records.txt || fail "the eval metric"
grep -q "^record [0-9]*: step 1 scalar grad_norm/fc1.W" records.txt || fail "a statistic"
head -n 1 logs/r1/metrics.csv | grep -qx "step,epoch,tag,value" || fail "metrics.csv header"
rows=$(grep -vc "^step," logs/r1/metrics.csv)
scalars=$(grep -c " scalar " records.txt)
[ "$rows" -eq "$scalars" ] || fail "metrics.csv has $rows rows, the event file $scalars scalars"
grep -q "^200,0,lr,0$" logs/r1/metrics.csv || grep -q "^200,0,lr," logs/r1/metrics.csv || fail "lr at step 200"
echo "ok: events and metrics.csv agree ($rows scalars)"
# the histograms at the last step are those of the weights the run saves (the step
# computes each weight's range and sums beside its update; the logger counts; a
# frozen layer's histogram is made once, at the first logged step)
sed 's|^    steps = 200$|    steps = 200\n    save "final.safetensors"\n    freeze net.fc2|; s|to "logs"|to "hlogs"|' run.nnd > hist.nnd
"$nnd" run hist.nnd --name h > hist.log 2>&1 || { cat hist.log; fail "the run that saves its weights"; }
/usr/bin/python3 "$here/check_histograms.py" hlogs/h/events.out.tfevents.* final.safetensors 200 ||
    fail "the histograms are not those of the weights"
# a trained weight with a value that is not finite (a bias of -inf: its unit's ReLU
# stays 0, its gradient 0, and Adam keeps it): the step's range and sums are not
# finite, and the histogram is the finite values' (31 of 32), counted in two passes
/usr/bin/python3 -c "
import sys
sys.path.insert(0, '$here/../common')
import numpy as np
from safetensors_io import read_safetensors, write_safetensors
t = {k: a.copy() for k, a in read_safetensors('final.safetensors').items()}
t['fc1.b'][0] = -np.inf
write_safetensors('inf.safetensors', t, np.float32)
" || fail "writing the weights with -inf"
sed 's|net = Mlp()|net = Mlp() from "inf.safetensors"|; s|^    steps = 200$|    steps = 3\n    save "inf_final.safetensors"|; s|log every 50 steps|log every step|; s|to "logs"|to "inflogs"|; /eval test/d' run.nnd > inf.nnd
"$nnd" run inf.nnd --name i > inf.log 2>&1 || { cat inf.log; fail "the run with a weight of -inf"; }
/usr/bin/python3 "$here/check_histograms.py" inflogs/i/events.out.tfevents.* inf_final.safetensors 3 > inf_check.txt ||
    { cat inf_check.txt; fail "the histograms with a weight of -inf"; }
grep -q "^ok: weights/fc1.b: 31 finite values" inf_check.txt || { cat inf_check.txt; fail "fc1.b's -inf counted"; }
echo "ok: a weight of -inf left out of its histogram, the others exact"
# a tag longer than the 1 KiB a record is usually encoded in (a layer named by 600
# letters): the record still decodes
long=$(printf 'w%.0s' $(seq 600))
sed "s|fc1 = Dense(784, 32)|$long = Dense(784, 32)|; s|relu(fc1(x))|relu($long(x))|; s|^    steps = 200$|    steps = 2|; s|log every 50 steps|log every step|; s|to \"logs\"|to \"longlogs\"|; /eval test/d" run.nnd > long_tag.nnd
"$nnd" run long_tag.nnd --name t > long_tag.log 2>&1 || { cat long_tag.log; fail "the run with a long layer name"; }
python3 "$here/check_events.py" longlogs/t/events.out.tfevents.* > long_tag.txt || { cat long_tag.txt; fail "records with a long tag"; }
grep -q "step 2 histo weights/$long.W$" long_tag.txt || { tail -n 3 long_tag.txt; fail "the long tag's histogram"; }
echo "ok: a record with a 600-letter tag ($(cat longlogs/t/events.out.tfevents.* | wc -c) bytes of events)"
# logging reads the training, never changes it: the same final loss to the bit
grep -v "^    log every\|^ *histograms, accuracy" run.nnd > nolog.nnd
"$nnd" run nolog.nnd > nolog.log 2>&1 || { cat nolog.log; fail "the run without a log"; }
[ "$(grep '^done:' run.log)" = "$(grep '^done:' nolog.log)" ] ||
    fail "logging changed the result: $(grep '^done:' run.log) / $(grep '^done:' nolog.log)"
echo "ok: the same result without the log: $(grep '^done:' run.log)"
# nnd plot: an SVG with a panel per family and a line per series
"$nnd" plot logs > plot.log 2>&1 || { cat plot.log; fail "nnd plot"; }
python3 - logs/plot.svg <<'PY' || fail "the plot"
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
ns = "{http://www.w3.org/2000/svg}"
texts = [t.text for t in root.iter(ns + "text")]
for title in ["loss", "eval metrics", "learning rate", "gradient norm ||g||", "update ratio ||dw|| / ||w||",
              "weight norm ||w||", "max |g|", "non-finite gradient values", "logged values"]:
    assert title in texts, "no panel " + title
for tag in ["grad_norm/fc1.W", "grad_norm/total", "update_ratio/fc2.b", "eval/test/accuracy", "lr", "accuracy"]:
    assert tag in texts, "no legend for " + tag
lines = list(root.iter(ns + "polyline"))
# loss, accuracy, lr, eval accuracy, 5 grad norms, 4 x 4 other statistics
assert len(lines) == 25, "%d lines" % len(lines)
assert all(len(l.get("points").split()) >= 2 for l in lines), "a line of fewer than 2 points"
print("ok: plot.svg has 9 panels and 25 lines")
PY
# a second run beside the first, and one named by its start time: nnd plot overlays
# the runs, each labeled with its name
"$nnd" run run.nnd --name r2 > run2.log 2>&1 || { cat run2.log; fail "the second run"; }
"$nnd" run run.nnd --set steps=50 > run3.log 2>&1 || { cat run3.log; fail "the third run"; }
stamp=$(ls logs | grep -E '^[0-9]{8}-[0-9]{6}$') || { ls logs; fail "no run named by its start time"; }
"$nnd" plot logs -o overlay.svg > plot2.log 2>&1 || { cat plot2.log; fail "nnd plot of three runs"; }
python3 - overlay.svg "$stamp" <<'PY' || fail "the overlaid plot"
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
ns = "{http://www.w3.org/2000/svg}"
texts = [t.text for t in root.iter(ns + "text")]
assert "3 runs of logs" in texts, texts[:3]
for run in ["r1", "r2", sys.argv[2]]:
    for tag in ["loss", "grad_norm/total", "eval/test/accuracy"]:
        assert run + ": " + tag in texts, "no legend for " + run + ": " + tag
lines = list(root.iter(ns + "polyline"))
assert len(lines) == 75, "%d lines" % len(lines)
print("ok: overlay.svg has the 3 runs' 75 lines")
PY
printf 'step,epoch,tag,value\n1,0,loss\n' > bad.csv && mkdir -p bad && mv bad.csv bad/metrics.csv
printf '2,0,loss,1\n' >> bad/metrics.csv
"$nnd" plot bad > badplot.log 2>&1 && fail "a bad metrics.csv was accepted"
grep -q "bad/metrics.csv:2: not a row step,epoch,tag,value" badplot.log || { cat badplot.log; fail "the bad csv message"; }
# killed while logging every step
sed 's/steps = 200/steps = 100000/; s/log every 50 steps/log every step/' run.nnd > long.nnd
rm -rf logs
"$nnd" run long.nnd > long.log 2>&1 &
pid=$!
# once it has logged for a while (128 KB: a few steps; slow builds take longer to
# get there), kill it at an arbitrary moment
waited=0
while [ "$(cat logs/*/events.out.tfevents.* 2>/dev/null | wc -c)" -lt 131072 ]; do
    kill -0 "$pid" 2>/dev/null || { cat long.log; fail "the long run ended early"; }
    [ "$waited" -lt 1200 ] || { kill -9 "$pid"; fail "no log after 120 s"; }
    sleep 0.1
    waited=$((waited + 1))
done
sleep 0.$(( 1$(date +%N | cut -c1-3) % 900 + 100 ))
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
ev=$(ls logs/*/events.out.tfevents.*) || fail "no event file from the killed run"
python3 "$here/check_events.py" "$ev" --allow-torn-tail > killed.txt || { tail -n 3 killed.txt; fail "a flushed record is damaged"; }
n=$(tail -n 1 killed.txt | sed -n 's/^\([0-9]*\) records$/\1/p')
[ -n "$n" ] && [ "$n" -gt 100 ] || { tail -n 3 killed.txt; fail "too few records before the kill"; }
echo "ok: killed while logging: $n whole records"
