#!/bin/sh
# runtime_only.sh PROGRAM OBJECT NND NET WORK: an AOT-built model runs with the
# runtime alone.  The object defines only its descriptor and calls only the runtime
# and libc; the program links no LLVM; it classifies test images with weights that
# `nnd run` trained for a few steps, as `nnd predict` does.
set -u
prog=$1 obj=$2 nnd=$3 net=$4 work=$5
fail() { echo "FAIL: $*"; exit 1; }
mkdir -p "$work" && cd "$work" || exit 2
defined=$(nm --defined-only "$obj" | awk '$2 ~ /[A-Z]/ {print $3}')
[ "$defined" = "net_fwd_model" ] || fail "the object exports more than its descriptor: $defined"
undefined=$(nm --undefined-only "$obj" | awk '{print $2}' | grep -v -E '^(nnd_[a-z0-9_]+|memset|memcpy|memmove)$')
[ -z "$undefined" ] || fail "the object calls outside the runtime: $undefined"
if ldd "$prog" | grep -i llvm; then fail "the program links LLVM"; fi
# weights: a few training steps, saved
sed -e 's|^    epochs = 1$|    steps = 20\n    save "aot_w.safetensors"|' "$net" > train.nnd
"$nnd" run train.nnd > run.out 2>&1 || { cat run.out; fail "nnd run"; }
images=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
"$prog" aot_w.safetensors "$images" > out.txt 2>&1 || { cat out.txt; fail "the AOT program"; }
cat out.txt
# the same classes from the JIT (nnd predict)
aot=$(sed -n '1p' out.txt)
echo "$aot" | grep -q -E '^[0-9]( [0-9]){7}$' || fail "no classes: $(cat out.txt)"
"$nnd" predict train.nnd --input "$images" --top 1 > top.csv 2> predict.err ||
    { cat predict.err; fail "nnd predict"; }
jit=$(sed -n '2,9p' top.csv | cut -d, -f1 | tr '\n' ' ' | sed 's/ $//')
[ "$aot" = "$jit" ] || fail "AOT classes '$aot', nnd predict's '$jit'"
echo "ok: AOT model with the runtime alone"
