"""compare.py TOL A.safetensors B.safetensors...: every tensor of each B within TOL
of A's, relative to the largest magnitude of A's tensor (the distributed tests)."""
import json
import struct
import sys

import numpy as np

DTYPES = {"F64": np.float64, "F32": np.float32}


def load(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, v in header.items():
        if name == "__metadata__":
            continue
        lo, hi = v["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + lo:8 + n + hi], dtype=DTYPES[v["dtype"]]).reshape(v["shape"])
    return out


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
