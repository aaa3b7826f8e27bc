#!/bin/sh
# A run stopped by a signal: SIGTERM (or Ctrl-C's SIGINT) stops it after the update
# it is in, writes a checkpoint of that step when the program checkpoints, and exits
# 128 + the signal's number; the checkpoint holds the weights a run of exactly that
# many steps ends with.  Without a checkpoint statement it says nothing was saved and
# writes no save.  The runs are far too long to end before the signal, so the test
# does not depend on the machine's speed.  usage: interrupt.sh NND WORKDIR
set -u
nnd=$1 work=$2
common=$(cd "$(dirname "$0")/../common" && pwd)  # safetensors_io.py
data=/usr/share/datasets/fashion-mnist
[ -r "$data/train-images-idx3-ubyte.gz" ] || { echo "skip: no $data"; exit 77; }
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
cat > long.nnd <<'NND'
use nn
use optim
let fmnist = "/usr/share/datasets/fashion-mnist/"
model Mlp {
    fc1 = Dense(784, 32)
    fc2 = Dense(32, 10)
    fn forward(x: [B, 784]) = fc2(relu(fc1(x)))
}
train {
    data train = idx(fmnist + "train-images-idx3-ubyte.gz", fmnist + "train-labels-idx1-ubyte.gz",
                     scale = 1/255, shape = [784], limit = 2000)
    net = Mlp()
    loss = cross_entropy(net(x), y)
    opt = Adam(lr = 1e-3)
    batch = 50
    steps = 10000000
    seed = 9
    checkpoint every 40 steps to "ck" keep 2
    save "final.safetensors"
}
NND
fail() { echo "FAIL: $*"; exit 1; }
"$nnd" run long.nnd --threads 1 > stop.log 2>&1 &
pid=$!
i=0
until ls ck/step-*.safetensors > /dev/null 2>&1; do
    i=$((i + 1))
    [ $i -lt 6000 ] || { kill -9 $pid; cat stop.log; fail "no checkpoint after 60 s"; }
    sleep 0.01
done
kill -TERM $pid
wait $pid
rc=$?
[ $rc -eq 143 ] || { cat stop.log; fail "exit code $rc after SIGTERM, expected 143"; }
grep -q "nnd: interrupted after step [0-9]* of 10000000; checkpoint written in ck: continue with \`.*nnd run long.nnd --threads 1 --resume ck\`" stop.log ||
    { cat stop.log; fail "no message on the interrupt"; }
grep -q "^nnd: SIGTERM: stopping after this step (a second signal stops at once)$" stop.log &&
    ! grep -q "Ctrl-C" stop.log || { cat stop.log; fail "SIGTERM not named"; }
[ -e final.safetensors ] && fail "an interrupted run wrote its save"
step=$(sed -n 's/.*interrupted after step \([0-9]*\) of.*/\1/p' stop.log)
ck=$(printf 'ck/step-%08d.safetensors' "$step")
[ -e "$ck" ] || fail "no checkpoint of step $step: $(ls ck)"
# the same program run for exactly that many steps, without checkpoints
grep -v "checkpoint every" long.nnd > ref.nnd
"$nnd" run ref.nnd --threads 1 --set steps="$step" > ref.log 2>&1 || { cat ref.log; fail "the run of $step steps"; }
/usr/bin/python3 - "$ck" final.safetensors "$common" <<'PY' || fail "the checkpoint of step $step is not a run of $step steps"
import sys
sys.path.insert(0, sys.argv[3])
import numpy as np
from safetensors_io import read_safetensors
ck, ref = read_safetensors(sys.argv[1]), read_safetensors(sys.argv[2])
for name, w in ref.items():
    assert name in ck, f"{name} is not in the checkpoint"
    assert ck[name].shape == w.shape and np.array_equal(ck[name], w), f"{name} differs"
print(f"checkpoint = a run of that many steps: {', '.join(sorted(ref))}")
PY
echo "ok: SIGTERM at step $step, exit 143, its checkpoint holds the weights of a $step-step run"

# Ctrl-C without a checkpoint statement (python starts it with SIGINT not ignored,
# as a terminal would)
grep -v "checkpoint every" long.nnd > nock.nnd
rm -f final.safetensors
/usr/bin/python3 - "$nnd" <<'PY' || fail "SIGINT"
import signal, subprocess, sys, time
p = subprocess.Popen([sys.argv[1], "run", "nock.nnd", "--threads", "1"], stdout=subprocess.PIPE,
                     stderr=subprocess.STDOUT, text=True)
for line in p.stdout:
    if line.startswith("training on"):
        time.sleep(0.2)
        p.send_signal(signal.SIGINT)
        break
try:
    out = p.stdout.read()
    rc = p.wait(timeout=60)
except subprocess.TimeoutExpired:
    p.kill()
    sys.exit("still running 60 s after SIGINT")
print(out)
assert rc == 130, f"exit code {rc} after SIGINT, expected 130"
assert "; nothing saved (a `checkpoint every N steps to \"DIR\"` statement" in out, out
assert "nnd: stopping after this step (a second Ctrl-C stops at once)" in out, out
PY
[ -e final.safetensors ] && fail "an interrupted run wrote its save"
echo "ok: SIGINT without checkpoints: nothing saved, exit 130"

# The command the message gives repeats the options a resumed run must match (the
# seed, the settings), quoted for the shell: followed as printed, it resumes.
rm -rf ck && mkdir -p "my runs" && cp long.nnd "my runs/" || exit 1
"$nnd" run "my runs/long.nnd" --threads 1 --seed 3 --set opt.lr=0.002 --set steps=9999999 > opts.log 2>&1 &
pid=$!
i=0
until ls ck/step-*.safetensors > /dev/null 2>&1; do
    i=$((i + 1))
    [ $i -lt 6000 ] && kill -0 $pid 2> /dev/null || { kill -9 $pid; cat opts.log; fail "no checkpoint"; }
    sleep 0.01
done
kill -TERM $pid
wait $pid
rc=$?
[ $rc -eq 143 ] || { cat opts.log; fail "exit code $rc after SIGTERM, expected 143"; }
cmd=$(sed -n 's/.*: continue with `\(.*\)`$/\1/p' opts.log)
[ "$cmd" = "$nnd run 'my runs/long.nnd' --threads 1 --seed 3 --set opt.lr=0.002 --set steps=9999999 --resume ck" ] ||
    { cat opts.log; fail "the command to continue: $cmd"; }
step=$(sed -n 's/.*interrupted after step \([0-9]*\) of.*/\1/p' opts.log)
# exec: the run itself is $pid, so that the signal below reaches it (dash forks it)
sh -c "exec $cmd" > again.log 2>&1 &
pid=$!
i=0
until grep -q "^resuming from" again.log || ! kill -0 $pid 2> /dev/null; do
    i=$((i + 1))
    [ $i -lt 6000 ] || { kill -9 $pid; cat again.log; fail "no resume after 60 s"; }
    sleep 0.01
done
kill -TERM $pid 2> /dev/null
wait $pid
grep -q "^resuming from ck/step-0*$step.safetensors: step $step of 9999999$" again.log ||
    { cat again.log; fail "the printed command did not resume: $cmd"; }
# stopped in its turn, the resumed run names the same command (its --resume replaced)
again=$(sed -n 's/.*: continue with `\(.*\)`$/\1/p' again.log)
[ -z "$again" ] || [ "$again" = "$cmd" ] || { cat again.log; fail "the resumed run's command: $again"; }
echo "ok: the printed command resumes from step $step with the run's options"
