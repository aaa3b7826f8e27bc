#!/usr/bin/python3
"""Data-parallel training under mpirun against one process, and the cost model.

For each model (the 784-128-10 MLP, the 784-1024-1024-10 MLP, the CNN), at its
global batch: one process with 1 and 2 threads, and mpirun -np N (N = 2, 3, 4; one
thread each, --oversubscribe beyond the cores), best of --rounds runs.  Prints
ms per step, samples/s and the share of the step spent in nnd's all-reduce (which
includes waiting for the slowest rank).  Then the cost model of docs/distributed.md:

  step(N) = compute / min(N, cores) + allreduce(N)
  allreduce(N) = 2 (N - 1) / N * bytes / bandwidth + 2 (N - 1) * calls * latency

with compute the one-thread step of one process, calls the all-reduces a step (the
buckets, from the run's last line), and the loopback's latency and
bandwidth fitted to the 2-rank runs (no oversubscription there); its predictions
for N = 3 and 4 beside the measured steps; then the predicted efficiency at 8, 64
and 256 ranks over 10, 25 and 100 Gb/s (latency --latency-us), weak scaling: each
rank keeps the measured batch (the global batch grows with N), so efficiency =
compute / (compute + allreduce(N)).

usage: bench/dist.py [--nnd build/nnd] [--rounds 2] [--steps 200] [--latency-us 5]
"""
import argparse
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# model: (file, global batch, parameters)
MODELS = {
    "mlp128": ("models/mlp128.nnd", 64, 101770),
    "mlp1024": ("models/mlp1024.nnd", 256, 1863690),
    "cnn": ("models/cnn.nnd", 64, None),
}


def run(cmd, env):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    if r.returncode != 0:
        sys.stderr.write(f"dist.py: {' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}{r.stderr}\n")
        return None
    return r.stdout + r.stderr


def measure(nnd, model, steps, ranks, threads, env):
    path, batch, _ = MODELS[model]
    cmd = [nnd, "run", os.path.join(HERE, path), "--threads", str(threads), "--time",
           "--set", f"steps={steps}", "--set", f"batch={batch}"]
    if ranks:
        cmd = ["mpirun", "--oversubscribe", "-np", str(ranks)] + cmd
    out = run(cmd, env)
    if not out:
        return None
    m = re.search(r"time: ([0-9.]+) ms per step, ([0-9]+) samples/s", out)
    a = re.search(r"all-reduce: ([0-9]+) steps, ([0-9.]+) s waiting \(\d+ ranks, ([0-9]+) values "
                  r"each, ([0-9]+) all-reduces? a step", out)
    p = re.search(r"training on .*", out)
    return {"ms": float(m.group(1)), "rate": float(m.group(2)),
            "ar_ms": 1e3 * float(a.group(2)) / float(a.group(1)) if a else 0.0,
            "values": int(a.group(3)) if a else None, "calls": int(a.group(4)) if a else 1,
            "line": p.group(0) if p else ""}


def fit(points):
    """Least squares t = 2(N-1) calls latency + 2(N-1)/N bytes / bw over (N, bytes, calls, t)."""
    # t = a x + b y with x = 2(N-1) calls, y = 2(N-1)/N * bytes: the 2x2 normal equations
    sxx = sxy = syy = r1 = r2 = 0.0
    for n, nbytes, calls, t in points:
        x, y = 2 * (n - 1) * calls, 2 * (n - 1) / n * nbytes
        sxx += x * x
        sxy += x * y
        syy += y * y
        r1 += x * t
        r2 += y * t
    det = sxx * syy - sxy * sxy
    a = (r1 * syy - r2 * sxy) / det
    b = (sxx * r2 - sxy * r1) / det
    return max(a, 0.0), (1 / b if b > 0 else float("inf"))


def allreduce_s(n, nbytes, latency_s, bw, calls):
    return 2 * (n - 1) / n * nbytes / bw + 2 * (n - 1) * calls * latency_s


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nnd", default=os.path.join(os.path.dirname(HERE), "build", "nnd"))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--latency-us", type=float, default=5.0)
    ap.add_argument("--models", default="mlp128,mlp1024,cnn")
    a = ap.parse_args()
    env = dict(os.environ)
    if os.geteuid() == 0:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    cores = os.cpu_count() or 1
    models = a.models.split(",")
    configs = [(0, 1), (0, 2), (2, 1), (3, 1), (4, 1)]
    res = {}
    for r in range(a.rounds):
        for model in models:
            steps = a.steps if model == "mlp128" else max(a.steps // 4, 20)
            for ranks, threads in configs:
                m = measure(a.nnd, model, steps, ranks, threads, env)
                if m and (m["ms"] < res.get((model, ranks, threads), {"ms": 1e99})["ms"]):
                    res[(model, ranks, threads)] = m
    print(f"measured, best of {a.rounds} rounds, {cores} cores:\n")
    print("| model | run | ms/step | samples/s | all-reduce ms/step | share |")
    print("|---|---|---|---|---|---|")
    for model in models:
        for ranks, threads in configs:
            m = res.get((model, ranks, threads))
            if not m:
                continue
            what = f"{ranks} ranks x 1 thread" if ranks else f"1 process, {threads} thread{'s' * (threads > 1)}"
            share = f"{100 * m['ar_ms'] / m['ms']:.0f}%" if ranks else "-"
            ar = f"{m['ar_ms']:.3f}" if ranks else "-"
            print(f"| {model} | {what} | {m['ms']:.3f} | {m['rate']:.0f} | {ar} | {share} |")
    # the loopback, fitted to the 2-rank runs
    pts = [(2, 4 * res[(mo, 2, 1)]["values"], res[(mo, 2, 1)]["calls"], res[(mo, 2, 1)]["ar_ms"] / 1e3)
           for mo in models if (mo, 2, 1) in res and res[(mo, 2, 1)]["values"]]
    if len(pts) < 2:
        print("\n(too few 2-rank runs to fit the loopback)")
        return
    lat, bw = fit(pts)
    print(f"\nloopback fitted to the 2-rank runs: latency {lat * 1e6:.1f} us, "
          f"bandwidth {bw / 1e9:.2f} GB/s\n")
    print("| model | ranks | predicted ms/step | measured ms/step | measured / predicted |")
    print("|---|---|---|---|---|")
    for model in models:
        one = res.get((model, 0, 1))
        if not one:
            continue
        for n in (2, 3, 4):
            m = res.get((model, n, 1))
            if not m or not m["values"]:
                continue
            pred = one["ms"] / min(n, cores) + 1e3 * allreduce_s(n, 4 * m["values"], lat, bw, m["calls"])
            print(f"| {model} | {n} | {pred:.3f} | {m['ms']:.3f} | {m['ms'] / pred:.2f} |")
    print(f"\npredicted efficiency, weak scaling (each rank keeps the measured batch and its "
          f"one-thread step; latency {a.latency_us:g} us):\n")
    print("| model | Gb/s | N = 8 | N = 64 | N = 256 |")
    print("|---|---|---|---|---|")
    for model in models:
        one, m2 = res.get((model, 0, 1)), res.get((model, 2, 1))
        if not one or not m2 or not m2["values"]:
            continue
        comp = one["ms"] / 1e3
        for gbs in (10, 25, 100):
            bw_net = gbs * 1e9 / 8
            eff = []
            for n in (8, 64, 256):
                step = comp + allreduce_s(n, 4 * m2["values"], a.latency_us * 1e-6, bw_net,
                                         m2["calls"])
                eff.append(f"{100 * comp / step:.1f}%")
            print(f"| {model} | {gbs} | " + " | ".join(eff) + " |")


if __name__ == "__main__":
    main()
