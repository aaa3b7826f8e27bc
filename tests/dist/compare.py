"""compare.py TOL A.safetensors B.safetensors...: every tensor of each B within TOL
of A's, relative to the largest magnitude of A's tensor (the distributed tests)."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
from safetensors_io import read_safetensors as load  # noqa: E402


def main():
    tol, ref = float(sys.argv[1]), load(sys.argv[2])
    bad = 0
    for path in sys.argv[3:]:
        got = load(path)
        if sorted(got) != sorted(ref):
            print(f"FAIL: {path} has tensors {sorted(got)}, not {sorted(ref)}")
            bad += 1
            continue
        worst = max(float(np.abs(ref[k].astype(np.float64) - got[k]).max() /
                          max(np.abs(ref[k]).max(), 1e-300)) for k in ref)
        ok = worst <= tol
        bad += not ok
        print(f"{'ok' if ok else 'FAIL'}: {path}: {worst:.3g} relative (bound {tol:g})")
    sys.exit(1 if bad else 0)


main()
