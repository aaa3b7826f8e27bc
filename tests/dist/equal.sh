#!/bin/sh
# equal.sh NND WORK: N ranks make the updates one process makes at the same global
# batch: Adam with clip_norm in f64 on 2 and 3 ranks (batches of 10 split 5/5 and
# 3/3/4, the last batch of 3 split 1/2 and 1/1/1) to 1e-12 relative; LAMB (per-tensor
# norms of the global update) with accumulate = 2 on 3 ranks; f32 to rounding.
set -u
. "$(dirname "$0")/common.sh"
program adam "Adam(lr = 0.05)"
"$nnd" run adam.nnd --dtype f64 > one.out 2>&1 || { cat one.out; fail "one process"; }
mv net.safetensors one.st
for np in 2 3; do
    mpi $np run adam.nnd --dtype f64 > mpi$np.out 2>&1 || { cat mpi$np.out; fail "$np ranks"; }
    mv net.safetensors mpi$np.st
    grep -q "compiled, 1 thread, $np ranks (MPI)" mpi$np.out || { cat mpi$np.out; fail "not $np ranks"; }
    [ "$(grep -c '^done: 12 steps' mpi$np.out)" -eq 1 ] || fail "rank 0 alone should print"
done
cat mpi3.out
# the compiled step starts each gradient sum's all-reduce as soon as it is final
# (4 sums a step, 12 steps); the interpreter leaves them to the end, same result
grep -q "48 of 48 gradient sums started during the backward pass" mpi2.out || fail "no overlap"
mpi 2 run adam.nnd --dtype f64 --interp > interp.out 2>&1 || { cat interp.out; fail "interpreter"; }
mv net.safetensors interp.st
grep -q "0 of 48 gradient sums started during the backward pass" interp.out || fail "interpreter"
compare 1e-12 one.st mpi2.st mpi3.st interp.st || fail "Adam in f64"
program lamb "LAMB(lr = 0.05, wd = 0.01)"
"$nnd" run lamb.nnd --dtype f64 --set accumulate=2 > lamb1.out 2>&1 || { cat lamb1.out; fail "LAMB"; }
mv net.safetensors lamb1.st
mpi 3 run lamb.nnd --dtype f64 --set accumulate=2 > lamb3.out 2>&1 || { cat lamb3.out; fail "LAMB, 3 ranks"; }
mv net.safetensors lamb3.st
compare 1e-12 lamb1.st lamb3.st || fail "LAMB with accumulate in f64"
"$nnd" run adam.nnd > f32.out 2>&1 || fail "f32"
mv net.safetensors f32one.st
mpi 2 run adam.nnd > f32mpi.out 2>&1 || { cat f32mpi.out; fail "f32, 2 ranks"; }
mv net.safetensors f32mpi.st
compare 1e-5 f32one.st f32mpi.st || fail "Adam in f32"
echo "ok: dist_equal"
