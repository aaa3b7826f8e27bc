# Shared by the distributed tests: mpirun as CI runs it (as root, more ranks than
# cores), and the test program with its optimizer.
nnd=$1 work=$2 here=$(cd "$(dirname "$0")" && pwd)
fail() { echo "FAIL: $*"; exit 1; }
if [ "$(id -u)" -eq 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
# (in the sanitizer build, LeakSanitizer sees what Open MPI keeps from MPI_Init in
# components it has unloaded, with no stack to suppress it by: leaks are checked by
# the tests of one process)
case "${ASAN_OPTIONS:-}" in *detect_leaks=1*) export ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0" ;; esac
mpi() { np=$1; shift; mpirun --oversubscribe -np "$np" "$nnd" "$@"; }
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 2
# program NAME OPTIMIZER: the test program with that `opt`
program() { sed "s/OPT/$2/" "$here/net.nnd" > "$1.nnd"; }
compare() { /usr/bin/python3 "$here/compare.py" "$@"; }
