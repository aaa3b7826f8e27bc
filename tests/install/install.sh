#!/bin/sh
# install.sh BUILD SOURCE WORK: nnd installed into a fresh prefix, then used as an
# outside project would: the embedding examples built with pkg-config (shared
# libraries) and with find_package(nnd) (the static libnnd.a), and run: a C
# training loop, a classifier through libnnd, and the same model compiled ahead of
# time and linked with the runtime alone (no LLVM).  JIT and AOT must agree.
set -u
build=$1 src=$2 work=$3
fail() { echo "FAIL: $*"; exit 1; }
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 2
prefix=$work/prefix
cmake --install "$build" --prefix "$prefix" > install.log 2>&1 || { cat install.log; fail "cmake --install"; }
for f in bin/nnd lib/libnnd.so lib/libnnd.a lib/libnnd_runtime.so lib/libnnd_runtime.a \
         include/nnd/nnd.h include/nnd/nnd_aot.h include/nnd/nnd_runtime.h \
         lib/pkgconfig/nnd.pc lib/pkgconfig/nnd-runtime.pc lib/cmake/nnd/nndConfig.cmake \
         share/nnd/stdlib/nn.nnd; do
    [ -e "$prefix/$f" ] || fail "not installed: $f"
done
# the installed nnd uses the installed standard library, not the source tree's
printf 'fn only_installed(x) = x\n' > "$prefix/share/nnd/stdlib/only_installed.nnd"
printf 'use only_installed\nfn f(x) = only_installed(x)\n' > uses.nnd
"$prefix/bin/nnd" check uses.nnd > uses.out 2>&1 || { cat uses.out; fail "the installed nnd did not use its stdlib"; }
"$build/nnd" check uses.nnd > uses.out 2>&1 && fail "the build tree's nnd used the installed stdlib"
rm "$prefix/share/nnd/stdlib/only_installed.nnd"
[ "$("$prefix/bin/nnd" --version)" = "nnd $(sed -n 's/^#define NND_VERSION "\(.*\)"$/\1/p' "$prefix/include/nnd/nnd.h")" ] ||
    fail "nnd --version says '$("$prefix/bin/nnd" --version)', nnd.h another version"
extra=$(nm -D --defined-only "$prefix/lib/libnnd.so" | awk '{print $3}' | grep -v '^nnd_' | head -3)
[ -z "$extra" ] || fail "libnnd.so exports more than nnd_ functions: $extra"
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig LD_LIBRARY_PATH=$prefix/lib
cflags=${NND_CONSUMER_CFLAGS:-} # the sanitizer build's libraries need it in consumers too
ex=$src/examples
fm=/usr/share/datasets/fashion-mnist
# weights: one epoch of the MLP, by the installed nnd
"$prefix/bin/nnd" run "$ex/fashion_mnist_mlp.nnd" --set epochs=1 > run.out 2>&1 || { cat run.out; fail "nnd run"; }
want=$(sed -n 's/.*eval test:  *accuracy \([0-9.]*\).*/\1/p' run.out | tail -n 1)
# pkg-config, shared libraries
cc -O2 $cflags "$ex/embed/train_loop.c" $(pkg-config --cflags --libs nnd) -o train_loop || fail "build train_loop"
cc -O2 $cflags "$ex/embed/classify.c" $(pkg-config --cflags --libs nnd) -o classify || fail "build classify"
./train_loop "$ex/xor.nnd" xor.safetensors > loop.out 2>&1 || { cat loop.out; fail "train_loop"; }
cat loop.out
grep -q "opt.lr 0.05 -> 0.01" loop.out || fail "train_loop did not change the learning rate"
grep -q "^saved xor.safetensors" loop.out || fail "train_loop did not save"
awk '/^xor:/ { exit !($2 < 0.2 && $3 > 0.8 && $4 > 0.8 && $5 < 0.2) }' loop.out || fail "xor not learned"
./classify "$ex/fashion_mnist_mlp.nnd" fashion_mnist_mlp.safetensors \
    "$fm/t10k-images-idx3-ubyte.gz" "$fm/t10k-labels-idx1-ubyte.gz" > jit.out 2>&1 ||
    { cat jit.out; fail "classify"; }
cat jit.out
got=$(sed -n 's/^accuracy \([0-9.]*\) on 10000 images$/\1/p' jit.out)
[ -n "$want" ] && [ "$got" = "$want" ] || fail "classify's accuracy '$got', the run's '$want'"
# ahead of time, weights embedded, the runtime alone
"$prefix/bin/nnd" build "$ex/fashion_mnist_mlp.nnd" --weights fashion_mnist_mlp.safetensors \
    -o mlp.o --header mlp.h --name mlp 2> build.err || { cat build.err; fail "nnd build"; }
cc -O2 $cflags -I. "$ex/embed/aot_classify.c" mlp.o $(pkg-config --cflags --libs nnd-runtime) -o aot_classify ||
    fail "build aot_classify"
if ldd ./aot_classify | grep -i llvm; then fail "aot_classify links LLVM"; fi
./aot_classify "$fm/t10k-images-idx3-ubyte.gz" "$fm/t10k-labels-idx1-ubyte.gz" > aot.out 2>&1 ||
    { cat aot.out; fail "aot_classify"; }
cat aot.out
[ "$(tail -n 1 aot.out)" = "$(tail -n 1 jit.out)" ] || fail "AOT and JIT accuracies differ"
# find_package(nnd), static libnnd.a
cat > CMakeLists.txt <<'CM'
cmake_minimum_required(VERSION 3.20)
project(consumer C)
find_package(nnd 0.1 REQUIRED)
add_executable(train_loop_static train_loop.c)
target_link_libraries(train_loop_static PRIVATE nnd::nnd_static)
add_executable(aot_static aot_classify.c mlp.o)
target_include_directories(aot_static PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(aot_static PRIVATE nnd::runtime_static)
CM
cp "$ex/embed/train_loop.c" "$ex/embed/aot_classify.c" .
cmake -S . -B cm -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_FLAGS="$cflags" \
    -DCMAKE_EXE_LINKER_FLAGS="$cflags" > cm.log 2>&1 &&
    cmake --build cm >> cm.log 2>&1 || { cat cm.log; fail "find_package(nnd) build"; }
ldd cm/train_loop_static | grep -q libnnd && fail "train_loop_static links libnnd.so"
./cm/train_loop_static "$ex/xor.nnd" xor2.safetensors > loop2.out 2>&1 || { cat loop2.out; fail "static train_loop"; }
grep -v '^saved' loop.out > a.txt && grep -v '^saved' loop2.out > b.txt
cmp -s a.txt b.txt || { diff a.txt b.txt; fail "static and shared train_loop differ"; }
./cm/aot_static "$fm/t10k-images-idx3-ubyte.gz" "$fm/t10k-labels-idx1-ubyte.gz" > aot2.out 2>&1 ||
    { cat aot2.out; fail "static aot"; }
cmp -s aot.out aot2.out || fail "static and shared AOT differ"
echo "ok: installed nnd used through pkg-config and find_package(nnd)"
