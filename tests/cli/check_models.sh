#!/bin/sh
# check_models.sh NND GOLDEN: `nnd check --verbose` on files without a train block
# says, for each model and layer, whether it was checked (and forward's result) or
# why not; the exit status is 1 exactly when a checked model has an error.
set -u
nnd=$1 golden=$2
fail=0
expect() { # expect STATUS FILE LINE: the status, and LINE among the standard output
    out=$("$nnd" check --verbose "$2" 2>/dev/null)
    status=$?
    if [ "$status" -ne "$1" ] || ! printf '%s\n' "$out" | grep -qxF -- "$3"; then
        echo "FAIL: nnd check --verbose $2: exit status $status (expected $1), no line '$3' in:"
        printf '%s\n' "$out"
        fail=1
    fi
}
expect 1 "$golden/check_models_alone.nnd" "model 'Bad': errors"
expect 1 "$golden/check_models_alone.nnd" "layer 'Block': not checked: it is created with arguments ('n')"
expect 1 "$golden/check_models_result.nnd" "model 'Net': errors"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/nnd-check.XXXXXX") || exit 2
trap 'rm -rf "$tmp"' EXIT INT TERM
cat > "$tmp/lib.nnd" <<'NND'
use nn
model Good(hidden = 32) {
    fc1 = Dense(784, hidden)
    fc2 = Dense(hidden, 10)
    fn forward(x: [B, 784], y: [B] i32) = fc2(relu(fc1(x))) + one_hot(y, 10)
}
model Untyped() {
    fc = Dense(4, 2)
    fn forward(x) = fc(x)
}
model Splat() {
    fc = Dense(4, 2)
    fn forward(x: [*N, 4]) = fc(x)
}
model NoForward() {
    fc = Dense(4, 2)
}
NND
expect 0 "$tmp/lib.nnd" "model 'Good': checked, forward gives [B, 10] f32"
expect 0 "$tmp/lib.nnd" "model 'Untyped': not checked: forward's input 'x' has no shape type"
expect 0 "$tmp/lib.nnd" "model 'Splat': not checked: forward's input 'x' has a rank set by its caller (*N)"
expect 0 "$tmp/lib.nnd" "model 'NoForward': not checked: it has no forward"
# without --verbose nothing is printed for a clean file
out=$("$nnd" check "$tmp/lib.nnd" 2>&1)
[ -z "$out" ] || { echo "FAIL: nnd check printed '$out' for a clean file"; fail=1; }
exit $fail
