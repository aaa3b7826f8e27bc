#!/bin/sh
# save.sh NND WORKDIR: `save` never renames over what is not a regular file, writes
# through symbolic links, and refuses a bad target before training, not after; so
# do `log` and `checkpoint` a directory they cannot make.
set -u
nnd=$1 work=$2
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
fail=0
prog() { # prog FILE SAVE-PATH [STATEMENT]: a one-step program that saves to SAVE-PATH
    stmt="save \"$2\""
    [ -n "${3:-}" ] && stmt=$3
    cat > "$1" <<EOT
use nn
use optim
model M {
    fc = Dense(1, 1)
    fn forward(x) = fc(x)
}
train {
    data train = tensors(x = [[1], [2]], y = [[2], [4]])
    net = M()
    loss = mse(net(x), y)
    opt = SGD()
    steps = 1
    $stmt
}
EOT
}
refused() { # refused SAVE-PATH PATTERN [STATEMENT]
    prog bad.nnd "$1" "${3:-}"
    out=$("$nnd" run bad.nnd 2>&1)
    status=$?
    if [ $status -ne 1 ] || ! printf '%s\n' "$out" | grep -q -- "$2" || printf '%s\n' "$out" | grep -q "^training on"; then
        echo "FAIL: ${3:-save \"$1\"}: exit status $status, expected 1 before training with '$2':"
        printf '%s\n' "$out"
        fail=1
    fi
}
refused /dev/full "bad.nnd:13:5: error: cannot save there: /dev/full: not a regular file (a device)"
[ -c /dev/full ] || { echo "FAIL: /dev/full is no longer a device"; fail=1; }
mkdir adir.safetensors
refused adir.safetensors "not a regular file (a directory)"
mkfifo fifo.safetensors
refused fifo.safetensors "not a regular file (a FIFO)"
refused nodir/m.safetensors "the directory nodir does not exist"
ln -s missing.safetensors dangling.safetensors
refused dangling.safetensors "a symbolic link to a file that cannot be reached"
# a log or checkpoint directory that is a file, or inside one, at the string
echo x > afile.nnd
refused - 'bad.nnd:13:26: error: cannot log there: afile.nnd: not a directory (a regular file)' \
    'log every 1 steps to "afile.nnd": loss'
refused - 'bad.nnd:13:33: error: cannot checkpoint there: afile.nnd/ck: afile.nnd is not a directory (a regular file)' \
    'checkpoint every 1 steps to "afile.nnd/ck"'
prog named.nnd - 'log every 1 steps to "runs": loss'
mkdir runs && echo x > runs/taken
out=$("$nnd" run named.nnd --name taken 2>&1)
[ $? -eq 1 ] && printf '%s\n' "$out" | grep -q 'cannot log there: runs/taken: not a directory (a regular file)' ||
    { echo "FAIL: --name taken, a file in the log directory:"; printf '%s\n' "$out"; fail=1; }
# --name of a run that logged there already: refused before training (its log would
# be mixed with this one's), unless --resume continues that run
prog logged.nnd - 'log every 1 steps to "runs": loss
    checkpoint every 1 steps to "lck"'
"$nnd" run logged.nnd --name first > first.log 2>&1 || { cat first.log; fail=1; }
cp runs/first/metrics.csv first.csv
out=$("$nnd" run logged.nnd --name first 2>&1)
{ [ $? -eq 1 ] && printf '%s\n' "$out" | grep -q "^nnd: --name first: runs/first holds the log of an earlier run: pick another --name, or continue that run with --resume$" &&
    ! printf '%s\n' "$out" | grep -q "^training on" && cmp -s first.csv runs/first/metrics.csv &&
    [ "$(ls runs/first | grep -c events)" -eq 1 ]; } ||
    { echo "FAIL: --name first again:"; printf '%s\n' "$out"; ls runs/first; fail=1; }
out=$("$nnd" run logged.nnd --name first --resume lck --set steps=2 2>&1)
{ [ $? -eq 0 ] && head -n "$(wc -l < first.csv)" runs/first/metrics.csv | cmp -s - first.csv &&
    [ "$(wc -l < runs/first/metrics.csv)" -gt "$(wc -l < first.csv)" ]; } ||
    { echo "FAIL: --name first --resume lck:"; printf '%s\n' "$out"; fail=1; }
# a run that stopped before its first record (only the files' heads): no reason to
# refuse its name (an event file of one record, and a metrics.csv of its header)
mkdir -p runs/early && printf 'step,epoch,tag,value\n' > runs/early/metrics.csv
ev=$(ls runs/first/events.out.tfevents.* | head -1)
python3 -c 'import sys, struct; b = open(sys.argv[1], "rb").read(); n = struct.unpack("<Q", b[:8])[0]; open(sys.argv[2], "wb").write(b[:16 + n])' \
    "$ev" runs/early/events.out.tfevents.1.host.1 || fail=1
out=$("$nnd" run logged.nnd --name early --set steps=1 2>&1)
[ $? -eq 0 ] || { echo "FAIL: --name early (a log of no records) refused:"; printf '%s\n' "$out"; fail=1; }
# through a link: the file it points to gets the model, the link stays
echo old > real.safetensors
ln -s real.safetensors link.safetensors
prog good.nnd link.safetensors
"$nnd" run good.nnd > good.log 2>&1 || { cat good.log; fail=1; }
[ -L link.safetensors ] || { echo "FAIL: the link was replaced"; fail=1; }
grep -q old real.safetensors && { echo "FAIL: the file behind the link was not written"; fail=1; }
# temporaries of saves killed midway: this run's stale ones go, nothing else
prog clean.nnd m.safetensors
sed -i 's|    steps = 1|    steps = 1\n    checkpoint every 1 steps to "ck"|' clean.nnd
mkdir ck
for f in m.safetensors.tmp.AbC123 other.safetensors.tmp.aaaaaa ck/step-00000001.safetensors.tmp.qwerty \
         ck/notes.tmp.abcdef; do
    echo x > "$f" && touch -d '2 minutes ago' "$f"
done
echo x > m.safetensors.tmp.Zz9999 # fresh: perhaps another process's save in progress
"$nnd" run clean.nnd > clean.log 2>&1 || { cat clean.log; fail=1; }
grep -q "removed 2 temporary files left by a save that was killed midway" clean.log ||
    { echo "FAIL: no report of the removed temporaries:"; cat clean.log; fail=1; }
for f in m.safetensors.tmp.AbC123 ck/step-00000001.safetensors.tmp.qwerty; do
    [ -e "$f" ] && { echo "FAIL: $f is still there"; fail=1; }
done
for f in m.safetensors.tmp.Zz9999 other.safetensors.tmp.aaaaaa ck/notes.tmp.abcdef; do
    [ -e "$f" ] || { echo "FAIL: $f was removed"; fail=1; }
done
[ $fail -eq 0 ] && echo "ok: bad save, log and checkpoint targets refused before training; links written through; stale temporaries removed"
exit $fail
