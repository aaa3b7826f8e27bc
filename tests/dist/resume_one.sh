#!/bin/sh
# resume_one.sh NND WORK: a checkpoint is nothing of N, one process included: one
# process's checkpoint resumes on 2 ranks and 2 ranks' on one process, as their
# own, with no note or warning about the directory or the gradient sums (a state of
# the distributed step, zero at every step boundary, which checkpoints leave out);
# a 2-rank run takes a directory of the same run's 1-process checkpoints as its own.
set -u
. "$(dirname "$0")/common.sh"
program adam "Adam(lr = 0.05)"
sed 's|save "net.safetensors"|checkpoint every 3 steps to "ck"\n    save "net.safetensors"|' adam.nnd > ck.nnd
grep -q 'checkpoint every 3 steps' ck.nnd || fail "no checkpoint statement"
"$nnd" run ck.nnd --dtype f64 > one.out 2>&1 || { cat one.out; fail "one process"; }
mv net.safetensors one.st && mv ck ck1
mpi 2 run ck.nnd --dtype f64 > two.out 2>&1 || { cat two.out; fail "2 ranks"; }
mv net.safetensors two.st && mv ck ck2
# quiet OUT: no note or warning (the directory holds this run's checkpoints)
quiet() { ! grep -E "note:|warning:" "$1" || { cat "$1"; fail "$1: a note or warning"; }; }
# resumed FROM OUT RUN...: FROM's checkpoints, the last one removed, resumed from
# the one before by RUN, equal to both unstopped runs
resumed() {
    from=$1 out=$2
    shift 2
    rm -rf ck && cp -r "$from" ck && rm ck/step-00000012.safetensors
    "$@" --dtype f64 --resume ck > "$out" 2>&1 || { cat "$out"; fail "$out: not resumed"; }
    grep -q "resuming from ck/step-00000009.safetensors: step 9 of 12" "$out" ||
        { cat "$out"; fail "$out: not from step 9"; }
    quiet "$out"
    compare 1e-12 one.st net.safetensors || fail "$out: not the run of one process"
    compare 1e-12 two.st net.safetensors || fail "$out: not the run of 2 ranks"
}
resumed ck1 r12.out mpi 2 run ck.nnd
resumed ck2 r21.out "$nnd" run ck.nnd
resumed ck1 r11.out "$nnd" run ck.nnd
cmp net.safetensors one.st || fail "resumed by one process: not the same bits"
resumed ck2 r22.out mpi 2 run ck.nnd
cmp net.safetensors two.st || fail "resumed on the same 2 ranks: not the same bits"
# the same run from the start on 2 ranks, in a directory of its 1-process checkpoints
rm -rf ck && cp -r ck1 ck
mpi 2 run ck.nnd --dtype f64 > fresh.out 2>&1 || { cat fresh.out; fail "a 2-rank run refused the 1-process run's checkpoints"; }
quiet fresh.out
cmp net.safetensors two.st || fail "fresh 2-rank run: not the bits of 2 ranks"
# accumulate = 2 (gradient sums in one process too): resumed, the same bits
rm -rf ck
"$nnd" run ck.nnd --dtype f64 --set accumulate=2 > acc.out 2>&1 || { cat acc.out; fail "accumulate = 2"; }
mv net.safetensors acc.st
last=$(ls ck/step-*.safetensors | tail -1)
rm "$last"
"$nnd" run ck.nnd --dtype f64 --set accumulate=2 --resume ck > racc.out 2>&1 || { cat racc.out; fail "accumulate = 2: not resumed"; }
quiet racc.out
cmp net.safetensors acc.st || fail "accumulate = 2, resumed: not the same bits"
echo "ok: dist_resume_one"
