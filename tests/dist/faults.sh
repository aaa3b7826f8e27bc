#!/bin/sh
# faults.sh NND WORK: a rank killed mid-run ends the job within 30 s with a non-zero
# status and leaves its checkpoints whole (a resume from the last one works);
# ranks given different settings are refused at start, naming the difference.
set -u
. "$(dirname "$0")/common.sh"
program adam "Adam(lr = 0.05)"
sed 's/epochs = 4/epochs = 100000000/; s|save "net.safetensors"|checkpoint every 2000 steps to "ck" keep 2\n    save "net.safetensors"|' adam.nnd > long.nnd
grep -q "checkpoint every 2000" long.nnd || fail "no checkpoint statement"
mpi 2 run long.nnd > kill.out 2>&1 &
job=$!
# whatever happens, no rank outlives the test
trap 'kill -9 $job 2>/dev/null; pkill -9 -f "$work/long.nnd" 2>/dev/null; pkill -9 -f " run long.nnd" 2>/dev/null' EXIT
i=0
# (ls of the directory: with a checkpoint every 2000 steps and keep 2, a file the
# glob named may be gone by the time ls looks at it)
have_ckpt() { ls ck 2> /dev/null | grep -q "^step-.*\.safetensors$"; }
while ! have_ckpt && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
have_ckpt || { kill $job; cat kill.out; fail "no checkpoints after 60 s"; }
sleep 1
victim=$(pgrep -x nnd -P "$(pgrep -f "mpirun --oversubscribe -np 2 $nnd run long.nnd" | head -1)" | tail -1)
[ -n "$victim" ] || victim=$(pgrep -x nnd | tail -1)
kill -9 "$victim" || fail "no rank to kill"
t0=$(date +%s)
while kill -0 $job 2>/dev/null && [ $(($(date +%s) - t0)) -lt 30 ]; do sleep 0.2; done
kill -0 $job 2>/dev/null && { kill -9 $job; pkill -9 -x nnd; fail "the job still runs 30 s after a rank was killed"; }
wait $job
rc=$?
cat kill.out
[ $rc -ne 0 ] || fail "the job ended with status 0 after a rank was killed"
echo "the job ended $(($(date +%s) - t0)) s after rank pid $victim was killed, status $rc"
last=$(ls ck/step-*.safetensors | tail -1)
[ -n "$last" ] || fail "no checkpoint left"
step=$(basename "$last" .safetensors | sed 's/^step-0*//')
mpi 2 run long.nnd --resume "$last" --set steps=$((step + 6)) > again.out 2>&1 ||
    { cat again.out; fail "the last checkpoint does not resume"; }
grep -q "^done: $((step + 6)) steps" again.out || { cat again.out; fail "the resumed run did not finish"; }
# different settings on the ranks
mpirun --oversubscribe -np 2 sh -c 'exec "$0" run "$1" --set "opt.lr=0.0$((OMPI_COMM_WORLD_RANK + 1))"' \
    "$nnd" adam.nnd > mismatch.out 2>&1 && { cat mismatch.out; fail "ranks with different settings ran"; }
cat mismatch.out
grep -q "the ranks differ in the value of 'opt.lr'" mismatch.out || fail "the difference is not named"
echo "ok: dist_faults"
