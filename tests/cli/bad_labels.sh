#!/bin/sh
# bad_labels.sh NND WORK: a label outside the model's classes (cross_entropy, one_hot),
# and an index outside
# an embedding table, stop training with a message naming the value, the limit and
# the sample that holds it: in compiled code and in the interpreter (--interp).  A
# label no int32 holds saturates, as i32() does in compiled code (fuzz_frontend found
# its conversion to int32_t undefined in a literal data set).
set -u
nnd=$1 work=$2
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 2
fail=0
expect() { # expect FILE MESSAGE ARGS...
    file=$1 want=$2
    shift 2
    err=$("$nnd" run "$file" "$@" 2>&1 >/dev/null)
    status=$?
    if [ "$status" -ne 1 ] || ! printf '%s\n' "$err" | grep -qF -- "$want"; then
        echo "FAIL: nnd run $file $*: exit status $status (expected 1), no '$want' in:"
        printf '%s\n' "$err"
        fail=1
    fi
}
cat > labels.nnd <<'NND'
use nn
use optim
train {
    data train = tensors(x = [[0, 0], [0, 1], [1, 0], [1, 1]], y = [0, 1, 5, 2])
    net = Dense(2, 3)
    loss = cross_entropy(net(x), i32(y))
    opt = SGD(lr = 0.1)
    epochs = 1
    shuffle = false
}
NND
cat > index.nnd <<'NND'
use nn
use optim
train {
    data train = tensors(x = [[0], [1], [7], [2]], y = [[0], [1], [1], [0]])
    table = Embedding(4, 2)
    loss = mean((sum(table(i32(x)), axis = 2) - y) ^ 2)
    opt = SGD(lr = 0.1)
    epochs = 1
    shuffle = false
}
NND
cat > huge.nnd <<'NND'
use nn
use optim
train {
    data train = tensors(x = [[0, 0], [0, 1], [1, 0], [1, 1]], y = i32([0, 1, 4294967296, 2]))
    net = Dense(2, 3)
    loss = cross_entropy(net(x), y)
    opt = SGD(lr = 0.1)
    epochs = 1
    shuffle = false
}
NND
cat > onehot.nnd <<'NND'
use nn
use optim
train {
    data train = tensors(x = [[0, 0], [0, 1], [1, 0], [1, 1]], y = [0, 1, 5, 2])
    net = Dense(2, 3)
    loss = mse(softmax(net(x)), one_hot(i32(y), 3))
    opt = SGD(lr = 0.1)
    epochs = 1
    shuffle = false
}
NND
label="training on 'train': label 5 is out of range for the model's 3 classes, 0 to 2 (sample 2 of 'train' has it)"
expect labels.nnd "$label"
expect labels.nnd "$label" --interp
# one_hot alone checks its labels (in compiled code after the loop over the classes)
expect onehot.nnd "$label"
expect onehot.nnd "$label" --interp
huge="label 2147483647 is out of range for the model's 3 classes, 0 to 2 (sample 2 of 'train' has it)"
expect huge.nnd "$huge"
expect huge.nnd "$huge" --interp
index="training on 'train': index 7 is out of range for a table of 4 rows (take, Embedding)"
expect index.nnd "$index"
expect index.nnd "$index" --interp
exit $fail
