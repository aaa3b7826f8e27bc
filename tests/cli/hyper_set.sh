#!/bin/sh
# hyper_set.sh NND WORK: --set on an optimizer hyper-parameter.  A constant given
# for one that the file computes (a schedule) replaces it, with a warning naming
# both; a switch (a default of true or false) takes true, false, 1 or 0 only.
set -u
nnd=$1 work=$2
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 2
cat > f.nnd <<'NND'
use nn
use schedules
layer Lin() {
    param W: [2, 1] = [[0.5], [-0.3]]
    param b: [1] = 0.1
    fn forward(x: [B, 2]) -> [B, 1] = x @ W + b
}
optimizer O(lr = 0.1, flag = false) {
    w -= if flag then 2 * lr * g else lr * g
}
train {
    data train = tensors(x = [[1, 2], [3, -1], [0.5, 0.5], [-2, 1]], y = [[1], [2], [0], [-1]])
    net = Lin()
    loss = mse(net(x), y)
    opt = O(lr = cosine(0.1, step, steps))
    batch = 4
    steps = 3
    shuffle = false
}
NND
fail=0
"$nnd" run f.nnd > out.txt 2> err.txt || { cat err.txt; echo "FAIL: nnd run"; exit 1; }
[ -s err.txt ] && { cat err.txt; echo "FAIL: a warning without --set"; fail=1; }
"$nnd" run f.nnd --set opt.lr=0.1 > out.txt 2> err.txt || { cat err.txt; echo "FAIL: --set opt.lr"; exit 1; }
n=$(grep -c "^f.nnd:15:13: warning: --set opt.lr=0.1 replaces this expression by a constant$" err.txt)
[ "$n" -eq 1 ] || { cat err.txt; echo "FAIL: --set opt.lr=0.1 over a schedule: $n warnings, not 1"; fail=1; }
grep -q "opt = O(lr = cosine(0.1, step, steps))" err.txt ||
    { cat err.txt; echo "FAIL: the warning does not show the schedule"; fail=1; }
# the run is the one with a constant rate
sed 's/cosine(0.1, step, steps)/0.1/' f.nnd > constant.nnd
"$nnd" run constant.nnd > want.txt 2>&1 || { cat want.txt; echo "FAIL: nnd run constant.nnd"; exit 1; }
[ "$(tail -n 1 out.txt)" = "$(tail -n 1 want.txt)" ] ||
    { echo "FAIL: --set opt.lr=0.1: '$(tail -n 1 out.txt)', constant: '$(tail -n 1 want.txt)'"; fail=1; }
# a rate that is a train block's let is no schedule: --set replaces it silently
sed 's/    opt = O(lr = cosine(0.1, step, steps))/    let base = 0.2\n    opt = O(lr = base)/' f.nnd > let.nnd
grep -q "let base" let.nnd || { echo "FAIL: no let"; exit 1; }
"$nnd" run let.nnd --set opt.lr=0.1 > out.txt 2> err.txt || { cat err.txt; echo "FAIL: let.nnd"; exit 1; }
[ -s err.txt ] && { cat err.txt; echo "FAIL: a warning for --set over a let"; fail=1; }
# a switch
"$nnd" check f.nnd --set opt.flag=2 > /dev/null 2> err.txt && { echo "FAIL: --set opt.flag=2 accepted"; fail=1; }
grep -qx "nnd: error: --set opt.flag=2: opt.flag must be true or false, got 2" err.txt ||
    { cat err.txt; echo "FAIL: --set opt.flag=2"; fail=1; }
for v in 1 0 true false; do
    "$nnd" check f.nnd --set opt.flag=$v > /dev/null 2> err.txt || { cat err.txt; echo "FAIL: --set opt.flag=$v"; fail=1; }
done
[ $fail -eq 0 ] && echo "ok: hyper_set"
exit $fail
