#!/bin/sh
# equal.sh NND WORK: N ranks make the updates one process makes at the same global
# batch: Adam with clip_norm in f64 on 2 and 3 ranks (batches of 10 split 5/5 and
# 3/3/4, the last batch of 3 split 1/2 and 1/1/1) to 1e-12 relative; LAMB (per-tensor
# norms of the global update) with accumulate = 2 on 3 ranks; f32 to rounding; a log's
# weight histograms on 2 ranks.
set -u
. "$(dirname "$0")/common.sh"
program adam "Adam(lr = 0.05)"
"$nnd" run adam.nnd --dtype f64 > one.out 2>&1 || { cat one.out; fail "one process"; }
mv net.safetensors one.st
# 2 ranks reduce each gradient sum alone (no buckets), 3 ranks in one bucket
for np in 2 3; do
    bucket=$([ $np = 2 ] && echo 0 || echo 1048576)
    NND_DIST_BUCKET_BYTES=$bucket mpi $np run adam.nnd --dtype f64 > mpi$np.out 2>&1 ||
        { cat mpi$np.out; fail "$np ranks"; }
    mv net.safetensors mpi$np.st
    grep -q "compiled, 1 thread, $np ranks (MPI)" mpi$np.out || { cat mpi$np.out; fail "not $np ranks"; }
    [ "$(grep -c '^done: 12 steps' mpi$np.out)" -eq 1 ] || fail "rank 0 alone should print"
done
# a bucket size that is not a number is an error, not the default
NND_DIST_BUCKET_BYTES=12kb mpi 2 run adam.nnd > badbucket.out 2>&1 && fail "NND_DIST_BUCKET_BYTES=12kb ran"
grep -q "NND_DIST_BUCKET_BYTES='12kb' is not a byte count" badbucket.out || { cat badbucket.out; fail "no message"; }
# --profile times one process's step: refused under mpirun, not a listing of zeros
mpi 2 run adam.nnd --profile > profile.out 2>&1 && fail "--profile ran under mpirun"
grep -q "a distributed run's steps are not timed yet" profile.out || { cat profile.out; fail "no --profile message"; }
cat mpi3.out
# the compiled step starts each gradient sum's all-reduce as soon as it is final:
# of 4 sums a step (12 steps), all but fc1.W's before the last product (fc1.W's
# gradient); in one bucket, all after it.  The interpreter leaves them to the end,
# same result
grep -q "4 all-reduces a step); 36 of 48 gradient sums started during the backward pass" mpi2.out ||
    fail "no overlap"
grep -q "1 all-reduce a step); 0 of 48 gradient sums started" mpi3.out || fail "no bucket"
mpi 2 run adam.nnd --dtype f64 --interp > interp.out 2>&1 || { cat interp.out; fail "interpreter"; }
mv net.safetensors interp.st
grep -q "0 of 48 gradient sums started during the backward pass" interp.out || fail "interpreter"
compare 1e-12 one.st mpi2.st mpi3.st interp.st || fail "Adam in f64"
program lamb "LAMB(lr = 0.05, wd = 0.01)"
"$nnd" run lamb.nnd --dtype f64 --set accumulate=2 > lamb1.out 2>&1 || { cat lamb1.out; fail "LAMB"; }
mv net.safetensors lamb1.st
# buckets of at most 600 bytes: fc2.b, fc2.W and fc1.b in one, fc1.W alone
NND_DIST_BUCKET_BYTES=600 mpi 3 run lamb.nnd --dtype f64 --set accumulate=2 > lamb3.out 2>&1 ||
    { cat lamb3.out; fail "LAMB, 3 ranks"; }
grep -q "2 all-reduces a step" lamb3.out || { cat lamb3.out; fail "LAMB: 2 buckets"; }
mv net.safetensors lamb3.st
compare 1e-12 lamb1.st lamb3.st || fail "LAMB with accumulate in f64"
"$nnd" run adam.nnd > f32.out 2>&1 || fail "f32"
mv net.safetensors f32one.st
mpi 2 run adam.nnd > f32mpi.out 2>&1 || { cat f32mpi.out; fail "f32, 2 ranks"; }
mv net.safetensors f32mpi.st
compare 1e-5 f32one.st f32mpi.st || fail "Adam in f32"
# a log with weight histograms under mpirun (the apply step computes each weight's
# range and sums): the last step's are those of the weights saved (protoc decodes)
if command -v protoc > /dev/null; then
    sed 's|^    seed = 3$|    seed = 3\n    log every step to "hlogs": loss, histograms|' adam.nnd > hist.nnd
    mpi 2 run hist.nnd --name h > hist.out 2>&1 || { cat hist.out; fail "a log with histograms"; }
    /usr/bin/python3 "$here/../log/check_histograms.py" hlogs/h/events.out.tfevents.* \
        net.safetensors 12 > hist.txt || { cat hist.txt; fail "histograms under mpirun"; }
    cat hist.txt
fi
# a training set in files: each rank maps the file and reads only its parts of the
# batches (f32 npy read as f64 with a split; u8 idx scaled and reshaped, in f32); a
# gzip file is loaded whole by every rank
/usr/bin/python3 - <<'PY' || fail "writing the data files"
import gzip, struct
import numpy as np
rng = np.random.default_rng(7)
x = rng.standard_normal((29, 4)).astype(np.float32)
y = (np.arange(29) % 3).astype(np.int32)
np.save("x.npy", x)
np.save("y.npy", y)
img = rng.integers(0, 256, (29, 2, 2), dtype=np.uint8)
idx = struct.pack(">BBBBIII", 0, 0, 8, 3, 29, 2, 2) + img.tobytes()
open("x.idx", "wb").write(idx)
gzip.open("x.idx.gz", "wb").write(idx)
open("y.idx", "wb").write(struct.pack(">BBBBI", 0, 0, 8, 1, 29) + y.astype(np.uint8).tobytes())
PY
files() { sed "s|DATA|$2|" "$here/files.nnd" > "$1.nnd"; }
files npy 'npy("x.npy", "y.npy", split = [0, 0.8])'
files idx 'idx("x.idx", "y.idx", scale = 1 \/ 255, shape = [4])'
files gz 'idx("x.idx.gz", "y.idx", scale = 1 \/ 255, shape = [4])'
"$nnd" run npy.nnd --dtype f64 > npy1.out 2>&1 || { cat npy1.out; fail "npy, one process"; }
mv net.safetensors npy1.st
mpi 3 run npy.nnd --dtype f64 > npy3.out 2>&1 || { cat npy3.out; fail "npy, 3 ranks"; }
mv net.safetensors npy3.st
grep -q "^data: each rank reads the samples of its part of each batch from x.npy" npy3.out ||
    { cat npy3.out; fail "npy: not read on demand"; }
compare 1e-12 npy1.st npy3.st || fail "npy read on demand, f64"
"$nnd" run idx.nnd > idx1.out 2>&1 || { cat idx1.out; fail "idx, one process"; }
mv net.safetensors idx1.st
mpi 2 run idx.nnd > idx2.out 2>&1 || { cat idx2.out; fail "idx, 2 ranks"; }
mv net.safetensors idx2.st
grep -q "^data: each rank reads the samples of its part of each batch from x.idx" idx2.out ||
    { cat idx2.out; fail "idx: not read on demand"; }
compare 1e-5 idx1.st idx2.st || fail "idx read on demand, f32"
mpi 2 run gz.nnd > gz2.out 2>&1 || { cat gz2.out; fail "gzip idx, 2 ranks"; }
mv net.safetensors gz2.st
grep -q "^data: each rank loads all of x.idx.gz, its values as stored (only an uncompressed" gz2.out ||
    { cat gz2.out; fail "gzip: loaded whole"; }
compare 0 idx2.st gz2.st || fail "the same samples mapped and loaded"
echo "ok: dist_equal"
