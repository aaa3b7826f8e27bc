#!/usr/bin/env python3
"""seeds.py: writes the seed corpus of one fuzz target into a directory.

usage: seeds.py TARGET DIR      (TARGET: frontend, safetensors, idx, npy, csv, text, metrics_csv)

frontend: every .nnd of the tree (examples/, tests/golden/, bench/models/, stdlib/),
named after its path.  The loaders: small valid files of each kind the loader
reads (every dtype, rank 0 to 4, gzip-compressed ones), written here with the
standard library only, so a fresh machine needs nothing more.  And for every
target, the reproducers of past findings kept in tests/fuzz/regress/TARGET/.
"""
import gzip
import json
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def frontend():
    out = {}
    for d in ("examples", "tests/golden", "bench/models", "stdlib"):
        for base, _, names in os.walk(os.path.join(ROOT, d)):
            for n in sorted(names):
                if n.endswith(".nnd"):
                    rel = os.path.relpath(os.path.join(base, n), ROOT)
                    out[rel.replace("/", "_")] = open(os.path.join(ROOT, rel), "rb").read()
    return out


def safetensors():
    def st(tensors, meta=None):
        header, data, off = {}, b"", 0
        if meta is not None:
            header["__metadata__"] = meta
        for name, dtype, shape, blob in tensors:
            header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(blob)]}
            data += blob
            off += len(blob)
        h = json.dumps(header).encode()
        h += b" " * (-len(h) % 8)
        return struct.pack("<Q", len(h)) + h + data

    f32 = struct.pack("<6f", 1, -2, 0.5, 3, 1e-3, 7)
    return {
        "f32.safetensors": st([("w", "F32", [2, 3], f32)]),
        "mixed.safetensors": st([("fc.W", "F64", [2, 2], struct.pack("<4d", 1, 2, 3, 4)),
                                 ("fc.b", "F32", [2], struct.pack("<2f", 0, 1)),
                                 ("n", "I32", [], struct.pack("<i", 7)),
                                 ("m", "BOOL", [3], bytes([0, 1, 1])),
                                 ("h", "BF16", [1], b"\x80\x3f")],
                                {"nnd.step": "12", "format": "pt"}),
        "empty.safetensors": st([("e", "F32", [0, 4], b"")]),
        "none.safetensors": st([], {}),
    }


def idx():
    def f(code, shape, blob):
        return bytes([0, 0, code, len(shape)]) + b"".join(struct.pack(">I", d) for d in shape) + blob

    return {
        "images-u8.idx": f(0x08, [3, 2, 2], bytes(range(12))),
        "labels-u8.idx": f(0x08, [3], bytes([0, 9, 4])),
        "i8.idx": f(0x09, [2, 2], bytes([1, 255, 3, 128])),
        "i16.idx": f(0x0B, [2], struct.pack(">2h", -3, 300)),
        "i32.idx": f(0x0C, [2], struct.pack(">2i", 5, 1)),
        "f32.idx": f(0x0D, [1, 3], struct.pack(">3f", 0.5, -1, 2)),
        "f64.idx": f(0x0E, [2, 1], struct.pack(">2d", 1e-3, 9)),
        "images.idx.gz": gzip.compress(f(0x08, [2, 2, 2], bytes(range(8)))),
    }


def npy():
    def f(descr, shape, blob, version=1):
        h = ("{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, tuple(shape))).encode()
        pre = 10 if version == 1 else 12
        h += b" " * (-(pre + len(h) + 1) % 64) + b"\n"
        ln = struct.pack("<H", len(h)) if version == 1 else struct.pack("<I", len(h))
        return b"\x93NUMPY" + bytes([version, 0]) + ln + h + blob

    return {
        "f4.npy": f("<f4", [2, 3], struct.pack("<6f", 1, 2, 3, 4, 5, 6)),
        "f8.npy": f("<f8", [2], struct.pack("<2d", -1, 0.25)),
        "u1.npy": f("|u1", [4], bytes([0, 1, 2, 255])),
        "i1.npy": f("|i1", [2, 1], bytes([255, 3])),
        "i2.npy": f("<i2", [2], struct.pack("<2h", -2, 9)),
        "i4.npy": f("<i4", [3], struct.pack("<3i", 0, 7, 2)),
        "i8.npy": f("<i8", [1], struct.pack("<q", 3)),
        "b1.npy": f("|b1", [2], bytes([0, 1])),
        "scalar.npy": f("<f4", [], struct.pack("<f", 1.5)),
        "rank4.npy": f("<f4", [1, 1, 2, 2], struct.pack("<4f", 1, 2, 3, 4)),
        "v2.npy": f("<f4", [2], struct.pack("<2f", 1, 2), 2),
        "v3.npy": f("<f8", [1], struct.pack("<d", 3), 3),
        "f4.npy.gz": gzip.compress(f("<f4", [2], struct.pack("<2f", 1, 2))),
    }


def csv():
    return {
        "reg.csv": b"x1,x2,y\n1,2,3.5\n-1,0.5,0\n",
        "class.csv": b"a,b,c,label\n0.1,0.2,0.3,1\n1e-3,2e2,-4,0\n\n5,6,7,2\n",
        "crlf.csv": b"\"p\", \"q\"\r\n 1 , 2 \r\n3,4\r\n",
        "one.csv": b"y\n1\n2\n",
        "gz.csv.gz": gzip.compress(b"x,y\n1,0\n2,1\n"),
    }


def text():
    # the first byte chooses one or two copies and the split (fuzz_text.c)
    return {
        "words.txt": b"\x21The quick brown fox jumps over the lazy dog.\n",
        "bytes.bin": bytes([0x50]) + bytes(range(256)),
        "one.txt": b"\x00a",
        "fortune.txt": b"\x7fA fool and his money are soon parted.\n%\nAll is well.\n%\n",
    }


def metrics_csv():
    head = b"step,epoch,tag,value\n"
    return {
        "run.csv": head + b"".join(b"%d,%g,%s,%g\n" % (s, s / 10, t, v)
                                   for s in range(0, 50, 10)
                                   for t, v in ((b"loss", 2.0 / (s + 1)), (b"lr", 1e-3),
                                                (b"grad_norm/fc.W", 0.1 * s + 1e-9),
                                                (b"update_ratio/fc.W", 1e-3),
                                                (b"weight_norm/fc.W", 3), (b"max_grad/fc.W", 0.2),
                                                (b"nonfinite/fc.W", 0), (b"eval/test/accuracy", 0.5),
                                                (b"eval/test/loss", 1), (b"other", -s))),
        "odd.csv": head + b"0,0,loss,inf\n1,0,loss,nan\n2,0,loss,1e308\n3,0,grad_norm/w,0\n"
                          b"4,0,grad_norm/w,-1\n5,0,lr,1e-300\n6,0.5,loss,1\n",
        "one.csv": head + b"0,0,loss,1\n",
        "cut.csv": head + b"0,0,loss,1\n1,0,lo",
    }


def main(argv):
    if len(argv) != 2 or argv[0] not in ("frontend", "safetensors", "idx", "npy", "csv", "text", "metrics_csv"):
        print(__doc__.strip().split("\n")[2], file=sys.stderr)
        return 2
    os.makedirs(argv[1], exist_ok=True)
    seeds = globals()[argv[0]]()
    regress = os.path.join(ROOT, "tests", "fuzz", "regress", argv[0])
    if os.path.isdir(regress):  # the reproducers of past findings
        for n in sorted(os.listdir(regress)):
            seeds["regress_" + n] = open(os.path.join(regress, n), "rb").read()
    for name, data in seeds.items():
        with open(os.path.join(argv[1], name), "wb") as f:
            f.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
