#!/usr/bin/python3
"""The weight histograms an event file holds at STEP against the weights themselves
(a safetensors file the same run saved after that step): the range, the count and
the buckets exactly as a plain loop finds them (30 equal buckets over the
range, the last one closed), the sums to f32 rounding (nnd's step computes them in
f32 beside the update); infinities and NaN left out, as nnd_histogram leaves them.
Exits 1 naming the first histogram that differs.

usage: check_histograms.py EVENTS_FILE WEIGHTS.safetensors STEP"""
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "common"))
from check_events import read_events  # noqa: E402
from safetensors_io import read_safetensors  # noqa: E402

BUCKETS = 30


def histograms(events, step):
    """{tag: {field: value or list}} of the histograms logged at step."""
    out = {}
    for ev in events:
        if f"step: {step}" not in ev or not any(l.startswith("histo {") for l in ev):
            continue
        tag = next(l.split('"')[1] for l in ev if l.startswith("tag:"))
        h = {"bucket_limit": [], "bucket": []}
        inside = False
        for l in ev:
            if l.startswith("histo {"):
                inside = True
            elif inside and ":" in l:
                k, v = l.split(":", 1)
                if k in h:
                    h[k].append(float(v))
                else:
                    h[k] = float(v)
        out[tag] = h
    return out


def expected(w):
    lo, hi = min(w), max(w)
    width = (hi - lo) / BUCKETS if hi > lo else 1.0
    scale = 1 / width if hi > lo else 0.0
    count = [0] * BUCKETS
    for v in w:
        count[min(int((v - lo) * scale), BUCKETS - 1)] += 1
    limits = [hi if k == BUCKETS - 1 else lo + width * (k + 1) for k in range(BUCKETS)]
    return lo, hi, count, limits, sum(w), sum(v * v for v in w), sum(abs(v) for v in w)


def main():
    events_path, weights_path, step = sys.argv[1], sys.argv[2], int(sys.argv[3])
    _, events, _ = read_events(events_path)
    got = histograms(events, step)
    weights = {name: [v for v in a.astype("float64").ravel().tolist() if math.isfinite(v)]
               for name, a in read_safetensors(weights_path).items()}
    if not got:
        sys.exit(f"no histogram at step {step}")
    for name, w in weights.items():
        tag = "weights/" + name
        if tag not in got:
            sys.exit(f"{tag}: no histogram at step {step}")
        h = got[tag]
        lo, hi, count, limits, s, sq, mag = expected(w)
        # proto3 leaves fields that are 0 out
        g = {k: h.get(k, 0.0) for k in ["min", "max", "num", "sum", "sum_squares"]}
        if g["min"] != lo or g["max"] != hi or g["num"] != len(w):
            sys.exit(f"{tag}: min {g['min']} max {g['max']} num {g['num']}, the weights' "
                     f"{lo} {hi} {len(w)}")
        if h["bucket"] != [float(c) for c in count]:
            sys.exit(f"{tag}: buckets {h['bucket']}, the weights' {list(count)}")
        if any(abs(a - b) > 1e-12 * max(abs(lo), abs(hi)) for a, b in zip(h["bucket_limit"], limits)) \
                or len(h["bucket_limit"]) != BUCKETS:
            sys.exit(f"{tag}: limits {h['bucket_limit']}, the weights' {limits}")
        # f32 sums: rounding of at most ~n * 2^-24 of the magnitudes, far less in practice
        if abs(g["sum"] - s) > 1e-5 * mag or abs(g["sum_squares"] - sq) > 1e-5 * sq:
            sys.exit(f"{tag}: sum {g['sum']} sum_squares {g['sum_squares']}, the weights' {s} {sq}")
        print(f"ok: {tag}: {len(w)} finite values, buckets and range exact, sums within f32 rounding")


if __name__ == "__main__":
    main()
