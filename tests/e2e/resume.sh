#!/bin/sh
# Resume: a run killed (SIGKILL) at a random moment and resumed from its newest
# checkpoint ends with the same bits as a run never stopped; so does one resumed
# from an older checkpoint file.  usage: resume.sh NND WORKDIR
set -u
nnd=$1 work=$2
if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
    echo "skipped: Fashion-MNIST is not installed (Debian: dataset-fashion-mnist)"
    exit 77
fi
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
cat > run.nnd <<'NND'
use nn
use optim
let fmnist = "/usr/share/datasets/fashion-mnist/"
model Mlp {
    fc1 = Dense(784, 64)
    drop = Dropout(0.2)
    fc2 = Dense(64, 10)
    fn forward(x: [B, 784]) = fc2(drop(relu(fc1(x))))
}
train {
    data train = idx(fmnist + "train-images-idx3-ubyte.gz", fmnist + "train-labels-idx1-ubyte.gz",
                     scale = 1/255, shape = [784])
    net = Mlp()
    loss = cross_entropy(net(x), y)
    opt = Adam(lr = 1e-3)
    batch = 32
    steps = 4000
    seed = 3
    checkpoint every 150 steps to "ck" keep 3
    save "final.safetensors"
}
NND
"$nnd" run run.nnd --threads 2 > full.log 2>&1 || { cat full.log; exit 1; }
mv final.safetensors full.safetensors
ls ck
older=$(ls ck | head -n 1)
rm -f final.safetensors
"$nnd" run run.nnd --threads 2 --resume "ck/$older" > older.log 2>&1 || { cat older.log; exit 1; }
cmp final.safetensors full.safetensors || { echo "FAIL: resumed from ck/$older, the weights differ"; exit 1; }
echo "ok: resumed from ck/$older: bit-identical"
for round in 1 2 3; do
    rm -rf ck final.safetensors
    "$nnd" run run.nnd --threads 2 > killed.log 2>&1 &
    pid=$!
    # somewhere in the training (it takes a second or two here)
    delay=$(awk -v s="$round$$" 'BEGIN { srand(s); printf "%.2f", 0.6 + 1.6 * rand() }')
    sleep "$delay"
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    if ls ck/step-*.safetensors > /dev/null 2>&1; then
        from="--resume ck"
    else
        from="" # killed before the first checkpoint: start over
    fi
    # shellcheck disable=SC2086
    "$nnd" run run.nnd --threads 2 $from > resumed.log 2>&1 || { cat resumed.log; exit 1; }
    cmp final.safetensors full.safetensors ||
        { echo "FAIL: killed after ${delay}s, resumed ($from): the weights differ"; cat resumed.log; exit 1; }
    echo "ok: killed after ${delay}s, $(grep -o 'resuming from [^:]*: step [0-9]*' resumed.log || echo 'before any checkpoint'): bit-identical"
done
