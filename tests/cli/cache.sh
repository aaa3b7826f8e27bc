#!/bin/sh
# cache.sh NND EXAMPLES WORK: the compile cache.  A second run of a program takes its
# machine code from the cache (no LLVM passes) and trains to the same bits; a
# corrupt, truncated or foreign entry is ignored and rebuilt; NND_CACHE=0 writes
# nothing; a cache that cannot be written costs nothing but the cache.
set -u
nnd=$1 examples=$2 work=$3
fail() { echo "FAIL: $*"; exit 1; }
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 2
export NND_CACHE_DIR="$work/cache"
unset NND_CACHE
run() { "$nnd" run "$examples/$1" --time > "$2" 2>&1 || { cat "$2"; fail "$1"; }; }
run xor.nnd cold.out
grep -q "LLVM passes" cold.out || { cat cold.out; fail "the first run was not compiled"; }
entry=$(ls cache/*.o) || fail "no cache entry"
[ "$(ls cache | wc -l)" -eq 1 ] || fail "more than one entry"
run xor.nnd warm.out
grep -q "machine code from the cache" warm.out || { cat warm.out; fail "the second run did not use the cache"; }
[ "$(grep '^done:' cold.out)" = "$(grep '^done:' warm.out)" ] || fail "the cached code trained differently"
grep "^compile:" cold.out warm.out
# compiled in one part (one thread) or in parallel parts: the same code, the same bits
if [ "$(nproc)" -ge 2 ]; then
    grep -q "parallel parts" cold.out || fail "a cold compile on $(nproc) cores was not split"
fi
NND_CACHE=0 NND_COMPILE_THREADS=1 "$nnd" run "$examples/xor.nnd" --time > one.out 2>&1 || fail "one part"
grep -q "parallel parts" one.out && fail "NND_COMPILE_THREADS=1 split the compile"
[ "$(grep '^done:' cold.out)" = "$(grep '^done:' one.out)" ] || fail "one part trained differently"
for bad in 0 two ""; do
    NND_COMPILE_THREADS=$bad "$nnd" run "$examples/xor.nnd" > bad.out 2>&1 && fail "NND_COMPILE_THREADS='$bad' ran"
    grep -q "NND_COMPILE_THREADS='$bad' is not a thread count" bad.out || { cat bad.out; fail "no message for '$bad'"; }
done
# a byte changed in the middle of the object
printf 'XXXXXXXX' | dd of="$entry" bs=1 seek=200 conv=notrunc 2>/dev/null
run xor.nnd corrupt.out
grep -q "LLVM passes" corrupt.out || fail "a corrupt entry was used"
[ "$(grep '^done:' cold.out)" = "$(grep '^done:' corrupt.out)" ] || fail "after a corrupt entry"
run xor.nnd again.out
grep -q "machine code from the cache" again.out || fail "the corrupt entry was not rebuilt"
# cut short, as by a crash while writing (entries are written atomically anyway)
head -c 40 "$entry" > short && mv short "$entry"
run xor.nnd short.out
grep -q "LLVM passes" short.out || fail "a truncated entry was used"
# another program's entry under this program's name
run linear_regression.nnd other.out
other=$(ls cache/*.o | grep -v "$entry") || fail "no entry for the other program"
cp "$other" "$entry"
run xor.nnd foreign.out
grep -q "LLVM passes" foreign.out || fail "a foreign entry was used"
[ "$(grep '^done:' cold.out)" = "$(grep '^done:' foreign.out)" ] || fail "after a foreign entry"
# off
NND_CACHE=0 NND_CACHE_DIR="$work/off" "$nnd" run "$examples/xor.nnd" > off.out 2>&1 || fail "NND_CACHE=0"
[ ! -e off ] || fail "NND_CACHE=0 wrote a cache"
# a cache directory that cannot be made
touch blocked
NND_CACHE_DIR="$work/blocked/cache" "$nnd" run "$examples/xor.nnd" > blocked.out 2>&1 ||
    { cat blocked.out; fail "an unwritable cache stopped the run"; }
echo "ok: compile cache"
