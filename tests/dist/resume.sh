#!/bin/sh
# resume.sh NND WORK: a checkpoint written by 3 ranks resumes on 2 (and on 3, giving
# the bits of the run that was never stopped).
set -u
. "$(dirname "$0")/common.sh"
program adam "Adam(lr = 0.05)"
sed 's|save "net.safetensors"|checkpoint every 3 steps to "ck"\n    save "net.safetensors"|' adam.nnd > ck.nnd
grep -q 'checkpoint every 3 steps' ck.nnd || fail "no checkpoint statement"
mpi 3 run ck.nnd --dtype f64 > full.out 2>&1 || { cat full.out; fail "3 ranks"; }
mv net.safetensors full3.st
[ -f ck/step-00000006.safetensors ] || { ls ck; fail "no checkpoint at step 6"; }
mv ck ck3
"$nnd" run adam.nnd --dtype f64 > one.out 2>&1 || fail "one process"
mv net.safetensors one.st
mpi 2 run ck.nnd --dtype f64 --resume ck3/step-00000006.safetensors > r2.out 2>&1 ||
    { cat r2.out; fail "resume on 2 ranks"; }
cat r2.out
grep -q "resuming from ck3/step-00000006.safetensors: step 6 of 12" r2.out || fail "not resumed"
mv net.safetensors r2.st
compare 1e-12 one.st r2.st || fail "resumed on 2 ranks"
rm -rf ck
mpi 3 run ck.nnd --dtype f64 --resume ck3/step-00000006.safetensors > r3.out 2>&1 ||
    { cat r3.out; fail "resume on 3 ranks"; }
cmp net.safetensors full3.st || fail "resumed on the same 3 ranks: not the same bits"
echo "ok: dist_resume"
