#!/bin/sh
# build.sh NND WORK: nnd build's outputs (object, static archive, shared library,
# header), a cross build, and its errors named.
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
    data train = tensors(x = [[0, 0, 1], [0, 1, 0], [1, 0, 0]], y = [0, 1, 2])
    net = Net()
    loss = cross_entropy(net(x), i32(y))
    opt = SGD(lr = 0.1)
    batch = 2
    epochs = 1
}
NND
"$nnd" build net.nnd -o net.o --header net.h 2> err || { cat err; fail "object"; }
grep -q "^built net.o: net_forward for " err || fail "summary: $(cat err)"
grep -q "extern const NndAotModel net_model;" net.h || fail "header: no descriptor"
grep -q "static inline int net_forward(NndAot \*s, const float \*x, int64_t batch, float \*out)" net.h ||
    fail "header: no typed forward"
grep -q "#define NET_X_SIZE 3 /\* values per sample of x: \[batch, 3\] f32 \*/" net.h || fail "header: x"
grep -q "net_step" net.h && fail "header: a step without --train"
"$nnd" build net.nnd -o libnet.a --train --header net_train.h 2> err || { cat err; fail "archive"; }
[ "$(ar t libnet.a)" = "net.o" ] || fail "archive members: $(ar t libnet.a)"
grep -q "static inline int net_step(NndAot \*s, const float \*x, const float \*y" net_train.h ||
    fail "header: no typed step"
grep -q "opt.lr  *0.10000000000000001" net_train.h || fail "header: hyper-parameters"
"$nnd" build net.nnd -o libnet.so 2> err || { cat err; fail "shared library"; }
[ "$(nm -D --defined-only libnet.so | awk '{print $3}')" = "net_model" ] ||
    fail "shared library exports: $(nm -D --defined-only libnet.so)"
"$nnd" build net.nnd -o arm.o --target aarch64-linux-gnu --cpu generic 2> err || { cat err; fail "cross"; }
od -A n -t x1 -j 18 -N 2 arm.o | grep -q "b7 00" || fail "not an AArch64 object"
expect() { # expect PATTERN ARGS...: exit status 1 or 2 and a matching line on stderr
    pattern=$1
    shift
    "$nnd" build "$@" > /dev/null 2> err
    status=$?
    { [ $status -eq 1 ] || [ $status -eq 2 ]; } && grep -q -- "$pattern" err ||
        { echo "stderr:"; cat err; fail "nnd build $*: exit $status, no '$pattern'"; }
}
expect "build needs -o" net.nnd
expect "LLVM does not know CPU 'notacpu'" net.nnd -o x.o --cpu notacpu
expect "no LLVM target for 'nonsense'" net.nnd -o x.o --target nonsense
# an unknown triple is named as such, not blamed on the CPU given with it
expect "no LLVM target for 'nonsense-triple'" net.nnd -o x.o --target nonsense-triple --cpu x
grep -q "CPU" err && fail "an unknown triple blamed on the CPU: $(cat err)"
expect "'my-net' is not a C identifier" net.nnd -o x.o --name my-net
expect "missing.safetensors: cannot open" net.nnd -o x.o --weights missing.safetensors
expect "nowhere/x.o" net.nnd -o nowhere/x.o
sed 's/fn forward(x: \[B, 3\])/fn forward(x: [B, 3], s: [B, 3])/; s/= fc(x)/= fc(x + s)/; s/net(x)/net(x, x)/' net.nnd > two.nnd
expect "no forward function" two.nnd -o x.o
[ ! -e x.o ] || fail "a failed build left x.o"
echo "ok: nnd build"
