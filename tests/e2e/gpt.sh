#!/bin/sh
# gpt.sh NND EXAMPLE WORK: the byte-level GPT trains on the fortunes (60 steps take
# the validation loss from log(256) = 5.55 to below 3.1), saves its weights, and
# `nnd sample` generates from them, the same bytes for the same seed, with the
# key/value cache or without.
set -u
nnd=$1 example=$2 work=$3
fail() { echo "FAIL: $*"; exit 1; }
[ -d /usr/share/games/fortunes ] || { echo "skipped: no fortunes (apt-get install fortunes)"; exit 77; }
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 2
# the example, sampling every 30 steps
sed 's/sample every 250 steps:/sample every 30 steps:/' "$example" > gpt.nnd
grep -q "sample every 30 steps" gpt.nnd || fail "the example has no sample statement"
example=$PWD/gpt.nnd
"$nnd" run "$example" --set steps=60 --set cosine=0 > run.out 2>&1 || { cat run.out; fail "training"; }
cat run.out
[ "$(grep -c '^sample at step [36]0:$' run.out)" -eq 2 ] || fail "not two samples, at steps 30 and 60"
[ "$(grep -A1 '^sample at step [36]0:$' run.out | grep -c '^Q: ')" -eq 2 ] ||
    fail "the samples do not start with the prompt"
val=$(sed -n 's/.*eval val:  *loss \([0-9.]*\).*/\1/p' run.out | tail -n 1)
[ -n "$val" ] && awk -v v="$val" 'BEGIN { exit !(v < 3.1) }' || fail "validation loss '$val', not below 3.1"
grep -q "saved 52 parameters to gpt.safetensors" run.out || fail "no weights saved"
"$nnd" sample "$example" --prompt "Q: " --tokens 40 --seed 7 > a.txt 2> a.err || { cat a.err; fail "sample"; }
"$nnd" sample "$example" --prompt "Q: " --tokens 40 --seed 7 > b.txt 2> /dev/null || fail "sample again"
cat a.txt a.err
[ "$(wc -c < a.txt)" -eq 43 ] || fail "sample: $(wc -c < a.txt) bytes, not 3 + 40"
cmp -s a.txt b.txt || fail "the same seed gave different text"
grep -q "ms per byte (the key/value cache" a.err || fail "no time per byte with the cache"
# without the cache (a forward pass per byte): the same text while the context is
# not full; past it (3 + 100 > T = 64) both make the bytes asked for
"$nnd" sample "$example" --prompt "Q: " --tokens 40 --seed 7 --no-cache > n.txt 2> n.err ||
    { cat n.err; fail "sample --no-cache"; }
cat n.err
cmp -s a.txt n.txt || fail "the cache changed the text"
grep -q "no key/value cache: not asked for" n.err || fail "--no-cache: no time per byte"
"$nnd" sample "$example" --prompt "Q: " --tokens 100 > l.txt 2> l.err || { cat l.err; fail "100 bytes"; }
[ "$(wc -c < l.txt)" -eq 103 ] || fail "sample: $(wc -c < l.txt) bytes, not 3 + 100"
"$nnd" sample "$example" --prompt "Q: " --tokens 40 --seed 8 > c.txt 2> /dev/null || fail "sample, seed 8"
cmp -s a.txt c.txt && fail "another seed gave the same text"
# a model that is not a language model cannot be sampled
cat > mlp.nnd <<'NND'
use nn
use optim
train {
    data train = tensors(x = [[0, 0], [0, 1]], y = [[0], [1]])
    net = Dense(2, 1)
    loss = mse(net(x), y)
    opt = SGD(lr = 0.1)
    batch = 2
    steps = 1
    save "mlp.safetensors"
}
NND
"$nnd" run mlp.nnd > /dev/null 2>&1 || fail "the MLP"
"$nnd" sample mlp.nnd > s.out 2>&1 && fail "an MLP was sampled"
grep -q "sampling needs a language model" s.out || { cat s.out; fail "wrong message"; }
echo "ok: gpt"
