#!/bin/sh
# A run stopped by a signal: SIGTERM (or Ctrl-C's SIGINT) stops it after the update
# it is in, writes a checkpoint there when the program checkpoints, and exits
# 128 + the signal's number; resumed, it ends with the bits of a run never stopped.
# Without a checkpoint statement it says nothing was saved and writes no save.
# usage: interrupt.sh NND WORKDIR
set -u
nnd=$1 work=$2
data=/usr/share/datasets/fashion-mnist
[ -r "$data/train-images-idx3-ubyte.gz" ] || { echo "skip: no $data"; exit 77; }
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
cat > mlp.nnd <<'NND'
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
    epochs = 150
    seed = 9
    checkpoint every 40 steps to "ck" keep 2
    save "final.safetensors"
}
NND
fail() { echo "FAIL: $*"; exit 1; }
"$nnd" run mlp.nnd --threads 1 > full.log 2>&1 || { cat full.log; fail "the whole run"; }
mv final.safetensors full.safetensors
rm -rf ck
# stopped once its first checkpoint is written
"$nnd" run mlp.nnd --threads 1 > stop.log 2>&1 &
pid=$!
i=0
until ls ck/step-*.safetensors > /dev/null 2>&1; do
    i=$((i + 1))
    [ $i -lt 3000 ] || { kill -9 $pid; fail "no checkpoint after 30 s"; }
    sleep 0.01
done
kill -TERM $pid
wait $pid
rc=$?
[ $rc -eq 143 ] || { cat stop.log; fail "exit code $rc after SIGTERM, expected 143"; }
grep -q "nnd: interrupted after step [0-9]* of 6000; checkpoint written in ck: continue with \`nnd run mlp.nnd --resume ck\`" stop.log ||
    { cat stop.log; fail "no message on the interrupt"; }
[ -e final.safetensors ] && fail "an interrupted run wrote its save"
step=$(sed -n 's/.*interrupted after step \([0-9]*\) of.*/\1/p' stop.log)
[ "$step" -lt 6000 ] || fail "stopped at step $step: the run had ended"
ck=$(printf 'ck/step-%08d.safetensors' "$step")
[ -e "$ck" ] || fail "no checkpoint of step $step: $(ls ck)"
"$nnd" run mlp.nnd --threads 1 --resume ck > resume.log 2>&1 || { cat resume.log; fail "resume"; }
grep -q "resuming from $ck: step $step of 6000" resume.log || { cat resume.log; fail "did not resume from $ck"; }
cmp final.safetensors full.safetensors || fail "stopped at step $step and resumed: the weights differ"
echo "ok: SIGTERM at step $step of 6000, checkpoint written, resumed: bit-identical"

# Ctrl-C without a checkpoint statement (python starts it with SIGINT not ignored,
# as a terminal would)
grep -v "checkpoint every" mlp.nnd > nock.nnd
rm -f final.safetensors
python3 - "$nnd" <<'PY' || fail "SIGINT"
import signal, subprocess, sys, time
p = subprocess.Popen([sys.argv[1], "run", "nock.nnd", "--threads", "1"], stdout=subprocess.PIPE,
                     stderr=subprocess.STDOUT, text=True)
for line in p.stdout:
    if line.startswith("training on"):
        time.sleep(0.3)
        p.send_signal(signal.SIGINT)
        break
out = p.stdout.read()
rc = p.wait()
print(out)
assert rc == 130, f"exit code {rc} after SIGINT, expected 130"
assert "; nothing saved (a `checkpoint every N steps to \"DIR\"` statement" in out, out
PY
[ -e final.safetensors ] && fail "an interrupted run wrote its save"
echo "ok: SIGINT without checkpoints: nothing saved, exit 130"
