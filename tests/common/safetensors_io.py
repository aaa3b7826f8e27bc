"""safetensors files for the Python tests (tests/optim, tests/dist): NumPy arrays
in, NumPy arrays out, little-endian F32 or F64, the format nnd reads and writes."""
import json
import struct

import numpy as np

CODES = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64"}
DTYPES = {"F32": "<f4", "F64": "<f8"}


def write_safetensors(path, tensors, dtype=np.float64):
    """tensors: name -> array, written as dtype (float32 or float64)."""
    code = CODES[np.dtype(dtype)]
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        b = np.ascontiguousarray(a, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()
        header[name] = {"dtype": code, "shape": list(np.shape(a)), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def read_safetensors(path, as_f64=False):
    """name -> array in the file's dtype (float64 with as_f64); metadata skipped."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        lo, hi = e["data_offsets"]
        a = np.frombuffer(data[8 + n + lo:8 + n + hi], dtype=DTYPES[e["dtype"]]).reshape(e["shape"])
        out[name] = a.astype(np.float64) if as_f64 else a
    return out
