#!/bin/sh
# plot.sh NND WORKDIR: `nnd plot` on hostile metrics.csv files ends quickly, with a
# plot or a message naming the line: infinite values, values that differ in their
# last bit only, huge and tiny ranges, and steps that are not whole numbers.
set -u
nnd=$1 work=$2
rm -rf "$work" && mkdir -p "$work" || exit 1
fail=0
run() { # run NAME WANT-STATUS PATTERN: plots $work/NAME within 20 s
    name=$1 want=$2 pattern=$3
    out=$(timeout 20 "$nnd" plot "$work/$name" 2>&1)
    status=$?
    if [ "$status" -ne "$want" ] || ! printf '%s\n' "$out" | grep -q -- "$pattern"; then
        echo "FAIL: nnd plot $name: exit status $status (expected $want; 124 is a timeout):"
        printf '%s\n' "$out"
        fail=1
    fi
    # every coordinate a number: no nan or inf drawn
    if [ "$want" -eq 0 ] && grep -Eiq '(points|x|y|x1|x2|y1|y2|cx|cy|width|height)="[^"]*(nan|inf)' "$work/$name/plot.svg"; then
        echo "FAIL: nnd plot $name: a coordinate that is not a number:"
        grep -Ei '(points|x|y|x1|x2|y1|y2|cx|cy|width|height)="[^"]*(nan|inf)' "$work/$name/plot.svg"
        fail=1
    fi
}
csv() { mkdir -p "$work/$1" && printf 'step,epoch,tag,value\n' > "$work/$1/metrics.csv" && cat >> "$work/$1/metrics.csv"; }
csv inf <<'C'
1,0,loss,inf
2,0,loss,1.5
3,0,loss,-inf
4,0,loss,nan
5,0,grad_norm/w,inf
C
run inf 0 "wrote"
csv last_bit <<'C'
1,0,loss,0.3
2,0,loss,0.30000000000000004
3,0,loss,0.3
C
run last_bit 0 "wrote"
csv wide <<'C'
1,0,loss,1e-300
2,0,loss,1e300
3,0,update_ratio/w,1e-300
4,0,update_ratio/w,1e300
C
run wide 0 "wrote"
# values near the largest double: their span is not a double; the non-finite ones are
# left out, and the plot says how many
csv huge <<'C'
1,0,loss,nan
2,0,loss,inf
3,0,loss,1e308
4,0,loss,-1e308
5,0,loss,1.7976931348623157e308
6,0,eval/acc,-1.7976931348623157e308
7,0,eval/acc,1.7976931348623157e308
C
run huge 0 "wrote"
grep -q ">2 non-finite values (nan, inf) left out<" "$work/huge/plot.svg" ||
    { echo "FAIL: nnd plot huge: the non-finite values are not counted"; fail=1; }
grep -q 'points="[0-9.]*,[0-9.]* [0-9.]*,[0-9.]* [0-9.]*,[0-9.]* "' "$work/huge/plot.svg" ||
    { echo "FAIL: nnd plot huge: the three finite losses are not drawn"; grep polyline "$work/huge/plot.svg"; fail=1; }
csv fractional_step <<'C'
1,0,loss,1
0.30000000000000004,0,loss,2
C
run fractional_step 1 "metrics.csv:3: not a row"
csv infinite_step <<'C'
1,0,loss,1
inf,0,loss,2
C
run infinite_step 1 "metrics.csv:3: not a row"
[ $fail -eq 0 ] && echo "ok: every hostile metrics.csv plotted or refused with its line"
exit $fail
