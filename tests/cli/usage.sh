#!/bin/sh
# usage.sh NND EXAMPLES: every command-line mistake ends with exit status 2 and one
# message naming it, before anything is compiled; under the sanitizers nothing may
# leak on the way out (LeakSanitizer turns a leak into another exit status).
set -u
nnd=$1 examples=$2
fail=0
expect() { # expect STATUS PATTERN ARGS...: the status and a line of stderr matching PATTERN
    want=$1 pattern=$2
    shift 2
    err=$("$nnd" "$@" 2>&1 >/dev/null)
    status=$?
    if [ "$status" -ne "$want" ] || ! printf '%s\n' "$err" | grep -q -- "$pattern"; then
        echo "FAIL: nnd $*: exit status $status (expected $want), stderr:"
        printf '%s\n' "$err"
        fail=1
    fi
}
mlp=$examples/fashion_mnist_mlp.nnd
expect 2 "needs a whole number from 1 to 256, got 'x'" run "$mlp" --set opt.lr=1 --threads x
expect 2 "needs a whole number from 1 to 256" run "$mlp" --opt "Adam()" --set a=1 --threads 0
expect 2 "unknown option '--frobnicate'" run "$mlp" --set a=1 --frobnicate
expect 2 "--set takes NAME=VALUE" run "$mlp" --set opt.lr=1 --set =3
expect 2 "needs NAME=VALUE" run "$mlp" --set
expect 2 "--dtype takes f32 or f64" run "$mlp" --set a=1 --dtype f16
expect 2 "--precision takes bf16 or f32, got 'fp16'" run "$mlp" --precision fp16
err=$(NND_OWN_SGEMM=yes "$nnd" run "$mlp" 2>&1)
status=$?
{ [ $status -eq 2 ] && printf '%s\n' "$err" | grep -q "NND_OWN_SGEMM='yes' must be 0"; } ||
    { echo "FAIL: NND_OWN_SGEMM=yes: exit status $status, stderr:"; printf '%s\n' "$err"; fail=1; }
expect 2 "unknown command 'trian'" trian "$mlp" --set a=1
expect 2 "run takes one file" run "$mlp" "$mlp"
expect 2 "--name names the run's log subdirectory: a name without '/', got 'a/b'" run "$mlp" --name a/b
expect 2 "--name names the run's log subdirectory" run "$mlp" --name ..
expect 2 "needs a number" lrfind "$mlp" --min x
expect 2 "^nnd: -o needs a file name" lrfind "$mlp" -o ""
# values given with --set that a setting refuses: the message names the command line
expect 1 "^nnd: error: --set batch=-5: batch must be a whole number >= 1, got -5" check "$mlp" --set batch=-5
expect 1 "^nnd: error: --set clip_norm=0: clip_norm must be positive, got 0" check "$mlp" --set clip_norm=0
expect 1 "^nnd: error: --set ema=2: ema must be between 0 and 1" check "$mlp" --set ema=2
expect 1 "^nnd: error: --set shuffle=5: shuffle must be true or false, got 5" check "$mlp" --set shuffle=5
# one name given twice: an error that says so (not that nothing is called that)
xor=$examples/xor.nnd
expect 1 "^nnd: error: --set steps: given twice, as steps=2 and steps=3" check "$xor" --set steps=2 --set steps=3
expect 1 "^nnd: error: --set opt.lr: given twice" check "$xor" --set opt.lr=0.1 --set opt.lr=0.2
expect 1 "^nnd: error: --set cosine: given twice" check "$examples/gpt.nnd" --set cosine=0 --set=cosine=1
expect 1 "^nnd: error: --set seed: given twice" check "$xor" --seed 1 --set seed=2
# a value written as a number is a finite decimal one, as in a .nnd file
expect 2 "^nnd: --set opt.lr=nan: expected a finite number" check "$xor" --set opt.lr=nan
expect 2 "^nnd: --set opt.lr=inf: expected a finite number" check "$xor" --set opt.lr=inf
expect 2 "^nnd: --set opt.beta1=-inf: expected a finite number" check "$xor" --set opt.beta1=-inf
expect 2 "^nnd: --set clip_norm=inf: expected a finite number" check "$xor" --set clip_norm=inf
expect 2 "^nnd: --set cosine=nan: expected a finite number" check "$examples/gpt.nnd" --set cosine=nan
expect 2 "^nnd: --set opt.lr=1e999: number is too large" check "$xor" --set opt.lr=1e999
expect 2 "^nnd: --set opt.lr=0x10: expected a decimal number" check "$xor" --set opt.lr=0x10
expect 2 "^nnd: --set steps=0x1p3: expected a decimal number" check "$xor" --set steps=0x1p3
expect 2 "needs a number" run "$xor" --seed nan
# compare: --opt and --sweep do not mix; a name swept twice, or more than 100 rows, is refused
expect 2 "^nnd: compare takes --opt or --sweep, not both" compare "$xor" --opt "SGD(lr = 0.1)" --sweep opt.lr=0.5,0.6
expect 2 "^nnd: --sweep opt.lr is given twice: list its values in one" compare "$xor" --sweep opt.lr=1,2 --sweep opt.lr=3
expect 2 "^nnd: the --sweep values make 121 combinations; compare runs 100 at most" \
    compare "$xor" --sweep opt.lr=1,2,3,4,5,6,7,8,9,10,11 --sweep seed=1,2,3,4,5,6,7,8,9,10,11
expect 2 "^nnd: --sweep takes NAME=V1,V2,..., got 'seed='" compare "$xor" --sweep opt.lr=1 --sweep seed=
# lrfind's and gradcheck's numbers: a value given is checked, 0 included
expect 2 "^nnd: lrfind: need 0 < --min < --max, got --min 0 --max 10" lrfind "$xor" --min 0
expect 2 "^nnd: lrfind: need 0 < --min < --max" lrfind "$xor" --min 1 --max 0.5
expect 2 "^nnd: --steps needs a whole number from 2 to 1000000, got '0'" lrfind "$xor" --steps 0
expect 2 "^nnd: --steps needs a whole number from 2 to 1000000, got '1'" lrfind "$xor" --steps 1
expect 2 "^nnd: --min needs a number" lrfind "$xor" --min nan
expect 2 "^nnd: --eps needs a positive number, got '0'" gradcheck "$xor" --eps 0
expect 2 "^nnd: --eps needs a positive number, got '-1e-6'" gradcheck "$xor" --eps -1e-6
expect 2 "^nnd: --batch needs a whole number from 1 to 1000000000, got '0'" gradcheck "$xor" --batch 0
expect 2 "^nnd: --per-param needs a whole number from 0 to 1000000000, got '2.5'" gradcheck "$xor" --per-param 2.5
# outputs that could not be written are found before the work, not after it
expect 1 "^nnd: lrfind: /nonexistent-nnd/x.svg: the directory /nonexistent-nnd does not exist" \
    lrfind "$xor" -o /nonexistent-nnd/x.svg
expect 1 "^nnd: build: /nonexistent-nnd/x.o: the directory /nonexistent-nnd does not exist" \
    build "$xor" -o /nonexistent-nnd/x.o
expect 1 "^nnd: build: /nonexistent-nnd/x.h: the directory" build "$xor" -o x.o --header /nonexistent-nnd/x.h
expect 2 "^nnd: build -o writes OUT.o, OUT.a or OUT.so, got 'x.exe'" build "$xor" -o x.exe
expect 2 "unknown command 'bogus'" bogus --help
expect 1 "^nnd: error: --set precision=fp8: precision must be bf16 or f32, got fp8" check "$mlp" --set precision=fp8
# --precision bf16 reaches the train block: the run says how its products run here
out=$("$nnd" run "$examples/xor.nnd" --precision bf16 --set epochs=2 --time 2>&1)
printf '%s\n' "$out" | grep -q "^precision: bf16 products\|precision = bf16 is emulated" ||
    { echo "FAIL: nnd run --precision bf16:"; printf '%s\n' "$out"; fail=1; }
printf '%s\n' "$out" | grep -q "^time: .*; bf16 products \(on AVX512-BF16\|emulated\))" ||
    { echo "FAIL: nnd run --precision bf16 --time:"; printf '%s\n' "$out"; fail=1; }
# the interpreter emulates bf16 on any CPU; an f64 program keeps its f64 products
out=$("$nnd" run "$examples/xor.nnd" --precision bf16 --interp --set epochs=2 --time 2>&1)
printf '%s\n' "$out" | grep -q "^precision: bf16 products with f32 sums (emulated by the reference interpreter)$" &&
    printf '%s\n' "$out" | grep -q "^time: .*; bf16 products emulated by the reference interpreter)$" &&
    ! printf '%s\n' "$out" | grep -q "AVX" ||
    { echo "FAIL: nnd run --precision bf16 --interp:"; printf '%s\n' "$out"; fail=1; }
out=$("$nnd" run "$examples/xor.nnd" --precision bf16 --dtype f64 --set epochs=2 --time 2>&1)
printf '%s\n' "$out" | grep -q "^nnd: note: precision = bf16 rounds f32 products; those of an f64 program (--dtype f64) stay f64$" &&
    printf '%s\n' "$out" | grep -q "^time: .*; f64 products on OpenBLAS)$" ||
    { echo "FAIL: nnd run --precision bf16 --dtype f64:"; printf '%s\n' "$out"; fail=1; }
# a program that would train nothing: the commands that train refuse it, the others warn
frozen=$examples/../tests/golden/train_freeze_everything.nnd
expect 1 "train_freeze_everything.nnd:9:5: error: every parameter is frozen: training would change nothing" run "$frozen"
expect 1 "error: every parameter is frozen" lrfind "$frozen"
out=$("$nnd" summary "$frozen" 2>&1)
[ $? -eq 0 ] && printf '%s\n' "$out" | grep -q "warning: every parameter is frozen" ||
    { echo "FAIL: nnd summary of a program that trains nothing:"; printf '%s\n' "$out"; fail=1; }
# the same with precision = bf16 written in the file
tmp=$(mktemp -d) && sed 's/^train {$/train {\n    precision = bf16/' "$examples/xor.nnd" > "$tmp/xor_bf16.nnd"
grep -q "precision = bf16" "$tmp/xor_bf16.nnd" || { echo "FAIL: no precision line"; fail=1; }
out=$("$nnd" run "$tmp/xor_bf16.nnd" --dtype f64 --set epochs=2 2>&1)
printf '%s\n' "$out" | grep -q "^nnd: note: precision = bf16 rounds f32 products; those of an f64 program (--dtype f64) stay f64$" ||
    { echo "FAIL: precision = bf16 in the file, --dtype f64:"; printf '%s\n' "$out"; fail=1; }
rm -rf "$tmp"
err=$(NND_WINOGRAD=2 "$nnd" run "$mlp" 2>&1)
status=$?
{ [ $status -eq 2 ] && printf '%s\n' "$err" | grep -q "NND_WINOGRAD='2' must be 0"; } ||
    { echo "FAIL: NND_WINOGRAD=2: exit status $status, stderr:"; printf '%s\n' "$err"; fail=1; }

# NND_OWN_SGEMM=0: the f32 products on OpenBLAS, and --time says so
out=$(NND_OWN_SGEMM=0 "$nnd" run "$examples/xor.nnd" --set epochs=2 --time 2>&1)
printf '%s\n' "$out" | grep -q "^time: .*; f32 products on OpenBLAS)" ||
    { echo "FAIL: NND_OWN_SGEMM=0 nnd run --time:"; printf '%s\n' "$out"; fail=1; }
# every command's own --help: its usage on standard output, exit 0
for c in run predict build sample check graph gradcheck emit-llvm compare lrfind explain plot parse; do
    out=$("$nnd" "$c" --help 2> /dev/null)
    status=$?
    if [ $status -ne 0 ] || [ "$(printf '%s\n' "$out" | head -n 1 | cut -d' ' -f1-3)" != "usage: nnd $c" ]; then
        echo "FAIL: nnd $c --help: exit $status, first line '$(printf '%s\n' "$out" | head -n 1)'"
        fail=1
    fi
done
[ "$("$nnd" help sample | head -n 1 | cut -d' ' -f1-3)" = "usage: nnd sample" ] || { echo "FAIL: nnd help sample"; fail=1; }
[ $fail -eq 0 ] && echo "ok: every usage error exits 2 with its message"
exit $fail
